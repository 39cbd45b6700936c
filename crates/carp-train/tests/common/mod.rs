//! Shared by the integration tests: a tiny CPU configuration and a bit-exact checkpoint
//! comparison.

// Each test binary uses its own part.
#![allow(dead_code)]

use carp_io::read_checkpoint;
use carp_train::pretrain::CHECKPOINT;
use carp_train::Config;
use std::path::Path;

/// The tiny preset shrunk to run an epoch in well under a second on a CPU (ResNet-18 at width
/// 4, 16x16 images, 64 of them, batch 8, two epochs), writing into `out`.
pub fn tiny(out: &Path) -> Config {
    let mut c = Config::preset("tiny").unwrap();
    c.model.base_width = 4;
    c.model.hidden_dim = 32;
    c.model.bottleneck_dim = 16;
    c.model.out_dim = 64;
    c.model.partition_size = 16;
    c.views.global_size = 16;
    c.views.local_size = 8;
    c.views.local_views = 2;
    c.data.synthetic_train = 64;
    c.data.synthetic_test = 16;
    c.data.image_size = 16;
    c.optim.batch_size = 8;
    c.run.epochs = 2;
    c.run.eval = false;
    c.run.log_every = 1;
    c.run.seed = 11;
    c.run.out = out.display().to_string();
    c
}

/// Asserts that the checkpoints of run directories `a` and `b` hold the same step and
/// bit-identical tensors.
#[allow(dead_code)] // not every test file that includes this module compares bit for bit
pub fn assert_same_tensors(a: &Path, b: &Path) {
    let a = read_checkpoint(&a.join(CHECKPOINT)).unwrap();
    let b = read_checkpoint(&b.join(CHECKPOINT)).unwrap();
    assert_eq!(a.meta["next_step"], b.meta["next_step"]);
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (key, ta) in &a.tensors {
        let tb = &b.tensors[key];
        assert_eq!(ta.shape, tb.shape, "{key}");
        assert!(
            ta.values
                .iter()
                .zip(&tb.values)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{key} differs"
        );
    }
}
