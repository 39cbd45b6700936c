//! BatchNorm over channels-last `[M, C]` buffers, fused with the residual add and the ReLU
//! that follow it in a ResNet block: statistics, forward, backward and the inference form.
//!
//! ```text
//! training:  y = act(γ · (x - μ) / sqrt(σ² + ε) + β + r)     μ, σ² over the M rows (biased σ²)
//! inference: y = act(x · scale + shift + r)                  scale, shift from running statistics
//! act = ReLU or identity; r = optional residual of the same shape
//! ```
//!
//! Reductions run over fixed row chunks (by shape only), each summed in row order, and the
//! chunk partials are added in chunk order, so every result is a pure function of the inputs.

use rayon::prelude::*;

/// Rows per reduction chunk (fixed: the sum order must not depend on the thread count).
const CHUNK_ROWS: usize = 1024;

/// Rows per elementwise task.
const MAP_ROWS: usize = 512;

/// Per-channel mean and biased variance of `x` `[M, C]`.
///
/// Sums shifted by the first row (`x - x[0]`), in f32 within a chunk and f64 across chunks,
/// so the variance does not cancel when the mean is large next to the spread.
///
/// # Panics
///
/// Panics if `x` is empty or not a multiple of `c`.
pub fn batch_stats(x: &[f32], c: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(
        c > 0 && !x.is_empty() && x.len() / c * c == x.len(),
        "x is [M, C]"
    );
    let m = x.len() / c;
    let shift: Vec<f32> = x[..c].to_vec();
    let partials: Vec<(Vec<f32>, Vec<f32>)> = x
        .par_chunks(CHUNK_ROWS * c)
        .map(|chunk| {
            let mut s = vec![0.0f32; c];
            let mut q = vec![0.0f32; c];
            stats_rows(chunk, &shift, &mut s, &mut q);
            (s, q)
        })
        .collect();
    let mut sum = vec![0.0f64; c];
    let mut sq = vec![0.0f64; c];
    for (s, q) in &partials {
        for i in 0..c {
            sum[i] += s[i] as f64;
            sq[i] += q[i] as f64;
        }
    }
    let mut mean = vec![0.0f32; c];
    let mut var = vec![0.0f32; c];
    for i in 0..c {
        let d = sum[i] / m as f64;
        mean[i] = (shift[i] as f64 + d) as f32;
        var[i] = (sq[i] / m as f64 - d * d).max(0.0) as f32;
    }
    (mean, var)
}

/// `y = act(x · scale + shift + r)` per channel, `[M, C]`.
///
/// # Panics
///
/// Panics if the lengths disagree.
pub fn scale_shift(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let c = scale.len();
    assert_eq!(shift.len(), c, "shift length");
    assert_eq!(x.len(), y.len(), "output length");
    if let Some(r) = residual {
        assert_eq!(r.len(), x.len(), "residual length");
    }
    y.par_chunks_mut(MAP_ROWS * c)
        .enumerate()
        .for_each(|(t, out)| {
            let at = t * MAP_ROWS * c;
            let xs = &x[at..at + out.len()];
            apply_rows(
                xs,
                scale,
                shift,
                residual.map(|r| &r[at..at + out.len()]),
                relu,
                out,
            );
        });
}

/// The per-row body of [`scale_shift`], also used on GEMM output tiles while they are hot.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
pub(crate) fn apply_rows(
    x: &[f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
    out: &mut [f32],
) {
    let c = scale.len();
    match (residual, relu) {
        (None, false) => {
            for (o, xr) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for i in 0..c {
                    o[i] = xr[i] * scale[i] + shift[i];
                }
            }
        }
        (None, true) => {
            for (o, xr) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
                for i in 0..c {
                    o[i] = (xr[i] * scale[i] + shift[i]).max(0.0);
                }
            }
        }
        (Some(r), relu) => {
            for ((o, xr), rr) in out
                .chunks_exact_mut(c)
                .zip(x.chunks_exact(c))
                .zip(r.chunks_exact(c))
            {
                for i in 0..c {
                    let v = xr[i] * scale[i] + shift[i] + rr[i];
                    o[i] = if relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}

/// In-place [`apply_rows`] on a buffer that holds `x` (the GEMM output).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
pub(crate) fn apply_rows_inplace(
    y: &mut [f32],
    scale: &[f32],
    shift: &[f32],
    residual: Option<&[f32]>,
    relu: bool,
) {
    let c = scale.len();
    for (t, o) in y.chunks_exact_mut(c).enumerate() {
        for i in 0..c {
            let mut v = o[i] * scale[i] + shift[i];
            if let Some(r) = residual {
                v += r[t * c + i];
            }
            o[i] = if relu { v.max(0.0) } else { v };
        }
    }
}

/// Per-channel `scale = γ / sqrt(σ² + ε)` and `shift = β - μ · scale`.
pub fn fold(
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f64,
) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| (g as f64 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((&b, &m), &s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Gradients of a training-mode BatchNorm (+ residual) (+ ReLU).
pub struct BatchNormGrads {
    /// Input gradient `[M, C]`.
    pub x: Vec<f32>,
    /// γ gradient `[C]`.
    pub gamma: Vec<f32>,
    /// β gradient `[C]`.
    pub beta: Vec<f32>,
    /// Residual gradient `[M, C]` (the masked output gradient), when asked for.
    pub residual: Option<Vec<f32>>,
}

/// Backward of the training forward `y = act(γ x̂ + β + r)`, x̂ = (x - μ) · inv_std.
///
/// With g = dy masked by `y > 0` under ReLU:
///
/// ```text
/// dβ = Σ g      dγ = Σ g x̂      dr = g
/// dx = γ inv_std (g - dβ / M - x̂ dγ / M)
/// ```
///
/// # Panics
///
/// Panics if the lengths disagree.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    gamma: &[f32],
    relu: bool,
    want_residual: bool,
) -> BatchNormGrads {
    let c = gamma.len();
    assert!(
        x.len() == dy.len() && y.len() == dy.len(),
        "x, y, dy are [M, C]"
    );
    let m = dy.len() / c;
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dy
        .par_chunks(CHUNK_ROWS * c)
        .enumerate()
        .map(|(t, dyc)| {
            let at = t * CHUNK_ROWS * c;
            let mut sg = vec![0.0f32; c];
            let mut sgx = vec![0.0f32; c];
            let n = dyc.len();
            grad_stats_rows(
                dyc,
                &x[at..at + n],
                &y[at..at + n],
                mean,
                relu,
                &mut sg,
                &mut sgx,
            );
            (sg, sgx)
        })
        .collect();
    let mut sum_g = vec![0.0f64; c];
    let mut sum_gx = vec![0.0f64; c];
    for (sg, sgx) in &partials {
        for i in 0..c {
            sum_g[i] += sg[i] as f64;
            sum_gx[i] += sgx[i] as f64;
        }
    }
    let beta_grad: Vec<f32> = sum_g.iter().map(|&v| v as f32).collect();
    let gamma_grad: Vec<f32> = sum_gx
        .iter()
        .zip(inv_std)
        .map(|(&v, &s)| (v * s as f64) as f32)
        .collect();
    // dx = a g + b (x - μ) + d per channel.
    let mut a = vec![0.0f32; c];
    let mut b = vec![0.0f32; c];
    let mut d = vec![0.0f32; c];
    for i in 0..c {
        let (gi, si) = (gamma[i] as f64, inv_std[i] as f64);
        a[i] = (gi * si) as f32;
        b[i] = (-gi * si * si * si * sum_gx[i] / m as f64) as f32;
        d[i] = (-gi * si * sum_g[i] / m as f64) as f32;
    }
    let mut dx = vec![0.0f32; dy.len()];
    let mut dres = want_residual.then(|| vec![0.0f32; dy.len()]);
    let task = |t: usize, out: &mut [f32], res: Option<&mut [f32]>| {
        let at = t * MAP_ROWS * c;
        let n = out.len();
        let rows = GradRows {
            dy: &dy[at..at + n],
            x: &x[at..at + n],
            y: &y[at..at + n],
            mean,
            a: &a,
            b: &b,
            d: &d,
            relu,
        };
        grad_rows(&rows, out, res);
    };
    match dres.as_mut() {
        Some(res) => dx
            .par_chunks_mut(MAP_ROWS * c)
            .zip(res.par_chunks_mut(MAP_ROWS * c))
            .enumerate()
            .for_each(|(t, (o, r))| task(t, o, Some(r))),
        None => dx
            .par_chunks_mut(MAP_ROWS * c)
            .enumerate()
            .for_each(|(t, o)| task(t, o, None)),
    }
    BatchNormGrads {
        x: dx,
        gamma: gamma_grad,
        beta: beta_grad,
        residual: dres,
    }
}

/// Adds each row's `x - shift` and its square to the per-channel sums `s` and `q`, in row
/// order. AVX2 and AVX-512 clones are picked at run time (the crate is built for baseline
/// x86-64); they run the same operations per element in the same order, so the bits do not
/// depend on the CPU (no FMA contraction in Rust).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn stats_rows(x: &[f32], shift: &[f32], s: &mut [f32], q: &mut [f32]) {
    let c = shift.len();
    for row in x.chunks_exact(c) {
        for (((s, q), &v), &sh) in s.iter_mut().zip(q.iter_mut()).zip(row).zip(shift) {
            let d = v - sh;
            *s += d;
            *q += d * d;
        }
    }
}

/// The ReLU's gradient mask: `g` where the output was positive (or without ReLU), else 0.
#[inline(always)]
fn masked(g: f32, out: f32, relu: bool) -> f32 {
    if relu && out <= 0.0 {
        0.0
    } else {
        g
    }
}

/// Adds each row's masked gradient `g` and `g · (x - μ)` to `sg` and `sgx`, in row order
/// (clones as for [`stats_rows`]).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn grad_stats_rows(
    dy: &[f32],
    x: &[f32],
    y: &[f32],
    mean: &[f32],
    relu: bool,
    sg: &mut [f32],
    sgx: &mut [f32],
) {
    let c = mean.len();
    for ((dr, xr), yr) in dy
        .chunks_exact(c)
        .zip(x.chunks_exact(c))
        .zip(y.chunks_exact(c))
    {
        for i in 0..c {
            let g = masked(dr[i], yr[i], relu);
            sg[i] += g;
            sgx[i] += g * (xr[i] - mean[i]);
        }
    }
}

/// One task's rows of the BatchNorm backward: `dx = a g + b (x - μ) + d` per channel.
struct GradRows<'a> {
    dy: &'a [f32],
    x: &'a [f32],
    y: &'a [f32],
    mean: &'a [f32],
    a: &'a [f32],
    b: &'a [f32],
    d: &'a [f32],
    relu: bool,
}

/// `out = dx` of `rows`, and `res = g` (the residual's gradient) when asked (clones as for
/// [`stats_rows`]).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn grad_rows(rows: &GradRows, out: &mut [f32], res: Option<&mut [f32]>) {
    let GradRows {
        dy,
        x,
        y,
        mean,
        a,
        b,
        d,
        relu,
    } = *rows;
    let c = mean.len();
    let (a, b, d) = (&a[..c], &b[..c], &d[..c]);
    match res {
        Some(res) => {
            for ((((o, rr), dr), xr), yr) in out
                .chunks_exact_mut(c)
                .zip(res.chunks_exact_mut(c))
                .zip(dy.chunks_exact(c))
                .zip(x.chunks_exact(c))
                .zip(y.chunks_exact(c))
            {
                for i in 0..c {
                    let g = masked(dr[i], yr[i], relu);
                    rr[i] = g;
                    o[i] = a[i] * g + b[i] * (xr[i] - mean[i]) + d[i];
                }
            }
        }
        None => {
            for (((o, dr), xr), yr) in out
                .chunks_exact_mut(c)
                .zip(dy.chunks_exact(c))
                .zip(x.chunks_exact(c))
                .zip(y.chunks_exact(c))
            {
                for i in 0..c {
                    let g = masked(dr[i], yr[i], relu);
                    o[i] = a[i] * g + b[i] * (xr[i] - mean[i]) + d[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_match_two_pass_f64_with_a_large_mean() {
        let c = 3;
        let x: Vec<f32> = (0..3000)
            .map(|i| 1000.0 + (i % 7) as f32 * 0.25 + (i % c) as f32)
            .collect();
        let (mean, var) = batch_stats(&x, c);
        for ch in 0..c {
            let v: Vec<f64> = x.iter().skip(ch).step_by(c).map(|&v| v as f64).collect();
            let mu = v.iter().sum::<f64>() / v.len() as f64;
            let var64 = v.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / v.len() as f64;
            assert!((mean[ch] as f64 - mu).abs() < 1e-3, "{} vs {mu}", mean[ch]);
            assert!(
                (var[ch] as f64 - var64).abs() < 1e-4 * var64.max(1.0),
                "{} vs {var64}",
                var[ch]
            );
        }
    }
}
