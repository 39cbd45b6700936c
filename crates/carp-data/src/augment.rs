//! Image augmentations with torchvision semantics.
//!
//! The crop reads the 8-bit source image once and writes a planar (CHW) `f32` image
//! ([`FloatImage`], values in [0, 1]); every later step works in place on that buffer,
//! so a view costs one allocation. Each random step takes the generator explicitly.
//!
//! Probabilistic steps (`random_*`) draw one uniform `u` in [0, 1) when `p > 0` and apply
//! when `u < p`; with `p <= 0` they draw nothing. Parameters are drawn only when the step
//! applies, in torchvision's order.

use image::RgbImage;
use rand::seq::SliceRandom;
use rand::Rng;

/// ImageNet channel means (R, G, B) used by [`normalize`].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (R, G, B) used by [`normalize`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// ITU-R 601-2 luma weights (R, G, B), as in PIL's `convert("L")`.
pub const LUMA: [f32; 3] = [0.299, 0.587, 0.114];
/// Default aspect-ratio range of [`RandomResizedCrop`]: (3/4, 4/3).
pub const CROP_RATIO: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);
/// Range of the Gaussian blur's sigma, in pixels: (0.1, 2.0).
pub const BLUR_SIGMA: (f32, f32) = (0.1, 2.0);
/// Solarize threshold: values `>= 128 / 255` are inverted.
pub const SOLARIZE_THRESHOLD: f32 = 128.0 / 255.0;

/// An RGB image stored as three planes (CHW) of `f32` values in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct FloatImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Planar data, `[3, height, width]`, R plane first.
    pub data: Vec<f32>,
}

impl FloatImage {
    /// A black image of the given size.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0.0; 3 * width as usize * height as usize],
        }
    }

    /// Converts an 8-bit image (value / 255).
    pub fn from_rgb(img: &RgbImage) -> Self {
        let (width, height) = img.dimensions();
        let mut out = Self::new(width, height);
        let n = out.plane_len();
        for (k, px) in img.as_raw().chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out.data[c * n + k] = f32::from(v) / 255.0;
            }
        }
        out
    }

    /// Converts back to 8 bits, rounding `value * 255` to the nearest integer.
    pub fn to_rgb(&self) -> RgbImage {
        let n = self.plane_len();
        let mut raw = Vec::with_capacity(3 * n);
        for k in 0..n {
            for c in 0..3 {
                raw.push((self.data[c * n + k].clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
        RgbImage::from_raw(self.width, self.height, raw).expect("buffer size matches")
    }

    /// Pixels per plane (`width * height`).
    pub fn plane_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The (R, G, B) values at column `x`, row `y`.
    pub fn pixel(&self, x: u32, y: u32) -> [f32; 3] {
        let n = self.plane_len();
        let k = y as usize * self.width as usize + x as usize;
        [self.data[k], self.data[n + k], self.data[2 * n + k]]
    }

    /// The three planes, mutably.
    fn planes_mut(&mut self) -> (&mut [f32], &mut [f32], &mut [f32]) {
        let n = self.plane_len();
        let (r, gb) = self.data.split_at_mut(n);
        let (g, b) = gb.split_at_mut(n);
        (r, g, b)
    }
}

/// A uniform draw in [lo, hi) (lo when the range is empty).
fn uniform<R: Rng + ?Sized>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

/// Draws once when `p > 0` and tells whether the step applies.
fn coin<R: Rng + ?Sized>(rng: &mut R, p: f32) -> bool {
    p > 0.0 && rng.random::<f32>() < p
}

/// A crop rectangle in source pixels: rows `top..top+height`, columns `left..left+width`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First row (torchvision's `i`).
    pub top: u32,
    /// First column (torchvision's `j`).
    pub left: u32,
    /// Rows (torchvision's `h`).
    pub height: u32,
    /// Columns (torchvision's `w`).
    pub width: u32,
}

/// torchvision's `RandomResizedCrop`: a random area/aspect crop resized to `size x size`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    /// Output side in pixels.
    pub size: u32,
    /// Range of the crop's area as a fraction of the image area.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio (width / height), sampled log-uniformly.
    pub ratio: (f32, f32),
}

impl RandomResizedCrop {
    /// A crop with the default ratio range [`CROP_RATIO`].
    pub fn new(size: u32, scale: (f32, f32)) -> Self {
        Self {
            size,
            scale,
            ratio: CROP_RATIO,
        }
    }

    /// Samples a crop box exactly as torchvision's `RandomResizedCrop.get_params`.
    ///
    /// ```text
    /// 10 attempts: area = W·H·U(scale), aspect = exp(U(ln r0, ln r1)),
    ///   w = round(√(area·aspect)), h = round(√(area/aspect))   (round half to even)
    ///   accept if 0 < w ≤ W and 0 < h ≤ H: top = U{0..H-h}, left = U{0..W-w}
    /// fallback (centre crop): W/H < r0 → w = W, h = round(W/r0);
    ///   W/H > r1 → h = H, w = round(H·r1); otherwise the whole image.
    /// ```
    pub fn get_params<R: Rng + ?Sized>(&self, width: u32, height: u32, rng: &mut R) -> CropBox {
        let (wf, hf) = (f64::from(width), f64::from(height));
        let area = wf * hf;
        let (r0, r1) = (f64::from(self.ratio.0), f64::from(self.ratio.1));
        let (log_r0, log_r1) = (r0.ln(), r1.ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale.0.into(), self.scale.1.into());
            let aspect = uniform(rng, log_r0, log_r1).exp();
            let w = (target_area * aspect).sqrt().round_ties_even();
            let h = (target_area / aspect).sqrt().round_ties_even();
            if w > 0.0 && w <= wf && h > 0.0 && h <= hf {
                let (w, h) = (w as u32, h as u32);
                let top = rng.random_range(0..=height - h);
                let left = rng.random_range(0..=width - w);
                return CropBox {
                    top,
                    left,
                    height: h,
                    width: w,
                };
            }
        }
        let in_ratio = wf / hf;
        let (w, h) = if in_ratio < r0.min(r1) {
            (
                width,
                ((wf / r0.min(r1)).round_ties_even() as u32).min(height),
            )
        } else if in_ratio > r0.max(r1) {
            (
                ((hf * r0.max(r1)).round_ties_even() as u32).min(width),
                height,
            )
        } else {
            (width, height)
        };
        CropBox {
            top: (height - h) / 2,
            left: (width - w) / 2,
            height: h,
            width: w,
        }
    }

    /// Samples a box with [`Self::get_params`] and resizes it to `size x size` (bicubic).
    pub fn apply<R: Rng + ?Sized>(&self, img: &RgbImage, rng: &mut R) -> FloatImage {
        let b = self.get_params(img.width(), img.height(), rng);
        resize_bicubic(img, b, self.size, self.size)
    }
}

/// Keys' cubic kernel with a = -0.5 (PIL's and torchvision's "bicubic").
fn bicubic_kernel(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Resampling taps for one axis, as PIL's `precompute_coeffs`.
struct Taps {
    /// First source index and tap count, per output index.
    spans: Vec<(usize, usize)>,
    /// Normalised weights, `stride` per output index.
    weights: Vec<f32>,
    /// Maximum taps per output index.
    stride: usize,
}

impl Taps {
    /// Taps mapping `in_size` source samples onto `out_size` outputs (antialiased when shrinking).
    fn bicubic(in_size: u32, out_size: u32) -> Self {
        let scale = f64::from(in_size) / f64::from(out_size);
        let filter_scale = scale.max(1.0);
        let support = 2.0 * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let mut spans = Vec::with_capacity(out_size as usize);
        let mut weights = vec![0.0f32; stride * out_size as usize];
        let mut w64 = vec![0.0f64; stride];
        for o in 0..out_size as usize {
            let center = (o as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(i64::from(in_size)) as usize;
            let n = hi.saturating_sub(lo).min(stride);
            let mut total = 0.0;
            for (t, w) in w64.iter_mut().enumerate().take(n) {
                *w = bicubic_kernel(((lo + t) as f64 - center + 0.5) / filter_scale);
                total += *w;
            }
            for t in 0..n {
                let w = if total != 0.0 { w64[t] / total } else { 0.0 };
                weights[o * stride + t] = w as f32;
            }
            spans.push((lo, n));
        }
        Self {
            spans,
            weights,
            stride,
        }
    }

    /// Weights of output `o`.
    fn of(&self, o: usize) -> (usize, &[f32]) {
        let (lo, n) = self.spans[o];
        (lo, &self.weights[o * self.stride..o * self.stride + n])
    }
}

/// Resizes the `region` of `img` to `out_width x out_height` with PIL's bicubic filter.
///
/// Separable, as Pillow's `ImagingResample`: two passes, each clamped to [0, 255] as
/// PIL stores the intermediate in 8 bits. The horizontal pass runs first, except when the
/// width grows and the height shrinks, where Pillow runs the vertical pass first (the
/// order matters through the clamp: up to 20/255 on noise). Antialiased when shrinking
/// (the kernel widens by the scale). Unlike PIL the intermediate is not rounded to
/// integers (difference below 1/255); the result is in [0, 1].
///
/// # Panics
/// If `region` does not lie inside `img` or a size is 0.
// The hot kernels get AVX2 and AVX-512 clones picked at run time (the crate is built for
// baseline x86-64): +30 % on the ImageNet recipe (bench/runs/2026-11-27-augment).
// Rust neither fuses nor reorders float operations, so the clones compute the same values.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
pub fn resize_bicubic(
    img: &RgbImage,
    region: CropBox,
    out_width: u32,
    out_height: u32,
) -> FloatImage {
    let (src_w, src_h) = img.dimensions();
    assert!(
        region.width > 0
            && region.height > 0
            && u64::from(region.left) + u64::from(region.width) <= u64::from(src_w)
            && u64::from(region.top) + u64::from(region.height) <= u64::from(src_h),
        "crop {region:?} outside a {src_w}x{src_h} image"
    );
    assert!(out_width > 0 && out_height > 0, "resize to an empty image");
    let raw = img.as_raw();
    let (rw, rh) = (region.width as usize, region.height as usize);
    let (ow, oh) = (out_width as usize, out_height as usize);

    let mut out = FloatImage::new(out_width, out_height);
    let vertical_first = ow > rw && oh < rh;
    let values = if vertical_first {
        let mut planar = vec![0.0f32; 3 * rw * rh];
        let n = rw * rh;
        for y in 0..rh {
            let row = ((region.top as usize + y) * src_w as usize + region.left as usize) * 3;
            for x in 0..rw {
                for c in 0..3 {
                    planar[c * n + y * rw + x] = f32::from(raw[row + 3 * x + c]);
                }
            }
        }
        let tmp = vertical_pass(&planar, rw, region.height, out_height);
        horizontal_pass(&tmp, region.width, oh, out_width)
    } else {
        // Horizontal pass straight from the interleaved 8-bit rows: rh x ow, planar.
        let mut tmp = vec![0.0f32; 3 * rh * ow];
        let hp = rh * ow;
        if rw == ow {
            for y in 0..rh {
                let row = ((region.top as usize + y) * src_w as usize + region.left as usize) * 3;
                for x in 0..ow {
                    for c in 0..3 {
                        tmp[c * hp + y * ow + x] = f32::from(raw[row + 3 * x + c]);
                    }
                }
            }
        } else {
            let taps = Taps::bicubic(region.width, out_width);
            for y in 0..rh {
                let row = ((region.top as usize + y) * src_w as usize + region.left as usize) * 3;
                for x in 0..ow {
                    let (lo, w) = taps.of(x);
                    let px = &raw[row + 3 * lo..row + 3 * (lo + w.len())];
                    let (mut r, mut g, mut b) = (0.0f32, 0.0f32, 0.0f32);
                    for (p, &wt) in px.chunks_exact(3).zip(w) {
                        r += wt * f32::from(p[0]);
                        g += wt * f32::from(p[1]);
                        b += wt * f32::from(p[2]);
                    }
                    let k = y * ow + x;
                    tmp[k] = r.clamp(0.0, 255.0);
                    tmp[hp + k] = g.clamp(0.0, 255.0);
                    tmp[2 * hp + k] = b.clamp(0.0, 255.0);
                }
            }
        }
        vertical_pass(&tmp, ow, region.height, out_height)
    };
    for (o, v) in out.data.iter_mut().zip(&values) {
        *o = v / 255.0;
    }
    out
}

/// Bicubic vertical pass on planar `[3][in_h][width]` values, clamped to [0, 255].
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn vertical_pass(src: &[f32], width: usize, in_h: u32, out_h: u32) -> Vec<f32> {
    if in_h == out_h {
        return src.to_vec();
    }
    let (ih, oh) = (in_h as usize, out_h as usize);
    let taps = Taps::bicubic(in_h, out_h);
    let mut out = vec![0.0f32; 3 * oh * width];
    for (src, dst) in src
        .chunks_exact(ih * width)
        .zip(out.chunks_exact_mut(oh * width))
    {
        for (y, dst) in dst.chunks_exact_mut(width).enumerate() {
            let (lo, w) = taps.of(y);
            for (t, &wt) in w.iter().enumerate() {
                let row = &src[(lo + t) * width..(lo + t + 1) * width];
                for (a, &v) in dst.iter_mut().zip(row) {
                    *a += wt * v;
                }
            }
            for a in dst.iter_mut() {
                *a = a.clamp(0.0, 255.0);
            }
        }
    }
    out
}

/// Bicubic horizontal pass on planar `[3][height][in_w]` values, clamped to [0, 255].
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
fn horizontal_pass(src: &[f32], in_w: u32, height: usize, out_w: u32) -> Vec<f32> {
    if in_w == out_w {
        return src.to_vec();
    }
    let (iw, ow) = (in_w as usize, out_w as usize);
    let taps = Taps::bicubic(in_w, out_w);
    let mut out = vec![0.0f32; 3 * height * ow];
    for (src, dst) in src.chunks_exact(iw).zip(out.chunks_exact_mut(ow)) {
        for (x, d) in dst.iter_mut().enumerate() {
            let (lo, w) = taps.of(x);
            let acc: f32 = src[lo..lo + w.len()]
                .iter()
                .zip(w)
                .map(|(&v, &wt)| wt * v)
                .sum();
            *d = acc.clamp(0.0, 255.0);
        }
    }
    out
}

/// Mirrors the image left to right.
pub fn hflip(img: &mut FloatImage) {
    let w = img.width as usize;
    if w == 0 {
        return;
    }
    for row in img.data.chunks_exact_mut(w) {
        row.reverse();
    }
}

/// torchvision's `RandomHorizontalFlip(p)`.
pub fn random_horizontal_flip<R: Rng + ?Sized>(img: &mut FloatImage, p: f32, rng: &mut R) {
    if coin(rng, p) {
        hflip(img);
    }
}

/// Scales every value by `factor` (blend with black), clamped to [0, 1].
pub fn adjust_brightness(img: &mut FloatImage, factor: f32) {
    for v in &mut img.data {
        *v = (*v * factor).clamp(0.0, 1.0);
    }
}

/// Mean luma ([`LUMA`]) of the image.
pub fn mean_luma(img: &FloatImage) -> f32 {
    let n = img.plane_len();
    if n == 0 {
        return 0.0;
    }
    let (r, rest) = img.data.split_at(n);
    let (g, b) = rest.split_at(n);
    let sum: f64 = r
        .iter()
        .zip(g)
        .zip(b)
        .map(|((&r, &g), &b)| f64::from(LUMA[0] * r + LUMA[1] * g + LUMA[2] * b))
        .sum();
    (sum / n as f64) as f32
}

/// Blends with the mean luma: `x' = f·x + (1 - f)·mean(luma)`, clamped to [0, 1].
pub fn adjust_contrast(img: &mut FloatImage, factor: f32) {
    let offset = (1.0 - factor) * mean_luma(img);
    for v in &mut img.data {
        *v = (factor * *v + offset).clamp(0.0, 1.0);
    }
}

/// Blends each pixel with its luma: `x' = f·x + (1 - f)·luma`, clamped to [0, 1].
pub fn adjust_saturation(img: &mut FloatImage, factor: f32) {
    let (r, g, b) = img.planes_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let gray = (1.0 - factor) * (LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b);
        *r = (factor * *r + gray).clamp(0.0, 1.0);
        *g = (factor * *g + gray).clamp(0.0, 1.0);
        *b = (factor * *b + gray).clamp(0.0, 1.0);
    }
}

/// Shifts the hue by `shift` turns (in [-0.5, 0.5]) in HSV space, as torchvision's `adjust_hue`.
///
/// One fused, branch-free pass per pixel (so it vectorises): torchvision's `_rgb2hsv`, the
/// shift modulo 1, then HSV to RGB as `c_n = v - v·s·clamp(min(k, 4 - k), 0, 1)` with
/// `k = (n + 6h) mod 6` for n = 5, 3, 1 (R, G, B), which equals `_hsv2rgb`'s sextant
/// table up to float rounding. Gray pixels (no chroma) are left as they are.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
pub fn adjust_hue(img: &mut FloatImage, shift: f32) {
    if !(-1.0..=1.0).contains(&shift) {
        // Outside the documented range: reduce to [0, 1) once (same result modulo 1).
        return adjust_hue(img, shift - shift.floor());
    }
    let (r, g, b) = img.planes_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let (rv, gv, bv) = (*r, *g, *b);
        let maxc = rv.max(gv).max(bv);
        let minc = rv.min(gv).min(bv);
        let cr = maxc - minc;
        let gray = cr <= 0.0;
        let inv = 1.0 / if gray { 1.0 } else { cr };
        let hr = (gv - bv) * inv;
        let hg = 2.0 + (bv - rv) * inv;
        let hb = 4.0 + (rv - gv) * inv;
        let h6 = if maxc == rv {
            hr
        } else if maxc == gv {
            hg
        } else {
            hb
        };
        // fmod(h/6 + 1, 1), then + shift modulo 1; every step stays within one wrap.
        let h = h6 / 6.0 + 1.0;
        let h = if h >= 1.0 { h - 1.0 } else { h } + shift;
        let h = if h < 0.0 {
            h + 1.0
        } else if h >= 1.0 {
            h - 1.0
        } else {
            h
        };
        let sat = cr / if gray { 1.0 } else { maxc };
        let vs = maxc * sat;
        let h6 = h * 6.0;
        let channel = |n: f32| {
            let k = n + h6;
            let k = if k >= 6.0 { k - 6.0 } else { k };
            (maxc - vs * k.min(4.0 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)
        };
        let (nr, ng, nb) = (channel(5.0), channel(3.0), channel(1.0));
        *r = if gray { rv } else { nr };
        *g = if gray { gv } else { ng };
        *b = if gray { bv } else { nb };
    }
}

/// RGB to (hue in [0, 1), saturation, value), torchvision's `_rgb2hsv`: the reference
/// that the tests hold [`adjust_hue`]'s fused kernel and [`hsv_to_rgb`] against.
#[cfg(test)]
fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let maxc = r.max(g).max(b);
    let minc = r.min(g).min(b);
    let cr = maxc - minc;
    if cr == 0.0 {
        return (0.0, 0.0, maxc);
    }
    let inv = 1.0 / cr;
    // (maxc - b)/cr - (maxc - g)/cr = (g - b)/cr, and likewise for the other sextants.
    let h = if maxc == r {
        (g - b) * inv
    } else if maxc == g {
        2.0 + (b - r) * inv
    } else {
        4.0 + (r - g) * inv
    };
    // torchvision's fmod(h / 6 + 1, 1); the argument lies in [0, 2).
    let h = h / 6.0 + 1.0;
    let h = if h >= 1.0 { h - 1.0 } else { h };
    (h, cr / maxc, maxc)
}

/// HSV to RGB, torchvision's `_hsv2rgb`.
pub(crate) fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    // h >= 0, so truncation is floor (and avoids a libm call).
    let h6 = h * 6.0;
    let i = h6 as i32;
    let f = h6 - i as f32;
    let p = (v * (1.0 - s)).clamp(0.0, 1.0);
    let q = (v * (1.0 - s * f)).clamp(0.0, 1.0);
    let t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0);
    match i.rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// torchvision's `ColorJitter`: brightness, contrast, saturation and hue in random order.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColorJitter {
    /// Brightness factor drawn in [max(0, 1 - b), 1 + b]; 0 disables.
    pub brightness: f32,
    /// Contrast factor drawn in [max(0, 1 - c), 1 + c]; 0 disables.
    pub contrast: f32,
    /// Saturation factor drawn in [max(0, 1 - s), 1 + s]; 0 disables.
    pub saturation: f32,
    /// Hue shift drawn in [-h, h] turns (h <= 0.5); 0 disables.
    pub hue: f32,
}

impl ColorJitter {
    /// Draws the order (a permutation of the four parts) and then the factors of the
    /// enabled parts, as torchvision's `get_params`, and applies them.
    pub fn apply<R: Rng + ?Sized>(&self, img: &mut FloatImage, rng: &mut R) {
        let mut order = [0usize, 1, 2, 3];
        order.shuffle(rng);
        let factor = |rng: &mut R, x: f32| {
            (x > 0.0)
                .then(|| uniform(rng, f64::from((1.0 - x).max(0.0)), f64::from(1.0 + x)) as f32)
        };
        let brightness = factor(rng, self.brightness);
        let contrast = factor(rng, self.contrast);
        let saturation = factor(rng, self.saturation);
        let hue = (self.hue > 0.0)
            .then(|| uniform(rng, f64::from(-self.hue), f64::from(self.hue)) as f32);
        for part in order {
            match (part, brightness, contrast, saturation, hue) {
                (0, Some(f), _, _, _) => adjust_brightness(img, f),
                (1, _, Some(f), _, _) => adjust_contrast(img, f),
                (2, _, _, Some(f), _) => adjust_saturation(img, f),
                (3, _, _, _, Some(h)) => adjust_hue(img, h),
                _ => {}
            }
        }
    }
}

/// `RandomApply([ColorJitter], p)`.
pub fn random_color_jitter<R: Rng + ?Sized>(
    img: &mut FloatImage,
    jitter: &ColorJitter,
    p: f32,
    rng: &mut R,
) {
    if coin(rng, p) {
        jitter.apply(img, rng);
    }
}

/// Replaces each pixel by its luma ([`LUMA`]) on all three channels.
pub fn to_grayscale(img: &mut FloatImage) {
    let (r, g, b) = img.planes_mut();
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let y = LUMA[0] * *r + LUMA[1] * *g + LUMA[2] * *b;
        *r = y;
        *g = y;
        *b = y;
    }
}

/// torchvision's `RandomGrayscale(p)`.
pub fn random_grayscale<R: Rng + ?Sized>(img: &mut FloatImage, p: f32, rng: &mut R) {
    if coin(rng, p) {
        to_grayscale(img);
    }
}

/// Normalised Gaussian weights for offsets `-r..=r`, `r = max(1, ceil(3σ))`.
pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = ((3.0 * sigma).ceil() as usize).max(1);
    let denom = 2.0 * f64::from(sigma) * f64::from(sigma);
    let w: Vec<f64> = (0..=2 * radius)
        .map(|k| {
            let x = k as f64 - radius as f64;
            (-x * x / denom).exp()
        })
        .collect();
    let total: f64 = w.iter().sum();
    w.iter().map(|&v| (v / total) as f32).collect()
}

/// Mirror index into `0..n` without repeating the edge (torch's "reflect" padding).
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if (0..n).contains(&i) {
        return i as usize;
    }
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Separable Gaussian blur with standard deviation `sigma` pixels, reflected borders
/// (torchvision's `gaussian_blur` with kernel size `2·max(1, ⌈3σ⌉) + 1`). The training
/// views use Pillow's box approximation, [`pil_gaussian_blur`], instead.
pub fn gaussian_blur(img: &mut FloatImage, sigma: f32) {
    let kernel = gaussian_kernel(sigma);
    let r = kernel.len() / 2;
    let (w, h) = (img.width as usize, img.height as usize);
    if w == 0 || h == 0 {
        return;
    }
    // Row-at-a-time multiply-adds (contiguous, vectorisable) in both passes.
    let mut padded = vec![0.0f32; w + 2 * r];
    let mut tmp = vec![0.0f32; w * h];
    for plane in img.data.chunks_exact_mut(w * h) {
        for (row, out) in plane.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            for (i, p) in padded.iter_mut().enumerate() {
                *p = row[reflect(i as isize - r as isize, w)];
            }
            out.fill(0.0);
            for (t, &k) in kernel.iter().enumerate() {
                for (o, &p) in out.iter_mut().zip(&padded[t..t + w]) {
                    *o += k * p;
                }
            }
        }
        for (y, out) in plane.chunks_exact_mut(w).enumerate() {
            out.fill(0.0);
            for (t, &k) in kernel.iter().enumerate() {
                let sy = reflect(y as isize + t as isize - r as isize, h);
                for (o, &s) in out.iter_mut().zip(&tmp[sy * w..(sy + 1) * w]) {
                    *o += k * s;
                }
            }
        }
    }
}

/// Radius of the extended box filter that Pillow's `GaussianBlur` uses so that `passes`
/// passes have variance `sigma²` (Gwosdek et al., SSVM 2011, eqs. 7, 11, 14).
///
/// ```text
/// s² = σ²/passes, L = √(12 s² + 1), l = ⌊(L - 1)/2⌋,
/// a = (2l + 1)(l(l + 1) - 3 s²) / (6 (s² - (l + 1)²)),   radius = l + a
/// ```
pub fn pil_box_radius(sigma: f32, passes: u32) -> f32 {
    let s2 = f64::from(sigma) * f64::from(sigma) / f64::from(passes);
    let big_l = (12.0 * s2 + 1.0).sqrt();
    let l = ((big_l - 1.0) / 2.0).floor();
    let a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * s2) / (6.0 * (s2 - (l + 1.0) * (l + 1.0)));
    (l + a) as f32
}

/// Pillow's `ImageFilter.GaussianBlur(radius=sigma)`, as DINO applies it: three passes of
/// an extended box filter ([`pil_box_radius`]) along rows, then three along columns,
/// edges replicated (Pillow's `ImagingLineBoxBlur`: weight `1/(2·radius + 1)` on the
/// `2⌊radius⌋ + 1` central taps, the remainder split between the next two). Its variance
/// is `sigma²`; its shape differs from the sampled Gaussian of [`gaussian_blur`] (up to
/// ~30/255 on single-pixel noise). Unlike Pillow the passes are not rounded to 8 bits.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx2+fma",
    "x86_64+avx2+fma"
))]
pub fn pil_gaussian_blur(img: &mut FloatImage, sigma: f32) {
    const PASSES: usize = 3;
    let radius = pil_box_radius(sigma, PASSES as u32);
    let (w, h) = (img.width as usize, img.height as usize);
    if w == 0 || h == 0 || radius <= 0.0 {
        return;
    }
    let ri = radius.floor() as usize;
    let ww = 1.0 / (2.0 * radius + 1.0);
    let fw = (1.0 - (2 * ri + 1) as f32 * ww) / 2.0;
    // Taps at offsets -r..=r, r = ri + 1: fw, ww x (2ri + 1), fw.
    let r = ri + 1;
    let weights: Vec<f32> = (0..=2 * r)
        .map(|t| if t == 0 || t == 2 * r { fw } else { ww })
        .collect();
    // Row-at-a-time multiply-adds over contiguous slices, so both passes vectorise.
    let mut padded = vec![0.0f32; w + 2 * r];
    let mut src = vec![0.0f32; w * h];
    for plane in img.data.chunks_exact_mut(w * h) {
        for row in plane.chunks_exact_mut(w) {
            for _ in 0..PASSES {
                padded[..r].fill(row[0]);
                padded[r..r + w].copy_from_slice(row);
                padded[r + w..].fill(row[w - 1]);
                row.fill(0.0);
                for (t, &k) in weights.iter().enumerate() {
                    for (o, &p) in row.iter_mut().zip(&padded[t..t + w]) {
                        *o += k * p;
                    }
                }
            }
        }
        for _ in 0..PASSES {
            src.copy_from_slice(plane);
            for (y, out) in plane.chunks_exact_mut(w).enumerate() {
                out.fill(0.0);
                for (t, &k) in weights.iter().enumerate() {
                    let sy = (y + t).saturating_sub(r).min(h - 1);
                    for (o, &p) in out.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                        *o += k * p;
                    }
                }
            }
        }
    }
}

/// DINO's `GaussianBlur(p)`: with probability `p`, [`pil_gaussian_blur`] with sigma
/// uniform in `sigma_range`.
pub fn random_gaussian_blur<R: Rng + ?Sized>(
    img: &mut FloatImage,
    p: f32,
    sigma_range: (f32, f32),
    rng: &mut R,
) {
    if coin(rng, p) {
        let sigma = uniform(rng, sigma_range.0.into(), sigma_range.1.into()) as f32;
        pil_gaussian_blur(img, sigma);
    }
}

/// Inverts (`x' = 1 - x`) every value `>= threshold`, as PIL's `ImageOps.solarize`.
pub fn solarize(img: &mut FloatImage, threshold: f32) {
    for v in &mut img.data {
        if *v >= threshold {
            *v = 1.0 - *v;
        }
    }
}

/// Solarize at [`SOLARIZE_THRESHOLD`] with probability `p`.
pub fn random_solarize<R: Rng + ?Sized>(img: &mut FloatImage, p: f32, rng: &mut R) {
    if coin(rng, p) {
        solarize(img, SOLARIZE_THRESHOLD);
    }
}

/// ImageNet normalisation `(x - mean_c) / std_c`; returns the CHW buffer `[3, H, W]`.
pub fn normalize(img: FloatImage) -> Vec<f32> {
    let n = img.plane_len();
    let mut data = img.data;
    if n == 0 {
        return data;
    }
    for (c, plane) in data.chunks_exact_mut(n).enumerate() {
        let (mean, inv_std) = (IMAGENET_MEAN[c], 1.0 / IMAGENET_STD[c]);
        for v in plane {
            *v = (*v - mean) * inv_std;
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn img_2x1(a: [f32; 3], b: [f32; 3]) -> FloatImage {
        FloatImage {
            width: 2,
            height: 1,
            data: vec![a[0], b[0], a[1], b[1], a[2], b[2]],
        }
    }

    fn assert_close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol, "index {i}: {x} vs {y}");
        }
    }

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 7 + y) as u8, (y * 5) as u8, (x * 3 + 2 * y) as u8])
        })
    }

    #[test]
    fn float_image_round_trips_rgb() {
        let img = ramp(5, 4);
        let f = FloatImage::from_rgb(&img);
        assert_eq!(f.pixel(3, 2), [23.0 / 255.0, 10.0 / 255.0, 13.0 / 255.0]);
        assert_eq!(f.to_rgb(), img);
    }

    #[test]
    fn crop_params_satisfy_constraints() {
        let crop = RandomResizedCrop::new(32, (0.08, 1.0));
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for &(w, h) in &[(64u32, 48u32), (32, 32), (500, 375), (7, 9)] {
            for _ in 0..500 {
                let b = crop.get_params(w, h, &mut rng);
                assert!(b.width > 0 && b.height > 0);
                assert!(
                    b.left + b.width <= w && b.top + b.height <= h,
                    "{b:?} in {w}x{h}"
                );
                if w >= 32 && b.width * b.height != w * h {
                    // An accepted attempt: area and ratio inside the ranges, up to rounding.
                    let area = f64::from(b.width * b.height) / f64::from(w * h);
                    let ratio = f64::from(b.width) / f64::from(b.height);
                    let slack = 2.0 / f64::from(b.width.min(b.height));
                    assert!(
                        (0.08 - 2.0 * slack..=1.0 + 2.0 * slack).contains(&area),
                        "area {area}"
                    );
                    assert!(
                        (0.75 - slack..=4.0 / 3.0 + slack).contains(&ratio),
                        "ratio {ratio}"
                    );
                }
            }
        }
    }

    #[test]
    fn crop_params_cover_positions() {
        // top and left are drawn over the full range: small crops reach every corner.
        let crop = RandomResizedCrop::new(8, (0.05, 0.05));
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let boxes: Vec<_> = (0..2000)
            .map(|_| crop.get_params(100, 100, &mut rng))
            .collect();
        assert!(boxes.iter().any(|b| b.top == 0) && boxes.iter().any(|b| b.left == 0));
        assert!(boxes.iter().any(|b| b.top + b.height == 100));
        assert!(boxes.iter().any(|b| b.left + b.width == 100));
    }

    #[test]
    fn crop_fallback_clamps_extreme_ratio() {
        let crop = RandomResizedCrop::new(8, (0.9, 1.0));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        // Wide 100x10: every attempt fails (h > 10), ratio 10 > 4/3: h = 10, w = round(13.33).
        let wide = crop.get_params(100, 10, &mut rng);
        assert_eq!(
            wide,
            CropBox {
                top: 0,
                left: 43,
                height: 10,
                width: 13
            }
        );
        // Tall 10x100: ratio 0.1 < 3/4: w = 10, h = round(10 / 0.75) = 13.
        let tall = crop.get_params(10, 100, &mut rng);
        assert_eq!(
            tall,
            CropBox {
                top: 43,
                left: 0,
                height: 13,
                width: 10
            }
        );
    }

    /// Counts the 64-bit words drawn from the inner generator.
    struct Counting(ChaCha8Rng, usize);

    impl rand::RngCore for Counting {
        fn next_u32(&mut self) -> u32 {
            self.1 += 1;
            self.0.next_u32()
        }
        fn next_u64(&mut self) -> u64 {
            self.1 += 1;
            self.0.next_u64()
        }
        fn fill_bytes(&mut self, dst: &mut [u8]) {
            self.1 += 1;
            self.0.fill_bytes(dst)
        }
    }

    #[test]
    fn crop_replays_torchvision_get_params() {
        // torchvision: for _ in range(10): area = W*H*U(scale); ratio = exp(U(log r));
        // w = round(sqrt(area*ratio)); h = round(sqrt(area/ratio)); if 0 < w <= W and
        // 0 < h <= H: i = randint(0, H-h+1); j = randint(0, W-w+1); return. Replay the
        // draws by hand on a tall image where most attempts fail, and count attempts.
        let crop = RandomResizedCrop::new(8, (0.5, 1.0));
        let (w, h) = (40u32, 64u32);
        let mut failed_attempts_seen = [0usize; 11];
        for seed in 0..300 {
            let mut replay = ChaCha8Rng::seed_from_u64(seed);
            let mut want = None;
            let mut attempts = 0;
            for _ in 0..10 {
                attempts += 1;
                let area = 2560.0 * uniform(&mut replay, 0.5, 1.0);
                let (l0, l1) = (f64::from(0.75f32).ln(), f64::from(4.0f32 / 3.0).ln());
                let ar = uniform(&mut replay, l0, l1).exp();
                let cw = (area * ar).sqrt().round_ties_even();
                let ch = (area / ar).sqrt().round_ties_even();
                if cw > 0.0 && cw <= 40.0 && ch > 0.0 && ch <= 64.0 {
                    let top = replay.random_range(0..=h - ch as u32);
                    let left = replay.random_range(0..=w - cw as u32);
                    want = Some(CropBox {
                        top,
                        left,
                        height: ch as u32,
                        width: cw as u32,
                    });
                    break;
                }
            }
            // Fallback: W/H = 0.625 < 3/4, so w = W and h = round(W / (3/4)) = 53, centred.
            let fallback = CropBox {
                top: (64 - 53) / 2,
                left: 0,
                height: 53,
                width: 40,
            };
            let want = want.unwrap_or(fallback);
            if want == fallback {
                attempts = 10;
            }
            failed_attempts_seen[attempts - 1] += 1;
            let mut rng = Counting(ChaCha8Rng::seed_from_u64(seed), 0);
            assert_eq!(crop.get_params(w, h, &mut rng), want, "seed {seed}");
            assert_eq!(rng.0, replay, "seed {seed}: same number of draws");
        }
        // Both early successes and late ones happen for this image.
        assert!(failed_attempts_seen[0] > 0 && failed_attempts_seen[2..].iter().sum::<usize>() > 0);

        // Impossible scale: exactly 10 attempts of two draws each, then the centre crop.
        let never = RandomResizedCrop::new(8, (1.5, 2.0));
        let mut rng = Counting(ChaCha8Rng::seed_from_u64(1), 0);
        let b = never.get_params(40, 64, &mut rng);
        assert_eq!(rng.1, 20);
        assert_eq!((b.top, b.left, b.height, b.width), (5, 0, 53, 40));
    }

    #[test]
    fn crop_fallback_whole_image_for_impossible_scale() {
        // scale > 1 never fits, ratio 1 is inside the range: whole image.
        let crop = RandomResizedCrop::new(8, (1.5, 2.0));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let b = crop.get_params(20, 20, &mut rng);
        assert_eq!(
            b,
            CropBox {
                top: 0,
                left: 0,
                height: 20,
                width: 20
            }
        );
    }

    #[test]
    fn resize_same_size_is_identity() {
        let img = ramp(9, 6);
        let full = CropBox {
            top: 0,
            left: 0,
            height: 6,
            width: 9,
        };
        assert_eq!(resize_bicubic(&img, full, 9, 6), FloatImage::from_rgb(&img));
    }

    #[test]
    fn resize_crop_same_size_copies_region() {
        let img = ramp(9, 6);
        let b = CropBox {
            top: 2,
            left: 3,
            height: 3,
            width: 4,
        };
        let out = resize_bicubic(&img, b, 4, 3);
        for y in 0..3 {
            for x in 0..4 {
                let p = img.get_pixel(x + 3, y + 2);
                assert_eq!(out.pixel(x, y), [0, 1, 2].map(|c| f32::from(p[c]) / 255.0));
            }
        }
    }

    #[test]
    fn resize_keeps_constant_and_linear_images() {
        let flat = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        let b = CropBox {
            top: 1,
            left: 2,
            height: 20,
            width: 30,
        };
        for &(w, h) in &[(16u32, 16u32), (64, 50), (7, 31)] {
            let out = resize_bicubic(&flat, b, w, h);
            for y in 0..h {
                for x in 0..w {
                    assert_close(
                        &out.pixel(x, y),
                        &[200.0 / 255.0, 10.0 / 255.0, 99.0 / 255.0],
                        1e-5,
                    );
                }
            }
        }
        // Upscaling a horizontal ramp 2x: the cubic reproduces linear functions away from
        // the borders: out(x) = 4 * ((x + 0.5) / 2 - 0.5) + 100.
        let lin = RgbImage::from_fn(32, 4, |x, _| image::Rgb([(100 + 4 * x) as u8, 0, 0]));
        let full = CropBox {
            top: 0,
            left: 0,
            height: 4,
            width: 32,
        };
        let out = resize_bicubic(&lin, full, 64, 4);
        for x in 4..60 {
            let want = (4.0 * ((x as f32 + 0.5) / 2.0 - 0.5) + 100.0) / 255.0;
            assert!((out.pixel(x, 1)[0] - want).abs() < 1e-5, "x {x}");
        }
    }

    #[test]
    fn resize_downscale_averages() {
        // 2x downscale of alternating 0/255 columns gives the mean grey in the interior.
        let img = RgbImage::from_fn(40, 2, |x, _| {
            image::Rgb([if x % 2 == 0 { 0 } else { 255 }; 3])
        });
        let full = CropBox {
            top: 0,
            left: 0,
            height: 2,
            width: 40,
        };
        let out = resize_bicubic(&img, full, 20, 2);
        for x in 3..17 {
            assert!((out.pixel(x, 0)[0] - 0.5).abs() < 1e-5);
        }
    }

    #[test]
    fn flip_is_exact_mirror() {
        let img = FloatImage::from_rgb(&ramp(5, 3));
        let mut f = img.clone();
        hflip(&mut f);
        for y in 0..3 {
            for x in 0..5 {
                assert_eq!(f.pixel(x, y), img.pixel(4 - x, y));
            }
        }
        hflip(&mut f);
        assert_eq!(f, img);
    }

    #[test]
    fn random_flip_respects_probability() {
        let img = FloatImage::from_rgb(&ramp(5, 3));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut flips = 0;
        for _ in 0..1000 {
            let mut f = img.clone();
            random_horizontal_flip(&mut f, 0.5, &mut rng);
            flips += usize::from(f != img);
        }
        assert!((400..600).contains(&flips), "{flips}");
        let mut f = img.clone();
        random_horizontal_flip(&mut f, 0.0, &mut rng);
        assert_eq!(f, img);
        random_horizontal_flip(&mut f, 1.0, &mut rng);
        assert_ne!(f, img);
    }

    #[test]
    fn grayscale_uses_itu_luma() {
        let mut f = FloatImage::from_rgb(&RgbImage::from_pixel(1, 1, image::Rgb([10, 20, 30])));
        to_grayscale(&mut f);
        let want = (0.299 * 10.0 + 0.587 * 20.0 + 0.114 * 30.0) / 255.0; // 18.15 / 255
        assert_close(&f.pixel(0, 0), &[want; 3], 1e-6);
        let mut red = img_2x1([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]);
        to_grayscale(&mut red);
        assert_eq!(red.pixel(0, 0), [0.299; 3]);
        assert_eq!(red.pixel(1, 0), [0.114; 3]);
    }

    #[test]
    fn brightness_blends_with_black() {
        let mut f = img_2x1([0.2, 0.4, 0.6], [0.8, 0.5, 0.1]);
        adjust_brightness(&mut f, 1.5);
        assert_close(&f.data, &[0.3, 1.0, 0.6, 0.75, 0.9, 0.15], 1e-6);
    }

    #[test]
    fn contrast_blends_with_mean_luma() {
        let mut f = img_2x1([0.2, 0.4, 0.6], [0.8, 0.5, 0.1]);
        // luma: 0.0598 + 0.2348 + 0.0684 = 0.363; 0.2392 + 0.2935 + 0.0114 = 0.5441
        let mean = (0.363 + 0.5441) / 2.0; // 0.45355
        adjust_contrast(&mut f, 0.5);
        let want: Vec<f32> = [0.2, 0.8, 0.4, 0.5, 0.6, 0.1]
            .iter()
            .map(|v| 0.5 * v + 0.5 * mean)
            .collect();
        assert_close(&f.data, &want, 1e-6);
    }

    #[test]
    fn saturation_blends_with_pixel_luma() {
        let mut f = img_2x1([0.2, 0.4, 0.6], [0.8, 0.5, 0.1]);
        adjust_saturation(&mut f, 0.0);
        assert_close(
            &f.data,
            &[0.363, 0.5441, 0.363, 0.5441, 0.363, 0.5441],
            1e-6,
        );
        let mut f = img_2x1([0.2, 0.4, 0.6], [0.8, 0.5, 0.1]);
        adjust_saturation(&mut f, 2.0);
        // 2x - luma, clamped: (0.037, 0.437, 0.837), (1.0, 0.4559, 0)
        assert_close(&f.data, &[0.037, 1.0, 0.437, 0.4559, 0.837, 0.0], 1e-6);
    }

    #[test]
    fn hue_rotates_primaries() {
        let mut f = img_2x1([1.0, 0.0, 0.0], [0.5, 0.25, 0.25]);
        adjust_hue(&mut f, 1.0 / 3.0);
        assert_close(&f.pixel(0, 0), &[0.0, 1.0, 0.0], 1e-5);
        assert_close(&f.pixel(1, 0), &[0.25, 0.5, 0.25], 1e-5);
        adjust_hue(&mut f, 0.5 - 1.0 / 3.0);
        assert_close(&f.pixel(0, 0), &[0.0, 1.0, 1.0], 1e-5);
        // Gray pixels have no hue.
        let mut g = img_2x1([0.3; 3], [0.7; 3]);
        adjust_hue(&mut g, 0.2);
        assert_close(&g.data, &img_2x1([0.3; 3], [0.7; 3]).data, 0.0);
    }

    #[test]
    fn fused_hue_matches_the_hsv_reference() {
        // Random pixels (and exact ties of channels) against rgb_to_hsv, shift, hsv_to_rgb.
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut img = FloatImage::new(64, 4);
        for v in &mut img.data {
            *v = (rng.random_range(0..=255u32) as f32) / 255.0;
        }
        img.data[0] = img.data[256];
        for shift in [-0.5f32, -0.1, 0.0, 0.07, 0.5] {
            let mut got = img.clone();
            adjust_hue(&mut got, shift);
            let n = img.plane_len();
            for k in 0..n {
                let (h, s, v) = rgb_to_hsv(img.data[k], img.data[n + k], img.data[2 * n + k]);
                let h = (h + shift).rem_euclid(1.0);
                let want = hsv_to_rgb(h, s, v).map(|c| c.clamp(0.0, 1.0));
                let have = [got.data[k], got.data[n + k], got.data[2 * n + k]];
                assert_close(&have, &want, 2e-6);
            }
        }
    }

    #[test]
    fn hsv_round_trip() {
        for &(r, g, b) in &[
            (0.1f32, 0.5f32, 0.9f32),
            (0.9, 0.2, 0.4),
            (0.3, 0.3, 0.1),
            (0.0, 0.6, 0.6),
        ] {
            let (h, s, v) = rgb_to_hsv(r, g, b);
            assert_close(&hsv_to_rgb(h, s, v), &[r, g, b], 1e-6);
        }
    }

    #[test]
    fn color_jitter_draws_within_ranges() {
        // Only brightness: every output is the input scaled by one factor in [0.6, 1.4].
        let jitter = ColorJitter {
            brightness: 0.4,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (mut lo, mut hi) = (f32::MAX, f32::MIN);
        for _ in 0..500 {
            let mut f = img_2x1([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]);
            jitter.apply(&mut f, &mut rng);
            let k = f.data[0] / 0.5;
            assert!((f.data[1] / 0.25 - k).abs() < 1e-5);
            lo = lo.min(k);
            hi = hi.max(k);
        }
        assert!(
            (0.6..0.65).contains(&lo) && hi <= 1.4 && hi > 1.35,
            "{lo} {hi}"
        );
    }

    #[test]
    fn color_jitter_draws_order_then_factors() {
        // torchvision's get_params: a permutation of the four parts first, then one factor
        // per enabled part. Replay the draws and compare with both possible orders.
        let jitter = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.0,
            hue: 0.0,
        };
        let input = img_2x1([0.9, 0.1, 0.2], [0.3, 0.8, 0.6]);
        let mut orders_seen = [false; 2];
        for seed in 0..64 {
            let mut replay = ChaCha8Rng::seed_from_u64(seed);
            let mut order = [0usize, 1, 2, 3];
            order.shuffle(&mut replay);
            let (lo, hi) = (f64::from(1.0f32 - 0.4), f64::from(1.0f32 + 0.4));
            let b = uniform(&mut replay, lo, hi) as f32;
            let c = uniform(&mut replay, lo, hi) as f32;
            let brightness_first =
                order.iter().position(|&p| p == 0) < order.iter().position(|&p| p == 1);
            let mut want = input.clone();
            if brightness_first {
                adjust_brightness(&mut want, b);
                adjust_contrast(&mut want, c);
            } else {
                adjust_contrast(&mut want, c);
                adjust_brightness(&mut want, b);
            }
            orders_seen[usize::from(brightness_first)] = true;
            let mut got = input.clone();
            jitter.apply(&mut got, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(got, want, "seed {seed}");
        }
        assert_eq!(orders_seen, [true, true]);
    }

    #[test]
    fn color_jitter_stays_in_range() {
        let jitter = ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
        };
        for seed in 0..200 {
            let mut f = img_2x1([0.9, 0.1, 0.2], [0.3, 0.8, 0.6]);
            jitter.apply(&mut f, &mut ChaCha8Rng::seed_from_u64(seed));
            assert!(f.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn solarize_threshold_is_128() {
        let f0 = FloatImage::from_rgb(
            &RgbImage::from_raw(2, 1, vec![127, 128, 255, 0, 200, 129]).unwrap(),
        );
        let mut f = f0.clone();
        solarize(&mut f, SOLARIZE_THRESHOLD);
        let rgb = f.to_rgb();
        assert_eq!(rgb.as_raw(), &vec![127, 127, 0, 0, 55, 126]);
    }

    #[test]
    fn blur_kernel_and_effect() {
        let k = gaussian_kernel(1.0);
        assert_eq!(k.len(), 7);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((k[3] / k[4] - (0.5f32).exp()).abs() < 1e-5);
        assert_eq!(gaussian_kernel(0.1).len(), 3);

        // A constant image stays constant; a centred delta spreads symmetrically.
        let mut flat = img_2x1([0.4, 0.5, 0.6], [0.4, 0.5, 0.6]);
        gaussian_blur(&mut flat, 1.5);
        assert_close(
            &flat.data,
            &img_2x1([0.4, 0.5, 0.6], [0.4, 0.5, 0.6]).data,
            1e-6,
        );
        let mut delta = FloatImage::new(9, 9);
        delta.data[4 * 9 + 4] = 1.0;
        gaussian_blur(&mut delta, 1.0);
        let p = |x, y| delta.pixel(x, y)[0];
        assert!((p(4, 4) - k[3] * k[3]).abs() < 1e-6);
        assert!((p(3, 4) - p(5, 4)).abs() < 1e-7 && (p(4, 3) - p(4, 5)).abs() < 1e-7);
        assert!((p(2, 4) - k[1] * k[3]).abs() < 1e-6);
        assert!((delta.data[..81].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn pil_box_blur_has_the_right_variance() {
        // Pillow's radius for sigma 1 (3 passes): s² = 1/3, L = √5, l = 0,
        // a = 1·(0 - 1) / (6·(1/3 - 1)) = 0.25.
        assert!((pil_box_radius(1.0, 3) - 0.25).abs() < 1e-6);
        // A delta blurred along a row spreads with variance sigma² and sums to 1.
        for sigma in [0.1f32, 0.7, 1.3, 2.0] {
            let mut f = FloatImage::new(41, 1);
            f.data[20] = 1.0;
            pil_gaussian_blur(&mut f, sigma);
            let row = &f.data[..41];
            let sum: f32 = row.iter().sum();
            let var: f32 = row
                .iter()
                .enumerate()
                .map(|(x, v)| v * (x as f32 - 20.0).powi(2))
                .sum();
            assert!((sum - 1.0).abs() < 1e-5, "sigma {sigma}: sum {sum}");
            assert!(
                (var - sigma * sigma).abs() < 1e-3,
                "sigma {sigma}: var {var}"
            );
            assert!((row[19] - row[21]).abs() < 1e-7);
        }
        // A constant image stays constant (edges replicate).
        let mut flat = img_2x1([0.4, 0.5, 0.6], [0.4, 0.5, 0.6]);
        pil_gaussian_blur(&mut flat, 1.5);
        assert_close(
            &flat.data,
            &img_2x1([0.4, 0.5, 0.6], [0.4, 0.5, 0.6]).data,
            1e-6,
        );
    }

    #[test]
    fn reflect_indices() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-4, 1), 0);
    }

    #[test]
    fn normalize_uses_imagenet_statistics() {
        let f = img_2x1([0.485, 0.456, 0.406], [1.0, 0.0, 0.5]);
        let out = normalize(f);
        let want = [
            0.0,
            (1.0 - 0.485) / 0.229,
            0.0,
            (0.0 - 0.456) / 0.224,
            0.0,
            (0.5 - 0.406) / 0.225,
        ];
        assert_close(&out, &want, 1e-5);
    }
}
