//! Deterministic evaluation transform: resize the short side, centre-crop, normalise.

use crate::augment::{normalize, resize_bicubic, CropBox, FloatImage};
use crate::{DataError, Dataset};
use image::RgbImage;
use rayon::prelude::*;
use std::ops::Range;

/// The evaluation transform of spec §6: resize the short side, centre-crop, normalise.
///
/// One policy serves every evaluation (the k-NN during and after pretraining, `carp embed`,
/// `carp eval`): see [`EvalTransform::for_backbone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalTransform {
    /// Short side after resizing (`None`: no resize).
    pub resize: Option<u32>,
    /// Centre-crop side (`None`: no crop).
    pub crop: Option<u32>,
}

impl EvalTransform {
    /// The transform for a backbone with a small-image stem (`small_stem`) trained on
    /// global views of `train_crop` pixels (32 for small stems, 224 otherwise, when unknown).
    ///
    /// Small-stem backbones see the centred `crop` square of the image, not resized (the
    /// whole image for CIFAR-scale sets, whose images are the crop size). Other backbones get
    /// the spec's ImageNet rule scaled to their crop: short side `crop · 256 / 224`, then a
    /// centred `crop` square (256 / 224 for the release).
    pub fn for_backbone(small_stem: bool, train_crop: Option<u32>) -> Self {
        if small_stem {
            return Self {
                resize: None,
                crop: Some(train_crop.unwrap_or(32)),
            };
        }
        let crop = train_crop.unwrap_or(224);
        Self {
            resize: Some(crop * 256 / 224),
            crop: Some(crop),
        }
    }

    /// This transform with the given sides replacing its own (user overrides).
    pub fn with_overrides(self, resize: Option<u32>, crop: Option<u32>) -> Self {
        Self {
            resize: resize.or(self.resize),
            crop: crop.or(self.crop),
        }
    }

    /// The side of the random crops a linear probe trains on (DINO's `RandomResizedCrop`):
    /// the evaluation crop, else 32.
    pub fn probe_crop(&self) -> u32 {
        self.crop.unwrap_or(32)
    }

    /// The normalised CHW pixels of `img`.
    pub fn apply(&self, img: &RgbImage) -> Vec<f32> {
        eval_view(img, self.resize, self.crop)
    }
}

impl std::fmt::Display for EvalTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |v: Option<u32>| v.map_or("none".to_string(), |s| s.to_string());
        write!(
            f,
            "resize {} / centre crop {}",
            side(self.resize),
            side(self.crop)
        )
    }
}

/// torchvision's `Resize(resize)` + `CenterCrop(crop)` + `Normalize`, as a CHW buffer.
///
/// `resize` sets the short side (the long side becomes `⌊resize · long / short⌋`), with
/// bicubic resampling. `crop` takes the centred `crop x crop` square (offsets rounded half
/// to even, as torchvision); where the crop is larger than the image the border is zero
/// before normalisation, as torchvision pads. With `None` for both, the image is only
/// normalised.
pub fn eval_view(img: &RgbImage, resize: Option<u32>, crop: Option<u32>) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let resized = match resize {
        Some(short) if w > 0 && h > 0 => {
            let (nw, nh) = if w <= h {
                (
                    short,
                    (u64::from(short) * u64::from(h) / u64::from(w)) as u32,
                )
            } else {
                (
                    (u64::from(short) * u64::from(w) / u64::from(h)) as u32,
                    short,
                )
            };
            let full = CropBox {
                top: 0,
                left: 0,
                height: h,
                width: w,
            };
            resize_bicubic(img, full, nw.max(1), nh.max(1))
        }
        _ => FloatImage::from_rgb(img),
    };
    let out = match crop {
        Some(side) => center_crop(&resized, side),
        None => resized,
    };
    normalize(out)
}

/// Offset of a centred window of `inner` in `outer` (negative when it is larger).
fn center_offset(outer: u32, inner: u32) -> i64 {
    if inner <= outer {
        (f64::from(outer - inner) / 2.0).round_ties_even() as i64
    } else {
        -i64::from((inner - outer) / 2)
    }
}

/// The centred `side x side` window of `img`, zero outside the image.
fn center_crop(img: &FloatImage, side: u32) -> FloatImage {
    let (w, h) = (img.width, img.height);
    let (top, left) = (center_offset(h, side), center_offset(w, side));
    let mut out = FloatImage::new(side, side);
    let (n_in, n_out, s) = (img.plane_len(), out.plane_len(), side as usize);
    // Output columns whose source column lies inside the image.
    let x0 = (-left).clamp(0, i64::from(side)) as usize;
    let x1 = (i64::from(w) - left).clamp(0, i64::from(side)) as usize;
    for c in 0..3 {
        for y in 0..s {
            let sy = y as i64 + top;
            if sy < 0 || sy >= i64::from(h) || x0 >= x1 {
                continue;
            }
            let src = c * n_in + sy as usize * w as usize;
            let sx0 = (x0 as i64 + left) as usize;
            out.data[c * n_out + y * s + x0..c * n_out + y * s + x1]
                .copy_from_slice(&img.data[src + sx0..src + sx0 + (x1 - x0)]);
        }
    }
    out
}

/// [`eval_view`] of the images `indices` in parallel: `(data, labels)` with `data` shaped
/// `[len, 3, H, W]`.
///
/// # Errors
/// The first failing image (in index order), or [`DataError::EvalSizeMismatch`] when the
/// views differ in size (images of different sizes without a crop).
pub fn eval_batches(
    dataset: &dyn Dataset,
    indices: Range<usize>,
    resize: Option<u32>,
    crop: Option<u32>,
) -> Result<(Vec<f32>, Vec<Option<usize>>), DataError> {
    let views: Vec<Result<Vec<f32>, DataError>> = indices
        .clone()
        .into_par_iter()
        .map(|i| dataset.get(i).map(|img| eval_view(&img, resize, crop)))
        .collect();
    let views = views.into_iter().collect::<Result<Vec<_>, _>>()?;
    let expected = views.first().map_or(0, Vec::len);
    if let Some((k, v)) = views.iter().enumerate().find(|(_, v)| v.len() != expected) {
        return Err(DataError::EvalSizeMismatch {
            index: indices.start + k,
            expected,
            found: v.len(),
        });
    }
    let mut data = Vec::with_capacity(expected * views.len());
    for v in &views {
        data.extend_from_slice(v);
    }
    let labels = indices.map(|i| dataset.label(i)).collect();
    Ok((data, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::augment::{IMAGENET_MEAN, IMAGENET_STD};
    use crate::{SyntheticConfig, SyntheticShapes};

    fn denorm(v: &[f32], plane: usize) -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(k, x)| x * IMAGENET_STD[k / plane] + IMAGENET_MEAN[k / plane])
            .collect()
    }

    /// One policy: small-stem backbones see a centre crop of their training size; others the spec's
    /// 256 / 224 rule, scaled to their training crop; overrides replace one side only.
    #[test]
    fn policy_by_backbone() {
        let small = EvalTransform::for_backbone(true, Some(16));
        assert_eq!((small.resize, small.crop), (None, Some(16)));
        let none = EvalTransform {
            resize: None,
            crop: None,
        };
        assert_eq!(EvalTransform::for_backbone(true, None).crop, Some(32));
        let release = EvalTransform::for_backbone(false, None);
        assert_eq!((release.resize, release.crop), (Some(256), Some(224)));
        assert_eq!(release, EvalTransform::for_backbone(false, Some(224)));
        let stl = EvalTransform::for_backbone(false, Some(96));
        assert_eq!((stl.resize, stl.crop), (Some(109), Some(96)));
        assert_eq!(none.probe_crop(), 32);
        assert_eq!(small.probe_crop(), 16);
        assert_eq!(release.probe_crop(), 224);
        let over = release.with_overrides(None, Some(200));
        assert_eq!((over.resize, over.crop), (Some(256), Some(200)));
        assert_eq!(over.to_string(), "resize 256 / centre crop 200");
        assert_eq!(none.to_string(), "resize none / centre crop none");
    }

    #[test]
    fn no_resize_no_crop_is_normalise_only() {
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 77]));
        let out = eval_view(&img, None, None);
        assert_eq!(out.len(), 3 * 32 * 32);
        assert_eq!(out, normalize(FloatImage::from_rgb(&img)));
        let back = denorm(&out, 1024);
        assert!((back[5 * 32 + 3] - 24.0 / 255.0).abs() < 1e-6);
        assert!((back[1024 + 5 * 32 + 3] - 40.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn crop_takes_the_centre() {
        let img = RgbImage::from_fn(6, 5, |x, y| image::Rgb([(10 * y + x) as u8, 0, 0]));
        // (6-2)/2 = 2 columns, (5-2)/2 = 1.5 → round half to even = 2 rows.
        let out = denorm(&eval_view(&img, None, Some(2)), 4);
        let red: Vec<u8> = out[..4].iter().map(|v| (v * 255.0).round() as u8).collect();
        assert_eq!(red, [22, 23, 32, 33]);
        // Larger than the image: zero padding around it (left pad (4-2)/2 = 1).
        let small = RgbImage::from_pixel(2, 2, image::Rgb([255, 255, 255]));
        let out = denorm(&eval_view(&small, None, Some(4)), 16);
        let red: Vec<u8> = out[..16]
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        assert_eq!(
            red,
            [0, 0, 0, 0, 0, 255, 255, 0, 0, 255, 255, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn resize_sets_the_short_side() {
        let img = RgbImage::from_pixel(40, 20, image::Rgb([100, 150, 200]));
        let out = eval_view(&img, Some(10), None);
        assert_eq!(out.len(), 3 * 20 * 10);
        let out = eval_view(&img, Some(10), Some(8));
        assert_eq!(out.len(), 3 * 8 * 8);
        let back = denorm(&out, 64);
        assert!((back[0] - 100.0 / 255.0).abs() < 1e-5 && (back[64] - 150.0 / 255.0).abs() < 1e-5);
    }

    #[test]
    fn eval_batches_concatenates_in_order() {
        let ds = SyntheticShapes::new(SyntheticConfig {
            num_images: 30,
            image_size: 32,
            seed: 2,
        });
        let (data, labels) = eval_batches(&ds, 5..17, None, None).unwrap();
        assert_eq!(data.len(), 12 * 3 * 32 * 32);
        assert_eq!(labels, (5..17).map(|i| Some(i % 10)).collect::<Vec<_>>());
        let per = 3 * 32 * 32;
        assert_eq!(
            &data[3 * per..4 * per],
            &eval_view(&ds.get(8).unwrap(), None, None)[..]
        );
        assert!(matches!(
            eval_batches(&ds, 25..31, None, None),
            Err(DataError::IndexOutOfRange { index: 30, .. })
        ));
    }
}
