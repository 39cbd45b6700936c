//! `carp`: CARP self-supervised pretraining from the command line.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;

/// CARP: self-supervised visual representation learning (Consistent Assignment of Views over
/// Random Partitions, NeurIPS 2023).
#[derive(Parser, Debug)]
#[command(name = "carp", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain an encoder with CARP (built-in synthetic data by default), then k-NN evaluate it.
    Pretrain(cmd::pretrain::Args),
    /// Dataset housekeeping: `carp data download {cifar10,cifar100,stl10} --to DIR`.
    Data(cmd::data::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Pretrain(args) => cmd::pretrain::run(args),
        Command::Data(args) => cmd::data::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
