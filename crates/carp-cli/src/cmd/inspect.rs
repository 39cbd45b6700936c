//! `carp inspect FILE`: what a checkpoint holds (keys, shapes, dtypes, metadata).

use carp_io::keymap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

/// `writeln!` into a `String` (cannot fail).
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {
        writeln!($out, $($arg)*).expect("writing to a String")
    };
}
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
    // Collected first and written once, so that `carp inspect X | head` ends quietly.
    let mut out = String::new();
    let file = keymap::read_tensors(&args.file)?;
    let elements: usize = file.tensors.values().map(|t| t.values.len()).sum();
    outln!(
        out,
        "{}: {} container, {} tensors, {} elements",
        args.file.display(),
        file.container,
        file.tensors.len(),
        elements
    );
    for (k, t) in &file.tensors {
        outln!(out, "  {k}  {}  {:?}", file.dtypes[k], t.shape);
    }
    if !file.metadata.is_empty() {
        outln!(out, "metadata:");
        for (k, v) in &file.metadata {
            outln!(out, "  {k} = {v}");
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
            outln!(
                out,
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
        Err(e) => outln!(out, "layout: not recognised ({e})"),
    }
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}
