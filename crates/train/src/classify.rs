//! Validation of a classifier as Ultralytics' `ClassificationValidator`: each image through `classify_transforms`
//! (shorter side to imgsz with Pillow's bilinear filter, centre crop), the model's softmax, the top five classes
//! by probability; top-1 and top-5 accuracy over the split, and the confusion matrix of the top-1 classes.

use anyhow::{bail, Result};
use data::classify::eval_input;
use data::image_folder::ImageFolder;
use data::image_ops::read_rgb;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::postprocess::top_k;
use model::YoloModel;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// What the validator found.
#[derive(Debug, Clone, Serialize)]
pub struct ClassifyResult {
    pub top1: f64,
    pub top5: f64,
    /// Cross-entropy of the true classes, the mean of the batches' means (Ultralytics' val/loss).
    pub loss: f64,
    pub images: usize,
    /// `confusion[predicted][true]`, as Ultralytics' classify confusion matrix.
    pub confusion: Vec<Vec<u64>>,
    /// Per image, in the split's order: its class and the model's top classes (at most five).
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
    pub ms_per_image: f64,
}

#[derive(Debug, Clone)]
pub struct Prediction {
    pub file: PathBuf,
    pub class: usize,
    pub top: Vec<usize>,
    pub probs: Vec<f32>,
}

/// Reads and transforms `files` on `threads` threads: one `3 x size x size` input per file, or why not.
fn load_batch(files: &[PathBuf], size: u32, threads: usize) -> Vec<Result<Vec<f32>, String>> {
    data::par_map(
        files,
        threads,
        |f| {
            read_rgb(f)
                .map(|img| eval_input(&img, size))
                .map_err(|e| format!("{e:#}"))
        },
        || Err("the decoder panicked".into()),
    )
}

/// Runs the classifier over the split in batches of `batch` images at `imgsz`.
pub fn validate_classifier(
    model: &YoloModel,
    ds: &ImageFolder,
    imgsz: usize,
    batch: usize,
    workers: usize,
    device: &Device,
) -> Result<ClassifyResult> {
    if ds.is_empty() {
        bail!("{}: no images to validate on", ds.root.display());
    }
    let nc = model.nc();
    let n5 = nc.min(5);
    let size = imgsz as u32;
    let mut predictions = Vec::with_capacity(ds.len());
    let mut confusion = vec![vec![0u64; nc]; nc];
    let t0 = Instant::now();
    let mut batch_losses = Vec::new();
    for part in ds.samples.chunks(batch.max(1)) {
        let files: Vec<PathBuf> = part.iter().map(|(f, _)| f.clone()).collect();
        let inputs = load_batch(&files, size, workers.max(1));
        let mut flat = Vec::with_capacity(part.len() * 3 * imgsz * imgsz);
        for (f, x) in files.iter().zip(&inputs) {
            match x {
                Ok(v) => flat.extend_from_slice(v),
                // The scan decoded every file; one that fails now changed on disk since.
                Err(e) => bail!("{}: {e}", f.display()),
            }
        }
        let x = Tensor::<4>::from_data(
            TensorData::new(flat, vec![part.len(), 3, imgsz, imgsz]),
            device,
        );
        let probs = model
            .classify(x)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("probabilities: {e:?}"))?;
        let mut loss = 0.0;
        for (i, (f, class)) in part.iter().enumerate() {
            let p = probs[i * nc..(i + 1) * nc].to_vec();
            // -log of the softmax is the cross-entropy of the logits; the floor keeps a confident miss finite.
            loss -= f64::from(p.get(*class).copied().unwrap_or(0.0))
                .max(1e-45)
                .ln();
            let top = top_k(&p, n5);
            if let (Some(&t1), true) = (top.first(), *class < nc) {
                confusion[t1][*class] += 1;
            }
            predictions.push(Prediction {
                file: f.clone(),
                class: *class,
                top,
                probs: p,
            });
        }
        batch_losses.push(loss / part.len() as f64);
    }
    let n = predictions.len() as f64;
    let loss = batch_losses.iter().sum::<f64>() / batch_losses.len().max(1) as f64;
    let top1 = predictions
        .iter()
        .filter(|p| p.top.first() == Some(&p.class))
        .count() as f64
        / n;
    let top5 = predictions
        .iter()
        .filter(|p| p.top.contains(&p.class))
        .count() as f64
        / n;
    Ok(ClassifyResult {
        top1,
        top5,
        loss,
        images: predictions.len(),
        confusion,
        predictions,
        ms_per_image: t0.elapsed().as_secs_f64() * 1e3 / n,
    })
}

/// Ultralytics' table: `classes top1_acc top5_acc`, then the `all` row.
pub fn render(r: &ClassifyResult) -> String {
    format!(
        "{:>22}{:>11}{:>11}\n{:>22}{:>11.3}{:>11.3}\n{} images, {:.1} ms each (load, transform, forward)\n",
        "classes",
        "top1_acc",
        "top5_acc",
        "all",
        r.top1,
        r.top5,
        r.images,
        r.ms_per_image
    )
}
