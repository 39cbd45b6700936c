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

#[derive(Subcommand, Debug)]
enum Command {
    /// Pretrain an encoder with CARP (built-in synthetic data by default), then k-NN evaluate it.
    Pretrain(cmd::pretrain::Args),
    /// Write backbone features of data sets as .npy and .safetensors.
    Embed(cmd::embed::Args),
    /// Evaluate a backbone: weighted k-NN, linear probe or k-means (spec §6).
    Eval(cmd::eval::Args),
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
        Command::Embed(args) => cmd::embed::run(args),
        Command::Eval(args) => cmd::eval::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
