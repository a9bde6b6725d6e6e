//! Classification training batches: each image of an [`ImageFolder`] through [`ClassifyAugment`] with a
//! generator seeded by (seed, epoch, index), shuffled per epoch, built on worker threads like the detection
//! batches. A batch's targets carry one row per image (its class; no box), so the trainer's step and
//! data-parallel split handle both tasks.

use crate::augment::sample_rng;
use crate::classify_augment::ClassifyAugment;
use crate::image_folder::ImageFolder;
use crate::image_ops::read_rgb;
use crate::loader::{epoch_order, parallel_batches, Batch, BatchIter, Target};
use image::RgbImage;
use std::sync::Arc;

/// A split's images, the transform and the input size; decoded images are kept in memory with `cache`.
pub struct ClassifySource {
    pub folder: ImageFolder,
    pub augment: ClassifyAugment,
    pub imgsz: u32,
    pub seed: u64,
    cached: Option<Vec<RgbImage>>,
}

impl ClassifySource {
    /// With `cache`, every image is decoded now (the scan has verified each one).
    pub fn new(
        folder: ImageFolder,
        augment: ClassifyAugment,
        imgsz: u32,
        seed: u64,
        cache: bool,
    ) -> crate::Result<ClassifySource> {
        let cached = if cache {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let decoded = crate::par_map(
                &folder.samples,
                threads,
                |(f, _)| read_rgb(f).map_err(|e| format!("{e:#}")),
                || Err("the decoder panicked".into()),
            );
            let mut images = Vec::with_capacity(decoded.len());
            for ((f, _), d) in folder.samples.iter().zip(decoded) {
                images.push(d.map_err(|msg| crate::DataError::Io {
                    path: f.display().to_string(),
                    msg,
                })?);
            }
            Some(images)
        } else {
            None
        };
        Ok(ClassifySource {
            folder,
            augment,
            imgsz,
            seed,
            cached,
        })
    }

    pub fn len(&self) -> usize {
        self.folder.len()
    }

    pub fn is_empty(&self) -> bool {
        self.folder.is_empty()
    }

    /// Sample `i` as the model is trained on it in `epoch`: `[3, imgsz, imgsz]` in [0, 1], and its class.
    /// An image that no longer decodes (it changed on disk since the scan) is a panic naming the file, which
    /// the batch iterator reports as a worker error.
    pub fn sample(&self, i: usize, epoch: usize) -> (Vec<f32>, usize) {
        let (file, class) = &self.folder.samples[i];
        let mut rng = sample_rng(self.seed, epoch, i);
        let x = match &self.cached {
            Some(images) => self.augment.apply(&images[i], self.imgsz, &mut rng),
            None => match read_rgb(file) {
                Ok(img) => self.augment.apply(&img, self.imgsz, &mut rng),
                Err(e) => panic!(
                    "{}: {e:#} (it decoded when the split was scanned)",
                    file.display()
                ),
            },
        };
        (x, *class)
    }
}

/// One epoch's training batches, in the epoch's shuffled order.
pub fn classify_batches(
    src: Arc<ClassifySource>,
    epoch: usize,
    batch: usize,
    workers: usize,
) -> BatchIter<Batch> {
    let order = Arc::new(epoch_order(src.len(), src.seed, epoch, true));
    let total = order.len().div_ceil(batch);
    let s = src.imgsz as usize;
    let make = move |b: usize| {
        let ids = &order[b * batch..((b + 1) * batch).min(order.len())];
        let mut images = Vec::with_capacity(ids.len() * 3 * s * s);
        let mut targets = Vec::with_capacity(ids.len());
        for (bi, &i) in ids.iter().enumerate() {
            let (x, cls) = src.sample(i, epoch);
            images.extend_from_slice(&x);
            targets.push(Target {
                batch_idx: bi,
                cls,
                cx: 0.0,
                cy: 0.0,
                w: 0.0,
                h: 0.0,
            });
        }
        Batch {
            images,
            shape: [ids.len(), 3, s, s],
            targets,
            indices: ids.to_vec(),
        }
    };
    parallel_batches(total, workers, 2, Arc::new(make))
}
