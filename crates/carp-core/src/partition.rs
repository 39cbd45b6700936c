//! Random partitions of the prototypes and the within-block softmax, spec §3.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::Rng;

/// One step's random partition of K prototypes into P = floor(K / N) blocks of N.
///
/// The same partition is used for every view (and every worker) of a step. When N does
/// not divide K, the last `K - P * N` prototypes of the permutation sit out the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// The first `P * N` entries of a permutation of `0..K`; block `p` is
    /// `indices[p * N .. (p + 1) * N]`.
    pub indices: Vec<usize>,
    /// Block size N (the "partition size").
    pub block_size: usize,
    /// Number of prototypes K.
    pub num_prototypes: usize,
}

impl Partition {
    /// Draws a uniformly random partition of `num_prototypes` into blocks of `block_size`.
    ///
    /// # Panics
    ///
    /// Panics if `block_size` is zero or larger than `num_prototypes`.
    pub fn random(num_prototypes: usize, block_size: usize, rng: &mut impl Rng) -> Self {
        let mut perm: Vec<usize> = (0..num_prototypes).collect();
        perm.shuffle(rng);
        Self::from_permutation(perm, block_size)
    }

    /// The partition a given permutation of `0..K` defines.
    ///
    /// # Panics
    ///
    /// Panics if `block_size` is zero or larger than K, or `perm` is not a permutation.
    pub fn from_permutation(perm: Vec<usize>, block_size: usize) -> Self {
        let k = perm.len();
        assert!(
            block_size > 0 && block_size <= k,
            "partition size {block_size} must be in 1..={k} (number of prototypes)"
        );
        let mut seen = vec![false; k];
        for &i in &perm {
            assert!(i < k && !seen[i], "not a permutation of 0..{k}");
            seen[i] = true;
        }
        let blocks = k / block_size;
        let mut indices = perm;
        indices.truncate(blocks * block_size);
        Self {
            indices,
            block_size,
            num_prototypes: k,
        }
    }

    /// Number of blocks P.
    pub fn num_blocks(&self) -> usize {
        self.indices.len() / self.block_size
    }

    /// The gather indices as an integer tensor on `device`, shape `[P * N]`.
    pub fn index_tensor(&self, device: &Device) -> Tensor<1, Int> {
        let data: Vec<i64> = self.indices.iter().map(|&i| i as i64).collect();
        Tensor::from_data(TensorData::new(data, [self.indices.len()]), device)
    }
}

/// Gathers each block's logits and applies a softmax within the block (no temperature), spec §3.
///
/// ```text
/// probs[p, b, c] = exp(z[b, idx[p N + c]]) / sum_c' exp(z[b, idx[p N + c']])
/// ```
///
/// # Shapes
///
/// - `logits`: `[B, K]`
/// - output: `[P, B, N]`
///
/// # Panics
///
/// Panics if the logits do not have K columns.
pub fn block_softmax(logits: Tensor<2>, partition: &Partition) -> Tensor<3> {
    let [b, k] = logits.dims();
    assert_eq!(
        k, partition.num_prototypes,
        "logits have {k} columns but the partition is over {} prototypes",
        partition.num_prototypes
    );
    let index = partition.index_tensor(&logits.device());
    let p = partition.num_blocks();
    let n = partition.block_size;
    let blocks = logits.select(1, index).reshape([b, p, n]).swap_dims(0, 1);
    softmax(blocks, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn remainder_sits_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let p = Partition::random(14, 4, &mut rng);
        assert_eq!(p.num_blocks(), 3);
        assert_eq!(p.indices.len(), 12);
        let mut sorted = p.indices.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 12);
    }

    #[test]
    fn random_partitions_differ_by_seed() {
        let a = Partition::random(64, 8, &mut ChaCha8Rng::seed_from_u64(1));
        let b = Partition::random(64, 8, &mut ChaCha8Rng::seed_from_u64(2));
        let c = Partition::random(64, 8, &mut ChaCha8Rng::seed_from_u64(1));
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    #[should_panic(expected = "partition size")]
    fn block_larger_than_k_panics() {
        Partition::from_permutation(vec![0, 1, 2], 4);
    }

    #[test]
    fn softmax_within_blocks_by_hand() {
        let device = Device::flex();
        // K = 4, N = 2, permutation [3, 0, 2, 1]: blocks {3, 0} and {2, 1}.
        let part = Partition::from_permutation(vec![3, 0, 2, 1], 2);
        let z = Tensor::<2>::from_floats([[0.0, 1.0, 2.0, 3.0]], &device);
        let p: Vec<f32> = block_softmax(z, &part)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let e = |a: f64, b: f64| (a.exp() / (a.exp() + b.exp())) as f32;
        let want = [e(3.0, 0.0), e(0.0, 3.0), e(2.0, 1.0), e(1.0, 2.0)];
        for (got, want) in p.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{p:?} vs {want:?}");
        }
    }
}
