//! What a run trains and validates on, by the model's task: a detection dataset (data.yaml, YOLO labels)
//! through the mosaic augmenter, or an image-folder classification dataset through Ultralytics' classify
//! transform. Both give the trainer the same batches (a classifier's targets are one class per image).

use crate::trainer::TrainArgs;
use anyhow::{bail, Result};
use data::augment::Augmenter;
use data::classify_augment::ClassifyAugment;
use data::classify_loader::{classify_batches, ClassifySource};
use data::image_folder::{ClassifyData, ImageFolder};
use data::loader::{train_batches, Batch, BatchIter};
use data::{DataConfig, Dataset};
use model::Task;
use std::path::Path;
use std::sync::Arc;

pub enum RunData {
    Detect {
        names: Vec<String>,
        aug: Arc<Augmenter>,
        val: Option<Arc<Dataset>>,
    },
    Classify {
        names: Vec<String>,
        train: Arc<ClassifySource>,
        val: Option<ImageFolder>,
    },
}

/// Ultralytics' classify augmentation keys from the run's arguments (`scale` gives the crop's area range).
pub fn classify_augment(a: &TrainArgs) -> Result<ClassifyAugment> {
    let no_jitter = a.augment.hsv_h == 0.0 && a.augment.hsv_s == 0.0 && a.augment.hsv_v == 0.0;
    let rand_augment = match a.auto_augment.to_ascii_lowercase().as_str() {
        "randaugment" => true,
        // Without a policy Ultralytics applies ColorJitter(hsv_v, hsv_v, hsv_s, hsv_h), the identity at zeros.
        "" | "none" if no_jitter => false,
        "" | "none" => bail!(
            "auto_augment none: Ultralytics then applies ColorJitter from hsv_h/hsv_s/hsv_v, which is not \
             implemented; set hsv_h, hsv_s and hsv_v to 0, or use randaugment"
        ),
        other => bail!(
            "auto_augment {other:?}: randaugment (Ultralytics' default) and none are implemented; \
             autoaugment and augmix are not"
        ),
    };
    Ok(ClassifyAugment {
        area: ((1.0 - f64::from(a.augment.scale)).max(0.0), 1.0),
        hflip: f64::from(a.augment.fliplr),
        vflip: f64::from(a.augment.flipud),
        rand_augment,
        erasing: a.erasing,
        ..ClassifyAugment::default()
    })
}

impl RunData {
    /// The dataset of `a.data` read for `task`, each split reported as it loads.
    pub fn open(a: &TrainArgs, task: Task) -> Result<RunData> {
        match task {
            Task::Detect => {
                let cfg = DataConfig::from_file(Path::new(&a.data))?;
                let train = Arc::new(Dataset::load(&cfg, "train")?);
                eprint!("{}", train.report());
                let val = if a.val {
                    let v = Arc::new(Dataset::load(&cfg, "val")?);
                    eprint!("{}", v.report());
                    Some(v)
                } else {
                    None
                };
                let aug = Arc::new(Augmenter::new(
                    train,
                    a.augment.clone(),
                    a.imgsz,
                    a.seed,
                    a.cache,
                ));
                Ok(RunData::Detect {
                    names: cfg.names,
                    aug,
                    val,
                })
            }
            Task::Classify => {
                let augment = classify_augment(a)?;
                let data = ClassifyData::open(Path::new(&a.data))?;
                let scan = |split: &str| -> Result<ImageFolder> {
                    let f = data.split(split)?;
                    for w in &f.warnings {
                        eprintln!("warning: {w}");
                    }
                    eprintln!(
                        "{split}: {} images in {} classes ({})",
                        f.len(),
                        f.classes.len(),
                        f.root.display()
                    );
                    if f.is_empty() {
                        bail!("{}: no images to {split} on", f.root.display());
                    }
                    Ok(f)
                };
                let train = scan("train")?;
                let val = if a.val { Some(scan("val")?) } else { None };
                let train = ClassifySource::new(train, augment, a.imgsz as u32, a.seed, a.cache)?;
                Ok(RunData::Classify {
                    names: data.names,
                    train: Arc::new(train),
                    val,
                })
            }
        }
    }

    pub fn task(&self) -> Task {
        match self {
            RunData::Detect { .. } => Task::Detect,
            RunData::Classify { .. } => Task::Classify,
        }
    }

    pub fn names(&self) -> &[String] {
        match self {
            RunData::Detect { names, .. } | RunData::Classify { names, .. } => names,
        }
    }

    pub fn n_train(&self) -> usize {
        match self {
            RunData::Detect { aug, .. } => aug.dataset.len(),
            RunData::Classify { train, .. } => train.len(),
        }
    }

    /// One epoch's training batches (`mosaic` only matters to a detector).
    pub fn batches(
        &self,
        epoch: usize,
        batch: usize,
        workers: usize,
        mosaic: bool,
    ) -> BatchIter<Batch> {
        match self {
            RunData::Detect { aug, .. } => {
                train_batches(aug.clone(), epoch, batch, workers, mosaic)
            }
            RunData::Classify { train, .. } => {
                classify_batches(train.clone(), epoch, batch, workers)
            }
        }
    }

    /// The first `n` training samples as the model sees them in `epoch`, written as `train_batch{i}.jpg`:
    /// a detector's with their boxes, a classifier's with their class name.
    pub fn dump_previews(&self, dir: &Path, n: usize, epoch: usize, mosaic: bool) -> Result<()> {
        for i in 0..n.min(self.n_train()) {
            let img = match self {
                RunData::Detect { aug, .. } => {
                    let s = aug.train_sample(i, epoch, mosaic);
                    let mut img = s.image;
                    data::draw::draw_labels(&mut img, &s.labels);
                    img
                }
                RunData::Classify { names, train, .. } => {
                    let (x, class) = train.sample(i, epoch);
                    let mut img = from_chw(&x, train.imgsz);
                    let name = names
                        .get(class)
                        .cloned()
                        .unwrap_or_else(|| class.to_string());
                    data::draw::draw_text_block(&mut img, 0.0, 0.0, &[name]);
                    img
                }
            };
            data::image_ops::save_rgb(&img, &dir.join(format!("train_batch{i}.jpg")))?;
        }
        Ok(())
    }
}

/// A `[3, s, s]` input in [0, 1] back to an image (for previews).
fn from_chw(x: &[f32], s: u32) -> image::RgbImage {
    let plane = (s * s) as usize;
    image::RgbImage::from_fn(s, s, |px, py| {
        let i = (py * s + px) as usize;
        let v = |c: usize| (x[c * plane + i] * 255.0).round().clamp(0.0, 255.0) as u8;
        image::Rgb([v(0), v(1), v(2)])
    })
}
