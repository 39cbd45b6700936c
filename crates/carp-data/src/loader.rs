//! Reproducible parallel batching of multi-crop views.
//!
//! Step `s` of epoch `e` holds the samples `epoch_order(len, seed, e)[s·B .. (s+1)·B]`
//! (the last partial batch is dropped). In a data-parallel run of W processes
//! ([`Loader::shard`]) step `s` covers positions `s·B·W .. (s+1)·B·W` of the same order for
//! the whole world, and rank `r` takes every W-th of them from `r` on, as PyTorch's
//! `DistributedSampler` interleaves; the last `len mod B·W` positions of each epoch are
//! dropped (no padding), so every rank runs the same number of full steps. Every random
//! choice for a sample comes from
//! [`sample_rng`]`(seed, e, index)`, so a batch is a pure function of (seed, epoch, step):
//! the thread count, the order in which threads finish, and resuming mid-epoch change
//! nothing.
//!
//! Bad images: by default the first image that fails to decode stops the batch with an
//! error naming the file. With [`Loader::skip_bad_images`] such an image is replaced by
//! the next images of the epoch order until one decodes (the views still draw from the
//! slot's own [`sample_rng`], so batches stay deterministic); each distinct bad image is
//! logged once (`warn`) and counted in [`Loader::skipped_images`].

use crate::seed::{mix_seed, tag};
use crate::{DataError, Dataset, MultiCropRecipe};
use image::RgbImage;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Batches computed ahead by [`Loader::prefetch`].
pub const PREFETCH_DEPTH: usize = 2;

/// With skipping on, how many consecutive bad images end the batch with an error.
pub const MAX_CONSECUTIVE_BAD: usize = 32;

/// The views of one size in a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewGroup {
    /// Side of these views in pixels.
    pub size: u32,
    /// Number of consecutive recipe views in this group.
    pub views: usize,
    /// Recipe index of the group's first view.
    pub first_view: usize,
    /// Normalised pixels, `[views·B, 3, size, size]`, view-major: the B images of view
    /// `first_view`, then the B images of the next view, and so on.
    pub data: Vec<f32>,
}

impl ViewGroup {
    /// The tensor shape of [`Self::data`] for batch size `batch`: `[views·B, 3, size, size]`.
    pub fn shape(&self, batch: usize) -> [usize; 4] {
        [
            self.views * batch,
            3,
            self.size as usize,
            self.size as usize,
        ]
    }
}

/// One training step's input: every view of B images, grouped by size.
#[derive(Clone, Debug, PartialEq)]
pub struct ViewBatch {
    /// Groups of equal-size views, in recipe order (globals first).
    pub groups: Vec<ViewGroup>,
    /// Dataset indices of the B images, in batch order (with skipping on, a bad image's
    /// replacement stands in its slot).
    pub indices: Vec<usize>,
    /// Labels of the B images (for monitoring only).
    pub labels: Vec<Option<usize>>,
    /// Number of leading groups that hold the recipe's global views (the teacher's input).
    pub global_groups: usize,
}

impl ViewBatch {
    /// Number of images B.
    pub fn batch_size(&self) -> usize {
        self.indices.len()
    }
}

/// The seeded shuffle of `0..len` used for `epoch` (Fisher-Yates on a ChaCha8 stream).
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(mix_seed(&[tag::ORDER, seed, epoch]));
    order.shuffle(&mut rng);
    order
}

/// The generator for every random choice made for sample `index` in `epoch`.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_seed(&[tag::SAMPLE, seed, epoch, index as u64]))
}

/// Shared state of a [`Loader`] and its prefetch thread.
struct LoaderState {
    dataset: Arc<dyn Dataset>,
    recipe: MultiCropRecipe,
    groups: Vec<(u32, usize, usize)>,
    batch_size: usize,
    seed: u64,
    /// This process's rank and the number of processes sharing each step.
    rank: usize,
    world: usize,
    /// The last epoch's order, cached: recomputing it costs O(len) per batch.
    order: Mutex<Option<(u64, Arc<Vec<usize>>)>>,
    /// Replace undecodable images instead of failing.
    skip_bad: AtomicBool,
    /// Dataset indices found bad so far.
    bad: Mutex<BTreeSet<usize>>,
}

/// Turns a dataset and a recipe into deterministic batches of views; cheap to clone.
#[derive(Clone)]
pub struct Loader {
    state: Arc<LoaderState>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("dataset", &self.state.dataset.describe())
            .field("views", &self.state.recipe.len())
            .field("batch_size", &self.state.batch_size)
            .field("seed", &self.state.seed)
            .finish()
    }
}

impl Loader {
    /// A loader of `batch_size` images per step, with randomness derived from `seed`.
    ///
    /// # Panics
    /// If `batch_size` is 0 or the recipe has no view.
    pub fn new(
        dataset: Arc<dyn Dataset>,
        recipe: MultiCropRecipe,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        assert!(!recipe.is_empty(), "multi-crop recipe has no view");
        let groups = recipe.size_groups();
        Self {
            state: Arc::new(LoaderState {
                dataset,
                recipe,
                groups,
                batch_size,
                seed,
                rank: 0,
                world: 1,
                order: Mutex::new(None),
                skip_bad: AtomicBool::new(false),
                bad: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Makes this loader rank `rank`'s share of a `world`-process run: each step, `batch_size`
    /// images of the world's `batch_size · world` (see the module docs).
    ///
    /// # Panics
    /// If `rank >= world`, or if this loader was already cloned.
    pub fn shard(mut self, rank: usize, world: usize) -> Self {
        assert!(rank < world, "rank {rank} out of a world of {world}");
        let st = Arc::get_mut(&mut self.state).expect("shard a loader before cloning it");
        st.rank = rank;
        st.world = world;
        self
    }

    /// Skips (`true`) or fails on (`false`, the default) images that cannot be read or
    /// decoded; see the module docs. Shared by clones of this loader.
    pub fn skip_bad_images(self, skip: bool) -> Self {
        self.state.skip_bad.store(skip, Ordering::Relaxed);
        self
    }

    /// Number of distinct images skipped as unreadable so far.
    pub fn skipped_images(&self) -> usize {
        self.state
            .bad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Dataset indices of the images skipped so far, ascending.
    pub fn skipped_indices(&self) -> Vec<usize> {
        let bad = self.state.bad.lock().unwrap_or_else(|e| e.into_inner());
        bad.iter().copied().collect()
    }

    /// Image at `position` of the epoch order, or with skipping on the first readable one
    /// from there on: `(dataset index, image)`.
    fn load(&self, order: &[usize], position: usize) -> Result<(usize, RgbImage), DataError> {
        let st = &*self.state;
        let index = order[position];
        let err = match st.dataset.get(index) {
            Ok(img) => return Ok((index, img)),
            Err(e) if e.is_bad_image() && st.skip_bad.load(Ordering::Relaxed) => e,
            Err(e) => return Err(e),
        };
        let mut last = err;
        let tries = MAX_CONSECUTIVE_BAD.min(order.len());
        for k in 0..tries {
            let candidate = order[(position + k) % order.len()];
            if k > 0 {
                match st.dataset.get(candidate) {
                    Ok(img) => return Ok((candidate, img)),
                    Err(e) if e.is_bad_image() => last = e,
                    Err(e) => return Err(e),
                }
            }
            let new = st
                .bad
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(candidate);
            if new {
                tracing::warn!(index = candidate, error = %last, "skipping bad image");
            }
        }
        Err(DataError::TooManyBadImages {
            tried: tries,
            last: Box::new(last),
        })
    }

    /// Full steps per epoch, each `batch_size · world` images (the rest is dropped).
    pub fn steps_per_epoch(&self) -> usize {
        self.state.dataset.len() / (self.state.batch_size * self.state.world)
    }

    /// Images per batch.
    pub fn batch_size(&self) -> usize {
        self.state.batch_size
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.state.dataset
    }

    /// The recipe.
    pub fn recipe(&self) -> &MultiCropRecipe {
        &self.state.recipe
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.state.seed
    }

    /// [`epoch_order`] for this loader, cached for the most recent epoch.
    fn order(&self, epoch: u64) -> Arc<Vec<usize>> {
        let mut cache = self.state.order.lock().unwrap_or_else(|e| e.into_inner());
        match &*cache {
            Some((e, order)) if *e == epoch => Arc::clone(order),
            _ => {
                let order = Arc::new(epoch_order(
                    self.state.dataset.len(),
                    self.state.seed,
                    epoch,
                ));
                *cache = Some((epoch, Arc::clone(&order)));
                order
            }
        }
    }

    /// Decodes and augments step `step` of `epoch`, one rayon task per image.
    ///
    /// # Errors
    /// [`DataError::StepOutOfRange`] past the end of the epoch; otherwise the first (in
    /// batch order) error of the dataset.
    pub fn batch(&self, epoch: u64, step: usize) -> Result<ViewBatch, DataError> {
        let steps = self.steps_per_epoch();
        if step >= steps {
            return Err(DataError::StepOutOfRange { step, steps });
        }
        let st = &*self.state;
        let (b, w) = (st.batch_size, st.world);
        let order = self.order(epoch);
        let first = step * b * w + st.rank;
        let samples = (0..b)
            .into_par_iter()
            .map(|k| {
                let position = first + k * w;
                let (index, img) = self.load(&order, position)?;
                let mut rng = sample_rng(st.seed, epoch, order[position]);
                Ok((index, st.recipe.apply(&img, &mut rng)))
            })
            .collect::<Vec<Result<_, DataError>>>();
        let samples: Vec<(usize, Vec<Vec<f32>>)> = samples.into_iter().collect::<Result<_, _>>()?;
        let indices: Vec<usize> = samples.iter().map(|s| s.0).collect();

        let groups = st
            .groups
            .iter()
            .map(|&(size, first_view, views)| {
                let per_image = 3 * size as usize * size as usize;
                let mut data = vec![0.0f32; views * b * per_image];
                data.par_chunks_mut(b * per_image)
                    .enumerate()
                    .for_each(|(k, chunk)| {
                        for (dst, sample) in chunk.chunks_exact_mut(per_image).zip(&samples) {
                            dst.copy_from_slice(&sample.1[first_view + k]);
                        }
                    });
                ViewGroup {
                    size,
                    views,
                    first_view,
                    data,
                }
            })
            .collect();
        let labels = indices.iter().map(|&i| st.dataset.label(i)).collect();
        Ok(ViewBatch {
            groups,
            indices,
            labels,
            global_groups: st.recipe.global_groups(),
        })
    }

    /// Steps `start_step..` of `epoch`, computed on a background thread up to
    /// [`PREFETCH_DEPTH`] batches ahead. Stops after the first error; dropping the
    /// iterator stops the thread (after the batch in progress) and joins it.
    pub fn prefetch(&self, epoch: u64, start_step: usize) -> Prefetch {
        let (tx, rx) = sync_channel(PREFETCH_DEPTH);
        let loader = self.clone();
        let handle = std::thread::Builder::new()
            .name("carp-prefetch".into())
            .spawn(move || {
                for step in start_step..loader.steps_per_epoch() {
                    let batch = loader.batch(epoch, step);
                    let failed = batch.is_err();
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
            })
            .expect("spawn the prefetch thread");
        Prefetch {
            rx: Some(rx),
            handle: Some(handle),
        }
    }
}

/// Iterator over batches computed ahead by a background thread; see [`Loader::prefetch`].
#[derive(Debug)]
pub struct Prefetch {
    rx: Option<Receiver<Result<ViewBatch, DataError>>>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetch {
    /// Closes the channel and waits for the thread; re-raises a panic of the thread.
    fn finish(&mut self) {
        self.rx = None;
        if let Some(handle) = self.handle.take() {
            if let Err(panic) = handle.join() {
                if !std::thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Iterator for Prefetch {
    type Item = Result<ViewBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let next = self.rx.as_ref()?.recv().ok();
        if next.is_none() {
            self.finish();
        }
        next
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SyntheticConfig, SyntheticShapes};
    use image::RgbImage;

    fn loader(n: usize, batch: usize, locals: usize) -> Loader {
        let ds = SyntheticShapes::new(SyntheticConfig {
            num_images: n,
            image_size: 32,
            seed: 4,
        });
        let recipe = MultiCropRecipe::carp(32, 16, (0.25, 1.0), (0.05, 0.25), locals);
        Loader::new(Arc::new(ds), recipe, batch, 42)
    }

    fn bits(b: &ViewBatch) -> Vec<Vec<u32>> {
        b.groups
            .iter()
            .map(|g| g.data.iter().map(|v| v.to_bits()).collect())
            .collect()
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn sample_rng_depends_on_all_three() {
        use rand::Rng;
        let draw = |s, e, i| sample_rng(s, e, i).random::<u64>();
        assert_eq!(draw(1, 2, 3), draw(1, 2, 3));
        assert_ne!(draw(1, 2, 3), draw(1, 2, 4));
        assert_ne!(draw(1, 2, 3), draw(1, 3, 3));
        assert_ne!(draw(1, 2, 3), draw(2, 2, 3));
    }

    #[test]
    fn steps_drop_the_last_partial_batch() {
        assert_eq!(loader(100, 32, 0).steps_per_epoch(), 3);
        assert_eq!(loader(96, 32, 0).steps_per_epoch(), 3);
        assert_eq!(loader(31, 32, 0).steps_per_epoch(), 0);
        let l = loader(100, 32, 0);
        assert!(matches!(
            l.batch(0, 3),
            Err(DataError::StepOutOfRange { step: 3, steps: 3 })
        ));
        // The steps of an epoch cover distinct images.
        let mut seen: Vec<usize> = (0..3)
            .flat_map(|s| l.batch(0, s).unwrap().indices)
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 96);
    }

    /// Two ranks with B/2 each: the same steps per epoch as one process with B, rank r
    /// holds the even/odd positions of the one-process batch, and each image's views are
    /// bit-identical to the one-process ones (augmentation does not depend on W).
    #[test]
    fn shards_interleave_the_one_process_batch() {
        let whole = loader(30, 8, 1);
        let shards = [loader(30, 4, 1).shard(0, 2), loader(30, 4, 1).shard(1, 2)];
        assert_eq!(whole.steps_per_epoch(), 3);
        assert!(shards.iter().all(|l| l.steps_per_epoch() == 3));
        for step in 0..3 {
            let all = whole.batch(2, step).unwrap();
            for (r, shard) in shards.iter().enumerate() {
                let part = shard.batch(2, step).unwrap();
                let expected: Vec<usize> = all.indices.iter().skip(r).step_by(2).copied().collect();
                assert_eq!(part.indices, expected, "rank {r}, step {step}");
                // group 0 holds the first global view of each image, 3·32·32 floats each
                let per = 3 * 32 * 32;
                for (k, _) in part.indices.iter().enumerate() {
                    let j = r + 2 * k;
                    assert_eq!(
                        part.groups[0].data[k * per..(k + 1) * per],
                        all.groups[0].data[j * per..(j + 1) * per]
                    );
                }
            }
        }
        assert!(matches!(
            shards[1].batch(0, 3),
            Err(DataError::StepOutOfRange { step: 3, steps: 3 })
        ));
    }

    #[test]
    fn groups_have_the_right_shapes_and_contents() {
        let l = loader(20, 4, 3);
        let batch = l.batch(1, 2).unwrap();
        assert_eq!(batch.batch_size(), 4);
        assert_eq!(batch.indices, epoch_order(20, 42, 1)[8..12]);
        let labels: Vec<_> = batch.indices.iter().map(|&i| Some(i % 10)).collect();
        assert_eq!(batch.labels, labels);
        assert_eq!(batch.groups.len(), 2);
        let (g, l16) = (&batch.groups[0], &batch.groups[1]);
        assert_eq!((g.size, g.views, g.first_view), (32, 2, 0));
        assert_eq!((l16.size, l16.views, l16.first_view), (16, 3, 2));
        assert_eq!(g.shape(4), [8, 3, 32, 32]);
        assert_eq!(g.data.len(), 8 * 3 * 32 * 32);
        assert_eq!(l16.data.len(), 12 * 3 * 16 * 16);
        // View-major: image b of view v sits at v·B + b, and equals the recipe's view v for
        // that sample with its own generator.
        let ds = l.dataset();
        for (b, &index) in batch.indices.iter().enumerate() {
            let views = l
                .recipe()
                .apply(&ds.get(index).unwrap(), &mut sample_rng(42, 1, index));
            assert_eq!(views.len(), 5);
            for (v, view) in views.iter().enumerate() {
                let (group, k) = if v < 2 { (g, v) } else { (l16, v - 2) };
                let per = 3 * (group.size * group.size) as usize;
                let at = (k * 4 + b) * per;
                assert_eq!(&group.data[at..at + per], &view[..], "image {b} view {v}");
            }
        }
    }

    #[test]
    fn batches_do_not_depend_on_thread_count() {
        let l = loader(64, 16, 2);
        let run = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| l.batch(3, 1).unwrap())
        };
        let one = run(1);
        let two = run(2);
        assert_eq!(bits(&one), bits(&two));
        assert_eq!(one.indices, two.indices);
        // A fresh loader (empty order cache) agrees too, and other epochs differ.
        assert_eq!(bits(&loader(64, 16, 2).batch(3, 1).unwrap()), bits(&one));
        assert_ne!(bits(&l.batch(4, 1).unwrap()), bits(&one));
    }

    #[test]
    fn prefetch_matches_batch() {
        let l = loader(50, 8, 1);
        let got: Vec<ViewBatch> = l.prefetch(2, 1).map(Result::unwrap).collect();
        assert_eq!(got.len(), 5);
        for (k, b) in got.iter().enumerate() {
            assert_eq!(bits(b), bits(&l.batch(2, k + 1).unwrap()));
            assert_eq!(b.indices, l.batch(2, k + 1).unwrap().indices);
        }
        // Dropping early stops the thread cleanly.
        let mut it = l.prefetch(0, 0);
        assert!(it.next().unwrap().is_ok());
        drop(it);
        assert_eq!(l.prefetch(0, 6).count(), 0);
    }

    /// A dataset of 8 images whose images in `bad` fail to read.
    struct Broken {
        bad: Vec<usize>,
    }

    impl Dataset for Broken {
        fn len(&self) -> usize {
            8
        }
        fn get(&self, index: usize) -> Result<RgbImage, DataError> {
            if self.bad.contains(&index) {
                Err(DataError::Io {
                    path: format!("broken/{index}.png").into(),
                    source: std::io::ErrorKind::InvalidData.into(),
                })
            } else {
                Ok(RgbImage::from_pixel(
                    8,
                    8,
                    image::Rgb([index as u8 * 30; 3]),
                ))
            }
        }
        fn label(&self, _: usize) -> Option<usize> {
            None
        }
        fn num_classes(&self) -> usize {
            0
        }
        fn describe(&self) -> String {
            "broken".into()
        }
    }

    #[test]
    fn errors_surface_and_stop_prefetch() {
        let l = broken_loader(&[3]);
        let results: Vec<_> = l.prefetch(0, 0).collect();
        let failed = results.iter().position(Result::is_err).unwrap();
        assert_eq!(failed, results.len() - 1, "prefetch stops after the error");
        let err = results[failed].as_ref().unwrap_err().to_string();
        assert!(err.contains("broken/3.png"), "{err}");
        assert!(l.batch(0, failed).is_err());
    }

    fn broken_loader(bad: &[usize]) -> Loader {
        Loader::new(
            Arc::new(Broken { bad: bad.to_vec() }),
            MultiCropRecipe::carp(8, 4, (0.5, 1.0), (0.1, 0.5), 1),
            2,
            0,
        )
    }

    #[test]
    fn skip_bad_images_replaces_and_counts() {
        let order = epoch_order(8, 0, 1);
        // Two bad images next to each other in the epoch order, and one more.
        let bad = [order[2], order[3], order[6]];
        let l = broken_loader(&bad).skip_bad_images(true);
        let good = broken_loader(&[]);
        let batches: Vec<ViewBatch> = l.prefetch(1, 0).map(Result::unwrap).collect();
        assert_eq!(batches.len(), 4);
        let used: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        // Slots 2 and 3 both fall through to order[4]; slot 6 to order[7].
        let want: Vec<usize> = [0, 1, 4, 4, 4, 5, 7, 7].iter().map(|&p| order[p]).collect();
        assert_eq!(used, want);
        let mut sorted = bad.to_vec();
        sorted.sort_unstable();
        assert_eq!(l.skipped_indices(), sorted);
        assert_eq!(l.skipped_images(), 3);
        // Batches without a bad image equal those of a clean loader; a replaced slot keeps
        // its own generator, so the two copies of order[4] in step 1 differ.
        assert_eq!(bits(&batches[0]), bits(&good.batch(1, 0).unwrap()));
        let g = &batches[1].groups[0];
        let per = 3 * 8 * 8;
        assert_ne!(g.data[..per], g.data[per..2 * per]);
        // A second epoch counts each bad file once.
        l.prefetch(2, 0).for_each(|b| drop(b.unwrap()));
        assert_eq!(l.skipped_images(), 3);
        // Everything bad: a clear error after the retry limit, not a hang or a panic.
        let all = broken_loader(&[0, 1, 2, 3, 4, 5, 6, 7]).skip_bad_images(true);
        let err = all.batch(0, 0).unwrap_err();
        assert!(
            matches!(err, DataError::TooManyBadImages { tried: 8, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("broken/"), "{err}");
    }
}
