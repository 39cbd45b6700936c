//! 2-D convolution on channels-last (NHWC) `f32` buffers: forward, input gradient and
//! weight gradient, each an im2col tile followed by one large GEMM from the `gemm` crate.
//!
//! Layouts, with M = B·OH·OW output pixels and K = KH·KW·C_in:
//!
//! ```text
//! x    [B, H, W, C_in]        input, NHWC
//! w    [C_out, C_in, KH, KW]  Burn's (and PyTorch's) weight layout
//! wk   [C_out, K]             w repacked with k = (kh, kw, ci): `pack_weight` (the GEMM's
//!                             right operand column-major: 3x faster than [K, C_out] on
//!                             512-row tiles, examples/gemm_layouts.rs)
//! y    [M, C_out]             output, NHWC ([B, OH, OW, C_out])
//! dwk  [K, C_out]             weight gradient before `unpack_weight_grad`
//! col  [rows, K]              im2col of a tile of output pixels
//! ```
//!
//! Every output element is written by exactly one GEMM call whose reduction order is fixed by
//! the shape alone, so results are a pure function of the inputs: the row tiles that run in
//! parallel never share an output row, the input gradient scatters whole images per task,
//! and the weight gradient sums fixed row ranges into separate partials that are added in
//! index order (`weight_grad`). No buffer is read before it is written.

use crate::winograd;
use rayon::prelude::*;
use std::cell::RefCell;

/// Geometry of one convolution: groups 1, dilation 1, symmetric zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Images B.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (height, width).
    pub stride: [usize; 2],
    /// Zero padding on each side (height, width).
    pub pad: [usize; 2],
}

impl ConvShape {
    /// Output height.
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad[0] - self.kh) / self.stride[0] + 1
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad[1] - self.kw) / self.stride[1] + 1
    }

    /// Reduction length K = KH·KW·C_in of the forward GEMM.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.c_in
    }

    /// Output pixels M = B·OH·OW.
    pub fn rows(&self) -> usize {
        self.batch * self.out_h() * self.out_w()
    }

    /// Whether the input rows are the GEMM's left operand as they are (1x1, stride 1, no
    /// padding): no im2col at all.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }

    /// Whether the shape is valid (non-empty output, padding smaller than the kernel).
    pub fn is_valid(&self) -> bool {
        self.batch > 0
            && self.c_in > 0
            && self.c_out > 0
            && self.kh > 0
            && self.kw > 0
            && self.stride[0] > 0
            && self.stride[1] > 0
            && self.pad[0] < self.kh
            && self.pad[1] < self.kw
            && self.h + 2 * self.pad[0] >= self.kh
            && self.w + 2 * self.pad[1] >= self.kw
    }

    /// The convolution whose forward pass is this one's input gradient when the stride is 1:
    /// the output gradient convolved with the flipped, transposed kernel, padded KH-1-p.
    fn transposed(&self) -> ConvShape {
        ConvShape {
            batch: self.batch,
            c_in: self.c_out,
            h: self.out_h(),
            w: self.out_w(),
            c_out: self.c_in,
            kh: self.kh,
            kw: self.kw,
            stride: [1, 1],
            pad: [self.kh - 1 - self.pad[0], self.kw - 1 - self.pad[1]],
        }
    }
}

/// Bytes of im2col per tile the forward and input-gradient kernels aim for (fits L2 with
/// the packed GEMM blocks).
const TILE_BYTES: usize = 1024 * 1024;

/// Output rows per tile: about [`TILE_BYTES`] of im2col, at least 32 rows, and at least enough
/// rows that repacking the weight inside each GEMM call stays small next to its work.
fn tile_rows(k: usize, c_out: usize, rows: usize) -> usize {
    let by_cache = TILE_BYTES / (4 * k.max(1));
    let by_weight = 2 * c_out;
    by_cache.max(by_weight).max(32).min(rows.max(1))
}

thread_local! {
    /// Per-thread im2col buffer, grown on demand and reused across calls.
    static COL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's im2col buffer resized to `len` (contents unspecified: every
/// caller writes the part it reads).
fn with_col<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COL.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// Repacks `w` `[C_out, C_in, KH, KW]` into `wk` `[C_out, K]`, k = (kh, kw, ci).
pub fn pack_weight(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    let (ci_n, kh_n, kw_n) = (s.c_in, s.kh, s.kw);
    assert_eq!(w.len(), s.c_out * ci_n * kh_n * kw_n, "weight length");
    let k_n = s.k();
    let mut wk = vec![0.0f32; w.len()];
    // One output channel per task (a plain copy: no bits depend on the split).
    wk.par_chunks_exact_mut(k_n.max(1))
        .zip(w.par_chunks_exact(k_n.max(1)))
        .for_each(|(dst, src)| {
            for ci in 0..ci_n {
                for kh in 0..kh_n {
                    for kw in 0..kw_n {
                        dst[(kh * kw_n + kw) * ci_n + ci] = src[(ci * kh_n + kh) * kw_n + kw];
                    }
                }
            }
        });
    wk
}

/// The weight gradient `dwk` `[K, C_out]` back in Burn's layout `[C_out, C_in, KH, KW]`.
pub fn unpack_weight_grad(s: &ConvShape, dwk: &[f32]) -> Vec<f32> {
    unpack_weight_grad_sum(s, std::slice::from_ref(&dwk))
}

/// The sum of the partial weight gradients `parts` (each `[K, C_out]`), added in their
/// order, in Burn's layout `[C_out, C_in, KH, KW]`.
fn unpack_weight_grad_sum<P: AsRef<[f32]> + Sync>(s: &ConvShape, parts: &[P]) -> Vec<f32> {
    let (co_n, ci_n, kh_n, kw_n) = (s.c_out, s.c_in, s.kh, s.kw);
    let k_n = s.k();
    let (first, rest) = parts.split_first().expect("at least one partial");
    assert_eq!(first.as_ref().len(), k_n * co_n, "weight gradient length");
    let mut w = vec![0.0f32; k_n * co_n];
    // One output channel per task; each element adds the partials in the same order.
    w.par_chunks_exact_mut(k_n.max(1))
        .enumerate()
        .for_each(|(co, dst)| {
            for ci in 0..ci_n {
                for kh in 0..kh_n {
                    for kw in 0..kw_n {
                        let at = ((kh * kw_n + kw) * ci_n + ci) * co_n + co;
                        let mut v = first.as_ref()[at];
                        for p in rest {
                            v += p.as_ref()[at];
                        }
                        dst[(ci * kh_n + kh) * kw_n + kw] = v;
                    }
                }
            }
        });
    w
}

/// The weight of [`ConvShape::transposed`] in Burn's layout `[C_in, C_out, KH, KW]`: `w`
/// flipped in both spatial dimensions with its channel axes swapped.
fn flip_transpose(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    let (co_n, ci_n, kh_n, kw_n) = (s.c_out, s.c_in, s.kh, s.kw);
    let mut wt = vec![0.0f32; w.len()];
    let per = co_n * kh_n * kw_n;
    // One input channel (an output channel of the transposed weight) per task.
    wt.par_chunks_exact_mut(per.max(1))
        .enumerate()
        .for_each(|(ci, dst)| {
            for co in 0..co_n {
                for kh in 0..kh_n {
                    for kw in 0..kw_n {
                        let to = (co * kh_n + (kh_n - 1 - kh)) * kw_n + (kw_n - 1 - kw);
                        dst[to] = w[((co * ci_n + ci) * kh_n + kh) * kw_n + kw];
                    }
                }
            }
        });
    wt
}

/// A convolution weight prepared for the forward kernel that the shape selects: Winograd
/// F(2x2, 3x3) for 3x3 stride-1 layers with enough channels ([`winograd::applies`]), im2col +
/// GEMM otherwise. The choice depends on the shape only (and on `CARP_KERNELS=im2col`, which
/// turns Winograd off for comparisons).
pub enum PreparedWeight {
    /// [`pack_weight`]'s `[C_out, K]`.
    Im2col(Vec<f32>),
    /// [`winograd::transform_weight`]'s `[16, C_out, C_in]`.
    Winograd(Vec<f32>),
}

impl PreparedWeight {
    /// Prepares `w` (Burn's layout `[C_out, C_in, KH, KW]`) for a convolution of shape `s`.
    pub fn new(s: &ConvShape, w: &[f32]) -> PreparedWeight {
        if winograd::applies(s) && crate::winograd_enabled() {
            PreparedWeight::Winograd(winograd::transform_weight(s, w))
        } else {
            PreparedWeight::Im2col(pack_weight(s, w))
        }
    }
}

/// Forward convolution with a [`PreparedWeight`], then `epilogue(first_row, rows)` on each
/// tile of output rows while it is in cache (see [`forward_epilogue`]).
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn forward_prepared(
    s: &ConvShape,
    x: &[f32],
    w: &PreparedWeight,
    y: &mut [f32],
    epilogue: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    match w {
        PreparedWeight::Im2col(wk) => forward_epilogue(s, x, wk, y, epilogue),
        PreparedWeight::Winograd(u) => winograd::forward_epilogue(s, x, u, y, epilogue),
    }
}

/// Writes the im2col rows `r0..r0 + rows` of `x` into `col` (`[rows, K]`), zeros for padding.
fn im2col(s: &ConvShape, x: &[f32], r0: usize, rows: usize, col: &mut [f32]) {
    let (oh_n, ow_n) = (s.out_h(), s.out_w());
    let (h, w, c) = (s.h as isize, s.w as isize, s.c_in);
    let k = s.k();
    let run = s.kw * c;
    for (i, dst) in col.chunks_exact_mut(k).take(rows).enumerate() {
        let r = r0 + i;
        let b = r / (oh_n * ow_n);
        let rem = r % (oh_n * ow_n);
        let (oh, ow) = (rem / ow_n, rem % ow_n);
        let ih0 = (oh * s.stride[0]) as isize - s.pad[0] as isize;
        let iw0 = (ow * s.stride[1]) as isize - s.pad[1] as isize;
        let image = &x[b * s.h * s.w * c..(b + 1) * s.h * s.w * c];
        for kh in 0..s.kh {
            let ih = ih0 + kh as isize;
            let d = &mut dst[kh * run..(kh + 1) * run];
            if ih < 0 || ih >= h {
                d.fill(0.0);
                continue;
            }
            let row = &image[(ih as usize) * s.w * c..(ih as usize + 1) * s.w * c];
            if iw0 >= 0 && iw0 + s.kw as isize <= w {
                // The whole kernel row is inside the image: one contiguous copy.
                let start = iw0 as usize * c;
                d.copy_from_slice(&row[start..start + run]);
            } else {
                for kw in 0..s.kw {
                    let iw = iw0 + kw as isize;
                    let dd = &mut d[kw * c..(kw + 1) * c];
                    if iw < 0 || iw >= w {
                        dd.fill(0.0);
                    } else {
                        dd.copy_from_slice(&row[iw as usize * c..(iw as usize + 1) * c]);
                    }
                }
            }
        }
    }
}

/// Adds the im2col-shaped gradient `dcol` (`[rows, K]`, rows `r0..`) back onto `dx`, the
/// gradient of the images those rows belong to (`dx` starts at image `b0`).
fn col2im_add(s: &ConvShape, dcol: &[f32], r0: usize, rows: usize, dx: &mut [f32], b0: usize) {
    let (oh_n, ow_n) = (s.out_h(), s.out_w());
    let (h, w, c) = (s.h as isize, s.w as isize, s.c_in);
    let k = s.k();
    for (i, src) in dcol.chunks_exact(k).take(rows).enumerate() {
        let r = r0 + i;
        let b = r / (oh_n * ow_n) - b0;
        let rem = r % (oh_n * ow_n);
        let (oh, ow) = (rem / ow_n, rem % ow_n);
        let ih0 = (oh * s.stride[0]) as isize - s.pad[0] as isize;
        let iw0 = (ow * s.stride[1]) as isize - s.pad[1] as isize;
        let image = &mut dx[b * s.h * s.w * c..(b + 1) * s.h * s.w * c];
        for kh in 0..s.kh {
            let ih = ih0 + kh as isize;
            if ih < 0 || ih >= h {
                continue;
            }
            for kw in 0..s.kw {
                let iw = iw0 + kw as isize;
                if iw < 0 || iw >= w {
                    continue;
                }
                let at = ((ih as usize) * s.w + iw as usize) * c;
                let from = (kh * s.kw + kw) * c;
                for (d, &g) in image[at..at + c].iter_mut().zip(&src[from..from + c]) {
                    *d += g;
                }
            }
        }
    }
}

/// `dst[m, n] (=|+=) lhs[m, k] · rhs[k, n]` on row-major operands with the given row strides.
///
/// # Safety
///
/// The pointers must cover the described matrices, and `dst` must not alias the inputs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_rm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: *const f32,
    lhs_rs: isize,
    lhs_cs: isize,
    rhs: *const f32,
    rhs_rs: isize,
    rhs_cs: isize,
    parallel: bool,
) {
    let parallelism = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Forward convolution: `y [M, C_out] = im2col(x) · wkᵀ`.
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn forward(s: &ConvShape, x: &[f32], wk: &[f32], y: &mut [f32]) {
    forward_epilogue(s, x, wk, y, &|_, _| {});
}

/// [`forward`] that then calls `epilogue(first_row, rows)` on each tile of output rows
/// (`[rows, C_out]`, starting at output row `first_row`) while it is still in cache.
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn forward_epilogue(
    s: &ConvShape,
    x: &[f32],
    wk: &[f32],
    y: &mut [f32],
    epilogue: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    let (k, co, m) = (s.k(), s.c_out, s.rows());
    assert_eq!(x.len(), s.batch * s.h * s.w * s.c_in, "input length");
    assert_eq!(wk.len(), k * co, "packed weight length");
    assert_eq!(y.len(), m * co, "output length");
    let rows = tile_rows(k, co, m);
    let tiles = m.div_ceil(rows);
    // Few tiles (large weights, small images): one GEMM over all rows, parallel inside. The
    // choice depends on the shape only, so the bits never depend on the thread count.
    if tiles < 4 {
        if s.is_pointwise() {
            // SAFETY: x is [M, K] row-major, wk [C_out, K], y [M, C_out].
            unsafe {
                gemm_rm(
                    m,
                    co,
                    k,
                    y.as_mut_ptr(),
                    co,
                    false,
                    x.as_ptr(),
                    k as isize,
                    1,
                    wk.as_ptr(),
                    1,
                    k as isize,
                    true,
                )
            };
        } else {
            let mut col = vec![0.0f32; m * k];
            col.par_chunks_mut(rows * k)
                .enumerate()
                .for_each(|(t, c)| im2col(s, x, t * rows, c.len() / k, c));
            // SAFETY: col is [M, K] row-major, wk [C_out, K], y [M, C_out].
            unsafe {
                gemm_rm(
                    m,
                    co,
                    k,
                    y.as_mut_ptr(),
                    co,
                    false,
                    col.as_ptr(),
                    k as isize,
                    1,
                    wk.as_ptr(),
                    1,
                    k as isize,
                    true,
                )
            };
        }
        y.par_chunks_mut(rows * co)
            .enumerate()
            .for_each(|(t, out)| epilogue(t * rows, out));
        return;
    }
    y.par_chunks_mut(rows * co)
        .enumerate()
        .for_each(|(t, out)| {
            let r0 = t * rows;
            let n = out.len() / co;
            if s.is_pointwise() {
                // SAFETY: rows r0..r0+n of x are [n, K]; out is [n, C_out].
                unsafe {
                    gemm_rm(
                        n,
                        co,
                        k,
                        out.as_mut_ptr(),
                        co,
                        false,
                        x[r0 * k..].as_ptr(),
                        k as isize,
                        1,
                        wk.as_ptr(),
                        1,
                        k as isize,
                        false,
                    )
                };
            } else {
                with_col(n * k, |col| {
                    im2col(s, x, r0, n, col);
                    // SAFETY: col is [n, K], out [n, C_out].
                    unsafe {
                        gemm_rm(
                            n,
                            co,
                            k,
                            out.as_mut_ptr(),
                            co,
                            false,
                            col.as_ptr(),
                            k as isize,
                            1,
                            wk.as_ptr(),
                            1,
                            k as isize,
                            false,
                        )
                    };
                });
            }
            epilogue(r0, out);
        });
}

/// Input gradient: `dx [B, H, W, C_in]` from the output gradient `dy [M, C_out]` and the
/// weight `w` (Burn layout). Overwrites `dx`.
///
/// Stride 1 runs the forward kernel on `dy` with the flipped, transposed kernel (a gather,
/// no scatter); other strides compute `dcol = dy · wkᵀ` per tile of whole images and add it
/// back with col2im, each task owning its images.
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn input_grad(s: &ConvShape, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (k, co, m) = (s.k(), s.c_out, s.rows());
    assert_eq!(dy.len(), m * co, "output gradient length");
    assert_eq!(
        dx.len(),
        s.batch * s.h * s.w * s.c_in,
        "input gradient length"
    );
    if s.stride == [1, 1] {
        let t = s.transposed();
        let wt = PreparedWeight::new(&t, &flip_transpose(s, w));
        forward_prepared(&t, dy, &wt, dx, &|_, _| {});
        return;
    }
    let wk = pack_weight(s, w);
    let per_image = s.out_h() * s.out_w();
    let image_len = s.h * s.w * s.c_in;
    // Whole images per task, about tile_rows rows each.
    let images = (tile_rows(k, s.c_in, m) / per_image).max(1);
    dx.fill(0.0);
    dx.par_chunks_mut(images * image_len)
        .enumerate()
        .for_each(|(t, dx_part)| {
            let b0 = t * images;
            let n_img = dx_part.len() / image_len;
            let (r0, n) = (b0 * per_image, n_img * per_image);
            with_col(n * k, |dcol| {
                // dcol [n, K] = dy[r0.., C_out] · wkᵀ; wkᵀ[co, k] = wk[co * K + k].
                // SAFETY: dy rows r0..r0+n are [n, C_out]; wk is [C_out, K]; dcol [n, K].
                unsafe {
                    gemm_rm(
                        n,
                        k,
                        co,
                        dcol.as_mut_ptr(),
                        k,
                        false,
                        dy[r0 * co..].as_ptr(),
                        co as isize,
                        1,
                        wk.as_ptr(),
                        k as isize,
                        1,
                        false,
                    )
                };
                col2im_add(s, dcol, r0, n, dx_part, b0);
            });
        });
}

/// Rows per split of the weight-gradient reduction: fixed by the shape, never by the thread
/// count, so the sum order (and the bits) are the same on every machine.
fn split_rows(s: &ConvShape) -> usize {
    let m = s.rows();
    // At most 16 partials; at least 256 rows each.
    m.div_ceil(16).max(256).min(m)
}

/// Weight gradient `[C_out, C_in, KH, KW]` (Burn layout) from the input `x` (NHWC) and the
/// output gradient `dy` `[M, C_out]`.
///
/// `dwk [K, C_out] = Σ_rows im2col(x)ᵀ · dy`. The rows are cut into fixed splits (by shape
/// only); each split accumulates its tiles in order into its own partial, and the partials
/// are added in split order. Large weights (layer 4) use one split with the GEMM parallel
/// over the output instead, which is equally deterministic: the GEMM crate splits its work
/// over output blocks and keeps the reduction loop sequential.
///
/// # Panics
///
/// Panics if a buffer length does not match `s`.
pub fn weight_grad(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, co, m) = (s.k(), s.c_out, s.rows());
    assert_eq!(x.len(), s.batch * s.h * s.w * s.c_in, "input length");
    assert_eq!(dy.len(), m * co, "output gradient length");
    let big = k * co >= 256 * 1024;
    let split = if big { m } else { split_rows(s) };
    let splits = m.div_ceil(split);
    let tile = tile_rows(k, co, m).min(split);
    let partial = |p: usize| -> Vec<f32> {
        let mut dwk = vec![0.0f32; k * co];
        let (start, end) = (p * split, ((p + 1) * split).min(m));
        let mut r0 = start;
        while r0 < end {
            let n = tile.min(end - r0);
            let first = r0 == start;
            if s.is_pointwise() {
                // SAFETY: lhs = x rowsᵀ ([K, n], rs 1, cs K); rhs = dy rows [n, C_out].
                unsafe {
                    gemm_rm(
                        k,
                        co,
                        n,
                        dwk.as_mut_ptr(),
                        co,
                        !first,
                        x[r0 * k..].as_ptr(),
                        1,
                        k as isize,
                        dy[r0 * co..].as_ptr(),
                        co as isize,
                        1,
                        big,
                    )
                };
            } else {
                if big {
                    // The im2col of a large tile is filled in parallel first.
                    let mut col = vec![0.0f32; n * k];
                    let sub = n.div_ceil(4 * rayon::current_num_threads()).max(1);
                    col.par_chunks_mut(sub * k)
                        .enumerate()
                        .for_each(|(t, c)| im2col(s, x, r0 + t * sub, c.len() / k, c));
                    // SAFETY: lhs = colᵀ ([K, n]); rhs = dy rows [n, C_out]; dst [K, C_out].
                    unsafe {
                        gemm_rm(
                            k,
                            co,
                            n,
                            dwk.as_mut_ptr(),
                            co,
                            !first,
                            col.as_ptr(),
                            1,
                            k as isize,
                            dy[r0 * co..].as_ptr(),
                            co as isize,
                            1,
                            true,
                        )
                    };
                } else {
                    with_col(n * k, |col| {
                        im2col(s, x, r0, n, col);
                        // SAFETY: as above.
                        unsafe {
                            gemm_rm(
                                k,
                                co,
                                n,
                                dwk.as_mut_ptr(),
                                co,
                                !first,
                                col.as_ptr(),
                                1,
                                k as isize,
                                dy[r0 * co..].as_ptr(),
                                co as isize,
                                1,
                                false,
                            )
                        };
                    });
                }
            }
            r0 += n;
        }
        dwk
    };
    let parts: Vec<Vec<f32>> = if splits == 1 {
        vec![partial(0)]
    } else {
        (0..splits).into_par_iter().map(partial).collect()
    };
    unpack_weight_grad_sum(s, &parts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Direct six-loop convolution in f64, the reference for the GEMM kernels.
    pub(crate) fn reference(s: &ConvShape, x: &[f32], w: &[f32]) -> Vec<f64> {
        let (oh_n, ow_n) = (s.out_h(), s.out_w());
        let mut y = vec![0.0f64; s.rows() * s.c_out];
        for b in 0..s.batch {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    for co in 0..s.c_out {
                        let mut acc = 0.0f64;
                        for ci in 0..s.c_in {
                            for kh in 0..s.kh {
                                for kw in 0..s.kw {
                                    let ih = (oh * s.stride[0] + kh) as isize - s.pad[0] as isize;
                                    let iw = (ow * s.stride[1] + kw) as isize - s.pad[1] as isize;
                                    if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((b * s.h + ih as usize) * s.w + iw as usize)
                                        * s.c_in
                                        + ci];
                                    let wv = w[((co * s.c_in + ci) * s.kh + kh) * s.kw + kw];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                        y[((b * oh_n + oh) * ow_n + ow) * s.c_out + co] = acc;
                    }
                }
            }
        }
        y
    }

    /// Values in [-1, 1] from a xorshift stream of `seed`.
    pub(crate) fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn pack_roundtrip_and_forward_matches_direct_loops() {
        let s = ConvShape {
            batch: 2,
            c_in: 3,
            h: 7,
            w: 5,
            c_out: 4,
            kh: 3,
            kw: 3,
            stride: [2, 1],
            pad: [1, 1],
        };
        let x = data(s.batch * s.h * s.w * s.c_in, 1);
        let w = data(s.c_out * s.k(), 2);
        let wk = pack_weight(&s, &w);
        // [C_out, K] transposed is the weight-gradient layout [K, C_out].
        let mut kc = vec![0.0; wk.len()];
        for co in 0..s.c_out {
            for k in 0..s.k() {
                kc[k * s.c_out + co] = wk[co * s.k() + k];
            }
        }
        assert_eq!(unpack_weight_grad(&s, &kc), w);
        let mut y = vec![f32::NAN; s.rows() * s.c_out];
        forward(&s, &x, &wk, &mut y);
        for (a, b) in y.iter().zip(reference(&s, &x, &w)) {
            assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
