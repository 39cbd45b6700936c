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
    }
}
