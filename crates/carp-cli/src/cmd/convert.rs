//! `carp convert IN --out OUT.safetensors`: another tool's checkpoint to safetensors.

use anyhow::{bail, Context};
use burn::tensor::Device;
use carp_io::export::{self, Names};
use carp_io::keymap::{self, Format};
use std::path::PathBuf;
use std::process::ExitCode;

/// Flags of `carp convert`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The checkpoint to convert (.pth, .pth.tar, .pt or .safetensors).
    pub input: PathBuf,
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Layout of the input: carp, dino, swav, deepcluster-v2, sela-v2, mocov3, barlow,
    /// vicreg, infomin, obow, pcl-v2, triplet, torchvision (default: detected).
    #[arg(long)]
    pub format: Option<Format>,
    /// Top-level entry holding the weights (CARP/DINO: teacher (default) or student).
    #[arg(long)]
    pub key: Option<String>,
    /// Also write the CARP head (MLP and prototypes).
    #[arg(long)]
    pub with_head: bool,
    /// Names in the output: torchvision (default) or carp.
    #[arg(long, default_value = "torchvision")]
    pub to: Names,
}

/// Maps the input's keys, checks the weights load into carp's ResNet (and head), writes them.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "--out {}: the output must be a .safetensors file",
            args.out.display()
        );
    }
    let imported = keymap::import_backbone(&args.input, args.format, args.key.as_deref())?;
    // Loading into carp's own modules proves the names and shapes before anything is written.
    let device = Device::flex();
    let (_, cfg, report) = keymap::build_backbone(&imported, &device)
        .with_context(|| format!("{}: backbone", args.input.display()))?;
    if !report.is_exact() {
        bail!(
            "{}: backbone does not fit carp's {:?}: {report}",
            args.input.display(),
            cfg.arch
        );
    }
    if args.with_head {
        let head = imported.head.as_ref().with_context(|| {
            format!(
                "{}: --with-head: this {} checkpoint has no CARP head",
                args.input.display(),
                imported.format
            )
        })?;
        let head_cfg =
            keymap::infer_head(head).with_context(|| format!("{}: head", args.input.display()))?;
        let (_, report) = imported.apply_head(head_cfg.init(&device, 0))?;
        if !report.is_exact() {
            bail!(
                "{}: head does not fit carp's head: {report}",
                args.input.display()
            );
        }
    }
    let n = export::export(&imported, &args.out, args.to, args.with_head)?;
    eprintln!(
        "{} ({} layout, `{}`; {:?}, width {}, {} stem) -> {} ({n} tensors, {:?} names; dropped {})",
        args.input.display(),
        imported.format,
        if imported.report.top.is_empty() {
            "root"
        } else {
            &imported.report.top
        },
        cfg.arch,
        cfg.base_width,
        if cfg.small_stem { "small" } else { "ImageNet" },
        args.out.display(),
        args.to,
        imported.report.dropped.len(),
    );
    Ok(ExitCode::SUCCESS)
}
