//! `carp_data::download` against a local HTTP server on 127.0.0.1 that serves small
//! archives in the real formats, generated here: success for each dataset, a bad checksum,
//! an interrupted transfer resumed with a Range request, and a server that ignores ranges.

use carp_data::{
    download, Archive, Cifar, CifarSplit, CifarVariant, DataError, Dataset, DownloadOptions, Stl10,
    Stl10Split,
};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How the server answers one request.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// Honour a `Range: bytes=N-` header with 206, else send everything with 200.
    Normal,
    /// Announce the full length, send this many bytes, then hang up.
    Cut(usize),
    /// Always 200 with the whole body, whatever the Range header says.
    IgnoreRange,
}

/// Serves `body` at `/<name>` (404 elsewhere); request k gets `replies[k]` (the last one
/// repeats). Returns the base URL and the log of Range headers (None when absent).
fn serve(name: &str, body: Vec<u8>, replies: Vec<Reply>) -> (String, Arc<Mutex<Vec<Option<u64>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&log);
    let path = format!("/{name}");
    std::thread::spawn(move || {
        for (k, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut range = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<u64>().ok();
                }
            }
            if target != path {
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            seen.lock().unwrap().push(range);
            let reply = replies[k.min(replies.len() - 1)];
            let n = body.len();
            let (head, from, cut) = match (reply, range) {
                (Reply::Normal, Some(s)) if (s as usize) < n => (
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                         Content-Range: bytes {s}-{}/{n}\r\n",
                        n - s as usize,
                        n - 1
                    ),
                    s as usize,
                    n,
                ),
                (Reply::Cut(c), _) => (format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"), 0, c),
                _ => (format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n"), 0, n),
            };
            let _ = stream.write_all(format!("{head}Connection: close\r\n\r\n").as_bytes());
            let _ = stream.write_all(&body[from..cut]);
            let _ = stream.flush();
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    (base, log)
}

/// A tar.gz holding `files` (path, bytes).
fn tar_gz(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    carp_data::download::file_md5(&p).unwrap()
}

/// CIFAR record: `labels` then 3072 pixel bytes that depend on `k`.
fn cifar_record(labels: &[u8], k: usize) -> Vec<u8> {
    let mut r = labels.to_vec();
    r.extend((0..3072).map(|i| (i * 3 + k * 41) as u8));
    r
}

/// A small archive in the real layout of `archive`.
fn fake_archive(archive: Archive) -> Vec<u8> {
    let files: Vec<(String, Vec<u8>)> = match archive {
        Archive::Cifar10 => {
            let mut f: Vec<(String, Vec<u8>)> = (1..=5)
                .map(|b| {
                    let recs = (0..3).flat_map(|k| cifar_record(&[(b + k) as u8 % 10], 3 * b + k));
                    (
                        format!("cifar-10-batches-bin/data_batch_{b}.bin"),
                        recs.collect(),
                    )
                })
                .collect();
            f.push((
                "cifar-10-batches-bin/test_batch.bin".into(),
                cifar_record(&[4], 99),
            ));
            f.push((
                "cifar-10-batches-bin/batches.meta.txt".into(),
                b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n".to_vec(),
            ));
            f
        }
        Archive::Cifar100 => vec![
            (
                "cifar-100-binary/train.bin".into(),
                [cifar_record(&[1, 55], 0), cifar_record(&[2, 7], 1)].concat(),
            ),
            (
                "cifar-100-binary/test.bin".into(),
                cifar_record(&[3, 99], 2),
            ),
        ],
        Archive::Dtd => vec![
            (
                "dtd/labels/train1.txt".into(),
                b"banded/a.jpg\nzigzagged/b.jpg\n".to_vec(),
            ),
            ("dtd/labels/test1.txt".into(), b"banded/c.jpg\n".to_vec()),
        ],
        Archive::Food101 => vec![(
            "food-101/meta/train.json".into(),
            br#"{"apple_pie": ["apple_pie/1"]}"#.to_vec(),
        )],
        Archive::Country211 => vec![("country211/train/AD/1.jpg".into(), b"x".to_vec())],
        Archive::Stl10 => {
            let img = |k: usize| -> Vec<u8> { (0..27648).map(|i| (i * 7 + k * 3) as u8).collect() };
            vec![
                ("stl10_binary/train_X.bin".into(), [img(0), img(1)].concat()),
                ("stl10_binary/train_y.bin".into(), vec![3, 10]),
                ("stl10_binary/test_X.bin".into(), img(2)),
                ("stl10_binary/test_y.bin".into(), vec![1]),
                (
                    "stl10_binary/unlabeled_X.bin".into(),
                    [img(3), img(4), img(5)].concat(),
                ),
            ]
        }
    };
    tar_gz(&files)
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn downloads_verifies_and_unpacks_each_dataset() {
    for archive in [
        Archive::Cifar10,
        Archive::Cifar100,
        Archive::Stl10,
        Archive::Dtd,
        Archive::Food101,
        Archive::Country211,
    ] {
        let body = fake_archive(archive);
        let (base, log) = serve(archive.file_name(), body.clone(), vec![Reply::Normal]);
        let dir = tempfile::tempdir().unwrap();
        let progress_calls = std::cell::Cell::new(0u64);
        let last = std::cell::Cell::new((0u64, None));
        let progress = |done: u64, total: Option<u64>| {
            progress_calls.set(progress_calls.get() + 1);
            last.set((done, total));
        };
        let opts = DownloadOptions {
            base_url: Some(base),
            md5: Some(md5_hex(&body)),
            progress: Some(&progress),
            ..Default::default()
        };
        let got = download(archive, dir.path(), &opts).unwrap();
        assert_eq!(got.folder, dir.path().join(archive.folder()));
        assert_eq!((got.fetched, got.resumed), (body.len() as u64, false));
        assert!(progress_calls.get() > 0);
        assert_eq!(last.get(), (body.len() as u64, Some(body.len() as u64)));
        assert_eq!(*log.lock().unwrap(), [None]);
        // Only the dataset folder is left: no archive, .part or temporary folder.
        assert_eq!(listing(dir.path()), [archive.folder()]);
        match archive {
            Archive::Cifar10 => {
                let ds = Cifar::open(dir.path(), CifarVariant::Cifar10, CifarSplit::Train).unwrap();
                assert_eq!(ds.len(), 15);
                assert_eq!(ds.label(4), Some(3));
                assert_eq!(ds.classes()[9], "truck");
                // Image 4 is record k = 1 of batch 2: pixel (0, 0) red = byte 0.
                assert_eq!(ds.get(4).unwrap().get_pixel(0, 0)[0], (7 * 41) as u8);
            }
            Archive::Cifar100 => {
                let ds = Cifar::open(dir.path(), CifarVariant::Cifar100, CifarSplit::Test).unwrap();
                assert_eq!(
                    (ds.len(), ds.label(0), ds.coarse_label(0)),
                    (1, Some(99), Some(3))
                );
            }
            // Transfer sets unpack into the folder carp eval suite reads.
            Archive::Dtd | Archive::Food101 | Archive::Country211 => {
                let set = archive.transfer_set().unwrap();
                let ds = set.open(dir.path(), carp_data::Split::Train).unwrap();
                assert!(!ds.is_empty(), "{set:?}");
            }
            Archive::Stl10 => {
                let ds = Stl10::open(dir.path(), Stl10Split::TrainUnlabeled).unwrap();
                assert_eq!((ds.len(), ds.label(1), ds.label(2)), (5, Some(9), None));
            }
        }
        // A second call finds the folder and fetches nothing.
        let again = download(archive, dir.path(), &opts).unwrap();
        assert_eq!(again.fetched, 0);
        assert_eq!(log.lock().unwrap().len(), 1);
    }
}

#[test]
fn bad_checksum_is_refused_and_leaves_nothing() {
    let body = fake_archive(Archive::Cifar10);
    let (base, _) = serve("cifar-10-binary.tar.gz", body.clone(), vec![Reply::Normal]);
    let dir = tempfile::tempdir().unwrap();
    // The official checksum: the generated archive cannot match it.
    let opts = DownloadOptions {
        base_url: Some(base),
        ..Default::default()
    };
    let err = download(Archive::Cifar10, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("c32a1d4ab5d03f1284b67883e8d87530"), "{msg}");
    assert!(msg.contains(&md5_hex(&body)), "{msg}");
    assert!(msg.contains("cifar-10-binary.tar.gz"), "{msg}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    // A wrong archive already sitting in the folder is checked too, and removed.
    std::fs::write(dir.path().join("cifar-10-binary.tar.gz"), b"stale").unwrap();
    let err = download(Archive::Cifar10, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, DataError::ChecksumMismatch { .. }), "{err}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn interrupted_download_resumes_with_a_range_request() {
    let body = fake_archive(Archive::Cifar100);
    let cut = body.len() / 3;
    let (base, log) = serve(
        "cifar-100-binary.tar.gz",
        body.clone(),
        vec![Reply::Cut(cut), Reply::Normal],
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        base_url: Some(base),
        md5: Some(md5_hex(&body)),
        keep_archive: true,
        ..Default::default()
    };
    let err = download(Archive::Cifar100, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, DataError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains("resume"), "{err}");
    let part = dir.path().join("cifar-100-binary.tar.gz.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), cut as u64);
    assert!(!dir.path().join("cifar-100-binary").exists());

    let got = download(Archive::Cifar100, dir.path(), &opts).unwrap();
    assert!(got.resumed);
    assert_eq!(got.fetched, (body.len() - cut) as u64);
    assert_eq!(*log.lock().unwrap(), [None, Some(cut as u64)]);
    assert_eq!(
        listing(dir.path()),
        ["cifar-100-binary", "cifar-100-binary.tar.gz"]
    );
    assert_eq!(
        std::fs::read(dir.path().join("cifar-100-binary.tar.gz")).unwrap(),
        body
    );
    let ds = Cifar::open(dir.path(), CifarVariant::Cifar100, CifarSplit::Train).unwrap();
    assert_eq!(ds.len(), 2);
}

#[test]
fn server_ignoring_ranges_restarts_cleanly() {
    let body = fake_archive(Archive::Cifar10);
    let (base, log) = serve(
        "cifar-10-binary.tar.gz",
        body.clone(),
        vec![Reply::Cut(1000), Reply::IgnoreRange],
    );
    let dir = tempfile::tempdir().unwrap();
    let opts = DownloadOptions {
        base_url: Some(base),
        md5: Some(md5_hex(&body)),
        ..Default::default()
    };
    assert!(download(Archive::Cifar10, dir.path(), &opts).is_err());
    let got = download(Archive::Cifar10, dir.path(), &opts).unwrap();
    // The 200 answer replaced the partial file instead of being appended to it.
    assert!(!got.resumed);
    assert_eq!(got.fetched, body.len() as u64);
    assert_eq!(*log.lock().unwrap(), [None, Some(1000)]);
    assert_eq!(listing(dir.path()), ["cifar-10-batches-bin"]);
}

#[test]
fn http_errors_and_broken_archives_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    // 404: the file is not on the server.
    let (base, _) = serve("other.tar.gz", vec![1, 2, 3], vec![Reply::Normal]);
    let opts = DownloadOptions {
        base_url: Some(base),
        ..Default::default()
    };
    let err = download(Archive::Stl10, dir.path(), &opts).unwrap_err();
    assert!(
        matches!(err, DataError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("stl10_binary.tar.gz"), "{err}");
    // Nothing listens on this port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let opts = DownloadOptions {
        base_url: Some(format!("http://127.0.0.1:{port}")),
        ..Default::default()
    };
    let err = download(Archive::Stl10, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, DataError::Http { .. }), "{err}");
    // Right checksum, but not a tar.gz: an unpack error and no dataset folder.
    let junk = b"definitely not gzip".to_vec();
    let (base, _) = serve("stl10_binary.tar.gz", junk.clone(), vec![Reply::Normal]);
    let opts = DownloadOptions {
        base_url: Some(base),
        md5: Some(md5_hex(&junk)),
        ..Default::default()
    };
    let err = download(Archive::Stl10, dir.path(), &opts).unwrap_err();
    assert!(matches!(err, DataError::Extract { .. }), "{err}");
    assert!(!dir.path().join("stl10_binary").exists());
    assert!(listing(dir.path()).iter().all(|n| !n.starts_with('.')));
}
