//! Eval-mode backbone features of any supported checkpoint for the fixture inputs of
//! `tools/make_pth_fixtures.py`, as JSON on stdout (for by-hand checks against PyTorch,
//! e.g. on a converted full-width checkpoint).
//!
//! `cargo run --release -p carp-io --example features -- FILE [FORMAT] [KEY]`

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use carp_io::keymap::{self, Format};
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: features FILE [FORMAT] [KEY]")?);
    let format: Option<Format> = args.next().map(|f| f.parse()).transpose()?;
    let key = args.next();
    let imported = keymap::import_backbone(&path, format, key.as_deref())?;
    let device = Device::flex();
    let (net, cfg, report) = keymap::build_backbone(&imported, &device)?;
    eprintln!("{cfg:?}; {report}");
    let vals: Vec<f32> = (0..3 * 3 * 32 * 32)
        .map(|i| {
            let i = i as f64;
            ((0.37 * i + 0.1).sin() * 1.5 + 0.25 * (0.011 * i).cos()) as f32
        })
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(vals, [3, 3, 32, 32]), &device);
    let y: Vec<f32> = net.valid().forward(x).into_data().try_to_vec::<f32>()?;
    println!("{}", serde_json::to_string(&y)?);
    Ok(())
}
