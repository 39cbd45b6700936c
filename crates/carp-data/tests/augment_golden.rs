//! carp's augmentation ops against torchvision on the same inputs and parameters.
//!
//! Fixture: `tests/fixtures/augment_golden.json`, written by `tools/augment_fixtures.py`
//! (torchvision 0.29.2, Pillow 13.0.0, torch 2.14.1). Differences are measured after
//! ImageNet normalisation, `|carp - ref| / std_c`, and the bounds below are in 1/255 units
//! before that division.
//!
//! Bounds, PIL path (torchvision on PIL images, as DINO's pipeline):
//! - PIL stores every op's output as uint8, carp keeps `f32`. Rounding to nearest costs
//!   0.5; PIL's `Image.blend` (brightness, contrast, saturation) *truncates*, costing up
//!   to 1; contrast and saturation blend with an integer luma (`convert("L")`, rounded),
//!   adding 0.5·|1 - f|. Bicubic resize rounds after each of its two passes: the first
//!   pass's 0.5 passes through the second pass's weights (sum of |w| <= 1.25), plus 0.5.
//! - Hue: PIL converts to 8-bit HSV (H and S truncated), shifts H by `int(f·255)` and
//!   converts back (rounded). A truncated H step moves a channel by up to 6·S·V/255 = 6,
//!   S truncation by up to 1, the way back rounds (0.5): 7.5 when `f·255` is a whole
//!   number; otherwise the truncated shift adds up to one more H step (6): 13.5.
//! - Blur: DINO blurs with PIL's `GaussianBlur(radius=σ)`: three extended box filters
//!   per axis, each pass rounded to 8 bits; carp's `pil_gaussian_blur` runs the same
//!   filters in `f32`: 6 roundings of 0.5 (each damped by the following boxes): 3.
//!   torchvision's `gaussian_blur` (sampled Gaussian, reflected borders) is carp's
//!   `gaussian_blur`: one rounding, 0.5. The two blurs differ by up to ~30/255 here.
//! - Chains (crop, flip, jitter, grayscale, blur): the sum of the per-op bounds, times
//!   1.5 because later jitter factors (up to 1.21·1.13·...) amplify earlier errors.
//!
//! Tensor path (torchvision's float kernels, no rounding): 1e-5, except where torchvision
//! weights luma with 0.2989 and PIL/carp with 0.299 (grayscale, contrast, saturation):
//! 1e-4·max(value) more.
//!
//! Each bound is checked to be able to fail: the same op with a slightly wrong parameter
//! (factor ±0.05, hue ±0.02, σ·1.25, crop moved by a pixel, other jitter order) must
//! exceed it on at least one of the fixture images.

use carp_data::augment::{
    adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, gaussian_blur, hflip,
    pil_gaussian_blur, resize_bicubic, solarize, to_grayscale, IMAGENET_STD, SOLARIZE_THRESHOLD,
};
use carp_data::{CropBox, FloatImage};
use image::RgbImage;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
struct Doc {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    height: u32,
    width: u32,
    input: Vec<u8>,
    ops: Vec<Op>,
}

#[derive(Deserialize)]
struct Op {
    op: String,
    params: serde_json::Value,
    pil: Option<Vec<u8>>,
    shape: Option<[u32; 2]>,
    tensor: Option<Vec<f32>>,
}

fn load() -> Doc {
    let text = include_str!("fixtures/augment_golden.json");
    serde_json::from_str(text).expect("fixture parses")
}

fn p(op: &Op, key: &str) -> f64 {
    op.params[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key}", op.op))
}

/// Max over pixels of |a - b| / std_c, with `a` planar (CHW) in [0, 1] and `reference`
/// HWC values already in [0, 1].
fn max_normalised_diff(a: &FloatImage, reference: &[f32]) -> f32 {
    let n = a.plane_len();
    assert_eq!(reference.len(), 3 * n, "size mismatch");
    let mut worst = 0.0f32;
    for k in 0..n {
        for c in 0..3 {
            let d = (a.data[c * n + k] - reference[3 * k + c]).abs() / IMAGENET_STD[c];
            worst = worst.max(d);
        }
    }
    worst
}

fn from_u8(v: &[u8]) -> Vec<f32> {
    v.iter().map(|&x| f32::from(x) / 255.0).collect()
}

/// Bound in 1/255 units before normalisation, as a normalised difference.
fn bound(units: f32) -> f32 {
    units / 255.0 / IMAGENET_STD[1].min(IMAGENET_STD[2]).min(IMAGENET_STD[0])
}

/// carp's result of `op` on `input`; `wrong` perturbs the parameter slightly.
fn run(op: &Op, input: &RgbImage, wrong: bool) -> FloatImage {
    let f = FloatImage::from_rgb(input);
    let mut img = f.clone();
    let nudge = |x: f64, by: f64| (if wrong { x + by } else { x }) as f32;
    match op.op.as_str() {
        "resized_crop" => {
            let (mut left, mut width) = (p(op, "left") as u32, p(op, "width") as u32);
            // Moving (or, for the full image, narrowing) the box by one pixel is a small,
            // plausible mistake.
            if wrong {
                if left + width < input.width() {
                    left += 1;
                } else if left > 0 {
                    left -= 1;
                } else {
                    width -= 1;
                }
            }
            let b = CropBox {
                top: p(op, "top") as u32,
                left,
                height: p(op, "height") as u32,
                width,
            };
            img = resize_bicubic(
                input,
                b,
                p(op, "out_width") as u32,
                p(op, "out_height") as u32,
            );
        }
        "hflip" => {
            if !wrong {
                hflip(&mut img);
            }
        }
        "brightness" => adjust_brightness(&mut img, nudge(p(op, "factor"), 0.05)),
        "contrast" => adjust_contrast(&mut img, nudge(p(op, "factor"), 0.05)),
        "saturation" => adjust_saturation(&mut img, nudge(p(op, "factor"), 0.05)),
        "hue" => adjust_hue(&mut img, nudge(p(op, "factor"), 0.02)),
        "grayscale" => {
            if wrong {
                // A plain channel mean instead of ITU-R 601-2 luma.
                let n = img.plane_len();
                for k in 0..n {
                    let m = (img.data[k] + img.data[n + k] + img.data[2 * n + k]) / 3.0;
                    for c in 0..3 {
                        img.data[c * n + k] = m;
                    }
                }
            } else {
                to_grayscale(&mut img);
            }
        }
        "solarize" => solarize(
            &mut img,
            if wrong {
                127.0 / 255.0
            } else {
                SOLARIZE_THRESHOLD
            },
        ),
        "blur" => {
            // DINO's blur: PIL's GaussianBlur(radius=sigma), carp's pil_gaussian_blur.
            let s = p(op, "sigma") as f32;
            pil_gaussian_blur(&mut img, if wrong { s * 1.25 } else { s });
        }
        "blur_torchvision_pil" | "blur_tensor" => {
            let s = p(op, "sigma") as f32;
            gaussian_blur(&mut img, if wrong { s * 1.25 } else { s });
        }
        "chain" => {
            let c = &op.params;
            let crop: Vec<u32> = c["crop"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let size = c["size"].as_u64().unwrap() as u32;
            let b = CropBox {
                top: crop[0],
                left: crop[1],
                height: crop[2],
                width: crop[3],
            };
            img = resize_bicubic(input, b, size, size);
            if c["flip"].as_bool().unwrap() {
                hflip(&mut img);
            }
            let mut order: Vec<u64> = c["order"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            if wrong {
                order.reverse();
            }
            let factors: Vec<f32> = c["factors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            for part in order {
                let f = factors[part as usize];
                match part {
                    0 => adjust_brightness(&mut img, f),
                    1 => adjust_contrast(&mut img, f),
                    2 => adjust_saturation(&mut img, f),
                    _ => adjust_hue(&mut img, f),
                }
            }
            if c["grayscale"].as_bool().unwrap() {
                to_grayscale(&mut img);
            }
            pil_gaussian_blur(&mut img, c["sigma"].as_f64().unwrap() as f32);
        }
        other => panic!("unknown op {other}"),
    }
    img
}

/// PIL-path bound of `op` in 1/255 units (see the module docs).
fn pil_bound(op: &Op) -> f32 {
    match op.op.as_str() {
        // Float noise only: 1 - x against (255 - v) / 255.
        "hflip" | "solarize" => 0.001,
        "resized_crop" => 0.5 * 1.25 + 0.5 + 0.05,
        "brightness" => 1.0 + 0.01,
        "contrast" | "saturation" => 1.0 + 0.5 * (1.0 - p(op, "factor") as f32).abs() + 0.01,
        "grayscale" => 0.5 + 0.01,
        "blur_torchvision_pil" => 0.5 + 0.01,
        "hue" => {
            let f = p(op, "factor");
            let whole = ((f * 255.0).round() - f * 255.0).abs() < 1e-9;
            if whole {
                7.5
            } else {
                7.5 + 6.0
            }
        }
        "blur" => 6.0 * 0.5 + 0.01,
        // Resize, the four jitter parts (whole-step hue), grayscale, box blur; x1.5.
        "chain" => 1.5 * (1.175 + 1.01 + 1.21 + 1.51 + 7.5 + 0.51 + 3.01),
        other => panic!("no bound for {other}"),
    }
}

/// Tensor-path bound of `op` as a difference in [0, 1] (before normalisation).
fn tensor_bound(op: &Op) -> f32 {
    match op.op.as_str() {
        "grayscale" | "contrast" | "saturation" => 1e-5 + 1e-4,
        _ => 1e-5,
    }
}

#[test]
fn ops_match_torchvision() {
    let doc = load();
    // Per op kind: (worst PIL diff, its bound, worst wrong-parameter diff above bound).
    let mut report: BTreeMap<String, (f32, f32, f32)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut tensor_worst: BTreeMap<String, f32> = BTreeMap::new();
    for case in &doc.cases {
        let input = RgbImage::from_raw(case.width, case.height, case.input.clone()).unwrap();
        for op in &case.ops {
            let got = run(op, &input, false);
            let wrong = run(op, &input, true);
            let label = format!("{} {} {}", case.name, op.op, op.params);
            if let Some(pil) = &op.pil {
                let [h, w] = op.shape.unwrap();
                assert_eq!((got.height, got.width), (h, w), "{label}");
                let reference = from_u8(pil);
                let d = max_normalised_diff(&got, &reference);
                let b = bound(pil_bound(op));
                let dw = max_normalised_diff(&wrong, &reference);
                if d > b {
                    failures.push(format!(
                        "{label}: PIL diff {:.3}/255 > bound {:.3}/255",
                        d * 255.0 * 0.224,
                        pil_bound(op)
                    ));
                }
                let e = report.entry(op.op.clone()).or_insert((0.0, b, 0.0));
                e.0 = e.0.max(d);
                e.1 = e.1.max(b);
                e.2 = e.2.max(dw);
            }
            if let Some(t) = &op.tensor {
                let d = max_normalised_diff(&got, t);
                let b = tensor_bound(op) / IMAGENET_STD[1].min(IMAGENET_STD[2]);
                if d > b {
                    failures.push(format!("{label}: tensor diff {d:.2e} > {b:.2e}"));
                }
                let wrong_d = max_normalised_diff(&wrong, t);
                assert!(
                    wrong_d > b,
                    "{label}: a wrong parameter passes the tensor bound"
                );
                let e = tensor_worst.entry(op.op.clone()).or_insert(0.0);
                *e = e.max(d);
            }
        }
    }
    for (op, (d, b, dw)) in &report {
        eprintln!(
            "{op:22} PIL worst {:.3}/255  bound {:.3}/255  wrong parameter {:.3}/255",
            d * 255.0 * 0.224,
            b * 255.0 * 0.224,
            dw * 255.0 * 0.224
        );
        assert!(dw > b, "{op}: a wrong parameter passes the bound");
    }
    for (op, d) in &tensor_worst {
        eprintln!("{op:22} tensor worst (normalised) {d:.2e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        report.len(),
        11,
        "every op kind was checked: {:?}",
        report.keys()
    );
}
