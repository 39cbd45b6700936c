//! Linear probe on frozen features (spec §6): one linear layer trained with cross-entropy.
//!
//! [`LinearProbe`] holds the layer and its optimiser state and trains one epoch at a time on
//! whatever features it is given, so the same code serves the fast path ([`linear_probe`]:
//! features computed once) and the faithful one (features recomputed with train-time
//! augmentation every epoch, driven by the caller). Everything runs on the host in f32 with
//! `matrixmultiply` products; loss and accuracies are accumulated in f64.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::linalg::matmul_nt;
use crate::{EvalError, Features};

/// Optimiser of the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeOptimizer {
    /// LARS of spec §5: weight decay and trust ratio `eta·||w||/||d||` on the weight matrix only;
    /// the bias gets plain momentum SGD.
    Lars,
    /// Momentum SGD (PyTorch's `SGD`, no dampening) with weight decay on weight and bias.
    Sgd,
}

/// Settings of the linear probe; `Default` is spec §6 (100 epochs, LARS, cosine schedule) with
/// the values the spec leaves open chosen here (documented per field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinearConfig {
    /// Passes over the train features. Default `100` (spec §6).
    pub epochs: usize,
    /// Optimiser. Default LARS (spec §6).
    pub optimizer: ProbeOptimizer,
    /// Rows per step; the last step of an epoch may be smaller. Default `256`.
    pub batch_size: usize,
    /// Peak learning rate, used as given (not rescaled by the batch size); decays with a
    /// per-epoch cosine to 0. Default `1.0` for LARS (whose trust ratio makes each step a
    /// fraction `lr·eta` of the weight norm); `0.1`-ish is typical for SGD.
    pub lr: f64,
    /// Weight decay. Default `0.0`.
    pub weight_decay: f64,
    /// Momentum. Default `0.9`.
    pub momentum: f64,
    /// LARS trust coefficient. Default `0.001` (spec §5).
    pub eta: f64,
    /// Seed of the initialisation (weights N(0, 0.01²), bias 0) and the per-epoch shuffles.
    /// Default `0`.
    pub seed: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            optimizer: ProbeOptimizer::Lars,
            batch_size: 256,
            lr: 1.0,
            weight_decay: 0.0,
            momentum: 0.9,
            eta: 0.001,
            seed: 0,
        }
    }
}

/// Train loss and test accuracy after one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch index, from 0.
    pub epoch: usize,
    /// Learning rate used during the epoch.
    pub lr: f64,
    /// Mean cross-entropy over the epoch's train rows.
    pub train_loss: f64,
    /// Test top-1 accuracy in percent.
    pub top1: f64,
    /// Test top-5 accuracy in percent (top-`min(5, C)`).
    pub top5: f64,
}

/// The probe's per-epoch history and its best epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearReport {
    /// One entry per epoch.
    pub epochs: Vec<EpochStats>,
    /// The epoch with the highest test top-1 (the earliest on ties).
    pub best: EpochStats,
}

/// A linear classifier `logits = x Wᵀ + b` and its optimiser state.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    /// Weight `[classes, dim]`, row-major.
    pub weight: Vec<f32>,
    /// Bias `[classes]`.
    pub bias: Vec<f32>,
    /// Feature width.
    pub dim: usize,
    /// Number of classes.
    pub classes: usize,
    mu_w: Vec<f32>,
    mu_b: Vec<f32>,
    cfg: LinearConfig,
}

/// Mean cross-entropy of `logits` `[n, C]` against `labels`, and its gradient
/// `(softmax - onehot) / n` written into `logits` in place (softmax summed in f64).
fn cross_entropy_grad(logits: &mut [f32], labels: &[usize], classes: usize) -> f64 {
    let n = labels.len();
    let mut loss = 0.0;
    for (row, &y) in logits.chunks_exact_mut(classes).zip(labels) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = row.iter().map(|&z| f64::from(z - max).exp()).sum();
        let log_sum = sum.ln() + f64::from(max);
        loss += log_sum - f64::from(row[y]);
        for (c, z) in row.iter_mut().enumerate() {
            let p = (f64::from(*z) - log_sum).exp();
            let target = if c == y { 1.0 } else { 0.0 };
            *z = ((p - target) / n as f64) as f32;
        }
    }
    loss / n as f64
}

impl LinearProbe {
    /// A fresh probe: weights N(0, 0.01²) drawn from `cfg.seed`, bias 0 (DINO's init).
    ///
    /// # Errors
    /// [`EvalError::ProbeSettings`] when `classes`, `batch_size` or `epochs` is 0 or a rate is
    /// negative or not finite.
    pub fn new(dim: usize, classes: usize, cfg: &LinearConfig) -> Result<Self, EvalError> {
        let bad = |m: &str| Err(EvalError::ProbeSettings(m.into()));
        if classes == 0 {
            return bad("at least one class is needed");
        }
        if cfg.batch_size == 0 || cfg.epochs == 0 {
            return bad("batch_size and epochs must be at least 1");
        }
        for (name, v) in [
            ("lr", cfg.lr),
            ("weight_decay", cfg.weight_decay),
            ("momentum", cfg.momentum),
            ("eta", cfg.eta),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(&format!("{name} must be finite and >= 0, found {v}"));
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let normal = Normal::new(0.0f32, 0.01).expect("valid normal");
        Ok(Self {
            weight: (0..classes * dim)
                .map(|_| normal.sample(&mut rng))
                .collect(),
            bias: vec![0.0; classes],
            dim,
            classes,
            mu_w: vec![0.0; classes * dim],
            mu_b: vec![0.0; classes],
            cfg: cfg.clone(),
        })
    }

    /// Learning rate of `epoch`: `lr · (1 + cos(π · epoch / epochs)) / 2` (per-epoch cosine to 0,
    /// as PyTorch's `CosineAnnealingLR` stepped once per epoch).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let t = epoch as f64 / self.cfg.epochs as f64;
        self.cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }

    /// Logits `[rows, C]` of `x`.
    pub fn logits(&self, x: &Features) -> Vec<f32> {
        let mut out = vec![0.0f32; x.rows * self.classes];
        matmul_nt(
            &x.data,
            &self.weight,
            x.rows,
            self.classes,
            self.dim,
            &mut out,
        );
        for row in out.chunks_exact_mut(self.classes) {
            for (z, b) in row.iter_mut().zip(&self.bias) {
                *z += b;
            }
        }
        out
    }

    /// Mean cross-entropy of the rows `x` `[n, dim]` and its gradients `(loss, dW, db)`.
    pub fn loss_and_grad(&self, x: &[f32], labels: &[usize]) -> (f64, Vec<f32>, Vec<f32>) {
        let n = labels.len();
        let feats = Features {
            data: x.to_vec(),
            rows: n,
            dim: self.dim,
        };
        let mut dl = self.logits(&feats);
        let loss = cross_entropy_grad(&mut dl, labels, self.classes);
        // dW = dlᵀ · x: [C, n] x [n, D].
        let mut gw = vec![0.0f32; self.classes * self.dim];
        if n > 0 && self.dim > 0 {
            // SAFETY: dlᵀ is [C, n] with strides (1, C) inside `dl` ([n, C]); x is [n, D] with
            // strides (D, 1); gw is [C, D] with strides (D, 1) and exclusively borrowed.
            unsafe {
                matrixmultiply::sgemm(
                    self.classes,
                    n,
                    self.dim,
                    1.0,
                    dl.as_ptr(),
                    1,
                    self.classes as isize,
                    x.as_ptr(),
                    self.dim as isize,
                    1,
                    0.0,
                    gw.as_mut_ptr(),
                    self.dim as isize,
                    1,
                );
            }
        }
        let mut gb = vec![0.0f32; self.classes];
        for row in dl.chunks_exact(self.classes) {
            for (g, d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
        (loss, gw, gb)
    }

    /// One optimiser step with gradients `gw`, `gb` at learning rate `lr` and weight decay `wd`.
    ///
    /// LARS (spec §5), on the weight: `d = g + wd·w`, `r = eta·||w||/||d||` (1 if a norm is 0),
    /// `mu = m·mu + r·d`, `w -= lr·mu`; on the bias: `mu = m·mu + g`, `b -= lr·mu`. SGD: the
    /// same without `r`, with `wd` on the bias too. Norms and updates in f64, stored in f32.
    pub fn step(&mut self, gw: &[f32], gb: &[f32], lr: f64, wd: f64) {
        let (m, eta) = (self.cfg.momentum, self.cfg.eta);
        let mut d: Vec<f64> = gw
            .iter()
            .zip(&self.weight)
            .map(|(&g, &w)| f64::from(g) + wd * f64::from(w))
            .collect();
        if self.cfg.optimizer == ProbeOptimizer::Lars {
            let w_norm = self
                .weight
                .iter()
                .map(|&w| f64::from(w).powi(2))
                .sum::<f64>()
                .sqrt();
            let d_norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            let r = if w_norm > 0.0 && d_norm > 0.0 {
                eta * w_norm / d_norm
            } else {
                1.0
            };
            d.iter_mut().for_each(|v| *v *= r);
        }
        for ((w, mu), dv) in self.weight.iter_mut().zip(&mut self.mu_w).zip(&d) {
            *mu = (m * f64::from(*mu) + dv) as f32;
            *w = (f64::from(*w) - lr * f64::from(*mu)) as f32;
        }
        let bias_wd = if self.cfg.optimizer == ProbeOptimizer::Sgd {
            wd
        } else {
            0.0
        };
        for ((b, mu), &g) in self.bias.iter_mut().zip(&mut self.mu_b).zip(gb) {
            let dv = f64::from(g) + bias_wd * f64::from(*b);
            *mu = (m * f64::from(*mu) + dv) as f32;
            *b = (f64::from(*b) - lr * f64::from(*mu)) as f32;
        }
    }

    /// One epoch over `x` in a seeded shuffled order (seed, epoch); returns the mean train loss.
    ///
    /// # Errors
    /// [`EvalError::LabelCount`], [`EvalError::LabelOutOfRange`], [`EvalError::DimMismatch`].
    pub fn train_epoch(
        &mut self,
        x: &Features,
        labels: &[usize],
        epoch: usize,
    ) -> Result<f64, EvalError> {
        check(x, labels, self.dim, self.classes, "train")?;
        let lr = self.lr_at(epoch);
        let mut order: Vec<usize> = (0..x.rows).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.cfg.seed);
        rng.set_stream(epoch as u64 + 1);
        order.shuffle(&mut rng);
        let mut total = 0.0;
        let mut batch_x = Vec::with_capacity(self.cfg.batch_size * self.dim);
        let mut batch_y = Vec::with_capacity(self.cfg.batch_size);
        for idx in order.chunks(self.cfg.batch_size) {
            batch_x.clear();
            batch_y.clear();
            for &i in idx {
                batch_x.extend_from_slice(x.row(i));
                batch_y.push(labels[i]);
            }
            let (loss, gw, gb) = self.loss_and_grad(&batch_x, &batch_y);
            total += loss * idx.len() as f64;
            self.step(&gw, &gb, lr, self.cfg.weight_decay);
        }
        Ok(total / x.rows.max(1) as f64)
    }

    /// Top-1 and top-`min(5, C)` accuracy in percent on `x`; classes with equal logits rank by
    /// ascending class index.
    ///
    /// # Errors
    /// As [`LinearProbe::train_epoch`], plus [`EvalError::EmptyTest`].
    pub fn accuracy(&self, x: &Features, labels: &[usize]) -> Result<(f64, f64), EvalError> {
        check(x, labels, self.dim, self.classes, "test")?;
        if x.rows == 0 {
            return Err(EvalError::EmptyTest);
        }
        let logits = self.logits(x);
        let window = 5.min(self.classes);
        let (mut top1, mut top5) = (0u64, 0u64);
        for (row, &y) in logits.chunks_exact(self.classes).zip(labels) {
            let own = row[y];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(c, &z)| z > own || (z == own && c < y))
                .count();
            top1 += u64::from(rank == 0);
            top5 += u64::from(rank < window);
        }
        let n = x.rows as f64;
        Ok((top1 as f64 * 100.0 / n, top5 as f64 * 100.0 / n))
    }
}

fn check(
    x: &Features,
    labels: &[usize],
    dim: usize,
    classes: usize,
    set: &'static str,
) -> Result<(), EvalError> {
    if x.dim != dim {
        return Err(EvalError::DimMismatch {
            train_dim: dim,
            test_dim: x.dim,
        });
    }
    if labels.len() != x.rows {
        return Err(EvalError::LabelCount {
            set,
            labels: labels.len(),
            rows: x.rows,
        });
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(EvalError::LabelOutOfRange {
            set,
            row,
            label,
            num_classes: classes,
        });
    }
    if let Some((at, &value)) = x.data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(EvalError::NonFiniteFeature {
            set,
            row: at / dim.max(1),
            col: at % dim.max(1),
            value,
        });
    }
    Ok(())
}

/// The fast linear probe: trains on precomputed `train` features for `cfg.epochs` epochs and
/// reports test top-1/top-5 after each epoch and the best epoch.
///
/// # Errors
/// As [`LinearProbe::new`] and [`LinearProbe::train_epoch`], [`EvalError::EmptyTest`].
pub fn linear_probe(
    train: &Features,
    train_labels: &[usize],
    test: &Features,
    test_labels: &[usize],
    num_classes: usize,
    cfg: &LinearConfig,
) -> Result<LinearReport, EvalError> {
    linear_probe_with(train.dim, num_classes, cfg, test, test_labels, |_| {
        Ok((train.clone(), train_labels.to_vec()))
    })
}

/// The linear probe with train features supplied per epoch by `train_for_epoch(epoch)`, e.g.
/// recomputed from augmented images (the faithful path); otherwise as [`linear_probe`].
///
/// # Errors
/// As [`linear_probe`], plus whatever `train_for_epoch` returns.
pub fn linear_probe_with<F, E>(
    dim: usize,
    num_classes: usize,
    cfg: &LinearConfig,
    test: &Features,
    test_labels: &[usize],
    mut train_for_epoch: F,
) -> Result<LinearReport, E>
where
    F: FnMut(usize) -> Result<(Features, Vec<usize>), E>,
    E: From<EvalError>,
{
    let mut probe = LinearProbe::new(dim, num_classes, cfg)?;
    let mut epochs = Vec::with_capacity(cfg.epochs);
    for epoch in 0..cfg.epochs {
        let (x, y) = train_for_epoch(epoch)?;
        let train_loss = probe.train_epoch(&x, &y, epoch)?;
        let (top1, top5) = probe.accuracy(test, test_labels)?;
        epochs.push(EpochStats {
            epoch,
            lr: probe.lr_at(epoch),
            train_loss,
            top1,
            top5,
        });
    }
    let best = *epochs
        .iter()
        .reduce(|a, b| if b.top1 > a.top1 { b } else { a })
        .expect("epochs >= 1");
    Ok(LinearReport { epochs, best })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Independent f64 mean cross-entropy of `x W^T + b`.
    fn loss64(w: &[f64], b: &[f64], x: &[f32], y: &[usize], c: usize, d: usize) -> f64 {
        let n = y.len();
        let mut total = 0.0;
        for i in 0..n {
            let z: Vec<f64> = (0..c)
                .map(|k| {
                    b[k] + (0..d)
                        .map(|t| w[k * d + t] * f64::from(x[i * d + t]))
                        .sum::<f64>()
                })
                .collect();
            let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
            total += lse - z[y[i]];
        }
        total / n as f64
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (c, d, n) = (4, 5, 7);
        let mut probe = LinearProbe::new(d, c, &LinearConfig::default()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        probe.weight = (0..c * d).map(|_| normal.sample(&mut rng)).collect();
        probe.bias = (0..c).map(|_| normal.sample(&mut rng)).collect();
        let x: Vec<f32> = (0..n * d).map(|_| normal.sample(&mut rng)).collect();
        let y = [0, 3, 1, 1, 2, 0, 3];
        let (loss, gw, gb) = probe.loss_and_grad(&x, &y);
        let w64: Vec<f64> = probe.weight.iter().map(|&v| f64::from(v)).collect();
        let b64: Vec<f64> = probe.bias.iter().map(|&v| f64::from(v)).collect();
        assert!((loss - loss64(&w64, &b64, &x, &y, c, d)).abs() < 1e-5);
        let h = 1e-6;
        for i in 0..c * d {
            let (mut wp, mut wm) = (w64.clone(), w64.clone());
            wp[i] += h;
            wm[i] -= h;
            let fd =
                (loss64(&wp, &b64, &x, &y, c, d) - loss64(&wm, &b64, &x, &y, c, d)) / (2.0 * h);
            assert!(
                (f64::from(gw[i]) - fd).abs() < 1e-5,
                "dW[{i}]: {} vs {fd}",
                gw[i]
            );
        }
        for k in 0..c {
            let (mut bp, mut bm) = (b64.clone(), b64.clone());
            bp[k] += h;
            bm[k] -= h;
            let fd =
                (loss64(&w64, &bp, &x, &y, c, d) - loss64(&w64, &bm, &x, &y, c, d)) / (2.0 * h);
            assert!(
                (f64::from(gb[k]) - fd).abs() < 1e-5,
                "db[{k}]: {} vs {fd}",
                gb[k]
            );
        }
    }

    #[derive(serde::Deserialize)]
    struct LarsParam {
        w0: Vec<f64>,
        grads: Vec<Vec<f64>>,
        w: Vec<Vec<f64>>,
    }
    #[derive(serde::Deserialize)]
    struct LarsCase {
        name: String,
        momentum: f64,
        eta: f64,
        lr: Vec<f64>,
        wd: Vec<f64>,
        params: Vec<LarsParam>,
    }
    #[derive(serde::Deserialize)]
    struct LarsFixture {
        cases: Vec<LarsCase>,
    }

    /// The probe's LARS step against carp-core's NumPy LARS fixture (tools/golden_lars.py): a
    /// [3, 4] weight (trust ratio, weight decay) and a [4] bias (plain momentum) over 3 steps.
    #[test]
    fn lars_step_matches_numpy_fixture() {
        let fx: LarsFixture = serde_json::from_str(include_str!(
            "../../carp-core/tests/fixtures/lars_golden.json"
        ))
        .unwrap();
        for case in &fx.cases {
            let cfg = LinearConfig {
                momentum: case.momentum,
                eta: case.eta,
                ..LinearConfig::default()
            };
            let (wp, bp) = (&case.params[0], &case.params[1]);
            // Weight as a 3-class, 4-dim probe; the bias as a 4-class, 1-dim probe.
            let mut pw = LinearProbe::new(4, 3, &cfg).unwrap();
            pw.weight = wp.w0.iter().map(|&v| v as f32).collect();
            let mut pb = LinearProbe::new(1, 4, &cfg).unwrap();
            pb.bias = bp.w0.iter().map(|&v| v as f32).collect();
            for s in 0..case.lr.len() {
                let gw: Vec<f32> = wp.grads[s].iter().map(|&v| v as f32).collect();
                let gb: Vec<f32> = bp.grads[s].iter().map(|&v| v as f32).collect();
                pw.step(&gw, &[0.0; 3], case.lr[s], case.wd[s]);
                pb.step(&[0.0; 4], &gb, case.lr[s], case.wd[s]);
                for (g, w) in pw.weight.iter().zip(&wp.w[s]) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-6,
                        "{} step {s}: {g} vs {w}",
                        case.name
                    );
                }
                for (g, w) in pb.bias.iter().zip(&bp.w[s]) {
                    assert!(
                        (f64::from(*g) - w).abs() < 1e-6,
                        "{} bias step {s}: {g} vs {w}",
                        case.name
                    );
                }
            }
        }
    }

    /// Four Gaussian classes around orthogonal directions, separable: both optimisers reach
    /// near-perfect test accuracy, and the best epoch is the maximum of the history.
    #[test]
    fn learns_separable_data() {
        let (c, d) = (4, 8);
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let normal = Normal::new(0.0f32, 0.5).unwrap();
        let mut make = |n: usize| {
            let mut x = Vec::new();
            let mut y = Vec::new();
            for i in 0..n {
                let l = i % c;
                for t in 0..d {
                    x.push(if t == l { 3.0 } else { 0.0 } + normal.sample(&mut rng));
                }
                y.push(l);
            }
            (Features::new(x, n, d).unwrap(), y)
        };
        let (train, ytr) = make(400);
        let (test, yte) = make(100);
        for (optimizer, lr) in [(ProbeOptimizer::Lars, 10.0), (ProbeOptimizer::Sgd, 0.1)] {
            let cfg = LinearConfig {
                epochs: 20,
                optimizer,
                lr,
                batch_size: 32,
                ..LinearConfig::default()
            };
            let r = linear_probe(&train, &ytr, &test, &yte, c, &cfg).unwrap();
            assert_eq!(r.epochs.len(), 20);
            assert!(r.best.top1 >= 99.0, "{optimizer:?}: best {:?}", r.best);
            assert!(r.epochs.last().unwrap().train_loss < r.epochs[0].train_loss);
            let max = r.epochs.iter().map(|e| e.top1).fold(0.0, f64::max);
            assert_eq!(r.best.top1, max);
            assert_eq!(r.epochs[0].lr, lr);
            assert!(r.epochs.iter().all(|e| e.top5 >= e.top1));
        }
        // Deterministic for a seed.
        let cfg = LinearConfig {
            epochs: 3,
            ..LinearConfig::default()
        };
        assert_eq!(
            linear_probe(&train, &ytr, &test, &yte, c, &cfg).unwrap(),
            linear_probe(&train, &ytr, &test, &yte, c, &cfg).unwrap()
        );
    }

    #[test]
    fn cosine_schedule_and_bad_settings() {
        let cfg = LinearConfig {
            epochs: 4,
            lr: 2.0,
            ..LinearConfig::default()
        };
        let p = LinearProbe::new(3, 2, &cfg).unwrap();
        assert_eq!(p.lr_at(0), 2.0);
        assert!((p.lr_at(2) - 1.0).abs() < 1e-12);
        assert!(LinearProbe::new(3, 0, &cfg).is_err());
        let bad = LinearConfig {
            lr: f64::NAN,
            ..cfg.clone()
        };
        assert!(matches!(
            LinearProbe::new(3, 2, &bad),
            Err(EvalError::ProbeSettings(_))
        ));
        let x = Features::new(vec![0.0; 6], 2, 3).unwrap();
        assert!(matches!(
            p.accuracy(&x, &[0, 2]),
            Err(EvalError::LabelOutOfRange { label: 2, .. })
        ));
    }
}
