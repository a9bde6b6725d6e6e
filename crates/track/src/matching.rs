//! Ultralytics' association costs (`trackers/utils/matching.py`), in float32 as numpy computes them there, and
//! its linear assignment: `lap.lapjv(cost, extend_cost=True, cost_limit=thresh)`.

/// A cost matrix, row-major.
#[derive(Debug, Clone)]
pub struct Costs {
    pub rows: usize,
    pub cols: usize,
    pub v: Vec<f32>,
}

impl Costs {
    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.v[r * self.cols + c]
    }
}

/// `1 - IoU` between boxes given as `x1, y1, x2, y2` (cast to float32 first, as the package does).
pub fn iou_distance(a: &[[f32; 4]], b: &[[f32; 4]]) -> Costs {
    let mut v = Vec::with_capacity(a.len() * b.len());
    for p in a {
        for q in b {
            let iw = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
            let ih = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
            let inter = iw * ih;
            let area = (q[2] - q[0]) * (q[3] - q[1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter;
            v.push(1.0 - inter / (area + 1e-7));
        }
    }
    Costs {
        rows: a.len(),
        cols: b.len(),
        v,
    }
}

/// IoU similarity times the detection's score, as a cost (`fuse_score`).
pub fn fuse_score(mut c: Costs, scores: &[f32]) -> Costs {
    for r in 0..c.rows {
        for (j, s) in scores.iter().enumerate() {
            let i = r * c.cols + j;
            c.v[i] = 1.0 - (1.0 - c.v[i]) * s;
        }
    }
    c
}

/// The matches `(row, col)` of least total cost among pairs costing at most `thresh`, and the rows and columns
/// left unmatched, in index order. As `lap.lapjv` with a cost limit: the matrix is extended to
/// `(rows + cols)` square, every added entry `thresh / 2` but the bottom-right block 0, so leaving a row and a
/// column unmatched costs `thresh`.
pub fn linear_assignment(c: &Costs, thresh: f64) -> (Vec<(usize, usize)>, Vec<usize>, Vec<usize>) {
    if c.rows == 0 || c.cols == 0 {
        return (Vec::new(), (0..c.rows).collect(), (0..c.cols).collect());
    }
    let n = c.rows + c.cols;
    let mut m = lapjv::Matrix::<f64>::from_elem((n, n), thresh / 2.0);
    for r in 0..n {
        for j in 0..n {
            if r < c.rows && j < c.cols {
                m[(r, j)] = f64::from(c.at(r, j));
            } else if r >= c.rows && j >= c.cols {
                m[(r, j)] = 0.0;
            }
        }
    }
    let (x, y) = match lapjv::lapjv(&m) {
        Ok(s) => s,
        // The solver only fails on a non-square matrix or a cancellation, neither of which happens here.
        Err(_) => return (Vec::new(), (0..c.rows).collect(), (0..c.cols).collect()),
    };
    let matches = (0..c.rows)
        .filter(|&r| x[r] < c.cols)
        .map(|r| (r, x[r]))
        .collect();
    let free_rows = (0..c.rows).filter(|&r| x[r] >= c.cols).collect();
    let free_cols = (0..c.cols).filter(|&j| y[j] >= c.rows).collect();
    (matches, free_rows, free_cols)
}
