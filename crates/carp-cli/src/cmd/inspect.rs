//! `carp inspect FILE`: what a checkpoint holds (keys, shapes, dtypes, metadata).

use carp_io::keymap;
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `carp inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A PyTorch checkpoint (.pth, .pth.tar, .pt; zip or legacy) or a .safetensors file.
    pub file: PathBuf,
}

/// Prints the container, every tensor (dtype, shape), the plain values and, where the layout
/// is recognised, the method and the ResNet its backbone describes.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = keymap::read_tensors(&args.file)?;
    let elements: usize = file.tensors.values().map(|t| t.values.len()).sum();
    println!(
        "{}: {} container, {} tensors, {} elements",
        args.file.display(),
        file.container,
        file.tensors.len(),
        elements
    );
    for (k, t) in &file.tensors {
        println!("  {k}  {}  {:?}", file.dtypes[k], t.shape);
    }
    if !file.metadata.is_empty() {
        println!("metadata:");
        for (k, v) in &file.metadata {
            println!("  {k} = {v}");
        }
    }
    match keymap::import_backbone(&args.file, None, None) {
        Ok(imported) => {
            let arch = keymap::infer_resnet(&imported.backbone)
                .map(|c| {
                    format!(
                        "{:?}, base width {}, {} stem",
                        c.arch,
                        c.base_width,
                        if c.small_stem { "small" } else { "ImageNet" }
                    )
                })
                .unwrap_or_else(|e| format!("not a carp ResNet ({e})"));
            println!(
                "layout: {} (weights from `{}`, sub-module `{}`): {} backbone tensors, {}; head: {}",
                imported.format,
                if imported.report.top.is_empty() { "root" } else { &imported.report.top },
                imported.report.kept_prefix,
                imported.backbone.len(),
                arch,
                match &imported.head {
                    Some(h) => keymap::infer_head(h)
                        .map(|c| format!("{c:?}"))
                        .unwrap_or_else(|e| e.to_string()),
                    None => "none".into(),
                }
            );
        }
        Err(e) => println!("layout: not recognised ({e})"),
    }
    Ok(ExitCode::SUCCESS)
}
