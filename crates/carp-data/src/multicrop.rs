//! The multi-crop recipe: how each view of an image is made (spec §2).

use crate::augment::{
    normalize, random_color_jitter, random_gaussian_blur, random_grayscale, random_horizontal_flip,
    random_solarize, ColorJitter, RandomResizedCrop, BLUR_SIGMA,
};
use image::RgbImage;
use rand::Rng;

/// The augmentation of one view: crop, flip, colour jitter, grayscale, blur, solarize.
///
/// Steps run in that order (DINO's `DataAugmentationDINO`), then ImageNet normalisation.
/// The crop's aspect ratio range is [`crate::augment::CROP_RATIO`], the blur's sigma range
/// [`BLUR_SIGMA`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ViewSpec {
    /// Output side in pixels (spec: 224 global, 96 local).
    pub size: u32,
    /// RandomResizedCrop area range (spec: (0.2, 1.0) global, (0.05, 0.2) local).
    pub scale: (f32, f32),
    /// Probability of a horizontal flip (spec: 0.5).
    pub flip_prob: f32,
    /// Probability of applying colour jitter (spec: 0.8).
    pub color_jitter_prob: f32,
    /// Colour jitter brightness strength (spec: 0.4).
    pub brightness: f32,
    /// Colour jitter contrast strength (spec: 0.4).
    pub contrast: f32,
    /// Colour jitter saturation strength (spec: 0.2).
    pub saturation: f32,
    /// Colour jitter hue strength (spec: 0.1).
    pub hue: f32,
    /// Probability of converting to grayscale (spec: 0.2).
    pub grayscale_prob: f32,
    /// Probability of a Gaussian blur (spec: 1.0 / 0.1 global, 0.5 local).
    pub blur_prob: f32,
    /// Probability of solarizing (spec: 0.2 on the second global view, else 0).
    pub solarize_prob: f32,
}

impl ViewSpec {
    /// The spec's common settings at `size` and `scale`, with no blur and no solarize.
    pub fn new(size: u32, scale: (f32, f32)) -> Self {
        Self {
            size,
            scale,
            flip_prob: 0.5,
            color_jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            grayscale_prob: 0.2,
            blur_prob: 0.0,
            solarize_prob: 0.0,
        }
    }

    /// The colour jitter strengths as a [`ColorJitter`].
    pub fn color_jitter(&self) -> ColorJitter {
        ColorJitter {
            brightness: self.brightness,
            contrast: self.contrast,
            saturation: self.saturation,
            hue: self.hue,
        }
    }

    /// Makes one view: a normalised CHW buffer of `3 * size * size` values.
    pub fn apply<R: Rng + ?Sized>(&self, img: &RgbImage, rng: &mut R) -> Vec<f32> {
        let mut view = RandomResizedCrop::new(self.size, self.scale).apply(img, rng);
        random_horizontal_flip(&mut view, self.flip_prob, rng);
        random_color_jitter(&mut view, &self.color_jitter(), self.color_jitter_prob, rng);
        random_grayscale(&mut view, self.grayscale_prob, rng);
        random_gaussian_blur(&mut view, self.blur_prob, BLUR_SIGMA, rng);
        random_solarize(&mut view, self.solarize_prob, rng);
        normalize(view)
    }
}

/// The list of views made from each image; the first `global_views` are the global views
/// (the teacher's input, spec §2).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MultiCropRecipe {
    /// The views, in order: the global views first.
    pub views: Vec<ViewSpec>,
    /// How many of the leading views are global (2 in the paper).
    pub global_views: usize,
}

impl MultiCropRecipe {
    /// The paper's recipe (spec §2): 2 global views and `local_views` local views.
    ///
    /// Global 1 blurs with p = 1.0; global 2 blurs with p = 0.1 and solarizes with p = 0.2;
    /// locals blur with p = 0.5. All views: flip 0.5, colour jitter p = 0.8 with
    /// (b 0.4, c 0.4, s 0.2, h 0.1), grayscale 0.2.
    pub fn carp(
        global_size: u32,
        local_size: u32,
        global_scale: (f32, f32),
        local_scale: (f32, f32),
        local_views: usize,
    ) -> Self {
        let mut views = Vec::with_capacity(2 + local_views);
        views.push(ViewSpec {
            blur_prob: 1.0,
            ..ViewSpec::new(global_size, global_scale)
        });
        views.push(ViewSpec {
            blur_prob: 0.1,
            solarize_prob: 0.2,
            ..ViewSpec::new(global_size, global_scale)
        });
        views.extend((0..local_views).map(|_| ViewSpec {
            blur_prob: 0.5,
            ..ViewSpec::new(local_size, local_scale)
        }));
        Self {
            views,
            global_views: 2,
        }
    }

    /// The ImageNet recipe of spec §2: 224 px globals in (0.2, 1.0), 96 px locals in (0.05, 0.2).
    pub fn imagenet(local_views: usize) -> Self {
        Self::carp(224, 96, (0.2, 1.0), (0.05, 0.2), local_views)
    }

    /// Number of views per image.
    pub fn len(&self) -> usize {
        self.views.len()
    }

    /// Whether the recipe has no view.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// Runs of consecutive views of equal size, as `(size, first_view, count)`; a run never
    /// crosses from the global views into the local ones, even when their sizes are equal,
    /// so the teacher's input is exactly the leading groups.
    pub fn size_groups(&self) -> Vec<(u32, usize, usize)> {
        let mut groups: Vec<(u32, usize, usize)> = Vec::new();
        for (v, spec) in self.views.iter().enumerate() {
            match groups.last_mut() {
                Some((size, _, count)) if *size == spec.size && v != self.global_views => {
                    *count += 1
                }
                _ => groups.push((spec.size, v, 1)),
            }
        }
        groups
    }

    /// Number of leading [`Self::size_groups`] that hold the global views.
    pub fn global_groups(&self) -> usize {
        self.size_groups()
            .iter()
            .take_while(|(_, first, _)| *first < self.global_views)
            .count()
    }

    /// Makes every view of `img` in order, all drawing from `rng`; one CHW buffer per view.
    pub fn apply<R: Rng + ?Sized>(&self, img: &RgbImage, rng: &mut R) -> Vec<Vec<f32>> {
        self.views.iter().map(|spec| spec.apply(img, rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn carp_recipe_matches_the_table() {
        let r = MultiCropRecipe::carp(32, 16, (0.25, 1.0), (0.05, 0.25), 6);
        assert_eq!(r.len(), 8);
        let blur: Vec<f32> = r.views.iter().map(|v| v.blur_prob).collect();
        assert_eq!(blur, [1.0, 0.1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]);
        let solarize: Vec<f32> = r.views.iter().map(|v| v.solarize_prob).collect();
        assert_eq!(solarize, [0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        for (i, v) in r.views.iter().enumerate() {
            let global = i < 2;
            assert_eq!(v.size, if global { 32 } else { 16 });
            assert_eq!(v.scale, if global { (0.25, 1.0) } else { (0.05, 0.25) });
            assert_eq!(
                (v.flip_prob, v.color_jitter_prob, v.grayscale_prob),
                (0.5, 0.8, 0.2)
            );
            assert_eq!(
                (v.brightness, v.contrast, v.saturation, v.hue),
                (0.4, 0.4, 0.2, 0.1)
            );
        }
        assert_eq!(r.size_groups(), [(32, 0, 2), (16, 2, 6)]);
        assert_eq!(
            MultiCropRecipe::carp(32, 16, (0.2, 1.0), (0.05, 0.2), 0).size_groups(),
            [(32, 0, 2)]
        );
        assert_eq!(r.global_groups(), 1);
    }

    /// Issue 10: local crops as large as the global ones still form their own group, so the
    /// teacher (the leading groups) sees the two global views only.
    #[test]
    fn issue_10_equal_sizes_split_at_the_global_boundary() {
        let r = MultiCropRecipe::carp(16, 16, (0.4, 1.0), (0.1, 0.4), 3);
        assert_eq!(r.size_groups(), [(16, 0, 2), (16, 2, 3)]);
        assert_eq!(r.global_groups(), 1);
        let mut one_global = r.clone();
        one_global.global_views = 1;
        assert_eq!(one_global.size_groups(), [(16, 0, 1), (16, 1, 4)]);
        let mut all_global = r;
        all_global.global_views = 5;
        assert_eq!(all_global.size_groups(), [(16, 0, 5)]);
        assert_eq!(all_global.global_groups(), 1);
    }

    #[test]
    fn apply_gives_normalised_views_of_the_right_size() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, 128])
        });
        let r = MultiCropRecipe::carp(24, 12, (0.2, 1.0), (0.05, 0.2), 3);
        let views = r.apply(&img, &mut ChaCha8Rng::seed_from_u64(9));
        let lens: Vec<usize> = views.iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [
                3 * 24 * 24,
                3 * 24 * 24,
                3 * 12 * 12,
                3 * 12 * 12,
                3 * 12 * 12
            ]
        );
        // Normalised [0, 1] values lie in [-mean/std, (1-mean)/std] ⊂ [-2.12, 2.64].
        assert!(views.iter().flatten().all(|v| (-2.12..=2.65).contains(v)));
        // Same seed, same views; another seed, other views.
        assert_eq!(views, r.apply(&img, &mut ChaCha8Rng::seed_from_u64(9)));
        assert_ne!(views, r.apply(&img, &mut ChaCha8Rng::seed_from_u64(10)));
    }
}
