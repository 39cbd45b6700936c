//! `carp`: CARP self-supervised pretraining from the command line.

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;

mod cmd;
mod flags;
mod progress;

/// CARP: self-supervised visual representation learning (Consistent Assignment of Views over
/// Random Partitions, NeurIPS 2023).
#[derive(Parser, Debug)]
#[command(name = "carp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Progress output: `text` (a bar per epoch when stderr is a terminal, log lines
    /// otherwise) or `json` (one JSON object per event on stdout, for batch jobs).
    #[arg(long, global = true, value_enum, default_value_t = progress::LogFormat::Text)]
    log_format: progress::LogFormat,
    /// No progress bar or per-step output; only warnings, errors and the final result.
    #[arg(long, short, global = true)]
    quiet: bool,
}

// Parsed once at start-up: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain an encoder with CARP (built-in synthetic data by default), then k-NN evaluate it.
    Pretrain(cmd::pretrain::Args),
    /// List what a checkpoint holds: tensors (dtype, shape), metadata, detected layout.
    Inspect(cmd::inspect::Args),
    /// Convert a PyTorch checkpoint (CARP release, DINO, SwAV, ...) to safetensors.
    Convert(cmd::convert::Args),
    /// Plot a run directory's metrics (PNG) and write a Markdown summary into RUN_DIR/report.
    Report(cmd::report::Args),
    /// Dataset housekeeping: `carp data download {cifar10,cifar100,stl10,dtd,food101,country211} --to DIR`.
    Data(cmd::data::Args),
    /// Write backbone features of data sets as .npy and .safetensors.
    Embed(cmd::embed::Args),
    /// Evaluate a backbone (spec §6): k-NN, linear, k-means, few-shot VOC07, retrieval,
    /// Copydays, or the whole suite.
    Eval(cmd::eval::Args),
    /// List the backends this build has and the GPU adapters this machine offers them.
    Devices(cmd::devices::Args),
}

fn main() -> ExitCode {
    // Before any thread exists (see carp_train::alloc).
    carp_train::alloc::keep_freed_memory();
    let cli = Cli::parse();
    // Ranks other than 0 of an MPI job print only warnings and errors, labelled by rank.
    let rank = carp_train::dist::launcher_rank();
    let level = if cli.quiet || rank.is_some_and(|r| r > 0) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    progress::set_quiet(cli.quiet);
    let _rank_span = rank.map(|r| tracing::error_span!("rank", r).entered());
    let result = match cli.command {
        Command::Pretrain(args) => {
            cmd::pretrain::run(args, progress::Progress::new(cli.log_format, cli.quiet))
        }
        Command::Report(args) => cmd::report::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Convert(args) => cmd::convert::run(args),
        Command::Data(args) => cmd::data::run(args),
        Command::Embed(args) => cmd::embed::run(args),
        Command::Eval(args) => cmd::eval::run(args),
        Command::Devices(args) => cmd::devices::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// clap checks argument definitions (unique names, global flags not redefined by a
    /// subcommand, ...) only in debug builds; run those checks in every test build.
    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
