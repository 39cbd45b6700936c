//! Dense f32 products shared by the protocols: `out = A · Bᵀ`, split over rayon threads.

use rayon::prelude::*;

/// `out[i * n + j] = <a_i, b_j>` for row-major `a` `[m, d]`, `b` `[n, d]`, `out` `[m, n]`.
///
/// Rows of `out` are split into one block per rayon thread, each a `matrixmultiply::sgemm` call
/// (blocked, SIMD). Every output element is computed by the same code path whatever the split,
/// so results do not depend on the thread count.
///
/// # Panics
/// If a slice length does not match its shape.
pub(crate) fn matmul_nt(a: &[f32], b: &[f32], m: usize, n: usize, d: usize, out: &mut [f32]) {
    assert_eq!(a.len(), m * d, "a must be [m, d]");
    assert_eq!(b.len(), n * d, "b must be [n, d]");
    assert_eq!(out.len(), m * n, "out must be [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    let threads = rayon::current_num_threads().max(1);
    let rows_per_task = m.div_ceil(threads).max(1);
    out.par_chunks_mut(rows_per_task * n)
        .enumerate()
        .for_each(|(task, block)| {
            let first = task * rows_per_task;
            let rows = block.len() / n;
            gemm_block(&a[first * d..(first + rows) * d], b, rows, n, d, block);
        });
}

/// `out = a · bᵀ` as [`matmul_nt`], by direct dot products instead of a packed GEMM.
///
/// For a small `b` (k-means centroids: `n · d` floats stay in cache) this avoids re-packing the
/// large `a` on every call, which dominated k-means with k = 10 (64 % of the time in
/// `matrixmultiply`'s packing). On x86-64 with AVX2 + FMA (checked at run time) it uses 8-lane
/// intrinsics, else a portable 16-partial-sum loop. Results do not depend on the thread count.
///
/// # Panics
/// If a slice length does not match its shape.
pub(crate) fn matmul_nt_direct(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    d: usize,
    out: &mut [f32],
) {
    assert_eq!(a.len(), m * d, "a must be [m, d]");
    assert_eq!(b.len(), n * d, "b must be [n, d]");
    assert_eq!(out.len(), m * n, "out must be [m, n]");
    if m == 0 || n == 0 {
        return;
    }
    const ROWS: usize = 256;
    out.par_chunks_mut(ROWS * n)
        .zip(a.par_chunks(ROWS * d.max(1)))
        .for_each(|(o, a)| direct_dispatch(a, b, n, d, o));
}

fn direct_dispatch(a: &[f32], b: &[f32], n: usize, d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { direct_avx2(a, b, n, d, out) };
        }
    }
    direct_block(a, b, n, d, out);
}

/// [`direct_block`] with AVX2 + FMA intrinsics: each row of `a` against 4 rows of `b` at a time
/// (one load of `a` feeds 4 fused multiply-adds), 8 lanes per register.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn direct_avx2(a: &[f32], b: &[f32], n: usize, d: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_hadd_ps(s, s);
        _mm_cvtss_f32(_mm_hadd_ps(s, s))
    }
    if d == 0 {
        out.fill(0.0);
        return;
    }
    let lanes = d / 8 * 8;
    for (ai, orow) in a.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
        let pa = ai.as_ptr();
        let mut j = 0;
        while j + 4 <= n {
            let pb = b[j * d..(j + 4) * d].as_ptr();
            let (mut s0, mut s1, mut s2, mut s3) = (
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
                _mm256_setzero_ps(),
            );
            let mut t = 0;
            while t < lanes {
                // SAFETY: t + 8 <= lanes <= d, so every load stays inside row `ai` and rows
                // j..j + 4 of `b` (row r starts at pb + r * d).
                let x = _mm256_loadu_ps(pa.add(t));
                s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(t)), s0);
                s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(d + t)), s1);
                s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(2 * d + t)), s2);
                s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(pb.add(3 * d + t)), s3);
                t += 8;
            }
            let mut r = [hsum(s0), hsum(s1), hsum(s2), hsum(s3)];
            for t in lanes..d {
                for (q, rq) in r.iter_mut().enumerate() {
                    *rq = ai[t].mul_add(b[(j + q) * d + t], *rq);
                }
            }
            orow[j..j + 4].copy_from_slice(&r);
            j += 4;
        }
        for (jj, o) in orow.iter_mut().enumerate().skip(j) {
            let pb = b[jj * d..(jj + 1) * d].as_ptr();
            let mut s0 = _mm256_setzero_ps();
            let mut t = 0;
            while t < lanes {
                // SAFETY: as above, for the single row jj of `b`.
                s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(t)), _mm256_loadu_ps(pb.add(t)), s0);
                t += 8;
            }
            let mut r = hsum(s0);
            for t in lanes..d {
                r = ai[t].mul_add(b[jj * d + t], r);
            }
            *o = r;
        }
    }
}

#[inline(always)]
fn direct_block(a: &[f32], b: &[f32], n: usize, d: usize, out: &mut [f32]) {
    if d == 0 {
        out.fill(0.0);
        return;
    }
    for (ai, orow) in a.chunks_exact(d).zip(out.chunks_exact_mut(n)) {
        for (bj, o) in b.chunks_exact(d).zip(orow.iter_mut()) {
            *o = dot16(ai, bj);
        }
    }
}

/// Dot product with 16 independent partial sums (vectorises to one or two SIMD registers).
#[inline(always)]
fn dot16(x: &[f32], y: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (xc, yc) = (x.chunks_exact(16), y.chunks_exact(16));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (a, b) in xc.zip(yc) {
        for i in 0..16 {
            acc[i] = a[i].mul_add(b[i], acc[i]);
        }
    }
    let mut tail = 0.0f32;
    for (a, b) in xr.iter().zip(yr) {
        tail = a.mul_add(*b, tail);
    }
    // Pairwise reduction of the lanes.
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    acc[0] + tail
}

/// One single-threaded `out = a · bᵀ` block; see [`matmul_nt`] for shapes.
fn gemm_block(a: &[f32], b: &[f32], m: usize, n: usize, d: usize, out: &mut [f32]) {
    let (d_stride, n_stride) = (d as isize, n as isize);
    // SAFETY: the caller's asserts bound A = a ([m, d], strides (d, 1)), B = bᵀ ([d, n],
    // strides (1, d)) and C = out ([m, n], strides (n, 1)); `out` is exclusively borrowed, so
    // C aliases neither A nor B. With beta = 0, C is only written.
    unsafe {
        matrixmultiply::sgemm(
            m,
            d,
            n,
            1.0,
            a.as_ptr(),
            d_stride,
            1,
            b.as_ptr(),
            1,
            d_stride,
            0.0,
            out.as_mut_ptr(),
            n_stride,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_product() {
        let (m, n, d) = (37, 11, 5);
        let a: Vec<f32> = (0..m * d).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..n * d).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let mut out = vec![0.0; m * n];
        matmul_nt(&a, &b, m, n, d, &mut out);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..d).map(|t| a[i * d + t] * b[j * d + t]).sum();
                assert_eq!(out[i * n + j], want, "({i}, {j})");
            }
        }
        // The direct kernel: small integers, so every order of summation is exact.
        let mut direct = vec![0.0; m * n];
        matmul_nt_direct(&a, &b, m, n, d, &mut direct);
        assert_eq!(direct, out);
        let d2 = 37;
        let a2: Vec<f32> = (0..m * d2).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b2: Vec<f32> = (0..n * d2).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let (mut x, mut y) = (vec![0.0; m * n], vec![0.0; m * n]);
        matmul_nt(&a2, &b2, m, n, d2, &mut x);
        matmul_nt_direct(&a2, &b2, m, n, d2, &mut y);
        assert_eq!(x, y, "16-lane chunks plus a tail of 5");
    }
}
