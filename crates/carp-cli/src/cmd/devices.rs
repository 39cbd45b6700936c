//! `carp devices`: the backends this build has and the adapters this machine offers them.

use carp_train::device::{report, BackendReport};
use std::process::ExitCode;

/// Arguments of `carp devices`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object (backends with their adapters) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Runs `carp devices`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let backends = report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&backends)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<8} {:<9} {:<6} notes", "backend", "feature", "built");
    for b in &backends {
        println!(
            "{:<8} {:<9} {:<6} {}",
            b.backend.device_name(),
            b.feature.unwrap_or("-"),
            if b.compiled { "yes" } else { "no" },
            b.note
        );
    }
    for b in &backends {
        print_adapters(b);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_adapters(b: &BackendReport) {
    if !b.compiled || !b.backend.is_wgpu_runtime() {
        return;
    }
    println!();
    println!("{} adapters:", b.backend.device_name());
    if let Some(e) = &b.adapter_error {
        println!("  none: {e}");
        return;
    }
    let adapters = &b.adapters;
    println!(
        "  {:<11} {:<11} {:<7} {:<8} adapter (driver)",
        "device", "type", "api", "kernels"
    );
    for a in adapters {
        let kind = serde_json::to_value(a.kind).expect("enum serialises");
        println!(
            "  {:<11} {:<11} {:<7} {:<8} {} ({} {}){}",
            a.device.as_deref().unwrap_or("-"),
            kind.as_str().unwrap_or("?"),
            a.api,
            a.kernels,
            a.name,
            a.driver,
            a.driver_info,
            a.refused
                .as_ref()
                .map(|r| format!(" - refused: {r}"))
                .unwrap_or_default()
        );
    }
}
