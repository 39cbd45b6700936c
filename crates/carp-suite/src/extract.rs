//! The one place this crate turns images into backbone features: through carp-train's
//! [`carp_train::eval::features`] for the evaluation transform, and a direct
//! [`ResNet::forward`] for the retrieval and copy-detection transforms, whose images keep
//! their own sizes.

use crate::SuiteError;
use burn::tensor::{Device, Tensor, TensorData};
use carp_core::resnet::ResNet;
use carp_data::augment::{normalize, resize_bicubic, CropBox, FloatImage};
use carp_data::Dataset;
use carp_eval::Features;
use image::RgbImage;

/// A backbone on a device with the standard evaluation transform.
pub struct Extractor<'a> {
    /// The network (inference mode).
    pub backbone: &'a ResNet,
    /// Its device.
    pub device: &'a Device,
    /// The evaluation transform ([`carp_data::EvalTransform::for_backbone`]).
    pub transform: carp_data::EvalTransform,
    /// Images per forward pass.
    pub batch: usize,
}

impl Extractor<'_> {
    /// Features of `indices` of `data` under the evaluation transform, with labels.
    ///
    /// # Errors
    /// The first image that fails to load.
    pub fn features(
        &self,
        data: &dyn Dataset,
        indices: &[usize],
    ) -> Result<(Features, Vec<Option<usize>>), SuiteError> {
        Ok(carp_train::eval::features(
            self.backbone,
            data,
            indices,
            self.transform,
            self.device,
            self.batch,
        )?)
    }

    /// Backbone output of one normalised CHW image of any size.
    pub fn forward_chw(&self, pixels: Vec<f32>, height: usize, width: usize) -> Vec<f32> {
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, height, width]), self.device);
        self.backbone
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }

    /// Backbone outputs of normalised CHW images of one size `[n, 3, side_h, side_w]`.
    pub fn forward_batch(
        &self,
        pixels: Vec<f32>,
        n: usize,
        height: usize,
        width: usize,
    ) -> Vec<f32> {
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, height, width]), self.device);
        self.backbone
            .forward(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .expect("f32")
    }
}

/// The size PIL's `Image.thumbnail((side, side))` gives a `w x h` image: unchanged when it
/// fits, else the aspect-preserving size whose long side is `side`, rounded as PIL's
/// `round_aspect` does (floor or ceil, whichever keeps the aspect closer; at least 1).
pub fn thumbnail_size(w: u32, h: u32, side: u32) -> (u32, u32) {
    if side >= w && side >= h {
        return (w, h);
    }
    let aspect = f64::from(w) / f64::from(h);
    let s = f64::from(side);
    let round = |number: f64, key: &dyn Fn(f64) -> f64| -> u32 {
        let (lo, hi) = (number.floor(), number.ceil());
        let pick = if key(hi) < key(lo) { hi } else { lo };
        pick.max(1.0) as u32
    };
    // PIL compares x / y with the aspect; the box is square, so x / y = 1.
    if 1.0 >= aspect {
        (round(s * aspect, &|n| (aspect - n / s).abs()), side)
    } else {
        let y = round(s / aspect, &|n| {
            if n == 0.0 {
                0.0
            } else {
                (aspect - s / n).abs()
            }
        });
        (side, y)
    }
}

/// `torch.nn.functional.interpolate(x, scale_factor=s, mode="bilinear",
/// align_corners=False)` of a CHW image: output `floor(size · s)`, source coordinate
/// `(dst + 0.5) / s - 0.5` clamped at 0 (the given factor, not the recomputed one).
pub fn bilinear_scale(chw: &[f32], h: usize, w: usize, s: f64) -> (Vec<f32>, usize, usize) {
    let (oh, ow) = (
        ((h as f64) * s).floor() as usize,
        ((w as f64) * s).floor() as usize,
    );
    let (oh, ow) = (oh.max(1), ow.max(1));
    let src = |d: usize, n: usize| {
        let r = (((d as f64) + 0.5) / s - 0.5).max(0.0);
        let i0 = (r as usize).min(n - 1);
        let i1 = if i0 < n - 1 { i0 + 1 } else { i0 };
        (i0, i1, (r - i0 as f64) as f32)
    };
    let mut out = vec![0.0f32; 3 * oh * ow];
    for c in 0..3 {
        let plane = &chw[c * h * w..(c + 1) * h * w];
        for y in 0..oh {
            let (y0, y1, ly) = src(y, h);
            for x in 0..ow {
                let (x0, x1, lx) = src(x, w);
                let top = plane[y0 * w + x0] * (1.0 - lx) + plane[y0 * w + x1] * lx;
                let bottom = plane[y1 * w + x0] * (1.0 - lx) + plane[y1 * w + x1] * lx;
                out[c * oh * ow + y * ow + x] = top * (1.0 - ly) + bottom * ly;
            }
        }
    }
    (out, oh, ow)
}

/// The release's retrieval feature of one image: PIL thumbnail to `imsize` (Lanczos; carp
/// uses the `image` crate's Lanczos3, close to but not bit-equal with PIL's), normalise, and
/// either the backbone output or, with `multiscale`, DINO's `multi_scale`: the mean of the
/// outputs at scales 1, 1/√2, 1/2 (bilinear on the normalised tensor) divided by its norm.
pub fn retrieval_feature(
    ex: &Extractor<'_>,
    img: &RgbImage,
    imsize: u32,
    multiscale: bool,
) -> Vec<f32> {
    let (w, h) = thumbnail_size(img.width(), img.height(), imsize);
    let small = if (w, h) == img.dimensions() {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, image::imageops::FilterType::Lanczos3)
    };
    let chw = normalize(FloatImage::from_rgb(&small));
    let (h, w) = (h as usize, w as usize);
    if !multiscale {
        return ex.forward_chw(chw, h, w);
    }
    let mut v = ex.forward_chw(chw.clone(), h, w);
    for s in [1.0 / 2f64.sqrt(), 0.5] {
        let (x, oh, ow) = bilinear_scale(&chw, h, w, s);
        for (a, b) in v.iter_mut().zip(ex.forward_chw(x, oh, ow)) {
            *a += b;
        }
    }
    let n = v
        .iter()
        .map(|&x| f64::from(x / 3.0).powi(2))
        .sum::<f64>()
        .sqrt();
    v.iter()
        .map(|&x| ((f64::from(x) / 3.0) / n) as f32)
        .collect()
}

/// The release's copy-detection transform: `Resize((side, side))` bicubic (aspect not kept),
/// normalise; CHW.
pub fn square_view(img: &RgbImage, side: u32) -> Vec<f32> {
    let full = CropBox {
        top: 0,
        left: 0,
        height: img.height(),
        width: img.width(),
    };
    normalize(resize_bicubic(img, full, side, side))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_matches_pil_sizes() {
        // PIL: Image.new("RGB", (w, h)).thumbnail((s, s)) -> size.
        assert_eq!(thumbnail_size(1024, 768, 512), (512, 384));
        assert_eq!(thumbnail_size(768, 1024, 224), (168, 224));
        assert_eq!(thumbnail_size(1000, 333, 224), (224, 75));
        assert_eq!(thumbnail_size(100, 50, 224), (100, 50));
    }

    #[test]
    fn bilinear_half_averages_pixel_pairs() {
        // A 2x4 ramp scaled by 1/2: src x = 2 dst + 0.5 -> mean of each pair.
        let plane: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let chw = [plane.clone(), plane.clone(), plane].concat();
        let (out, h, w) = bilinear_scale(&chw, 2, 4, 0.5);
        assert_eq!((h, w), (1, 2));
        assert_eq!(&out[..2], &[2.5, 4.5]);
    }
}
