//! `carp data download` against a local HTTP server (127.0.0.1) serving a generated
//! CIFAR-10 binary archive; resume and restart are covered by carp-data's tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

/// Serves `body` at `/<name>` with 200 to every request; returns the base URL.
fn serve(name: &'static str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
            }
            let ok = line.split_whitespace().nth(1) == Some(&format!("/{name}"));
            let reply = if ok { &body[..] } else { &[][..] };
            let status = if ok { "200 OK" } else { "404 Not Found" };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                reply.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(reply);
        }
    });
    base
}

/// A CIFAR-10 binary archive with one record per batch file.
fn cifar10_archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let names = (1..=5)
        .map(|b| format!("data_batch_{b}.bin"))
        .chain(["test_batch.bin".to_string()]);
    for (k, name) in names.enumerate() {
        let mut rec = vec![k as u8];
        rec.extend((0..3072).map(|i| (i + k) as u8));
        let mut header = tar::Header::new_gnu();
        header.set_size(rec.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(
            &mut header,
            format!("cifar-10-batches-bin/{name}"),
            &rec[..],
        )
        .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f");
    std::fs::write(&p, bytes).unwrap();
    carp_data::download::file_md5(&p).unwrap()
}

#[test]
fn download_command_fetches_checks_and_refuses_bad_checksums() {
    let body = cifar10_archive();
    let base = serve("cifar-10-binary.tar.gz", body.clone());
    let dir = tempfile::tempdir().unwrap();
    let to = dir.path().join("data");

    // The published checksum cannot match the generated archive: refused, exit 2,
    // nothing extracted and no partial file left.
    let out = Command::new(env!("CARGO_BIN_EXE_carp"))
        .args(["data", "download", "cifar10", "--to"])
        .arg(&to)
        .env("CARP_DATA_BASE_URL", &base)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("MD5 checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains("c32a1d4ab5d03f1284b67883e8d87530"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 0);

    // With the archive's own checksum it downloads and unpacks; the printed --data
    // string opens it.
    let out = Command::new(env!("CARGO_BIN_EXE_carp"))
        .args(["data", "download", "cifar10", "--to"])
        .arg(&to)
        .args(["--base-url", &base, "--md5", &md5_hex(&body)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let spec = format!("cifar10:{}", to.display());
    assert!(stdout.contains(&spec), "{stdout}");
    let ds = carp_data::DataSource::parse(&spec).unwrap().open().unwrap();
    assert_eq!(ds.len(), 5);
    assert_eq!(ds.label(4), Some(4));

    // Unknown datasets are refused by the parser.
    let out = Command::new(env!("CARGO_BIN_EXE_carp"))
        .args(["data", "download", "mnist", "--to"])
        .arg(&to)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cifar100"));
}
