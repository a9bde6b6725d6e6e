//! From the eval output `(4 + nc, A)` to detections: Ultralytics' `non_max_suppression` (confidence filter,
//! best class or multi-label, class filter, max_nms, class offsets, torchvision's greedy NMS, max_det) and the
//! mapping of boxes back to original image pixels. Host-side: these are many tiny operations.

/// One detection in pixels: corners, confidence, class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub conf: f32,
    pub cls: usize,
}

#[derive(Debug, Clone)]
pub struct NmsOptions {
    pub conf: f32,
    pub iou: f32,
    pub classes: Option<Vec<usize>>,
    pub agnostic: bool,
    pub multi_label: bool,
    pub max_det: usize,
    pub max_nms: usize,
    pub max_wh: f32,
}

impl NmsOptions {
    /// Ultralytics' predict defaults.
    pub fn predict() -> NmsOptions {
        NmsOptions {
            conf: 0.25,
            iou: 0.7,
            classes: None,
            agnostic: false,
            multi_label: false,
            max_det: 300,
            max_nms: 30000,
            max_wh: 7680.0,
        }
    }

    /// Ultralytics' validation defaults (conf 0.001, multi-label).
    pub fn val() -> NmsOptions {
        NmsOptions {
            conf: 0.001,
            multi_label: true,
            ..Self::predict()
        }
    }
}

/// IoU of two corner boxes, torchvision's formula.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / (area_a + area_b - inter)
}

/// Greedy NMS: keeps boxes in descending score order, dropping any whose IoU with a kept one exceeds `thr`.
/// Returns indices into `boxes`.
pub fn greedy_nms(boxes: &[[f32; 4]], scores: &[f32], thr: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[k + 1..] {
            if !suppressed[j] && iou(boxes[i], boxes[j]) > thr {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// NMS for one image. `pred` is the `(4 + nc, A)` output, channel-major: rows cx, cy, w, h, then class scores.
pub fn non_max_suppression(pred: &[f32], nc: usize, a: usize, o: &NmsOptions) -> Vec<Detection> {
    let at = |row: usize, j: usize| pred[row * a + j];
    let mut cand: Vec<Detection> = Vec::new();
    for j in 0..a {
        let (best_c, best) = (0..nc)
            .map(|c| (c, at(4 + c, j)))
            .fold((0, f32::NEG_INFINITY), |m, x| if x.1 > m.1 { x } else { m });
        if best <= o.conf {
            continue;
        }
        let (cx, cy, w, h) = (at(0, j), at(1, j), at(2, j), at(3, j));
        let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
        // A NaN or infinite box (a broken model) is no detection: it would become NaN label lines.
        if !b.iter().all(|v| v.is_finite()) {
            continue;
        }
        let mut push = |c: usize, s: f32| {
            cand.push(Detection {
                x1: b[0],
                y1: b[1],
                x2: b[2],
                y2: b[3],
                conf: s,
                cls: c,
            })
        };
        if o.multi_label && nc > 1 {
            for c in 0..nc {
                let s = at(4 + c, j);
                if s > o.conf {
                    push(c, s);
                }
            }
        } else {
            push(best_c, best);
        }
    }
    // Ultralytics enumerates multi-label pairs anchor-major (torch.where), as built above.
    if let Some(cls) = &o.classes {
        cand.retain(|d| cls.contains(&d.cls));
    }
    if cand.len() > o.max_nms {
        cand.sort_by(|x, y| y.conf.total_cmp(&x.conf));
        cand.truncate(o.max_nms);
    }
    let offset = |d: &Detection| {
        if o.agnostic {
            0.0
        } else {
            d.cls as f32 * o.max_wh
        }
    };
    let boxes: Vec<[f32; 4]> = cand
        .iter()
        .map(|d| {
            let off = offset(d);
            [d.x1 + off, d.y1 + off, d.x2 + off, d.y2 + off]
        })
        .collect();
    let scores: Vec<f32> = cand.iter().map(|d| d.conf).collect();
    let mut keep = greedy_nms(&boxes, &scores, o.iou);
    keep.truncate(o.max_det);
    keep.into_iter().map(|i| cand[i]).collect()
}

/// Maps a detection from letterboxed input pixels back to the original image (subtract pad, divide by gain,
/// clip), as Ultralytics' `scale_boxes`.
pub fn scale_to_original(
    d: &Detection,
    gain: f32,
    pad: (f32, f32),
    orig_hw: (usize, usize),
) -> Detection {
    let (h, w) = (orig_hw.0 as f32, orig_hw.1 as f32);
    Detection {
        x1: ((d.x1 - pad.0) / gain).clamp(0.0, w),
        y1: ((d.y1 - pad.1) / gain).clamp(0.0, h),
        x2: ((d.x2 - pad.0) / gain).clamp(0.0, w),
        y2: ((d.y2 - pad.1) / gain).clamp(0.0, h),
        ..*d
    }
}

/// A classifier's `k` most probable classes, most probable first (ties keep the lower class first): the
/// validator's top-5 and predict's labels.
pub fn top_k(probs: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}
