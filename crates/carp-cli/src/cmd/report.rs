//! `carp report RUN_DIR`: plots and a Markdown summary of a run.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `carp report`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run directory (holds metrics.jsonl; summary.json adds the k-NN plot).
    pub run_dir: PathBuf,
}

/// Runs `carp report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = carp_train::report::write_report(&args.run_dir)?;
    for img in &report.images {
        println!("{}", img.display());
    }
    println!("{}", report.markdown.display());
    Ok(ExitCode::SUCCESS)
}
