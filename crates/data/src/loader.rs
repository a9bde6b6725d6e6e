//! Batches built on worker threads with a bounded prefetch, delivered in a fixed order, so the model never
//! waits on image decoding and a run is reproducible whatever the number of workers.

use crate::augment::{sample_rng, Augmenter};
use crate::image_ops::to_chw;
use rand::seq::SliceRandom;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One target row, as Ultralytics' collate makes it: image index in the batch, class, normalized xywh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pub batch_idx: usize,
    pub cls: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// A batch of images (N, 3, H, W) in [0, 1] and its targets.
#[derive(Debug, Clone)]
pub struct Batch {
    pub images: Vec<f32>,
    pub shape: [usize; 4],
    pub targets: Vec<Target>,
    pub indices: Vec<usize>,
}

/// Iterates batches produced by worker threads; worker `k` builds batches `k, k + W, ...`. A worker that
/// dies yields an error (with its panic message) instead of ending the iteration early.
pub struct BatchIter<T> {
    receivers: Vec<Receiver<T>>,
    next: usize,
    total: usize,
    handles: Vec<Option<JoinHandle<()>>>,
}

impl<T> Iterator for BatchIter<T> {
    type Item = crate::Result<T>;
    fn next(&mut self) -> Option<crate::Result<T>> {
        if self.next >= self.total {
            return None;
        }
        let w = self.next % self.receivers.len();
        self.next += 1;
        Some(self.receivers[w].recv().map_err(|_| {
            // The sender is gone before the last batch: the worker panicked.
            self.next = self.total;
            let why = match self.handles[w].take().map(JoinHandle::join) {
                Some(Err(p)) => p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
                _ => "exited early".into(),
            };
            crate::DataError::Worker(why)
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.next;
        (n, Some(n))
    }
}

impl<T> ExactSizeIterator for BatchIter<T> {}

/// Runs `make(b)` for `b in 0..total` on `workers` threads, each keeping up to `prefetch` results ready.
pub fn parallel_batches<T: Send + 'static>(
    total: usize,
    workers: usize,
    prefetch: usize,
    make: Arc<dyn Fn(usize) -> T + Send + Sync>,
) -> BatchIter<T> {
    let workers = workers.clamp(1, total.max(1));
    let mut receivers = Vec::new();
    let mut handles = Vec::new();
    for k in 0..workers {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let make = make.clone();
        handles.push(Some(std::thread::spawn(move || {
            let mut b = k;
            while b < total {
                if tx.send(make(b)).is_err() {
                    return; // the consumer stopped early
                }
                b += workers;
            }
        })));
        receivers.push(rx);
    }
    BatchIter {
        receivers,
        next: 0,
        total,
        handles,
    }
}

fn collate(samples: Vec<(usize, image::RgbImage, Vec<crate::labels::Label>)>) -> Batch {
    let (w, h) = samples[0].1.dimensions();
    let mut images = Vec::with_capacity(samples.len() * 3 * (w * h) as usize);
    let mut targets = Vec::new();
    let mut indices = Vec::new();
    for (bi, (idx, img, labels)) in samples.into_iter().enumerate() {
        images.extend(to_chw(&img));
        indices.push(idx);
        targets.extend(labels.iter().map(|l| Target {
            batch_idx: bi,
            cls: l.cls,
            cx: l.cx,
            cy: l.cy,
            w: l.w,
            h: l.h,
        }));
    }
    Batch {
        shape: [indices.len(), 3, h as usize, w as usize],
        images,
        targets,
        indices,
    }
}

/// The sample order of an epoch (shuffled by seed and epoch).
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut sample_rng(seed, epoch, usize::MAX));
    }
    order
}

/// Augmented training batches for one epoch.
pub fn train_batches(
    aug: Arc<Augmenter>,
    epoch: usize,
    batch: usize,
    workers: usize,
    mosaic_enabled: bool,
) -> BatchIter<Batch> {
    let order = Arc::new(epoch_order(aug.dataset.len(), aug.seed, epoch, true));
    let total = order.len().div_ceil(batch);
    let make = move |b: usize| {
        let ids = &order[b * batch..((b + 1) * batch).min(order.len())];
        collate(
            ids.iter()
                .map(|&i| {
                    let s = aug.train_sample(i, epoch, mosaic_enabled);
                    (i, s.image, s.labels)
                })
                .collect(),
        )
    };
    parallel_batches(total, workers, 2, Arc::new(make))
}

/// How validation images are grouped and shaped: Ultralytics' square batches, or its rectangular ones
/// (images sorted by aspect ratio, each batch letterboxed to the smallest shape that holds its images).
#[derive(Debug, Clone, PartialEq)]
pub struct ValPlan {
    /// Dataset indices in batch order.
    pub order: Vec<usize>,
    /// The `(h, w)` every image of batch `i` is letterboxed to.
    pub shapes: Vec<(usize, usize)>,
    pub batch: usize,
}

impl ValPlan {
    /// Every image in dataset order, letterboxed to `imgsz x imgsz`.
    pub fn square(n: usize, batch: usize, imgsz: usize) -> ValPlan {
        let batch = batch.max(1);
        ValPlan {
            order: (0..n).collect(),
            shapes: vec![(imgsz, imgsz); n.div_ceil(batch)],
            batch,
        }
    }

    /// Ultralytics' `set_rectangle` for `sizes` (original `(w, h)` of each image): sorted by `h / w`, each
    /// batch's shape `ceil(ratio * imgsz / stride + pad) * stride` per side, where the ratio is
    /// `[max, 1]` for a batch of landscape images, `[1, 1 / min]` for portrait ones, else `[1, 1]`.
    /// Images of equal aspect ratio keep their dataset order (numpy's argsort leaves ties unspecified).
    pub fn rect(
        sizes: &[(u32, u32)],
        batch: usize,
        imgsz: usize,
        stride: usize,
        pad: f64,
    ) -> ValPlan {
        let batch = batch.max(1);
        let ar: Vec<f64> = sizes
            .iter()
            .map(|&(w, h)| h.max(1) as f64 / w.max(1) as f64)
            .collect();
        let mut order: Vec<usize> = (0..sizes.len()).collect();
        order.sort_by(|&a, &b| ar[a].total_cmp(&ar[b]));
        let side = |r: f64| ((r * imgsz as f64 / stride as f64 + pad).ceil() as usize) * stride;
        let shapes = order
            .chunks(batch)
            .map(|ids| {
                let (mini, maxi) = ids.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &i| {
                    (lo.min(ar[i]), hi.max(ar[i]))
                });
                let (rh, rw) = if maxi < 1.0 {
                    (maxi, 1.0)
                } else if mini > 1.0 {
                    (1.0, 1.0 / mini)
                } else {
                    (1.0, 1.0)
                };
                (side(rh), side(rw))
            })
            .collect();
        ValPlan {
            order,
            shapes,
            batch,
        }
    }
}

/// Letterboxed validation batches as `plan` groups and shapes them, with each image's letterbox placement.
pub fn val_batches(
    aug: Arc<Augmenter>,
    plan: ValPlan,
    workers: usize,
) -> BatchIter<(Batch, Vec<crate::image_ops::Letterbox>)> {
    let total = plan.shapes.len();
    let plan = Arc::new(plan);
    let make = move |b: usize| {
        let ids = plan.order.chunks(plan.batch).nth(b).unwrap_or(&[]);
        let (h, w) = plan.shapes[b];
        let mut lbs = Vec::new();
        let samples = ids
            .iter()
            .map(|&i| {
                let s = aug.val_sample(i, h, w);
                lbs.push(s.letterbox);
                (i, s.image, s.labels)
            })
            .collect();
        (collate(samples), lbs)
    };
    parallel_batches(total, workers, 2, Arc::new(make))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes worked out by hand from `set_rectangle`'s formula (imgsz 320, stride 32, pad 0.5).
    #[test]
    fn rect_plan_sorts_by_aspect_and_shapes_each_batch() {
        // (w, h): a square tile, a wide and a tall image, a slightly wide one.
        let sizes = [(400, 400), (640, 320), (300, 600), (500, 400)];
        let p = ValPlan::rect(&sizes, 2, 320, 32, 0.5);
        // h / w: 1.0, 0.5, 2.0, 0.8 -> sorted 0.5, 0.8 | 1.0, 2.0.
        assert_eq!(p.order, [1, 3, 0, 2]);
        // Batch 0 all landscape, max 0.8: h = ceil(0.8 * 10 + 0.5) * 32 = 288, w = ceil(10.5) * 32 = 352.
        // Batch 1 mixed (1.0 is not < 1 and 1.0 is not > 1): square 352.
        assert_eq!(p.shapes, [(288, 352), (352, 352)]);
        // A batch of portrait images: [1, 1 / min] with min 1.5 -> w = ceil(6.67 + 0.5) * 32 = 256.
        let p = ValPlan::rect(&[(200, 300), (100, 200)], 4, 320, 32, 0.5);
        assert_eq!(p.shapes, [(352, 256)]);
        assert_eq!(ValPlan::square(5, 2, 320).shapes, [(320, 320); 3]);
    }

    #[test]
    fn a_worker_that_panics_is_an_error_not_the_end_of_the_data() {
        let make: Arc<dyn Fn(usize) -> usize + Send + Sync> = Arc::new(|b| {
            if b == 3 {
                panic!("batch {b} cannot be built");
            }
            b
        });
        let got: Vec<crate::Result<usize>> = parallel_batches(6, 2, 1, make).collect();
        let first_err = got
            .iter()
            .position(|r| r.is_err())
            .expect("an error is reported");
        assert_eq!(first_err, 3, "batches before the failing one arrive");
        let msg = got[3].as_ref().unwrap_err().to_string();
        assert!(msg.contains("batch 3 cannot be built"), "{msg}");
        assert_eq!(got.len(), 4, "the iteration stops after the error");
    }
}
