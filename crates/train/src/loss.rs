//! Ultralytics' v8DetectionLoss: anchors at cell centres, DFL box decoding, the TaskAlignedAssigner (run on the
//! host from detached predictions: it is many small, data-dependent steps), then CIoU box loss, DFL loss and
//! BCE class loss on tensors so gradients flow. Gains box 7.5, cls 0.5, dfl 1.5; the total is times batch size.

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor, TensorData};
use data::loader::Target;

#[derive(Debug, Clone, Copy)]
pub struct LossGains {
    pub box_gain: f32,
    pub cls_gain: f32,
    pub dfl_gain: f32,
}

impl Default for LossGains {
    fn default() -> Self {
        LossGains {
            box_gain: 7.5,
            cls_gain: 0.5,
            dfl_gain: 1.5,
        }
    }
}

const TOPK: usize = 10;
const ALPHA: f32 = 0.5;
const BETA: i32 = 6;
const EPS: f32 = 1e-9;

/// The loss to backpropagate (already times batch size) and the three gained components for logging.
pub struct LossOutput {
    pub total: Tensor<1>,
    pub components: [f32; 3],
}

/// CIoU of corner boxes, Ultralytics' `bbox_iou(..., CIoU=True)` with eps 1e-7 (host version for the assigner).
pub fn ciou(b1: [f32; 4], b2: [f32; 4]) -> f32 {
    let eps = 1e-7f32;
    let (w1, h1) = (b1[2] - b1[0], b1[3] - b1[1] + eps);
    let (w2, h2) = (b2[2] - b2[0], b2[3] - b2[1] + eps);
    let inter = (b1[2].min(b2[2]) - b1[0].max(b2[0])).max(0.0)
        * (b1[3].min(b2[3]) - b1[1].max(b2[1])).max(0.0);
    let union = w1 * h1 + w2 * h2 - inter + eps;
    let iou = inter / union;
    let cw = b1[2].max(b2[2]) - b1[0].min(b2[0]);
    let ch = b1[3].max(b2[3]) - b1[1].min(b2[1]);
    let c2 = cw * cw + ch * ch + eps;
    let rho2 =
        ((b2[0] + b2[2] - b1[0] - b1[2]).powi(2) + (b2[1] + b2[3] - b1[1] - b1[3]).powi(2)) / 4.0;
    let v = 4.0 / std::f32::consts::PI.powi(2) * ((w2 / h2).atan() - (w1 / h1).atan()).powi(2);
    let alpha = v / (v - iou + (1.0 + eps));
    iou - (rho2 / c2 + v * alpha)
}

/// CIoU of `(N, 4)` predicted corner boxes against constant targets, differentiable in the predictions.
fn ciou_tensor(b1: Tensor<2>, b2: Tensor<2>) -> Tensor<1> {
    let eps = 1e-7;
    let n = b1.dims()[0];
    let col = |t: &Tensor<2>, i: usize| t.clone().narrow(1, i, 1).reshape([n]);
    let (b1x1, b1y1, b1x2, b1y2) = (col(&b1, 0), col(&b1, 1), col(&b1, 2), col(&b1, 3));
    let (b2x1, b2y1, b2x2, b2y2) = (col(&b2, 0), col(&b2, 1), col(&b2, 2), col(&b2, 3));
    let w1 = b1x2.clone() - b1x1.clone();
    let h1 = b1y2.clone() - b1y1.clone() + eps;
    let w2 = b2x2.clone() - b2x1.clone();
    let h2 = b2y2.clone() - b2y1.clone() + eps;
    let iw =
        (b1x2.clone().min_pair(b2x2.clone()) - b1x1.clone().max_pair(b2x1.clone())).clamp_min(0.0);
    let ih =
        (b1y2.clone().min_pair(b2y2.clone()) - b1y1.clone().max_pair(b2y1.clone())).clamp_min(0.0);
    let inter = iw * ih;
    let union = w1.clone() * h1.clone() + w2.clone() * h2.clone() - inter.clone() + eps;
    let iou = inter / union;
    let cw = b1x2.clone().max_pair(b2x2.clone()) - b1x1.clone().min_pair(b2x1.clone());
    let ch = b1y2.clone().max_pair(b2y2.clone()) - b1y1.clone().min_pair(b2y1.clone());
    let c2 = cw.clone() * cw + ch.clone() * ch + eps;
    let dx = b2x1 + b2x2 - b1x1 - b1x2;
    let dy = b2y1 + b2y2 - b1y1 - b1y2;
    let rho2 = (dx.clone() * dx + dy.clone() * dy) / 4.0;
    let dv = (w2 / h2).atan() - (w1 / h1).atan();
    let v = dv.clone() * dv * (4.0 / std::f64::consts::PI.powi(2));
    // alpha is computed without gradient, as Ultralytics does.
    let alpha = (v.clone() / (v.clone() - iou.clone() + (1.0 + eps))).detach();
    iou - (rho2 / c2 + v * alpha)
}

/// Per-anchor assignment for one image (TaskAlignedAssigner).
struct Assigned {
    fg: Vec<bool>,
    /// Target box (pixels, xyxy) per anchor.
    boxes: Vec<[f32; 4]>,
    /// Normalized alignment score per anchor (the soft target of its class).
    score: Vec<f32>,
    cls: Vec<usize>,
}

#[allow(clippy::too_many_arguments)]
fn assign(
    pd_scores: &[f32],
    pd_boxes: &[[f32; 4]],
    anchors_px: &[[f32; 2]],
    nc: usize,
    gt_boxes: &[[f32; 4]],
    gt_cls: &[usize],
    stride_val: f32,
) -> Assigned {
    let a = anchors_px.len();
    let m = gt_boxes.len();
    let mut out = Assigned {
        fg: vec![false; a],
        boxes: vec![gt_boxes.first().copied().unwrap_or([0.0; 4]); a],
        score: vec![0.0; a],
        cls: vec![gt_cls.first().copied().unwrap_or(0); a],
    };
    if m == 0 {
        return out;
    }
    let mut overlaps = vec![vec![0f32; a]; m];
    let mut align = vec![vec![0f32; a]; m];
    let mut in_gt = vec![vec![false; a]; m];
    for g in 0..m {
        let b = gt_boxes[g];
        let valid = b.iter().sum::<f32>() > 0.0;
        if !valid {
            continue;
        }
        // Sides smaller than stride[1] are widened to it about the centre, for candidate selection only.
        let (cx, cy) = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
        let (mut w, mut h) = (b[2] - b[0], b[3] - b[1]);
        if w < stride_val {
            w = stride_val;
        }
        if h < stride_val {
            h = stride_val;
        }
        let e = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        for (j, p) in anchors_px.iter().enumerate() {
            let inside =
                p[0] - e[0] > EPS && p[1] - e[1] > EPS && e[2] - p[0] > EPS && e[3] - p[1] > EPS;
            if inside {
                in_gt[g][j] = true;
                let ov = ciou(b, pd_boxes[j]).max(0.0);
                overlaps[g][j] = ov;
                let s = pd_scores[j * nc + gt_cls[g]];
                align[g][j] = s.powf(ALPHA) * ov.powi(BETA);
            }
        }
    }
    // Top-k by alignment per gt (ties: lower anchor index first), kept only inside the gt.
    let mut mask_pos = vec![vec![false; a]; m];
    for g in 0..m {
        let mut idx: Vec<usize> = (0..a).collect();
        idx.sort_by(|&x, &y| align[g][y].total_cmp(&align[g][x]).then(x.cmp(&y)));
        for &j in idx.iter().take(TOPK) {
            mask_pos[g][j] = in_gt[g][j];
        }
    }
    // Anchors claimed by several gts go to the gt they overlap most (first on ties).
    for j in 0..a {
        let n = (0..m).filter(|&g| mask_pos[g][j]).count();
        if n > 1 {
            let mut best = 0;
            for g in 1..m {
                if overlaps[g][j] > overlaps[best][j] {
                    best = g;
                }
            }
            for (g, row) in mask_pos.iter_mut().enumerate() {
                row[j] = g == best;
            }
        }
    }
    let mut pos_align = vec![0f32; m];
    let mut pos_ovl = vec![0f32; m];
    for g in 0..m {
        for j in 0..a {
            if mask_pos[g][j] {
                pos_align[g] = pos_align[g].max(align[g][j]);
                pos_ovl[g] = pos_ovl[g].max(overlaps[g][j]);
            }
        }
    }
    for j in 0..a {
        let mut gt_idx = None;
        let mut norm = 0f32;
        for g in 0..m {
            if mask_pos[g][j] {
                gt_idx.get_or_insert(g);
                norm = norm.max(align[g][j] * pos_ovl[g] / (pos_align[g] + EPS));
            }
        }
        let g = gt_idx.unwrap_or(0);
        out.boxes[j] = gt_boxes[g];
        out.cls[j] = gt_cls[g];
        if gt_idx.is_some() {
            out.fg[j] = true;
            out.score[j] = norm;
        }
    }
    out
}

fn to_host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// The loss for raw head maps `(B, 4*reg_max + nc, H_i, W_i)` at `strides`, input size `(h, w)`.
pub fn detection_loss(
    raw: &[Tensor<4>],
    strides: &[f32],
    nc: usize,
    reg_max: usize,
    targets: &[Target],
    imgsz: (usize, usize),
    gains: LossGains,
) -> LossOutput {
    let device = raw[0].device();
    let b = raw[0].dims()[0];
    let x = model::nn::flatten_levels(raw).swap_dims(1, 2); // (B, A, 4 * reg_max + nc)
    let a = x.dims()[1];
    let pred_distri = x.clone().narrow(2, 0, 4 * reg_max); // (B, A, 64)
    let pred_scores = x.narrow(2, 4 * reg_max, nc); // (B, A, nc)

    let (anchors, anc_stride) = model::nn::anchor_grid(&model::nn::map_sizes(raw), strides);
    let proj = Tensor::<1>::from_floats(
        (0..reg_max)
            .map(|i| i as f32)
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    )
    .reshape([1, 1, 1, reg_max]);
    let dist = (softmax(pred_distri.clone().reshape([b, a, 4, reg_max]), 3) * proj)
        .sum_dim(3)
        .reshape([b, a, 4]);
    let anc_t = Tensor::<1>::from_floats(
        anchors
            .iter()
            .flatten()
            .copied()
            .collect::<Vec<_>>()
            .as_slice(),
        &device,
    )
    .reshape([1, a, 2]);
    let lt = dist.clone().narrow(2, 0, 2);
    let rb = dist.narrow(2, 2, 2);
    let pred_bboxes = Tensor::cat(vec![anc_t.clone() - lt, anc_t + rb], 2); // (B, A, 4) grid units

    // Assignment on the host from detached predictions.
    let scores_h: Vec<f32> = to_host(burn::tensor::activation::sigmoid(
        pred_scores.clone().detach(),
    ));
    let boxes_h: Vec<f32> = to_host(pred_bboxes.clone().detach());
    let anchors_px: Vec<[f32; 2]> = anchors
        .iter()
        .zip(&anc_stride)
        .map(|(p, s)| [p[0] * s, p[1] * s])
        .collect();
    let (ih, iw) = (imgsz.0 as f32, imgsz.1 as f32);
    let stride_val = if strides.len() > 1 {
        strides[1]
    } else {
        strides[0]
    };
    let mut target_scores = vec![0f32; b * a * nc];
    let mut fg_idx: Vec<i64> = Vec::new();
    let mut fg_target: Vec<f32> = Vec::new(); // target boxes in grid units
    let mut fg_weight: Vec<f32> = Vec::new();
    let mut dfl_w: Vec<f32> = Vec::new(); // (Nfg, 4, reg_max) bin weights
    for bi in 0..b {
        let gts: Vec<&Target> = targets.iter().filter(|t| t.batch_idx == bi).collect();
        let gt_boxes: Vec<[f32; 4]> = gts
            .iter()
            .map(|t| {
                let (cx, cy, w, h) = (t.cx * iw, t.cy * ih, t.w * iw, t.h * ih);
                [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
            })
            .collect();
        let gt_cls: Vec<usize> = gts.iter().map(|t| t.cls).collect();
        let pd: Vec<[f32; 4]> = (0..a)
            .map(|j| {
                let o = (bi * a + j) * 4;
                let s = anc_stride[j];
                [
                    boxes_h[o] * s,
                    boxes_h[o + 1] * s,
                    boxes_h[o + 2] * s,
                    boxes_h[o + 3] * s,
                ]
            })
            .collect();
        let asg = assign(
            &scores_h[bi * a * nc..(bi + 1) * a * nc],
            &pd,
            &anchors_px,
            nc,
            &gt_boxes,
            &gt_cls,
            stride_val,
        );
        for j in 0..a {
            if !asg.fg[j] {
                continue;
            }
            target_scores[(bi * a + j) * nc + asg.cls[j]] = asg.score[j];
            let s = anc_stride[j];
            let tb = asg.boxes[j].map(|v| v / s);
            fg_idx.push((bi * a + j) as i64);
            fg_target.extend_from_slice(&tb);
            fg_weight.push(asg.score[j]);
            // DFL targets: distances from the anchor, clamped to [0, reg_max - 1 - 0.01].
            let p = anchors[j];
            let d = [p[0] - tb[0], p[1] - tb[1], tb[2] - p[0], tb[3] - p[1]];
            for side in d {
                let t = side.clamp(0.0, reg_max as f32 - 1.0 - 0.01);
                let tl = t.floor() as usize;
                let wl = (tl + 1) as f32 - t;
                let mut row = vec![0f32; reg_max];
                row[tl] = wl * asg.score[j] / 4.0;
                row[tl + 1] += (1.0 - wl) * asg.score[j] / 4.0;
                dfl_w.extend(row);
            }
        }
    }
    let tss = target_scores.iter().sum::<f32>().max(1.0);

    // Class loss: BCE with logits against the soft targets, stable form.
    let t = Tensor::<3>::from_data(TensorData::new(target_scores, [b, a, nc]), &device);
    let xs = pred_scores;
    let bce = xs.clone().clamp_min(0.0) - xs.clone() * t + xs.abs().neg().exp().log1p();
    let loss_cls = bce.sum() / tss;

    let nfg = fg_idx.len();
    let (loss_box, loss_dfl) = if nfg == 0 {
        (
            Tensor::<1>::zeros([1], &device),
            Tensor::<1>::zeros([1], &device),
        )
    } else {
        let idx = Tensor::<1, Int>::from_data(TensorData::new(fg_idx, [nfg]), &device);
        let pb = pred_bboxes.reshape([b * a, 4]).select(0, idx.clone());
        let tb = Tensor::<2>::from_data(TensorData::new(fg_target, [nfg, 4]), &device);
        let wt = Tensor::<1>::from_data(TensorData::new(fg_weight, [nfg]), &device);
        let iou = ciou_tensor(pb, tb);
        let loss_box = ((iou.neg() + 1.0) * wt).sum() / tss;
        let pd = pred_distri
            .reshape([b * a, 4 * reg_max])
            .select(0, idx)
            .reshape([nfg, 4, reg_max]);
        let w = Tensor::<3>::from_data(TensorData::new(dfl_w, [nfg, 4, reg_max]), &device);
        let loss_dfl = (log_softmax(pd, 2) * w).sum().neg() / tss;
        (loss_box, loss_dfl)
    };
    let loss_box = loss_box * gains.box_gain;
    let loss_cls = loss_cls * gains.cls_gain;
    let loss_dfl = loss_dfl * gains.dfl_gain;
    let comps = [
        to_host(loss_box.clone().detach())[0],
        to_host(loss_cls.clone().detach())[0],
        to_host(loss_dfl.clone().detach())[0],
    ];
    LossOutput {
        total: (loss_box + loss_cls + loss_dfl) * b as f32,
        components: comps,
    }
}

/// Ultralytics' v8ClassificationLoss: the cross-entropy of the logits `(N, nc)` against each image's class,
/// the mean over the batch (not times the batch size, unlike the detection loss). The loss is the first
/// component; the other two are 0.
pub fn classification_loss(logits: Tensor<2>, classes: &[usize]) -> LossOutput {
    let [n, nc] = logits.dims();
    let device = logits.device();
    let mut one_hot = vec![0f32; n * nc];
    for (i, &c) in classes.iter().enumerate().take(n) {
        if c < nc {
            one_hot[i * nc + c] = 1.0;
        }
    }
    let target = Tensor::<2>::from_data(TensorData::new(one_hot, [n, nc]), &device);
    let total = (log_softmax(logits, 1) * target).sum().neg() / n.max(1) as f32;
    let value = total
        .clone()
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_or(f32::NAN, |v| v[0]);
    LossOutput {
        total,
        components: [value, 0.0, 0.0],
    }
}
