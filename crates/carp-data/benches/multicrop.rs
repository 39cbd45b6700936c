//! Data-pipeline throughput: decode + multi-crop augmentation + batching of an image
//! folder, the same measurement as `bench/torchvision_augment.py`.
//!
//! ```text
//! cargo bench -p carp-data --bench multicrop -- --data DIR [--recipe cifar|imagenet]
//!     [--images 4096] [--batch 64] [--threads 2] [--json]
//! ```
//!
//! Recipes: `cifar` = 2x32 (scale 0.25-1) and 6x16 (0.05-0.25); `imagenet` = 2x224
//! (0.2-1) and 6x96 (0.05-0.2). img/s counts source images (8 views each) per second
//! through [`carp_data::Loader::prefetch`], after one warm-up batch; per core = img/s /
//! threads.

use carp_data::{Dataset, ImageFolder, Loader, MultiCropRecipe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(data) = args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
    else {
        eprintln!("usage: multicrop --data DIR [--recipe cifar|imagenet] [--images N] [--batch B] [--threads T] [--json]");
        return;
    };
    let recipe_name: String = arg(&args, "--recipe", "cifar".to_string());
    let images: usize = arg(&args, "--images", 4096);
    let batch: usize = arg(&args, "--batch", 64);
    let threads: usize = arg(&args, "--threads", 2);
    let json = args.iter().any(|a| a == "--json");
    let recipe = match recipe_name.as_str() {
        "cifar" => MultiCropRecipe::carp(32, 16, (0.25, 1.0), (0.05, 0.25), 6),
        "imagenet" => MultiCropRecipe::imagenet(6),
        other => panic!("unknown recipe {other}"),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("thread pool");
    let ds = ImageFolder::open(&data).expect("image folder");
    let n = ds.len();
    let loader = Loader::new(Arc::new(ds) as Arc<dyn Dataset>, recipe, batch, 0);
    let steps = (images / batch).min(loader.steps_per_epoch() - 1);
    let mut it = loader.prefetch(0, 0);
    it.next().expect("warm-up batch").expect("decodes");
    let start = Instant::now();
    let mut count = 0;
    for b in it.take(steps) {
        count += b.expect("decodes").batch_size();
    }
    let secs = start.elapsed().as_secs_f64();
    let img_per_s = count as f64 / secs;
    if json {
        println!(
            "{{\"stack\":\"carp\",\"recipe\":\"{recipe_name}\",\"images\":{count},\"secs\":{secs:.3},\"threads\":{threads},\"img_per_s\":{img_per_s:.2},\"dataset\":{n}}}"
        );
    } else {
        println!(
            "carp {recipe_name}: {count} images in {secs:.2} s = {img_per_s:.1} img/s, {:.1} per core ({threads} threads)",
            img_per_s / threads as f64
        );
    }
}
