//! [`SyntheticShapes`]: the built-in, procedurally generated, labelled image set.
//!
//! Image `i` is drawn from a generator seeded by `(seed, i)`, so any image can be made on
//! demand, in any order, on any thread. Its label is its shape kind, `i % 10`
//! ([`CLASS_NAMES`]). The label shows in two ways that survive cropping, flipping and colour
//! changes: the shape, and (in half of the images) stripes in the background at the
//! class's orientation (`class · 10°`). Everything else is random and unrelated to the
//! label: the background's muted colours and kind (stripes of random period and phase,
//! plain, gradient or low-contrast noise), the foreground colours (kept at least 0.25 apart
//! in luma from the background so the shape survives grayscale), position, size (diameter
//! 30-70 % of the side) and, where the kind allows, rotation. Edges are anti-aliased with
//! 2x2 supersampling.
//!
//! Why muted backgrounds: a background covers most of an image, and with vivid random
//! colours the colour pair alone tells two views of one image from all others, so a short
//! self-supervised run learns that label-free shortcut rather than shapes.

use crate::augment::hsv_to_rgb;
use crate::seed::{mix_seed, tag};
use crate::{DataError, Dataset};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::PI;

/// Number of shape kinds (classes).
pub const NUM_CLASSES: usize = 10;

/// Class names, indexed by label.
pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "disc",
    "square",
    "triangle",
    "ring",
    "cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "diamond",
    "two_discs",
];

/// Size and seed of a [`SyntheticShapes`] set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyntheticConfig {
    /// Number of images (default 10 000).
    pub num_images: usize,
    /// Side of the square images in pixels (default 32).
    pub image_size: u32,
    /// Seed; different seeds give unrelated images (default 0).
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        Self {
            num_images: 10_000,
            image_size: 32,
            seed: 0,
        }
    }
}

/// A procedurally generated dataset of 10 balanced shape classes; needs no files.
#[derive(Clone, Debug)]
pub struct SyntheticShapes {
    cfg: SyntheticConfig,
}

impl SyntheticShapes {
    /// A set of `cfg.num_images` images of `cfg.image_size` pixels.
    ///
    /// # Panics
    /// If `cfg.image_size` is 0.
    pub fn new(cfg: SyntheticConfig) -> Self {
        assert!(cfg.image_size > 0, "synthetic image size must be positive");
        Self { cfg }
    }

    /// A train set and a held-out test set that share no image (their seeds differ).
    pub fn split(seed: u64, train: usize, test: usize, image_size: u32) -> (Self, Self) {
        let make = |part: u64, num_images| {
            Self::new(SyntheticConfig {
                num_images,
                image_size,
                seed: mix_seed(&[seed, part]),
            })
        };
        (make(0, train), make(1, test))
    }

    /// The configuration this set was built with.
    pub fn config(&self) -> &SyntheticConfig {
        &self.cfg
    }

    /// Draws image `index` (no bounds check: any index gives an image).
    pub fn render(&self, index: usize) -> RgbImage {
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix_seed(&[tag::SYNTHETIC, self.cfg.seed, index as u64]));
        let n = self.cfg.image_size as usize;
        let mut buf = vec![0.0f32; 3 * n * n];
        let bg_luma = draw_background(&mut buf, n, index % NUM_CLASSES, &mut rng);
        let fg = contrasting_colour(&mut rng, bg_luma, 0.25);
        let fg2 = contrasting_colour(&mut rng, luma(fg), 0.3);
        let shape = Shape::draw(index % NUM_CLASSES, self.cfg.image_size as f32, &mut rng);
        shape.paint(&mut buf, n, fg, fg2);
        let raw = buf
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        RgbImage::from_raw(n as u32, n as u32, raw).expect("buffer size matches")
    }
}

impl Dataset for SyntheticShapes {
    fn len(&self) -> usize {
        self.cfg.num_images
    }

    fn get(&self, index: usize) -> Result<RgbImage, DataError> {
        if index >= self.cfg.num_images {
            return Err(DataError::IndexOutOfRange {
                dataset: self.describe(),
                index,
                len: self.cfg.num_images,
            });
        }
        Ok(self.render(index))
    }

    fn label(&self, index: usize) -> Option<usize> {
        (index < self.cfg.num_images).then_some(index % NUM_CLASSES)
    }

    fn num_classes(&self) -> usize {
        NUM_CLASSES
    }

    fn describe(&self) -> String {
        format!(
            "synthetic shapes ({} images, {}x{} px, {} classes, seed {})",
            self.cfg.num_images,
            self.cfg.image_size,
            self.cfg.image_size,
            NUM_CLASSES,
            self.cfg.seed
        )
    }
}

/// Luma ([`crate::augment::LUMA`]) of a colour.
fn luma(c: [f32; 3]) -> f32 {
    let w = crate::augment::LUMA;
    w[0] * c[0] + w[1] * c[1] + w[2] * c[2]
}

/// A muted background colour: any hue, saturation at most 0.25, value in [0.1, 0.9].
///
/// Backgrounds cover most of an image; vivid random ones would be the dominant (and
/// label-free) cue for telling images apart.
fn background_colour<R: Rng + ?Sized>(rng: &mut R) -> [f32; 3] {
    hsv_to_rgb(
        rng.random(),
        rng.random_range(0.0..0.25),
        rng.random_range(0.1..0.9),
    )
}

/// A uniform random colour.
fn random_colour<R: Rng + ?Sized>(rng: &mut R) -> [f32; 3] {
    [rng.random(), rng.random(), rng.random()]
}

/// A random colour whose luma differs from `target` by at least `gap`.
fn contrasting_colour<R: Rng + ?Sized>(rng: &mut R, target: f32, gap: f32) -> [f32; 3] {
    for _ in 0..32 {
        let c = random_colour(rng);
        if (luma(c) - target).abs() >= gap {
            return c;
        }
    }
    // Rare: fall back to a random grey on the far side.
    let l = if target < 0.5 {
        rng.random_range(0.8..1.0)
    } else {
        rng.random_range(0.0..0.2)
    };
    [l; 3]
}

/// Fills the HWC buffer with a random background; returns its mean luma.
///
/// Half of the backgrounds are stripes at the class's orientation (`class · 10°`, so a
/// horizontal flip, which maps θ to -θ, never turns one class into another), with a random
/// period, phase and pair of muted colours; the others are plain, gradient or noise.
fn draw_background<R: Rng + ?Sized>(buf: &mut [f32], n: usize, class: usize, rng: &mut R) -> f32 {
    let c1 = background_colour(rng);
    if rng.random_bool(0.5) {
        let c2 = background_colour(rng);
        let angle = (class as f32 * 10.0 + rng.random_range(-3.0..3.0f32)).to_radians();
        let (s, c) = angle.sin_cos();
        let period = rng.random_range(4.0..7.0f32);
        let phase = rng.random_range(0.0..1.0f32);
        for (k, px) in buf.chunks_exact_mut(3).enumerate() {
            let (x, y) = ((k % n) as f32 + 0.5, (k / n) as f32 + 0.5);
            let t = ((x * c + y * s) / period + phase).rem_euclid(1.0);
            px.copy_from_slice(if t < 0.5 { &c1 } else { &c2 });
        }
        return 0.5 * (luma(c1) + luma(c2));
    }
    match rng.random_range(0..3u32) {
        0 => {
            for px in buf.chunks_exact_mut(3) {
                px.copy_from_slice(&c1);
            }
            luma(c1)
        }
        1 => {
            // Linear gradient c1 → c2 across the image in a random direction.
            let c2 = background_colour(rng);
            let angle = rng.random_range(0.0..2.0 * PI);
            let (s, c) = angle.sin_cos();
            let half = n as f32 / 2.0;
            for (k, px) in buf.chunks_exact_mut(3).enumerate() {
                let (x, y) = ((k % n) as f32 + 0.5 - half, (k / n) as f32 + 0.5 - half);
                let t = (0.5 + (x * c + y * s) / n as f32).clamp(0.0, 1.0);
                for ch in 0..3 {
                    px[ch] = c1[ch] + t * (c2[ch] - c1[ch]);
                }
            }
            0.5 * (luma(c1) + luma(c2))
        }
        _ => {
            // Low-contrast noise around c1, independent per pixel and channel.
            let amplitude = rng.random_range(0.03..0.1f32);
            for px in buf.chunks_exact_mut(3) {
                for ch in 0..3 {
                    px[ch] =
                        (c1[ch] + amplitude * (2.0 * rng.random::<f32>() - 1.0)).clamp(0.0, 1.0);
                }
            }
            luma(c1)
        }
    }
}

/// One shape instance: kind, placement and a kind-specific parameter.
struct Shape {
    kind: usize,
    cx: f32,
    cy: f32,
    half: f32,
    cos: f32,
    sin: f32,
    param: f32,
}

impl Shape {
    /// Draws placement, size, rotation and parameter of a shape of `kind` in a `size` image.
    fn draw<R: Rng + ?Sized>(kind: usize, size: f32, rng: &mut R) -> Self {
        let diameter = rng.random_range(0.3..0.7) * size;
        let half = diameter / 2.0;
        let cx = rng.random_range(half..=size - half);
        let cy = rng.random_range(half..=size - half);
        let small = 10.0f32.to_radians();
        let angle = match kind {
            // Oriented kinds (square, stripes, checkerboard, diamond = square turned 45°)
            // keep their orientation up to a small jitter, so they stay distinct.
            1 | 5 | 6 | 7 | 8 => rng.random_range(-small..small),
            // Rotation-free kinds draw nothing.
            0 | 3 => 0.0,
            _ => rng.random_range(0.0..2.0 * PI),
        };
        let param = match kind {
            3 => rng.random_range(0.45..0.65), // ring: inner / outer radius
            4 => rng.random_range(0.25..0.38), // cross: arm half-width
            5 | 6 => rng.random_range(4..=6u32) as f32, // stripes: bands
            7 => rng.random_range(3..=4u32) as f32, // checkerboard: cells per side
            _ => 0.0,
        };
        let (sin, cos) = angle.sin_cos();
        Self {
            kind,
            cx,
            cy,
            half,
            cos,
            sin,
            param,
        }
    }

    /// Which colour covers the unit-frame point (u, v): 0 none, 1 first, 2 second.
    fn sample(&self, u: f32, v: f32) -> u8 {
        let inside = |b: bool| u8::from(b);
        match self.kind {
            0 => inside(u * u + v * v <= 1.0),
            1 => inside(u.abs() <= 0.85 && v.abs() <= 0.85),
            2 => {
                // Equilateral triangle, circumradius 1.2 (inradius 0.6), pointing up.
                let a = -v <= 0.6;
                let b = 0.866_025_4 * u + 0.5 * v <= 0.6;
                let c = -0.866_025_4 * u + 0.5 * v <= 0.6;
                inside(a && b && c)
            }
            3 => {
                let r2 = u * u + v * v;
                inside(r2 <= 1.0 && r2 >= self.param * self.param)
            }
            4 => {
                let w = self.param;
                inside((u.abs() <= w && v.abs() <= 1.0) || (v.abs() <= w && u.abs() <= 1.0))
            }
            5..=7 => {
                if u.abs() > 0.85 || v.abs() > 0.85 {
                    return 0;
                }
                let cell = |t: f32| ((t + 0.85) / 1.7 * self.param).floor() as i32;
                let parity = match self.kind {
                    5 => cell(v),
                    6 => cell(u),
                    _ => cell(u) + cell(v),
                };
                1 + (parity.rem_euclid(2) as u8)
            }
            8 => inside(u.abs() + v.abs() <= 1.1),
            _ => {
                let d1 = (u - 0.6) * (u - 0.6) + v * v;
                let d2 = (u + 0.6) * (u + 0.6) + v * v;
                inside(d1 <= 0.45 * 0.45 || d2 <= 0.45 * 0.45)
            }
        }
    }

    /// Paints the shape over the HWC buffer with 2x2 supersampling.
    fn paint(&self, buf: &mut [f32], n: usize, fg: [f32; 3], fg2: [f32; 3]) {
        // Every kind lies within radius 1.2 of its centre (in units of `half`).
        let reach = 1.25 * self.half + 1.0;
        let x0 = ((self.cx - reach).floor().max(0.0)) as usize;
        let x1 = ((self.cx + reach).ceil() as usize).min(n);
        let y0 = ((self.cy - reach).floor().max(0.0)) as usize;
        let y1 = ((self.cy + reach).ceil() as usize).min(n);
        let inv = 1.0 / self.half;
        for y in y0..y1 {
            for x in x0..x1 {
                let mut counts = [0u8; 3];
                for (ox, oy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                    let dx = x as f32 + ox - self.cx;
                    let dy = y as f32 + oy - self.cy;
                    let u = (dx * self.cos + dy * self.sin) * inv;
                    let v = (-dx * self.sin + dy * self.cos) * inv;
                    counts[self.sample(u, v) as usize] += 1;
                }
                if counts[0] == 4 {
                    continue;
                }
                let px = &mut buf[3 * (y * n + x)..3 * (y * n + x) + 3];
                let (a, b) = (f32::from(counts[1]) * 0.25, f32::from(counts[2]) * 0.25);
                for ch in 0..3 {
                    px[ch] = px[ch] * (1.0 - a - b) + fg[ch] * a + fg2[ch] * b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(seed: u64, n: usize) -> SyntheticShapes {
        SyntheticShapes::new(SyntheticConfig {
            num_images: n,
            image_size: 32,
            seed,
        })
    }

    #[test]
    fn same_index_same_image() {
        let a = set(7, 100);
        let b = set(7, 100);
        for i in [0, 1, 13, 99] {
            assert_eq!(a.get(i).unwrap(), b.get(i).unwrap());
        }
        assert_eq!(a.get(5).unwrap().dimensions(), (32, 32));
    }

    #[test]
    fn different_seeds_and_indices_differ() {
        let a = set(7, 100);
        let b = set(8, 100);
        for i in 0..20 {
            assert_ne!(a.get(i).unwrap(), b.get(i).unwrap(), "index {i}");
            assert_ne!(
                a.get(i).unwrap(),
                a.get(i + 10).unwrap(),
                "same class, index {i}"
            );
        }
    }

    #[test]
    fn labels_are_balanced() {
        let s = set(0, 1000);
        let mut counts = [0usize; NUM_CLASSES];
        for i in 0..s.len() {
            counts[s.label(i).unwrap()] += 1;
        }
        assert_eq!(counts, [100; NUM_CLASSES]);
        assert_eq!(s.num_classes(), 10);
        assert_eq!(s.label(1000), None);
        assert!(matches!(
            s.get(1000),
            Err(DataError::IndexOutOfRange {
                index: 1000,
                len: 1000,
                ..
            })
        ));
    }

    #[test]
    fn split_sets_do_not_overlap() {
        let (train, test) = SyntheticShapes::split(3, 200, 50, 32);
        assert_eq!((train.len(), test.len()), (200, 50));
        let train_imgs: Vec<_> = (0..200).map(|i| train.render(i)).collect();
        for j in 0..50 {
            let t = test.render(j);
            assert!(
                train_imgs.iter().all(|x| *x != t),
                "test {j} is in the train set"
            );
        }
        let (train2, _) = SyntheticShapes::split(3, 200, 50, 32);
        assert_eq!(train2.render(17), train_imgs[17]);
    }

    #[test]
    fn shapes_are_large_and_visible() {
        // Compare each image with the same draw without its shape: the shape must change
        // a sizeable share of pixels, and by a visible amount.
        let s = set(1, 500);
        let mut total = 0.0;
        for i in 0..500 {
            let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[tag::SYNTHETIC, 1, i as u64]));
            let mut bg = vec![0.0f32; 3 * 32 * 32];
            draw_background(&mut bg, 32, i % NUM_CLASSES, &mut rng);
            let img = s.render(i);
            let changed = img
                .as_raw()
                .chunks_exact(3)
                .zip(bg.chunks_exact(3))
                .filter(|(p, b)| {
                    let l = |c: [f32; 3]| luma(c);
                    let p = [0, 1, 2].map(|c| f32::from(p[c]) / 255.0);
                    (l(p) - l([b[0], b[1], b[2]])).abs() > 0.1
                })
                .count();
            let frac = changed as f32 / 1024.0;
            assert!(
                (0.02..0.75).contains(&frac),
                "image {i} (class {}): {frac}",
                i % 10
            );
            total += frac;
        }
        let mean = total / 500.0;
        assert!((0.1..0.4).contains(&mean), "mean changed fraction {mean}");
    }

    #[test]
    fn every_class_has_a_distinct_footprint() {
        // Unrotated, centred, same-size shapes must differ pairwise in coverage.
        let masks: Vec<Vec<u8>> = (0..NUM_CLASSES)
            .map(|kind| {
                let shape = Shape {
                    kind,
                    cx: 16.0,
                    cy: 16.0,
                    half: 10.0,
                    cos: 1.0,
                    sin: 0.0,
                    param: match kind {
                        3 => 0.55,
                        4 => 0.3,
                        5 | 6 => 5.0,
                        7 => 4.0,
                        _ => 0.0,
                    },
                };
                (0..32 * 32)
                    .map(|k| {
                        shape.sample(
                            ((k % 32) as f32 + 0.5 - 16.0) / 10.0,
                            ((k / 32) as f32 + 0.5 - 16.0) / 10.0,
                        )
                    })
                    .collect()
            })
            .collect();
        for a in 0..NUM_CLASSES {
            assert!(
                masks[a].iter().any(|&m| m > 0),
                "{} is empty",
                CLASS_NAMES[a]
            );
            for b in a + 1..NUM_CLASSES {
                let diff = masks[a]
                    .iter()
                    .zip(&masks[b])
                    .filter(|(x, y)| x != y)
                    .count();
                assert!(
                    diff > 30,
                    "{} vs {}: {diff}",
                    CLASS_NAMES[a],
                    CLASS_NAMES[b]
                );
            }
        }
    }
}

#[cfg(test)]
mod class_cue_tests {
    use super::*;

    /// Striped backgrounds run at the class's orientation: the dominant gradient direction
    /// of a plain striped patch changes with the class and not within it.
    #[test]
    fn striped_background_follows_the_class_orientation() {
        let n = 64;
        let angle_of = |class: usize, seed: u64| -> Option<f32> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut buf = vec![0.0f32; 3 * n * n];
            draw_background(&mut buf, n, class, &mut rng);
            // Structure tensor of the luma image.
            let l = |x: usize, y: usize| {
                luma([
                    buf[3 * (y * n + x)],
                    buf[3 * (y * n + x) + 1],
                    buf[3 * (y * n + x) + 2],
                ])
            };
            let (mut xx, mut yy, mut xy) = (0.0f64, 0.0f64, 0.0f64);
            for y in 1..n - 1 {
                for x in 1..n - 1 {
                    let gx = (l(x + 1, y) - l(x - 1, y)) as f64;
                    let gy = (l(x, y + 1) - l(x, y - 1)) as f64;
                    xx += gx * gx;
                    yy += gy * gy;
                    xy += gx * gy;
                }
            }
            if xx + yy < 20.0 {
                return None; // plain, gradient or noise background, or two similar colours
            }
            Some((0.5 * (2.0 * xy).atan2(xx - yy)).to_degrees() as f32)
        };
        for class in [0usize, 3, 6, 9] {
            let angles: Vec<f32> = (0..40).filter_map(|s| angle_of(class, s)).collect();
            assert!(
                angles.len() >= 5,
                "class {class}: too few striped backgrounds"
            );
            let want = class as f32 * 10.0;
            let near = angles
                .iter()
                .filter(|a| {
                    let d = (*a - want).rem_euclid(180.0);
                    d.min(180.0 - d) < 8.0
                })
                .count();
            assert!(near * 10 >= angles.len() * 8, "class {class}: {angles:?}");
        }
    }
}
