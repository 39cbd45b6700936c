//! Seed mixing: derive independent generator seeds from tuples of integers.

/// One round of SplitMix64, a bijective 64-bit mixer.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes `parts` (in order) into one 64-bit seed; different tuples give unrelated seeds.
pub(crate) fn mix_seed(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |h, &p| splitmix64(h ^ splitmix64(p)))
}

/// Domain tags, so that e.g. the epoch order and a sample never share a stream.
pub(crate) mod tag {
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
