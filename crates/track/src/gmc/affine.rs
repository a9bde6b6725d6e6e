//! `cv2.estimateAffinePartial2D(from, to, method=RANSAC)` with its defaults (3 px threshold, 2000 iterations at
//! most, confidence 0.99, then a refinement on the inliers): rotation, uniform scale and translation.
//!
//! The sampling is OpenCV's: its multiply-with-carry generator seeded as `RNG((uint64)-1)`, two distinct
//! indices per draw, the two-point solution, inliers counted in float32, the iteration bound updated as
//! `RANSACUpdateNumIters`. OpenCV then refines with Levenberg-Marquardt; the model is linear in its four
//! parameters, so that converges to the least-squares fit on the inliers, which is solved here directly.

/// `cv::RNG`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = (self.0 as u32 as u64)
            .wrapping_mul(4_164_903_690)
            .wrapping_add(self.0 >> 32);
        self.0 as u32
    }

    fn uniform(&mut self, a: usize, b: usize) -> usize {
        if a == b {
            a
        } else {
            (self.next() % (b - a) as u32) as usize + a
        }
    }
}

/// `[[a, -b, tx], [b, a, ty]]` as `(a, b, tx, ty)`.
type Model = [f64; 4];

fn two_point(f: [[f32; 2]; 2], t: [[f32; 2]; 2]) -> Model {
    let (x1, y1, x2, y2) = (
        f[0][0] as f64,
        f[0][1] as f64,
        f[1][0] as f64,
        f[1][1] as f64,
    );
    let (xx1, yy1, xx2, yy2) = (
        t[0][0] as f64,
        t[0][1] as f64,
        t[1][0] as f64,
        t[1][1] as f64,
    );
    let d = 1.0 / ((x1 - x2) * (x1 - x2) + (y1 - y2) * (y1 - y2));
    let s0 = d * ((xx1 - xx2) * (x1 - x2) + (yy1 - yy2) * (y1 - y2));
    let s1 = d * ((yy1 - yy2) * (x1 - x2) - (xx1 - xx2) * (y1 - y2));
    let s2 = d
        * ((yy1 - yy2) * (x1 * y2 - x2 * y1)
            - (xx1 * y2 - xx2 * y1) * (y1 - y2)
            - (xx1 * x2 - xx2 * x1) * (x1 - x2));
    let s3 = d
        * (-(xx1 - xx2) * (x1 * y2 - x2 * y1)
            - (yy1 * x2 - yy2 * x1) * (x1 - x2)
            - (yy1 * y2 - yy2 * y1) * (y1 - y2));
    [s0, s1, s2, s3]
}

/// The inliers of a model: squared reprojection error at most `thresh^2`, computed in float32.
fn inliers(
    m: &Model,
    from: &[[f32; 2]],
    to: &[[f32; 2]],
    thresh: f64,
    mask: &mut Vec<bool>,
) -> usize {
    let [a, b, tx, ty] = m.map(|v| v as f32);
    let t = (thresh * thresh) as f32;
    mask.clear();
    for (f, p) in from.iter().zip(to) {
        let ex = a * f[0] + -b * f[1] + tx - p[0];
        let ey = b * f[0] + a * f[1] + ty - p[1];
        mask.push(ex * ex + ey * ey <= t);
    }
    mask.iter().filter(|&&v| v).count()
}

fn update_iters(p: f64, ep: f64, model_points: i32, max_iters: usize) -> usize {
    let (p, ep) = (p.clamp(0.0, 1.0), ep.clamp(0.0, 1.0));
    let num = (1.0 - p).max(f64::MIN_POSITIVE);
    let denom = 1.0 - (1.0 - ep).powi(model_points);
    if denom < f64::MIN_POSITIVE {
        return 0;
    }
    let (num, denom) = (num.ln(), denom.ln());
    if denom >= 0.0 || -num >= max_iters as f64 * -denom {
        max_iters
    } else {
        (num / denom).round_ties_even() as usize
    }
}

/// The least-squares similarity on the matched points (the refinement's fixed point).
fn refine(from: &[[f32; 2]], to: &[[f32; 2]]) -> Option<Model> {
    let n = from.len() as f64;
    let mean = |v: &[[f32; 2]]| {
        let (sx, sy) = v
            .iter()
            .fold((0.0, 0.0), |(a, b), p| (a + p[0] as f64, b + p[1] as f64));
        (sx / n, sy / n)
    };
    let ((fx, fy), (tx, ty)) = (mean(from), mean(to));
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (x, y) = (f[0] as f64 - fx, f[1] as f64 - fy);
        let (u, v) = (t[0] as f64 - tx, t[1] as f64 - ty);
        num_a += x * u + y * v;
        num_b += x * v - y * u;
        den += x * x + y * y;
    }
    if den <= 0.0 || !den.is_finite() {
        return None;
    }
    let (a, b) = (num_a / den, num_b / den);
    Some([a, b, tx - a * fx + b * fy, ty - b * fx - a * fy])
}

/// The 2x3 similarity taking `from` to `to`, or None where OpenCV returns None.
pub fn estimate(from: &[[f32; 2]], to: &[[f32; 2]]) -> Option<[[f64; 3]; 2]> {
    const THRESH: f64 = 3.0;
    let count = from.len();
    if count < 2 {
        return None;
    }
    let (mut best, mut best_mask) = (None, vec![true; count]);
    if count == 2 {
        best = Some(two_point([from[0], from[1]], [to[0], to[1]]));
    } else {
        let mut rng = Rng(u64::MAX);
        let (mut niters, mut max_good) = (2000usize, 0usize);
        let mut mask = Vec::with_capacity(count);
        let mut iter = 0;
        while iter < niters {
            let i0 = rng.uniform(0, count);
            let mut i1 = rng.uniform(0, count);
            while i1 == i0 {
                i1 = rng.uniform(0, count);
            }
            let m = two_point([from[i0], from[i1]], [to[i0], to[i1]]);
            let good = inliers(&m, from, to, THRESH, &mut mask);
            if good > max_good.max(1) {
                std::mem::swap(&mut mask, &mut best_mask);
                best = Some(m);
                max_good = good;
                niters = update_iters(0.99, (count - good) as f64 / count as f64, 2, niters);
            }
            iter += 1;
        }
        if max_good == 0 {
            return None;
        }
    }
    let mut m = best?;
    if count > 2 {
        let (f, t): (Vec<[f32; 2]>, Vec<[f32; 2]>) = from
            .iter()
            .zip(to)
            .zip(&best_mask)
            .filter(|(_, &keep)| keep)
            .map(|((f, t), _)| (*f, *t))
            .unzip();
        if let Some(r) = refine(&f, &t) {
            m = r;
        }
    }
    let [a, b, tx, ty] = m;
    Some([[a, -b, tx], [b, a, ty]])
}
