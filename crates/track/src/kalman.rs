//! Ultralytics' constant-velocity Kalman filters on a box, in float64 as numpy computes them: ByteTrack's on
//! `(cx, cy, aspect, h)` and BoT-SORT's on `(cx, cy, w, h)`, each with the velocities of the four.

// Fixed-size matrix algebra reads as its formulas with indices.
#![allow(clippy::needless_range_loop)]

pub type Mean = [f64; 8];
pub type Cov = [[f64; 8]; 8];

const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

/// Which four numbers the state holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxForm {
    /// Centre, aspect ratio w/h, height (ByteTrack's `KalmanFilterXYAH`).
    Xyah,
    /// Centre, width, height (BoT-SORT's `KalmanFilterXYWH`).
    Xywh,
}

impl BoxForm {
    /// The noise scale of each of the four measured values: the height for all (aspect fixed) or the width and
    /// height each.
    fn scales(self, m: &[f64]) -> [f64; 4] {
        match self {
            BoxForm::Xyah => [m[3], m[3], f64::NAN, m[3]],
            BoxForm::Xywh => [m[2], m[3], m[2], m[3]],
        }
    }

    /// The standard deviations `w * scale` with the aspect's fixed value where the form has one.
    fn stds(self, m: &[f64], w: f64, aspect: f64) -> [f64; 4] {
        let s = self.scales(m);
        let mut out = [0.0; 4];
        for i in 0..4 {
            out[i] = if s[i].is_nan() { aspect } else { w * s[i] };
        }
        out
    }

    /// A detection's `tlwh` (float32, as the package keeps it) as this form's measurement, in float32.
    pub fn measure(self, tlwh: [f32; 4]) -> [f32; 4] {
        let [x, y, w, h] = tlwh;
        let (cx, cy) = (x + w / 2.0, y + h / 2.0);
        match self {
            BoxForm::Xyah => [cx, cy, w / h, h],
            BoxForm::Xywh => [cx, cy, w, h],
        }
    }

    /// The state's box as `tlwh`.
    pub fn tlwh(self, mean: &Mean) -> [f64; 4] {
        let (cx, cy, h) = (mean[0], mean[1], mean[3]);
        let w = match self {
            BoxForm::Xyah => mean[2] * h,
            BoxForm::Xywh => mean[2],
        };
        [cx - w / 2.0, cy - h / 2.0, w, h]
    }

    /// The velocities a track that is not being tracked stops with before its prediction (`mean[7] = 0`, and
    /// BoT-SORT's `mean[6]` too).
    pub fn stop(self, mean: &mut Mean) {
        mean[7] = 0.0;
        if self == BoxForm::Xywh {
            mean[6] = 0.0;
        }
    }

    pub fn initiate(self, measurement: [f32; 4]) -> (Mean, Cov) {
        let m: [f64; 4] = measurement.map(f64::from);
        let mut mean = [0.0; 8];
        mean[..4].copy_from_slice(&m);
        let pos = self.stds(&m, 2.0 * STD_POSITION, 1e-2);
        let vel = self.stds(&m, 10.0 * STD_VELOCITY, 1e-5);
        (mean, diag(&pos, &vel))
    }

    pub fn predict(self, mean: &Mean, cov: &Cov) -> (Mean, Cov) {
        let pos = self.stds(&mean[..4], STD_POSITION, 1e-2);
        let vel = self.stds(&mean[..4], STD_VELOCITY, 1e-5);
        let q = diag(&pos, &vel);
        let mut m = *mean;
        for i in 0..4 {
            m[i] += mean[4 + i];
        }
        // F P F^T with F = [[I, I], [0, I]].
        let mut fp = *cov;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] += cov[4 + i][j];
            }
        }
        let mut p = fp;
        for row in p.iter_mut() {
            for j in 0..4 {
                row[j] += row[4 + j];
            }
        }
        for i in 0..8 {
            for j in 0..8 {
                p[i][j] += q[i][j];
            }
        }
        (m, p)
    }

    pub fn update(self, mean: &Mean, cov: &Cov, measurement: [f32; 4]) -> (Mean, Cov) {
        let std = self.stds(&mean[..4], STD_POSITION, 1e-1);
        let mut s = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = cov[i][j];
            }
            s[i][i] += std[i] * std[i];
        }
        // K = P H^T S^-1, from S K^T = (P H^T)^T = P[:4, :].
        let mut rhs = [[0.0; 8]; 4];
        rhs.copy_from_slice(&cov[..4]);
        let kt = solve4(s, rhs);
        let mut k = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                k[i][j] = kt[j][i];
            }
        }
        let z: [f64; 4] = measurement.map(f64::from);
        let mut new_mean = *mean;
        for i in 0..8 {
            for j in 0..4 {
                new_mean[i] += (z[j] - mean[j]) * k[i][j];
            }
        }
        // P - K S K^T
        let mut ks = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                ks[i][j] = (0..4).map(|l| k[i][l] * s[l][j]).sum();
            }
        }
        let mut p = *cov;
        for i in 0..8 {
            for j in 0..8 {
                p[i][j] -= (0..4).map(|l| ks[i][l] * k[j][l]).sum::<f64>();
            }
        }
        (new_mean, p)
    }
}

fn diag(pos: &[f64; 4], vel: &[f64; 4]) -> Cov {
    let mut c = [[0.0; 8]; 8];
    for i in 0..4 {
        c[i][i] = pos[i] * pos[i];
        c[4 + i][4 + i] = vel[i] * vel[i];
    }
    c
}

/// `A X = B` for a symmetric positive-definite 4x4 `A` (Gaussian elimination with partial pivoting, as LAPACK's
/// gesv that numpy calls).
fn solve4(mut a: [[f64; 4]; 4], mut b: [[f64; 8]; 4]) -> [[f64; 8]; 4] {
    for c in 0..4 {
        let p = (c..4)
            .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
            .unwrap_or(c);
        a.swap(c, p);
        b.swap(c, p);
        for r in c + 1..4 {
            let f = a[r][c] / a[c][c];
            for k in c..4 {
                a[r][k] -= f * a[c][k];
            }
            for k in 0..8 {
                b[r][k] -= f * b[c][k];
            }
        }
    }
    for c in (0..4).rev() {
        for k in 0..8 {
            let mut v = b[c][k];
            for j in c + 1..4 {
                v -= a[c][j] * b[j][k];
            }
            b[c][k] = v / a[c][c];
        }
    }
    b
}

/// Ultralytics' `multi_gmc` on one state: the centre and its velocity rotated and scaled by the warp's 2x2 part
/// (the centre also translated), the size and its velocity by that part's absolute values (sizes never flip
/// sign), and the covariance as `R P R^T`.
pub fn warp(mean: &Mean, cov: &Cov, h: &[[f64; 3]; 2]) -> (Mean, Cov) {
    let mut r = [[0.0; 8]; 8];
    for b in 0..4 {
        for i in 0..2 {
            for j in 0..2 {
                let v = h[i][j];
                r[2 * b + i][2 * b + j] = if b % 2 == 1 { v.abs() } else { v };
            }
        }
    }
    let mut m = [0.0; 8];
    for i in 0..8 {
        for k in 0..8 {
            m[i] += r[i][k] * mean[k];
        }
    }
    m[0] += h[0][2];
    m[1] += h[1][2];
    let mut rp = [[0.0; 8]; 8];
    for i in 0..8 {
        for j in 0..8 {
            for k in 0..8 {
                rp[i][j] += r[i][k] * cov[k][j];
            }
        }
    }
    let mut p = [[0.0; 8]; 8];
    for i in 0..8 {
        for j in 0..8 {
            for k in 0..8 {
                p[i][j] += rp[i][k] * r[j][k];
            }
        }
    }
    (m, p)
}
