//! The validation loop: letterboxed batches (rectangular by default, as Ultralytics) -> forward -> NMS (conf 0.001, IoU 0.7, multi-label) -> matching in
//! letterboxed pixels -> Ultralytics' metrics, plus the confusion matrix (conf 0.25, IoU 0.45).

use crate::metrics::{ap_per_class, match_predictions, DetMetrics, ImageStats};
use data::augment::{AugmentConfig, Augmenter};
use data::loader::{val_batches, ValPlan};
use data::Dataset;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::postprocess::{iou, non_max_suppression, Detection, NmsOptions};
use model::YoloModel;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct ValOptions {
    pub imgsz: usize,
    pub batch: usize,
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
    pub workers: usize,
    /// Ultralytics' rectangular batches (sorted by aspect ratio, each letterboxed to its own shape with half
    /// a stride of padding), as both its `yolo val` and its trainer's validation use; false: square batches.
    pub rect: bool,
    /// Also compute the detection loss on the validation batches (during training).
    pub with_loss: Option<crate::loss::LossGains>,
    /// Runs the model instead of its burn forward (an INT8 model on the CPU engine).
    pub forward: Option<Forward>,
}

/// A model's eval output for an NCHW batch `(images, b, h, w)`: `(b, 4 + nc, A)` flattened.
pub type ForwardFn =
    dyn Fn(&[f32], usize, usize, usize) -> std::result::Result<Vec<f32>, String> + Send + Sync;

/// A [`ForwardFn`] to hand to [`ValOptions::forward`].
#[derive(Clone)]
pub struct Forward(pub Arc<ForwardFn>);

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Forward(..)")
    }
}

impl Default for ValOptions {
    fn default() -> Self {
        ValOptions {
            imgsz: 640,
            batch: 16,
            conf: 0.001,
            iou: 0.7,
            max_det: 300,
            workers: 2,
            rect: true,
            with_loss: None,
            forward: None,
        }
    }
}

/// Ultralytics' detection confusion matrix: rows predicted class (last = background), columns true class.
#[derive(Debug, Clone)]
pub struct ConfusionMatrix {
    pub nc: usize,
    pub matrix: Vec<Vec<f64>>,
}

impl ConfusionMatrix {
    pub const CONF: f32 = 0.25;
    pub const IOU: f32 = 0.45;

    pub fn new(nc: usize) -> Self {
        ConfusionMatrix {
            nc,
            matrix: vec![vec![0.0; nc + 1]; nc + 1],
        }
    }

    pub fn process(&mut self, dets: &[Detection], gt: &[[f32; 4]], gt_cls: &[usize]) {
        let nc = self.nc;
        let dets: Vec<&Detection> = dets.iter().filter(|d| d.conf > Self::CONF).collect();
        if gt.is_empty() {
            for d in dets {
                self.matrix[d.cls][nc] += 1.0;
            }
            return;
        }
        if dets.is_empty() {
            for &c in gt_cls {
                self.matrix[nc][c] += 1.0;
            }
            return;
        }
        let mut m: Vec<(usize, usize, f32)> = Vec::new();
        for (i, g) in gt.iter().enumerate() {
            for (j, d) in dets.iter().enumerate() {
                let v = iou(*g, [d.x1, d.y1, d.x2, d.y2]);
                if v > Self::IOU {
                    m.push((i, j, v));
                }
            }
        }
        // Best IoU first, then one match per detection and one per target.
        m.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut used_det = vec![false; dets.len()];
        let mut used_gt = vec![false; gt.len()];
        let mut pairs = Vec::new();
        let mut by_det = Vec::new();
        for &(i, j, v) in &m {
            if !used_det[j] {
                used_det[j] = true;
                by_det.push((i, j, v));
            }
        }
        for &(i, j, _) in &by_det {
            if !used_gt[i] {
                used_gt[i] = true;
                pairs.push((i, j));
            }
        }
        for (i, &c) in gt_cls.iter().enumerate() {
            match pairs.iter().find(|p| p.0 == i) {
                Some(&(_, j)) => self.matrix[dets[j].cls][c] += 1.0,
                None => self.matrix[nc][c] += 1.0,
            }
        }
        for (j, d) in dets.iter().enumerate() {
            if !pairs.iter().any(|p| p.1 == j) {
                self.matrix[d.cls][nc] += 1.0;
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct ValResult {
    pub metrics: DetMetrics,
    pub images: usize,
    pub instances: usize,
    /// Images containing each class (index = class id).
    pub images_per_class: Vec<usize>,
    pub confusion: ConfusionMatrix,
    /// Milliseconds per image: preprocess (waiting on the loader), forward, NMS + matching.
    pub speed_ms: [f64; 3],
    /// Mean box, cls, dfl loss over the batches (zeros unless `with_loss`).
    pub losses: [f64; 3],
}

fn xyxy_px(t: &data::loader::Target, w: f32, h: f32) -> [f32; 4] {
    [
        (t.cx - t.w / 2.0) * w,
        (t.cy - t.h / 2.0) * h,
        (t.cx + t.w / 2.0) * w,
        (t.cy + t.h / 2.0) * h,
    ]
}

/// Validates `model` on a dataset split.
pub fn validate(
    model: &YoloModel,
    ds: Arc<Dataset>,
    o: &ValOptions,
    device: &Device,
) -> data::error::Result<ValResult> {
    let nc = model.nc();
    let aug = Arc::new(Augmenter::new(
        ds.clone(),
        AugmentConfig::default(),
        o.imgsz,
        0,
        false,
    ));
    let nms = NmsOptions {
        conf: o.conf,
        iou: o.iou,
        max_det: o.max_det,
        ..NmsOptions::val()
    };
    let mut stats = Vec::new();
    let mut confusion = ConfusionMatrix::new(nc);
    let mut images_per_class = vec![0; nc];
    let (mut t_pre, mut t_fwd, mut t_post) = (0.0, 0.0, 0.0);
    let mut n_img = 0;
    let mut losses = [0f64; 3];
    let mut n_batches = 0usize;
    let mut t0 = Instant::now();
    let plan = if o.rect {
        let sizes: Vec<(u32, u32)> = ds.samples.iter().map(|s| s.size).collect();
        // The model's largest stride, at least 32 (Ultralytics' `gs`).
        let stride = model
            .detect()
            .strides
            .iter()
            .fold(32.0f32, |a, &b| a.max(b)) as usize;
        ValPlan::rect(&sizes, o.batch, o.imgsz, stride, 0.5)
    } else {
        ValPlan::square(ds.len(), o.batch, o.imgsz)
    };
    for item in val_batches(aug, plan, o.workers) {
        let (mut batch, _lbs) = item?;
        t_pre += t0.elapsed().as_secs_f64();
        let [b, _, h, w] = batch.shape;
        let t1 = Instant::now();
        let (a, host) = match &o.forward {
            Some(f) => {
                let host =
                    (f.0)(&batch.images, b, h, w).map_err(|e| data::error::DataError::Config {
                        file: "the model".into(),
                        msg: e,
                    })?;
                (host.len() / (b * (4 + nc)).max(1), host)
            }
            None => {
                let x = Tensor::<4>::from_data(
                    TensorData::new(std::mem::take(&mut batch.images), batch.shape),
                    device,
                );
                let (raw, out) = model.forward_both(x);
                if let Some(g) = o.with_loss {
                    let d = model.detect();
                    let l = crate::loss::detection_loss(
                        &raw,
                        &d.strides,
                        nc,
                        d.reg_max,
                        &batch.targets,
                        (h, w),
                        g,
                    );
                    for (acc, c) in losses.iter_mut().zip(l.components) {
                        *acc += c as f64;
                    }
                    n_batches += 1;
                }
                let a = out.dims()[2];
                let host = out
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32 output");
                (a, host)
            }
        };
        t_fwd += t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        for bi in 0..b {
            let pred = &host[bi * (4 + nc) * a..(bi + 1) * (4 + nc) * a];
            let dets = non_max_suppression(pred, nc, a, &nms);
            let targets: Vec<&data::loader::Target> =
                batch.targets.iter().filter(|t| t.batch_idx == bi).collect();
            let gt: Vec<[f32; 4]> = targets
                .iter()
                .map(|t| xyxy_px(t, w as f32, h as f32))
                .collect();
            let gt_cls: Vec<usize> = targets.iter().map(|t| t.cls).collect();
            let mut present = gt_cls.clone();
            present.sort_unstable();
            present.dedup();
            for c in present {
                images_per_class[c] += 1;
            }
            confusion.process(&dets, &gt, &gt_cls);
            stats.push(ImageStats {
                correct: match_predictions(&dets, &gt, &gt_cls),
                conf: dets.iter().map(|d| d.conf).collect(),
                pred_cls: dets.iter().map(|d| d.cls).collect(),
                target_cls: gt_cls,
            });
        }
        t_post += t2.elapsed().as_secs_f64();
        n_img += b;
        t0 = Instant::now();
    }
    let instances = stats.iter().map(|s| s.target_cls.len()).sum();
    let per = |t: f64| t * 1e3 / n_img.max(1) as f64;
    Ok(ValResult {
        metrics: ap_per_class(&stats),
        images: n_img,
        instances,
        images_per_class,
        confusion,
        speed_ms: [per(t_pre), per(t_fwd), per(t_post)],
        losses: losses.map(|l| l / n_batches.max(1) as f64),
    })
}

/// The table Ultralytics prints after validation.
pub fn render(r: &ValResult, names: &[String]) -> String {
    let m = &r.metrics;
    let mut s = format!(
        "{:>22}{:>11}{:>11}{:>11}{:>11}{:>11}{:>11}\n",
        "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)"
    );
    s += &format!(
        "{:>22}{:>11}{:>11}{:>11.3}{:>11.3}{:>11.3}{:>11.3}\n",
        "all",
        r.images,
        r.instances,
        m.mp(),
        m.mr(),
        m.map50(),
        m.map()
    );
    if names.len() > 1 {
        for (i, &c) in m.classes.iter().enumerate() {
            s += &format!(
                "{:>22}{:>11}{:>11}{:>11.3}{:>11.3}{:>11.3}{:>11.3}\n",
                names.get(c).map(String::as_str).unwrap_or("?"),
                r.images_per_class.get(c).copied().unwrap_or(0),
                m.nt[i],
                m.p[i],
                m.r[i],
                m.ap50[i],
                m.ap[i]
            );
        }
    }
    s += &format!(
        "Speed: {:.1}ms preprocess, {:.1}ms inference, {:.1}ms postprocess per image\n",
        r.speed_ms[0], r.speed_ms[1], r.speed_ms[2]
    );
    s
}

/// The machine-readable summary (`--json`).
pub fn to_json(r: &ValResult, names: &[String]) -> serde_json::Value {
    let m = &r.metrics;
    let per_class: Vec<serde_json::Value> = m
        .classes
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            serde_json::json!({
                "class": c, "name": names.get(c), "images": r.images_per_class.get(c), "instances": m.nt[i],
                "precision": m.p[i], "recall": m.r[i], "mAP50": m.ap50[i], "mAP50-95": m.ap[i],
            })
        })
        .collect();
    serde_json::json!({
        "images": r.images,
        "instances": r.instances,
        "precision": m.mp(),
        "recall": m.mr(),
        "mAP50": m.map50(),
        "mAP50-95": m.map(),
        "fitness": m.fitness(),
        "per_class": per_class,
        "confusion_matrix": r.confusion.matrix,
        "speed_ms": {"preprocess": r.speed_ms[0], "inference": r.speed_ms[1], "postprocess": r.speed_ms[2]},
    })
}
