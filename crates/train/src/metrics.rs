//! Detection metrics exactly as Ultralytics computes them: greedy matching of predictions to ground truth at
//! 10 IoU thresholds (0.50:0.95), AP by 101-point trapezoidal integration of the precision envelope, and
//! P/R at the confidence that maximises the smoothed mean F1.

use model::postprocess::{iou, Detection};

pub const N_IOU: usize = 10;

pub fn iou_thresholds() -> [f32; N_IOU] {
    std::array::from_fn(|i| 0.5 + 0.05 * i as f32)
}

/// Per-detection correctness at each threshold. `dets` must be in descending confidence order (NMS output).
/// A detection takes the unclaimed same-class target with the highest IoU; at threshold t it is correct when
/// that IoU >= t, and only then claims the target at t (Ultralytics 8.4 `match_predictions`).
pub fn match_predictions(
    dets: &[Detection],
    gt: &[[f32; 4]],
    gt_cls: &[usize],
) -> Vec<[bool; N_IOU]> {
    let th = iou_thresholds();
    let mut correct = vec![[false; N_IOU]; dets.len()];
    if gt.is_empty() || dets.is_empty() {
        return correct;
    }
    let mut claimed = vec![[false; N_IOU]; gt.len()];
    for (j, d) in dets.iter().enumerate() {
        let ious: Vec<f32> = gt
            .iter()
            .zip(gt_cls)
            .map(|(g, &c)| {
                if c == d.cls {
                    iou(*g, [d.x1, d.y1, d.x2, d.y2])
                } else {
                    0.0
                }
            })
            .collect();
        if !ious.iter().any(|&v| v >= th[0]) {
            continue;
        }
        for (t, &thr) in th.iter().enumerate() {
            // argmax over unclaimed targets, first index on ties (claimed ones count as 0).
            let mut k = 0;
            let mut best = f32::NEG_INFINITY;
            for (i, &v) in ious.iter().enumerate() {
                let v = if claimed[i][t] { 0.0 } else { v };
                if v > best {
                    best = v;
                    k = i;
                }
            }
            if best >= thr {
                correct[j][t] = true;
                claimed[k][t] = true;
            }
        }
    }
    correct
}

/// What one validated image contributes.
#[derive(Debug, Clone, Default)]
pub struct ImageStats {
    pub correct: Vec<[bool; N_IOU]>,
    pub conf: Vec<f32>,
    pub pred_cls: Vec<usize>,
    pub target_cls: Vec<usize>,
}

/// Recall with sentinels and the monotone precision envelope (Ultralytics' `compute_ap` curves).
fn envelope(recall: &[f64], precision: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut mrec = vec![0.0];
    mrec.extend_from_slice(recall);
    mrec.push(*recall.last().unwrap_or(&1.0));
    mrec.push(1.0);
    let mut mpre = vec![1.0];
    mpre.extend_from_slice(precision);
    mpre.extend([0.0, 0.0]);
    for i in (0..mpre.len() - 1).rev() {
        mpre[i] = mpre[i].max(mpre[i + 1]);
    }
    (mrec, mpre)
}

/// Ultralytics' `compute_ap`: the envelope integrated by the trapezoid rule over 101 recall points.
pub fn compute_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let (mrec, mpre) = envelope(recall, precision);
    let xs: Vec<f64> = (0..101).map(|i| i as f64 / 100.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| interp(x, &mrec, &mpre, None, None))
        .collect();
    xs.windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}

/// numpy.interp: `xp` increasing; outside the range `left`/`right` (default: the end values).
fn interp(x: f64, xp: &[f64], fp: &[f64], left: Option<f64>, right: Option<f64>) -> f64 {
    let n = xp.len();
    if x < xp[0] {
        return left.unwrap_or(fp[0]);
    }
    if x > xp[n - 1] {
        return right.unwrap_or(fp[n - 1]);
    }
    // numpy returns fp[j] where x == xp[j] for the last such j (right-continuous search).
    let j = xp.partition_point(|&v| v <= x);
    if j == 0 {
        return fp[0];
    }
    let i = j - 1;
    if i + 1 >= n || xp[i] == x {
        return fp[i];
    }
    let t = (x - xp[i]) / (xp[i + 1] - xp[i]);
    fp[i] + t * (fp[i + 1] - fp[i])
}

/// Ultralytics' box filter smoothing of a curve (fraction `f` of its length, edges padded).
fn smooth(y: &[f64], f: f64) -> Vec<f64> {
    let nf = ((y.len() as f64 * f * 2.0).round_ties_even() as usize) / 2 + 1;
    let half = nf / 2;
    let mut yp = vec![y[0]; half];
    yp.extend_from_slice(y);
    yp.extend(std::iter::repeat_n(*y.last().unwrap_or(&0.0), half));
    (0..y.len())
        .map(|i| yp[i..i + nf].iter().sum::<f64>() / nf as f64)
        .collect()
}

/// Per-class results for the classes that have labels.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DetMetrics {
    pub classes: Vec<usize>,
    pub p: Vec<f64>,
    pub r: Vec<f64>,
    pub ap50: Vec<f64>,
    /// AP50-95 per class.
    pub ap: Vec<f64>,
    pub ap_all: Vec<[f64; N_IOU]>,
    /// Targets per class.
    pub nt: Vec<usize>,
    /// Precision at 1000 recall points (IoU 0.5), per class, for the PR curve.
    pub pr_curve: Vec<Vec<f64>>,
}

impl DetMetrics {
    pub fn mp(&self) -> f64 {
        mean(&self.p)
    }
    pub fn mr(&self) -> f64 {
        mean(&self.r)
    }
    pub fn map50(&self) -> f64 {
        mean(&self.ap50)
    }
    pub fn map(&self) -> f64 {
        mean(&self.ap)
    }
    /// Ultralytics 8.4's fitness: mAP50-95 alone.
    pub fn fitness(&self) -> f64 {
        self.map()
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Ultralytics' `ap_per_class` over all images.
pub fn ap_per_class(stats: &[ImageStats]) -> DetMetrics {
    let eps = 1e-16;
    let mut rows: Vec<(f32, usize, [bool; N_IOU])> = stats
        .iter()
        .flat_map(|s| {
            s.conf
                .iter()
                .zip(&s.pred_cls)
                .zip(&s.correct)
                .map(|((c, p), t)| (*c, *p, *t))
        })
        .collect();
    // np.argsort(-conf) is a quicksort (not stable); with distinct confidences the order is the same.
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut classes: Vec<usize> = stats
        .iter()
        .flat_map(|s| s.target_cls.iter().copied())
        .collect();
    classes.sort_unstable();
    let nt_all = classes.clone();
    classes.dedup();
    let x: Vec<f64> = (0..1000).map(|i| i as f64 / 999.0).collect();
    let neg_x: Vec<f64> = x.iter().map(|v| -v).collect();
    let mut out = DetMetrics::default();
    let mut p_curves = Vec::new();
    let mut r_curves = Vec::new();
    for &c in &classes {
        let n_l = nt_all.iter().filter(|&&t| t == c).count();
        let sel: Vec<&(f32, usize, [bool; N_IOU])> = rows.iter().filter(|r| r.1 == c).collect();
        let mut ap = [0.0; N_IOU];
        let (mut pc, mut rc) = (vec![0.0; 1000], vec![0.0; 1000]);
        let mut prc = vec![0.0; 1000];
        if !sel.is_empty() && n_l > 0 {
            let neg_conf: Vec<f64> = sel.iter().map(|r| -(r.0 as f64)).collect();
            for (t, ap_t) in ap.iter_mut().enumerate() {
                let (mut tpc, mut fpc) = (0.0, 0.0);
                let mut recall = Vec::with_capacity(sel.len());
                let mut precision = Vec::with_capacity(sel.len());
                for r in &sel {
                    if r.2[t] {
                        tpc += 1.0;
                    } else {
                        fpc += 1.0;
                    }
                    recall.push(tpc / (n_l as f64 + eps));
                    precision.push(tpc / (tpc + fpc));
                }
                *ap_t = compute_ap(&recall, &precision);
                if t == 0 {
                    rc = neg_x
                        .iter()
                        .map(|&v| interp(v, &neg_conf, &recall, Some(0.0), None))
                        .collect();
                    pc = neg_x
                        .iter()
                        .map(|&v| interp(v, &neg_conf, &precision, Some(1.0), None))
                        .collect();
                    let (mrec, mpre) = envelope(&recall, &precision);
                    prc = x
                        .iter()
                        .map(|&v| interp(v, &mrec, &mpre, None, None))
                        .collect();
                }
            }
        }
        out.classes.push(c);
        out.nt.push(n_l);
        out.ap50.push(ap[0]);
        out.ap.push(ap.iter().sum::<f64>() / N_IOU as f64);
        out.ap_all.push(ap);
        out.pr_curve.push(prc);
        p_curves.push(pc);
        r_curves.push(rc);
    }
    if classes.is_empty() {
        return out;
    }
    let f1: Vec<Vec<f64>> = p_curves
        .iter()
        .zip(&r_curves)
        .map(|(p, r)| {
            p.iter()
                .zip(r)
                .map(|(p, r)| 2.0 * p * r / (p + r + eps))
                .collect()
        })
        .collect();
    let mean_f1: Vec<f64> = (0..1000)
        .map(|i| f1.iter().map(|c| c[i]).sum::<f64>() / f1.len() as f64)
        .collect();
    let sm = smooth(&mean_f1, 0.1);
    let mut best = 0;
    for (i, v) in sm.iter().enumerate() {
        if *v > sm[best] {
            best = i;
        }
    }
    out.p = p_curves.iter().map(|c| c[best]).collect();
    out.r = r_curves.iter().map(|c| c[best]).collect();
    out
}
