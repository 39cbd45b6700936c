//! Winograd F(2x2, 3x3) convolution on channels-last (NHWC) `f32` buffers, for the 3x3
//! stride-1 layers (most of a ResNet-18's multiply-adds): 16 multiplies per 2x2 output tile
//! and channel pair instead of 36, in 16 GEMMs of `[tiles, C_in] · [C_in, C_out]`.
//!
//! With d a 4x4 input patch, g a 3x3 kernel and Y the 2x2 output tile (Lavin & Gray 2016,
//! "Fast Algorithms for Convolutional Neural Networks", arXiv:1509.09308):
//!
//! ```text
//! Y = Aᵀ [ Σ_ci (G g Gᵀ) ⊙ (Bᵀ d B) ] A
//!
//! Bᵀ = | 1  0 -1  0 |    G = | 1    0    0   |    Aᵀ = | 1  1  1  0 |
//!      | 0  1  1  0 |        | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
//!      | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
//!      | 0  1  0 -1 |        | 0    0    1   |
//! ```
//!
//! Buffers, with T the tiles of a block and ξ = 4·i + j the 16 transform positions:
//!
//! ```text
//! u  [16, C_out, C_in]   transformed weight (`transform_weight`); each ξ is the GEMM's
//!                        right operand column-major, as `conv::pack_weight` lays it out
//! v  [16, T, C_in]       transformed input tiles, one contiguous GEMM operand per ξ
//! m  [16, T, C_out]      v_ξ · u_ξᵀ
//!                        (v and m: planes padded by a cache line, `plane_stride`)
//! ```
//!
//! Tiles are grouped in whole tile rows (2 output rows of one image), so the output of a
//! block is a contiguous range of output pixels. The block size depends on the shape only and
//! every GEMM's reduction runs in a fixed order: the bits do not depend on the thread count.

use crate::conv::ConvShape;
use rayon::prelude::*;
use std::cell::RefCell;

/// Smallest channel count (input and output) sent to the Winograd kernel. Measured per layer
/// (bench/runs/2026-12-02-speed): at 64 channels the tile transforms, which stream 4x the
/// activations through memory, cost what the fewer multiplies save (im2col and Winograd
/// within noise of each other); from 128 channels on Winograd takes 25-40 % less CPU.
const MIN_CHANNELS: usize = 128;

/// Bytes of `v` + `m` per block the kernel aims for (half the 1 MiB L2 of this machine's
/// cores, leaving room for the packed GEMM operands).
const BLOCK_BYTES: usize = 512 * 1024;

/// Whether the Winograd kernel computes `s`: 3x3, stride 1, and at least
/// [`MIN_CHANNELS`] input and output channels.
pub fn applies(s: &ConvShape) -> bool {
    s.kh == 3
        && s.kw == 3
        && s.stride == [1, 1]
        && s.c_in >= MIN_CHANNELS
        && s.c_out >= MIN_CHANNELS
}

/// `u = G g Gᵀ` for every (output, input) channel pair of `w` `[C_out, C_in, 3, 3]` (Burn's
/// layout), as `[16, C_out, C_in]`. Computed in f64, rounded once.
///
/// # Panics
///
/// Panics if `w` is not `[C_out, C_in, 3, 3]` for `s`.
pub fn transform_weight(s: &ConvShape, w: &[f32]) -> Vec<f32> {
    assert!(
        s.kh == 3 && s.kw == 3,
        "Winograd F(2x2, 3x3) needs a 3x3 kernel"
    );
    let (co_n, ci_n) = (s.c_out, s.c_in);
    assert_eq!(w.len(), co_n * ci_n * 9, "weight length");
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut u = vec![0.0f32; 16 * co_n * ci_n];
    // One ξ plane per task: the planes are independent and each is [C_out, C_in].
    u.par_chunks_exact_mut(co_n * ci_n)
        .enumerate()
        .for_each(|(xi, plane)| {
            let (i, j) = (xi / 4, xi % 4);
            for (pair, out) in plane.iter_mut().enumerate() {
                let g = &w[pair * 9..(pair + 1) * 9];
                // (G g)[i, b], then Σ_b (G g)[i, b] G[j, b].
                let gg: [f64; 3] =
                    std::array::from_fn(|b| (0..3).map(|a| G[i][a] * g[a * 3 + b] as f64).sum());
                let v: f64 = (0..3).map(|b| gg[b] * G[j][b]).sum();
                *out = v as f32;
            }
        });
    u
}

/// Tile geometry of `s`: tiles per row and tile rows per image.
fn tiles(s: &ConvShape) -> (usize, usize) {
    (s.out_w().div_ceil(2), s.out_h().div_ceil(2))
}

/// Tile rows per block: about [`BLOCK_BYTES`] of `v` + `m`, at least one tile row, and
/// enough tiles that repacking the 16 weight slices in each block stays small next to the
/// block's GEMM work.
fn block_tile_rows(s: &ConvShape) -> usize {
    let (tiles_w, tiles_h) = tiles(s);
    let per_tile = 16 * 4 * (s.c_in + s.c_out);
    let by_cache = BLOCK_BYTES / per_tile;
    let by_weight = 2 * s.c_out;
    let tiles = by_cache.max(by_weight).max(1);
    tiles.div_ceil(tiles_w).min(s.batch * tiles_h)
}

/// Floats from one ξ plane of `n` tiles x `c` channels to the next: `n · c` plus a cache
/// line, so that the 16 planes a tile transform reads or writes at once do not all fall in
/// the same L1 cache sets (the unpadded stride is a multiple of 4 KiB on most layers).
fn plane_stride(n: usize, c: usize) -> usize {
    n * c + 16
}

thread_local! {
    /// Per-thread `v` and `m` buffers, grown on demand and reused across calls.
    static BUFS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `v` for the tiles of tile rows `r0..r0 + rows`: 16 planes of [`plane_stride`] floats,
/// each `[tiles, C_in]`.
fn transform_input(s: &ConvShape, x: &[f32], r0: usize, rows: usize, v: &mut [f32]) {
    let n_tiles = rows * tiles(s).0;
    let mut planes: Vec<&mut [f32]> = v.chunks_exact_mut(plane_stride(n_tiles, s.c_in)).collect();
    transform_input_planes(s, x, r0, rows, &mut planes);
}

/// [`transform_input`] into 16 separate plane slices, each `[tiles, C_in]` for the tiles of
/// tile rows `r0..r0 + rows` (slices of larger planes, filled in parallel).
fn transform_input_planes(
    s: &ConvShape,
    x: &[f32],
    r0: usize,
    rows: usize,
    planes: &mut [&mut [f32]],
) {
    let (tiles_w, tiles_h) = tiles(s);
    let c = s.c_in;
    let zeros = vec![0.0f32; c];
    for r in 0..rows {
        let (b, th) = ((r0 + r) / tiles_h, (r0 + r) % tiles_h);
        let image = &x[b * s.h * s.w * c..(b + 1) * s.h * s.w * c];
        let ih0 = (2 * th) as isize - s.pad[0] as isize;
        for tw in 0..tiles_w {
            let iw0 = (2 * tw) as isize - s.pad[1] as isize;
            let src: [&[f32]; 16] = std::array::from_fn(|p| {
                let (ih, iw) = (ih0 + (p / 4) as isize, iw0 + (p % 4) as isize);
                if ih < 0 || iw < 0 || ih >= s.h as isize || iw >= s.w as isize {
                    &zeros[..]
                } else {
                    let at = (ih as usize * s.w + iw as usize) * c;
                    &image[at..at + c]
                }
            });
            let t = r * tiles_w + tw;
            input_tile(&src, planes, t * c, c);
        }
    }
}

/// Channels per step of the tile transforms: one AVX-512 register of `f32`.
const LANES: usize = 16;

/// One [`LANES`]-channel slice of a transform operand, kept in registers.
type Lane = [f32; LANES];

/// `src[..n]` as a lane, zero-filled past `n` (a fixed-size copy when `n` is [`LANES`]).
#[inline(always)]
fn load(src: &[f32], n: usize) -> Lane {
    if n == LANES {
        src[..LANES].try_into().expect("LANES elements")
    } else {
        let mut lane = [0.0f32; LANES];
        lane[..n].copy_from_slice(&src[..n]);
        lane
    }
}

/// Writes `lane[..n]` to `dst[..n]`.
#[inline(always)]
fn store(dst: &mut [f32], lane: &Lane, n: usize) {
    if n == LANES {
        dst[..LANES].copy_from_slice(lane);
    } else {
        dst[..n].copy_from_slice(&lane[..n]);
    }
}

// Plain loops, no closures: `std::array::from_fn`'s closure is not inlined into the
// multiversioned callers, and every call then crossed from AVX-512 to baseline code.
#[inline(always)]
fn add(mut a: Lane, b: Lane) -> Lane {
    for l in 0..LANES {
        a[l] += b[l];
    }
    a
}

#[inline(always)]
fn sub(mut a: Lane, b: Lane) -> Lane {
    for l in 0..LANES {
        a[l] -= b[l];
    }
    a
}

/// `Bᵀ d B` for every channel of one tile: `src[4a + b]` is d's row a, column b (C
/// channels); the 16 results go to `planes[ξ][at..at + c]`.
// AVX2 and AVX-512 clones picked at run time (the crate is built for baseline x86-64); the
// clones run the same additions in the same order, so the bits do not depend on the CPU.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn input_tile(src: &[&[f32]; 16], planes: &mut [&mut [f32]], at: usize, c: usize) {
    let mut k = 0;
    while k < c {
        let n = LANES.min(c - k);
        let mut d = [[0.0f32; LANES]; 16];
        for (lane, src) in d.iter_mut().zip(src) {
            *lane = load(&src[k..], n);
        }
        // Rows: t = Bᵀ d.
        let mut t = [[0.0f32; LANES]; 16];
        for b in 0..4 {
            t[b] = sub(d[b], d[8 + b]);
            t[4 + b] = add(d[4 + b], d[8 + b]);
            t[8 + b] = sub(d[8 + b], d[4 + b]);
            t[12 + b] = sub(d[4 + b], d[12 + b]);
        }
        // Columns: (Bᵀ d) B.
        for i in 0..4 {
            let (t0, t1, t2, t3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
            let v = [sub(t0, t2), add(t1, t2), sub(t2, t1), sub(t1, t3)];
            for (j, lane) in v.iter().enumerate() {
                store(&mut planes[4 * i + j][at + k..], lane, n);
            }
        }
        k += n;
    }
}

/// `Y = Aᵀ m A` for the tiles of tile rows `r0..r0 + rows` (`m`: 16 planes of
/// [`plane_stride`] floats), written to `y`, the output pixels of those rows (`[pixels, C_out]`).
fn transform_output(s: &ConvShape, m: &[f32], r0: usize, rows: usize, y: &mut [f32]) {
    let n_tiles = rows * tiles(s).0;
    let planes: Vec<&[f32]> = m.chunks_exact(plane_stride(n_tiles, s.c_out)).collect();
    transform_output_planes(s, &planes, r0, rows, y);
}

/// [`transform_output`] from 16 separate plane slices, each `[tiles, C_out]` for the tiles
/// of tile rows `r0..r0 + rows`.
fn transform_output_planes(
    s: &ConvShape,
    planes: &[&[f32]],
    r0: usize,
    rows: usize,
    y: &mut [f32],
) {
    let (tiles_w, tiles_h) = tiles(s);
    let (oh_n, ow_n, c) = (s.out_h(), s.out_w(), s.c_out);
    // Output pixel of the block's first row.
    let first = pixel_start(s, r0);
    for r in 0..rows {
        let (b, th) = ((r0 + r) / tiles_h, (r0 + r) % tiles_h);
        for tw in 0..tiles_w {
            let t = r * tiles_w + tw;
            let mut dst: [Option<&mut [f32]>; 4] = [None, None, None, None];
            // Split y into the (up to) 4 output pixels of this tile without aliasing.
            let mut rest: &mut [f32] = y;
            let mut offset = 0usize;
            for (p, slot) in dst.iter_mut().enumerate() {
                let (oh, ow) = (2 * th + p / 2, 2 * tw + p % 2);
                if oh >= oh_n || ow >= ow_n {
                    continue;
                }
                let at = ((b * oh_n + oh) * ow_n + ow - first) * c;
                let (_, tail) = std::mem::take(&mut rest).split_at_mut(at - offset);
                let (px, tail) = tail.split_at_mut(c);
                *slot = Some(px);
                rest = tail;
                offset = at + c;
            }
            output_tile(planes, t * c, c, &mut dst);
        }
    }
}

/// `Aᵀ m A` for every channel of one tile: `planes[ξ][at..at + c]` in, the 2x2 pixels
/// (row-major; `None` past the output's edge) out. Clones as for [`input_tile`].
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn output_tile(planes: &[&[f32]], at: usize, c: usize, dst: &mut [Option<&mut [f32]>; 4]) {
    let mut k = 0;
    while k < c {
        let n = LANES.min(c - k);
        let mut m = [[0.0f32; LANES]; 16];
        for (lane, plane) in m.iter_mut().zip(planes) {
            *lane = load(&plane[at + k..], n);
        }
        // Rows: s = Aᵀ m  [2, 4].
        let mut s0 = [[0.0f32; LANES]; 4];
        let mut s1 = [[0.0f32; LANES]; 4];
        for j in 0..4 {
            s0[j] = add(add(m[j], m[4 + j]), m[8 + j]);
            s1[j] = sub(sub(m[4 + j], m[8 + j]), m[12 + j]);
        }
        // Columns: (Aᵀ m) A.
        let y = [
            add(add(s0[0], s0[1]), s0[2]),
            sub(sub(s0[1], s0[2]), s0[3]),
            add(add(s1[0], s1[1]), s1[2]),
            sub(sub(s1[1], s1[2]), s1[3]),
        ];
        for (slot, lane) in dst.iter_mut().zip(&y) {
            if let Some(px) = slot {
                store(&mut px[k..], lane, n);
            }
        }
        k += n;
    }
}

/// First output pixel of tile row `r` (over all images).
fn pixel_start(s: &ConvShape, r: usize) -> usize {
    let (_, tiles_h) = tiles(s);
    let (b, th) = (r / tiles_h, r % tiles_h);
    (b * s.out_h() + 2 * th) * s.out_w()
}

/// `m_ξ [tiles, C_out] = v_ξ [tiles, C_in] · u_ξᵀ` for one position ξ, on this thread.
fn multiply_plane(s: &ConvShape, n_tiles: usize, xi: usize, v: &[f32], u: &[f32], m: &mut [f32]) {
    let (ci, co) = (s.c_in, s.c_out);
    assert!(
        v.len() >= n_tiles * ci && m.len() >= n_tiles * co,
        "plane length"
    );
    // SAFETY: v_ξ is [tiles, C_in] row-major, u_ξ [C_out, C_in] (the right operand
    // column-major), m_ξ [tiles, C_out]; the three do not overlap.
    unsafe {
        crate::conv::gemm_rm(
            n_tiles,
            co,
            ci,
            m.as_mut_ptr(),
            co,
            false,
            v.as_ptr(),
            ci as isize,
            1,
            u[xi * co * ci..(xi + 1) * co * ci].as_ptr(),
            1,
            ci as isize,
            false,
        )
    };
}

/// [`multiply_plane`] for the 16 positions of a block, one after the other.
fn multiply(s: &ConvShape, n_tiles: usize, v: &[f32], u: &[f32], m: &mut [f32]) {
    let (vs, ms) = (
        plane_stride(n_tiles, s.c_in),
        plane_stride(n_tiles, s.c_out),
    );
    for (xi, (vp, mp)) in v.chunks_exact(vs).zip(m.chunks_exact_mut(ms)).enumerate() {
        multiply_plane(s, n_tiles, xi, vp, u, mp);
    }
}

/// `y` cut into the contiguous output ranges of groups of `per` tile rows:
/// `(first tile row, tile rows, output)` per group.
fn split_rows<'a>(
    s: &ConvShape,
    y: &'a mut [f32],
    per: usize,
) -> Vec<(usize, usize, &'a mut [f32])> {
    let tile_rows = s.batch * tiles(s).1;
    let mut parts = Vec::with_capacity(tile_rows.div_ceil(per));
    let mut rest: &mut [f32] = y;
    for r0 in (0..tile_rows).step_by(per) {
        let rows = per.min(tile_rows - r0);
        let end = if r0 + rows == tile_rows {
            s.rows()
        } else {
            pixel_start(s, r0 + rows)
        };
        let (part, tail) =
            std::mem::take(&mut rest).split_at_mut((end - pixel_start(s, r0)) * s.c_out);
        parts.push((r0, rows, part));
        rest = tail;
    }
    parts
}

/// Forward convolution by Winograd F(2x2, 3x3): `y [M, C_out]` from `x` (NHWC) and `u`
/// ([`transform_weight`]); `epilogue(first_row, rows)` is then called on each block of
/// output rows while it is in cache, as in `conv::forward_epilogue`.
///
/// # Panics
///
/// Panics if `s` is not a 3x3 stride-1 convolution or a buffer length does not match it.
pub fn forward_epilogue(
    s: &ConvShape,
    x: &[f32],
    u: &[f32],
    y: &mut [f32],
    epilogue: &(dyn Fn(usize, &mut [f32]) + Sync),
) {
    assert!(
        s.kh == 3 && s.kw == 3 && s.stride == [1, 1],
        "Winograd F(2x2, 3x3) needs a 3x3 stride-1 convolution"
    );
    assert_eq!(x.len(), s.batch * s.h * s.w * s.c_in, "input length");
    assert_eq!(u.len(), 16 * s.c_in * s.c_out, "transformed weight length");
    assert_eq!(y.len(), s.rows() * s.c_out, "output length");
    let (tiles_w, tiles_h) = tiles(s);
    let tile_rows = s.batch * tiles_h;
    let per_block = block_tile_rows(s);
    let blocks = tile_rows.div_ceil(per_block);
    let co = s.c_out;
    if blocks < 4 {
        // Few blocks (large weights, small images): all tiles at once, chosen by shape only,
        // like the block size. The 16 GEMMs run in parallel with each other (each on one
        // thread, so that none waits on a GEMM's internal barriers), the transforms in
        // parallel over groups of tile rows, each writing its tile range of every plane.
        let n_tiles = tile_rows * tiles_w;
        let (vs, ms) = (plane_stride(n_tiles, s.c_in), plane_stride(n_tiles, co));
        let mut v = vec![0.0f32; 16 * vs];
        let mut m = vec![0.0f32; 16 * ms];
        // Groups of tile rows for the transforms: 16, so that both sides of the GEMMs
        // keep every thread busy however few blocks there are.
        let group = tile_rows.div_ceil(16).max(1);
        let mut groups: Vec<Vec<&mut [f32]>> = (0..tile_rows.div_ceil(group))
            .map(|_| Vec::with_capacity(16))
            .collect();
        for plane in v.chunks_exact_mut(vs) {
            for (g, piece) in plane[..n_tiles * s.c_in]
                .chunks_mut(group * tiles_w * s.c_in)
                .enumerate()
            {
                groups[g].push(piece);
            }
        }
        groups
            .into_par_iter()
            .enumerate()
            .for_each(|(g, mut planes)| {
                let r0 = g * group;
                transform_input_planes(s, x, r0, group.min(tile_rows - r0), &mut planes);
            });
        m.par_chunks_exact_mut(ms)
            .zip(v.par_chunks_exact(vs))
            .enumerate()
            .for_each(|(xi, (mp, vp))| multiply_plane(s, n_tiles, xi, vp, u, mp));
        drop(v);
        split_rows(s, y, group)
            .into_par_iter()
            .for_each(|(r0, rows, part)| {
                let (t0, n) = (r0 * tiles_w, rows * tiles_w);
                let planes: Vec<&[f32]> = m
                    .chunks_exact(ms)
                    .map(|plane| &plane[t0 * co..(t0 + n) * co])
                    .collect();
                transform_output_planes(s, &planes, r0, rows, part);
                epilogue(pixel_start(s, r0), part);
            });
        return;
    }
    split_rows(s, y, per_block)
        .into_par_iter()
        .for_each(|(r0, rows, part)| {
            let n = rows * tiles_w;
            BUFS.with(|cell| {
                let (v, m) = &mut *cell.borrow_mut();
                let (vl, ml) = (16 * plane_stride(n, s.c_in), 16 * plane_stride(n, co));
                if v.len() < vl {
                    v.resize(vl, 0.0);
                }
                if m.len() < ml {
                    m.resize(ml, 0.0);
                }
                transform_input(s, x, r0, rows, &mut v[..vl]);
                multiply(s, n, &v[..vl], u, &mut m[..ml]);
                transform_output(s, &m[..ml], r0, rows, part);
            });
            epilogue(pixel_start(s, r0), part);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    // The direct f64 convolution and the test inputs of the im2col kernel's tests.
    use crate::conv::tests::{data, reference};

    /// Odd and even sizes, padding 0, 1 and 2, many blocks and the few-blocks path.
    #[test]
    fn forward_matches_direct_loops() {
        let shapes = [
            (2, 16, 7, 5, 16, 1),
            (3, 16, 6, 6, 24, 1),
            (2, 16, 5, 8, 16, 0),
            (2, 17, 4, 3, 16, 2),
            (40, 16, 9, 9, 16, 1),
            (1, 32, 1, 1, 16, 1),
        ];
        for (i, &(batch, c_in, h, w, c_out, p)) in shapes.iter().enumerate() {
            let s = ConvShape {
                batch,
                c_in,
                h,
                w,
                c_out,
                kh: 3,
                kw: 3,
                stride: [1, 1],
                pad: [p, p],
            };
            let x = data(s.batch * s.h * s.w * s.c_in, 1 + i as u32);
            let w = data(s.c_out * s.k(), 100 + i as u32);
            let u = transform_weight(&s, &w);
            let mut y = vec![f32::NAN; s.rows() * s.c_out];
            let seen = std::sync::atomic::AtomicUsize::new(0);
            forward_epilogue(&s, &x, &u, &mut y, &|_, part| {
                seen.fetch_add(part.len(), std::sync::atomic::Ordering::Relaxed);
            });
            assert_eq!(seen.into_inner(), y.len(), "epilogue covers every output");
            let want = reference(&s, &x, &w);
            let scale = (s.k() as f64).sqrt();
            for (j, (a, b)) in y.iter().zip(&want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * scale,
                    "shape {i} element {j}: {a} vs {b}"
                );
            }
        }
    }
}
