//! `carp data`: dataset housekeeping. `carp data download cifar10 --to DIR` fetches,
//! checks and unpacks an official archive (see `carp_data::download`).

use anyhow::Context;
use carp_data::{download, Archive, DownloadOptions};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Environment variable that replaces the archives' base URL (a mirror, or a test server).
pub const BASE_URL_ENV: &str = "CARP_DATA_BASE_URL";

/// Flags of `carp data`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(clap::Subcommand, Debug)]
enum DataCommand {
    /// Download, MD5-check and unpack CIFAR-10, CIFAR-100, STL-10 (binary versions), or the
    /// DTD, Food-101 and Country211 transfer sets.
    Download(DownloadArgs),
}

/// Flags of `carp data download`.
#[derive(clap::Args, Debug)]
struct DownloadArgs {
    /// Dataset: cifar10 (162 MB), cifar100 (161 MB), stl10 (2.5 GB, 5.3 GB unpacked), dtd
    /// (625 MB), food101 (5 GB) or country211 (11 GB). Flowers-102, Pets, GTSRB, FGVC-Aircraft
    /// and Stanford Cars are not offered (several files, no published checksum, no stable URL).
    #[arg(value_parser = Archive::NAMES)]
    dataset: String,
    /// Folder to put the dataset in (created if needed); an interrupted download left
    /// there is resumed.
    #[arg(long)]
    to: PathBuf,
    /// Keep the .tar.gz after unpacking (deleted by default).
    #[arg(long)]
    keep_archive: bool,
    /// Fetch `<URL>/<archive name>` instead of the official location (also read from
    /// CARP_DATA_BASE_URL).
    #[arg(long, hide = true)]
    base_url: Option<String>,
    /// Expected MD5 instead of the published one (for archives built elsewhere).
    #[arg(long, hide = true)]
    md5: Option<String>,
}

/// Runs `carp data`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        DataCommand::Download(a) => run_download(a),
    }
}

fn run_download(args: DownloadArgs) -> anyhow::Result<ExitCode> {
    let archive = Archive::parse(&args.dataset).context("dataset name")?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid progress template")
        .progress_chars("=> "),
    );
    bar.set_message(archive.file_name());
    let progress = |done: u64, total: Option<u64>| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    };
    let options = DownloadOptions {
        base_url: args
            .base_url
            .or_else(|| std::env::var(BASE_URL_ENV).ok().filter(|s| !s.is_empty())),
        md5: args.md5,
        keep_archive: args.keep_archive,
        progress: Some(&progress),
    };
    let result = download(archive, &args.to, &options);
    bar.finish_and_clear();
    let done = result.with_context(|| format!("downloading {}", args.dataset))?;
    if archive.transfer_set().is_some() {
        println!(
            "{} ready in {} ({} bytes fetched{}); evaluate with carp eval suite --data-root {}",
            args.dataset,
            done.folder.display(),
            done.fetched,
            if done.resumed { ", resumed" } else { "" },
            args.to.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} ready in {} ({} bytes fetched{}); train with --data {}",
        args.dataset,
        done.folder.display(),
        done.fetched,
        if done.resumed { ", resumed" } else { "" },
        archive.source(&args.to)
    );
    Ok(ExitCode::SUCCESS)
}
