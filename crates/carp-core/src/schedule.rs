//! Per-iteration schedules (learning rate, weight decay, teacher momentum), spec §5.

use serde::{Deserialize, Serialize};

/// A cosine schedule with optional linear warm-up, exactly as the release's `cosine_scheduler`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Value after warm-up, at the start of the cosine.
    pub base: f64,
    /// Value the cosine approaches at the end (stopping just short of it).
    pub final_value: f64,
    /// Number of iterations `I` the schedule spans.
    pub total_iters: usize,
    /// Number of warm-up iterations `W`.
    pub warmup_iters: usize,
    /// First warm-up value.
    pub warmup_start: f64,
}

impl Schedule {
    /// A cosine from `base` to `final_value` over `total_iters`, no warm-up.
    pub fn cosine(base: f64, final_value: f64, total_iters: usize) -> Self {
        Self {
            base,
            final_value,
            total_iters,
            warmup_iters: 0,
            warmup_start: 0.0,
        }
    }

    /// The same schedule with `warmup_iters` linear warm-up iterations from `start`.
    pub fn with_warmup(mut self, warmup_iters: usize, start: f64) -> Self {
        self.warmup_iters = warmup_iters;
        self.warmup_start = start;
        self
    }

    /// The value at iteration `i` (see [`schedule_value`]).
    pub fn value(&self, i: usize) -> f64 {
        schedule_value(i, self)
    }
}

/// Value of a schedule at iteration `i`, spec §5.
///
/// ```text
/// i <  W:  linspace(start, base, W)[i]                      (endpoints included)
/// i >= W:  final + 0.5 (base - final) (1 + cos(π (i - W) / (I - W)))
/// ```
///
/// Past the end (`i >= I`) the last value is held, so a run may overshoot its budget safely.
///
/// # Example
///
/// ```
/// use carp_core::schedule::{schedule_value, Schedule};
/// let s = Schedule::cosine(1.0, 0.0, 4);
/// assert_eq!(schedule_value(0, &s), 1.0);
/// assert!((schedule_value(2, &s) - 0.5).abs() < 1e-12);
/// assert!(schedule_value(3, &s) > 0.0); // stops just short of `final`
/// ```
pub fn schedule_value(i: usize, s: &Schedule) -> f64 {
    let total = s.total_iters.max(1);
    let i = i.min(total - 1);
    let w = s.warmup_iters.min(total);
    if i < w {
        if w == 1 {
            return s.warmup_start;
        }
        let t = i as f64 / (w - 1) as f64;
        return s.warmup_start + t * (s.base - s.warmup_start);
    }
    let span = (total - w) as f64;
    let t = (i - w) as f64 / span;
    s.final_value + 0.5 * (s.base - s.final_value) * (1.0 + (std::f64::consts::PI * t).cos())
}

/// The linear scaling rule of spec §5: `base_lr · effective_batch / 256`.
pub fn scaled_lr(base_lr: f64, effective_batch: usize) -> f64 {
    base_lr * effective_batch as f64 / 256.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The release's cosine_scheduler written out with numpy semantics, in f64.
    fn reference(base: f64, fin: f64, total: usize, warm: usize, start: f64) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..warm {
            // np.linspace(start, base, warm)
            out.push(if warm == 1 {
                start
            } else {
                start + (base - start) * i as f64 / (warm - 1) as f64
            });
        }
        let n = total - warm;
        for i in 0..n {
            out.push(
                fin + 0.5
                    * (base - fin)
                    * (1.0 + (std::f64::consts::PI * i as f64 / n as f64).cos()),
            );
        }
        out
    }

    #[test]
    fn matches_release_with_and_without_warmup() {
        for (warm, start) in [(0, 0.0), (3, 0.0), (1, 0.2), (5, 1e-3)] {
            let s = Schedule::cosine(0.45, 0.0048, 20).with_warmup(warm, start);
            let want = reference(0.45, 0.0048, 20, warm, start);
            for (i, w) in want.iter().enumerate() {
                assert!((s.value(i) - w).abs() < 1e-15, "warm {warm} i {i}");
            }
        }
    }

    #[test]
    fn hand_values() {
        // Momentum 0.99 -> 1.0 over 4 iterations: 0.99, 0.99146..., 0.995, 0.99853...
        let s = Schedule::cosine(0.99, 1.0, 4);
        assert_eq!(s.value(0), 0.99);
        assert!((s.value(2) - 0.995).abs() < 1e-15);
        let q = 1.0 - 0.005 * (1.0 + (std::f64::consts::PI / 4.0).cos());
        assert!((s.value(1) - q).abs() < 1e-15);
        // Warm-up endpoints included: linspace(0, 1, 3) = 0, 0.5, 1.
        let s = Schedule::cosine(1.0, 0.0, 6).with_warmup(3, 0.0);
        assert_eq!([s.value(0), s.value(1), s.value(2)], [0.0, 0.5, 1.0]);
        assert_eq!(s.value(3), 1.0);
    }

    #[test]
    fn last_value_stops_short_of_final_and_is_held() {
        let s = Schedule::cosine(0.99, 1.0, 100);
        assert!(s.value(99) < 1.0 && s.value(99) > 0.9999);
        assert_eq!(s.value(99), s.value(1000));
    }

    #[test]
    fn linear_scaling() {
        assert!((scaled_lr(0.45, 4096) - 7.2).abs() < 1e-12);
        assert!((scaled_lr(0.45, 256) - 0.45).abs() < 1e-15);
    }
}
