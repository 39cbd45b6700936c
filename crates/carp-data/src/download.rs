//! Downloading the official dataset archives: [`download`].
//!
//! | [`Archive`] | file | MD5 (published) | unpacks to |
//! |---|---|---|---|
//! | CIFAR-10 | `cifar-10-binary.tar.gz` (162 MB) | `c32a1d4ab5d03f1284b67883e8d87530` | `cifar-10-batches-bin/` |
//! | CIFAR-100 | `cifar-100-binary.tar.gz` (161 MB) | `03b5dce01913d631647c71ecec9e9cb8` | `cifar-100-binary/` |
//! | STL-10 | `stl10_binary.tar.gz` (2.5 GB) | `91f7769df0f17e558f3565bffb0c7dfb` | `stl10_binary/` |
//! | DTD | `dtd-r1.0.1.tar.gz` (625 MB) | `fff73e5086ae6bdbea199a49dfb8a4c1` | `dtd/` |
//! | Food-101 | `food-101.tar.gz` (5 GB) | `85eeb15f3717b99a5da872d97d918f87` | `food-101/` |
//! | Country211 | `country211.tgz` (11 GB) | `84988d7644798601126c29e9877aab6a` | `country211/` |
//!
//! The transfer-set URLs and checksums are torchvision's (`datasets/dtd.py`, `food101.py`,
//! `country211.py`); the unpacked folders are what [`crate::TransferSet`] reads under the
//! same folder. Flowers-102, Oxford-IIIT Pets and GTSRB come as several files, FGVC-Aircraft
//! has no published checksum and Stanford Cars no stable URL: not downloadable here.
//!
//! The CIFAR checksums are those of the dataset page (cs.toronto.edu/~kriz/cifar.html),
//! the STL-10 one that of torchvision's `datasets/stl10.py`.
//!
//! Steps, each safe to interrupt:
//! 1. GET into `<DIR>/<file>.part`. If a `.part` is there, ask for the rest with a
//!    `Range` request and append (206); a server that answers 200 instead gets a clean
//!    restart from byte 0.
//! 2. Check the MD5 of the whole file. On a mismatch the `.part` is deleted (the next run
//!    starts afresh) and [`DataError::ChecksumMismatch`] names both sums.
//! 3. Rename `.part` to the archive name, unpack into a hidden temporary folder inside
//!    `DIR`, and rename the dataset folder into place: it appears whole or not at all.
//! 4. Delete the archive unless asked to keep it.

use crate::DataError;
use md5::{Digest, Md5};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A dataset archive carp knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Archive {
    /// `cifar-10-binary.tar.gz`.
    Cifar10,
    /// `cifar-100-binary.tar.gz`.
    Cifar100,
    /// `stl10_binary.tar.gz`.
    Stl10,
    /// `dtd-r1.0.1.tar.gz`.
    Dtd,
    /// `food-101.tar.gz`.
    Food101,
    /// `country211.tgz`.
    Country211,
}

impl Archive {
    /// Names accepted by [`Archive::parse`].
    pub const NAMES: [&'static str; 6] = [
        "cifar10",
        "cifar100",
        "stl10",
        "dtd",
        "food101",
        "country211",
    ];

    /// `cifar10`, `cifar100` or `stl10`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cifar10" => Some(Self::Cifar10),
            "cifar100" => Some(Self::Cifar100),
            "stl10" => Some(Self::Stl10),
            "dtd" => Some(Self::Dtd),
            "food101" => Some(Self::Food101),
            "country211" => Some(Self::Country211),
            _ => None,
        }
    }

    /// The archive's file name.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar-10-binary.tar.gz",
            Self::Cifar100 => "cifar-100-binary.tar.gz",
            Self::Stl10 => "stl10_binary.tar.gz",
            Self::Dtd => "dtd-r1.0.1.tar.gz",
            Self::Food101 => "food-101.tar.gz",
            Self::Country211 => "country211.tgz",
        }
    }

    /// The official location of the folder holding the archive.
    pub fn base_url(self) -> &'static str {
        match self {
            Self::Cifar10 | Self::Cifar100 => "https://www.cs.toronto.edu/~kriz",
            Self::Stl10 => "http://ai.stanford.edu/~acoates/stl10",
            Self::Dtd => "https://www.robots.ox.ac.uk/~vgg/data/dtd/download",
            Self::Food101 => "http://data.vision.ee.ethz.ch/cvl",
            Self::Country211 => "https://openaipublic.azureedge.net/clip/data",
        }
    }

    /// The published MD5 of the archive, lowercase hex.
    pub fn md5(self) -> &'static str {
        match self {
            Self::Cifar10 => "c32a1d4ab5d03f1284b67883e8d87530",
            Self::Cifar100 => "03b5dce01913d631647c71ecec9e9cb8",
            Self::Stl10 => "91f7769df0f17e558f3565bffb0c7dfb",
            Self::Dtd => "fff73e5086ae6bdbea199a49dfb8a4c1",
            Self::Food101 => "85eeb15f3717b99a5da872d97d918f87",
            Self::Country211 => "84988d7644798601126c29e9877aab6a",
        }
    }

    /// The folder the archive unpacks to.
    pub fn folder(self) -> &'static str {
        match self {
            Self::Cifar10 => "cifar-10-batches-bin",
            Self::Cifar100 => "cifar-100-binary",
            Self::Stl10 => "stl10_binary",
            Self::Dtd => "dtd",
            Self::Food101 => "food-101",
            Self::Country211 => "country211",
        }
    }

    /// The transfer set this archive holds (read with `carp eval suite --data-root DIR`).
    pub fn transfer_set(self) -> Option<crate::TransferSet> {
        match self {
            Self::Dtd => Some(crate::TransferSet::Dtd),
            Self::Food101 => Some(crate::TransferSet::Food101),
            Self::Country211 => Some(crate::TransferSet::Country211),
            _ => None,
        }
    }

    /// The `--data` string that reads the unpacked dataset from `dir`.
    /// For transfer sets, the folder itself (an image-folder source; evaluate them with
    /// `carp eval suite --data-root DIR`).
    pub fn source(self, dir: &Path) -> String {
        let kind = match self {
            Self::Cifar10 => "cifar10",
            Self::Cifar100 => "cifar100",
            Self::Stl10 => "stl10",
            Self::Dtd | Self::Food101 | Self::Country211 => return dir.display().to_string(),
        };
        format!("{kind}:{}", dir.display())
    }
}

/// How to download; [`Default`] is the official URL and checksum, archive deleted.
#[derive(Default)]
pub struct DownloadOptions<'a> {
    /// Replaces [`Archive::base_url`] (a mirror, or a local server in tests).
    pub base_url: Option<String>,
    /// Replaces [`Archive::md5`] (for archives that are not the official ones).
    pub md5: Option<String>,
    /// Keep the `.tar.gz` after unpacking.
    pub keep_archive: bool,
    /// Called as bytes arrive with (bytes of the file so far, total size if known).
    pub progress: Option<&'a dyn Fn(u64, Option<u64>)>,
}

/// What [`download`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// The unpacked dataset folder.
    pub folder: PathBuf,
    /// Bytes fetched over the network by this call (0 if already present).
    pub fetched: u64,
    /// Whether an earlier partial download was continued.
    pub resumed: bool,
}

/// Buffer size for streaming and hashing.
const CHUNK: usize = 1 << 16;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// MD5 of a file as lowercase hex.
pub fn file_md5(path: &Path) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Fetches `url` into `part`, continuing an existing partial file when the server allows.
/// Returns (bytes fetched, whether it resumed).
fn fetch(
    url: &str,
    part: &Path,
    progress: Option<&dyn Fn(u64, Option<u64>)>,
) -> Result<(u64, bool), DataError> {
    let have = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let http = |source: ureq::Error| DataError::Http {
        url: url.to_string(),
        source: Box::new(source),
    };
    let response = request.call().map_err(http)?;
    let status = response.status().as_u16();
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (mut file, start, resumed) = match status {
        206 if have > 0 => {
            tracing::info!(bytes = have, "resuming the partial download");
            let f = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(io_err(part))?;
            (f, have, true)
        }
        // The whole file already arrived last time.
        416 if have > 0 => return Ok((0, true)),
        200 => {
            if have > 0 {
                tracing::warn!("the server ignored the range request: restarting");
            }
            (File::create(part).map_err(io_err(part))?, 0, false)
        }
        _ => {
            return Err(DataError::HttpStatus {
                url: url.to_string(),
                status,
            })
        }
    };
    let total = length.map(|l| l + start);
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; CHUNK];
    let mut done = start;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                // Keep what arrived: the next run continues from there.
                let _ = file.flush();
                return Err(DataError::Interrupted {
                    url: url.to_string(),
                    bytes: done,
                    part: part.to_path_buf(),
                    source,
                });
            }
        };
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        done += n as u64;
        if let Some(p) = progress {
            p(done, total);
        }
    }
    file.sync_all().map_err(io_err(part))?;
    Ok((done - start, resumed))
}

/// Unpacks `archive` into `dir/<folder>` via a temporary folder in `dir`.
fn extract(archive: &Path, dir: &Path, folder: &str) -> Result<PathBuf, DataError> {
    let tmp = dir.join(format!(".{folder}.extracting-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let result = (|| {
        let file = File::open(archive).map_err(io_err(archive))?;
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        // `unpack` refuses entries that would land outside `tmp` (absolute, `..`).
        tar::Archive::new(gz)
            .unpack(&tmp)
            .map_err(|source| DataError::Extract {
                path: archive.to_path_buf(),
                source,
            })?;
        let inner = tmp.join(folder);
        if !inner.is_dir() {
            return Err(DataError::MissingFile {
                path: archive.to_path_buf(),
                what: "dataset folder inside the archive".into(),
                looked: format!("{folder}/"),
            });
        }
        let target = dir.join(folder);
        fs::rename(&inner, &target).map_err(io_err(&target))?;
        Ok(target)
    })();
    let _ = fs::remove_dir_all(&tmp);
    result
}

/// Downloads, verifies and unpacks `archive` into `dir`; see the module docs.
///
/// Returns at once when `dir/<folder>` already exists.
///
/// # Errors
/// [`DataError::Http`] / [`DataError::HttpStatus`] when the server cannot be reached or
/// refuses, [`DataError::Interrupted`] when the transfer breaks off (the `.part` file is
/// kept for the next run), [`DataError::ChecksumMismatch`] for a corrupt or wrong file
/// (the `.part` file is removed), [`DataError::Extract`] for a broken archive (nothing is
/// left half-unpacked), [`DataError::Io`] for local file errors.
pub fn download(
    archive: Archive,
    dir: &Path,
    options: &DownloadOptions<'_>,
) -> Result<Downloaded, DataError> {
    let folder = dir.join(archive.folder());
    if folder.is_dir() {
        tracing::info!(folder = %folder.display(), "already downloaded");
        return Ok(Downloaded {
            folder,
            fetched: 0,
            resumed: false,
        });
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let base = options
        .base_url
        .as_deref()
        .unwrap_or(archive.base_url())
        .trim_end_matches('/');
    let url = format!("{base}/{}", archive.file_name());
    let expected = options
        .md5
        .as_deref()
        .unwrap_or(archive.md5())
        .to_ascii_lowercase();
    let target = dir.join(archive.file_name());
    let part = dir.join(format!("{}.part", archive.file_name()));

    let (mut fetched, mut resumed) = (0, false);
    if !target.is_file() {
        tracing::info!(url = %url, to = %part.display(), "downloading");
        (fetched, resumed) = fetch(&url, &part, options.progress)?;
        tracing::info!(bytes = fetched, "verifying the MD5 checksum");
        let found = file_md5(&part)?;
        if found != expected {
            fs::remove_file(&part).map_err(io_err(&part))?;
            return Err(DataError::ChecksumMismatch {
                path: target,
                expected,
                found,
            });
        }
        fs::rename(&part, &target).map_err(io_err(&target))?;
    } else {
        // An archive kept from an earlier run (--keep-archive): check it like a fresh one.
        let found = file_md5(&target)?;
        if found != expected {
            fs::remove_file(&target).map_err(io_err(&target))?;
            return Err(DataError::ChecksumMismatch {
                path: target,
                expected,
                found,
            });
        }
    }
    tracing::info!(archive = %target.display(), "unpacking");
    let folder = extract(&target, dir, archive.folder())?;
    if !options.keep_archive {
        fs::remove_file(&target).map_err(io_err(&target))?;
    }
    Ok(Downloaded {
        folder,
        fetched,
        resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_known_strings() {
        // RFC 1321 test suite.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        for (text, want) in [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ] {
            fs::write(&p, text).unwrap();
            assert_eq!(file_md5(&p).unwrap(), want);
        }
    }

    #[test]
    fn archive_names() {
        for name in Archive::NAMES {
            let a = Archive::parse(name).unwrap();
            assert!(a.file_name().ends_with(".tar.gz") || a.file_name().ends_with(".tgz"));
            assert_eq!(a.md5().len(), 32);
            assert!(crate::DataSource::parse(&a.source(Path::new("/d"))).is_ok());
        }
        assert_eq!(Archive::parse("mnist"), None);
    }
}
