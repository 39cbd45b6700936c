//! Every random stream of a run, derived from the run seed: the epoch order
//! ([`crate::epoch_order`]), each sample's augmentations ([`crate::sample_rng`]) and each
//! step's random partition ([`partition_rng`]). Derivations are pure functions of their
//! indices, so thread counts and resumes change no draw.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One round of SplitMix64, a bijective 64-bit mixer.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes `parts` (in order) into one 64-bit seed; different tuples give unrelated seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// The generator of step `step`'s random partition (spec §3): a pure function of
/// (seed, step), the same on every worker.
///
/// Unlike the streams above it is not built with [`mix_seed`]: it keeps the derivation the
/// first carp runs used (a fixed offset of the seed, one ChaCha stream per step), so their
/// checkpoints still resume exactly.
pub fn partition_rng(seed: u64, step: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5ca1_ab1e_0000_0000);
    rng.set_stream(step as u64);
    rng
}

/// Domain tags, so that e.g. the epoch order and a sample never share a stream.
pub mod tag {
    /// Synthetic image generation.
    pub const SYNTHETIC: u64 = 0x5359_4E54;
    /// Epoch shuffles.
    pub const ORDER: u64 = 0x4F52_4445;
    /// Per-sample augmentation.
    pub const SAMPLE: u64 = 0x5341_4D50;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_parts_matters() {
        assert_ne!(mix_seed(&[1, 2]), mix_seed(&[2, 1]));
        assert_ne!(mix_seed(&[0]), mix_seed(&[0, 0]));
        assert_eq!(mix_seed(&[7, 8, 9]), mix_seed(&[7, 8, 9]));
    }
}
