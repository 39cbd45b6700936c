//! The shared CIFAR-10 copy as an ImageFolder. Skips (passing, with a message) when
//! `../shared/datasets/cifar10` is absent, as on a fresh clone elsewhere.

use carp_data::{Dataset, ImageFolder};
use std::path::PathBuf;

fn cifar10() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/cifar10");
    if root.join("test").is_dir() {
        Some(root)
    } else {
        eprintln!(
            "skipping: {} not found (CIFAR-10 ImageFolder copy)",
            root.display()
        );
        None
    }
}

#[test]
fn cifar10_test_split_reads_as_image_folder() {
    let Some(root) = cifar10() else { return };
    let ds = ImageFolder::open(&root.join("test")).unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.num_classes(), 10);
    assert_eq!(ds.classes()[0], "airplane");
    assert_eq!(ds.classes()[9], "truck");
    let img = ds.get(1234).unwrap();
    assert_eq!(img.dimensions(), (32, 32));
    assert_eq!(ds.label(0), Some(0));
    assert_eq!(ds.label(9_999), Some(9));
}
