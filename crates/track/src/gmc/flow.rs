//! Pyramidal Lucas-Kanade as `cv2.calcOpticalFlowPyrLK(prev, next, pts, None)` with its defaults (21x21
//! window, 3 levels at most, 30 iterations or a step under 0.01 px, minimum eigenvalue 1e-4): OpenCV's 5x5
//! pyramid, its 3/10/3 Scharr derivatives in 16-bit integers, its 14-bit fixed-point bilinear patches, and its
//! float sums in the order OpenCV's 128-bit SIMD loop adds them, so the points and their status are OpenCV's.

use super::image::{reflect101, Gray};

const WIN: i64 = 21;
const HALF: f32 = 10.0;
const MAX_LEVEL: usize = 3;
const MAX_ITERS: usize = 30;
const MIN_EIG: f32 = 1e-4;
const W_BITS: i32 = 14;
const FLT_SCALE: f32 = 1.0 / (1 << 20) as f32;

/// An image with a `WIN`-pixel border around it (reflected for pixels, zero for derivatives), as OpenCV pads
/// its pyramid levels so that a window may hang over the edge.
struct Padded<T> {
    w: usize,
    h: usize,
    stride: usize,
    data: Vec<T>,
}

fn pad_reflect(g: &Gray) -> Padded<u8> {
    let p = WIN as usize;
    let stride = g.w + 2 * p;
    let mut data = Vec::with_capacity(stride * (g.h + 2 * p));
    let left: Vec<usize> = (-WIN..0).map(|x| reflect101(x, g.w)).collect();
    let right: Vec<usize> = (0..WIN).map(|x| reflect101(g.w as i64 + x, g.w)).collect();
    for y in -WIN..g.h as i64 + WIN {
        let row = &g.px[reflect101(y, g.h) * g.w..][..g.w];
        data.extend(left.iter().map(|&x| row[x]));
        data.extend_from_slice(row);
        data.extend(right.iter().map(|&x| row[x]));
    }
    Padded {
        w: g.w,
        h: g.h,
        stride,
        data,
    }
}

/// `pyrDown`: the 5x5 binomial filter, every other pixel, rounded (integer sums, so the separable order gives
/// OpenCV's values).
fn pyr_down(g: &Gray) -> Gray {
    let (w, h) = (g.w.div_ceil(2), g.h.div_ceil(2));
    let cols: Vec<[usize; 5]> = (0..w)
        .map(|x| std::array::from_fn(|i| reflect101(2 * x as i64 + i as i64 - 2, g.w)))
        .collect();
    // Horizontal pass on every source row.
    let mut rows = vec![0u32; w * g.h];
    for y in 0..g.h {
        let r = &g.px[y * g.w..][..g.w];
        for (x, c) in cols.iter().enumerate() {
            rows[y * w + x] = r[c[0]] as u32
                + 4 * r[c[1]] as u32
                + 6 * r[c[2]] as u32
                + 4 * r[c[3]] as u32
                + r[c[4]] as u32;
        }
    }
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        let t: [usize; 5] =
            std::array::from_fn(|j| reflect101(2 * y as i64 + j as i64 - 2, g.h) * w);
        for x in 0..w {
            let s = rows[t[0] + x]
                + 4 * rows[t[1] + x]
                + 6 * rows[t[2] + x]
                + 4 * rows[t[3] + x]
                + rows[t[4] + x];
            px.push(((s + 128) >> 8) as u8);
        }
    }
    Gray { w, h, px }
}

/// A frame's pyramid as the flow reads it: each level padded, with its derivatives (used when the frame is
/// the earlier of the two). Built once per frame and kept for the next.
pub struct Pyramid {
    levels: Vec<Level>,
}

/// One level's pixels (reflected border) and Scharr derivatives (zero border).
type Level = (Padded<u8>, Padded<(i16, i16)>);

impl Pyramid {
    /// The levels `buildOpticalFlowPyramid` keeps: it stops before a level no larger than the window.
    pub fn new(g: &Gray) -> Pyramid {
        let mut grays = vec![g.clone()];
        while grays.len() <= MAX_LEVEL {
            let last = &grays[grays.len() - 1];
            let (nw, nh) = (last.w.div_ceil(2), last.h.div_ceil(2));
            if nw <= WIN as usize || nh <= WIN as usize {
                break;
            }
            grays.push(pyr_down(last));
        }
        Pyramid {
            levels: grays.iter().map(|g| (pad_reflect(g), scharr(g))).collect(),
        }
    }

    pub fn size(&self) -> (usize, usize) {
        (self.levels[0].0.w, self.levels[0].0.h)
    }
}

/// Scharr derivatives `(dx, dy)` as `calcScharrDeriv`, zero-padded.
fn scharr(g: &Gray) -> Padded<(i16, i16)> {
    let (w, h) = (g.w, g.h);
    let p = WIN as usize;
    let stride = w + 2 * p;
    let mut data = vec![(0i16, 0i16); stride * (h + 2 * p)];
    // One row of the vertical pass with a reflected column on each side.
    let mut smooth = vec![0i32; w + 2];
    let mut diff = vec![0i32; w + 2];
    for y in 0..h {
        let (r0, r1, r2) = (
            &g.px[reflect101(y as i64 - 1, h) * w..][..w],
            &g.px[y * w..][..w],
            &g.px[reflect101(y as i64 + 1, h) * w..][..w],
        );
        for x in 0..w {
            let (a, b, c) = (r0[x] as i32, r1[x] as i32, r2[x] as i32);
            smooth[x + 1] = (a + c) * 3 + b * 10;
            diff[x + 1] = c - a;
        }
        let (l, r) = (reflect101(-1, w) + 1, reflect101(w as i64, w) + 1);
        smooth[0] = smooth[l];
        diff[0] = diff[l];
        smooth[w + 1] = smooth[r];
        diff[w + 1] = diff[r];
        let out = &mut data[(y + p) * stride + p..][..w];
        for x in 0..w {
            let dx = smooth[x + 2] - smooth[x];
            let dy = (diff[x] + diff[x + 2]) * 3 + diff[x + 1] * 10;
            out[x] = (dx as i16, dy as i16);
        }
    }
    Padded { w, h, stride, data }
}

fn descale(x: i32, n: i32) -> i32 {
    (x + (1 << (n - 1))) >> n
}

fn weights(a: f32, b: f32) -> [i32; 4] {
    let s = (1 << W_BITS) as f32;
    let w00 = ((1.0 - a) * (1.0 - b) * s).round_ties_even() as i32;
    let w01 = (a * (1.0 - b) * s).round_ties_even() as i32;
    let w10 = ((1.0 - a) * b * s).round_ties_even() as i32;
    [w00, w01, w10, (1 << W_BITS) - w00 - w01 - w10]
}

const N: usize = (WIN * WIN) as usize;

/// The patch of `prev` at `(ix, iy)` (32x its pixels) and its derivatives, bilinear with weights `w`.
#[inline(always)]
fn patch(
    img: &Padded<u8>,
    d: &Padded<(i16, i16)>,
    ix: i64,
    iy: i64,
    w: &[i32; 4],
) -> ([i32; N], [(i32, i32); N]) {
    let mut iwin = [0i32; N];
    let mut dwin = [(0i32, 0i32); N];
    let (s, ds) = (img.stride, d.stride);
    for y in 0..WIN as usize {
        let o = (iy + WIN) as usize + y;
        let (r0, r1) = (
            &img.data[o * s + (ix + WIN) as usize..],
            &img.data[(o + 1) * s + (ix + WIN) as usize..],
        );
        let (d0, d1) = (
            &d.data[o * ds + (ix + WIN) as usize..],
            &d.data[(o + 1) * ds + (ix + WIN) as usize..],
        );
        for x in 0..WIN as usize {
            let v = r0[x] as i32 * w[0]
                + r0[x + 1] as i32 * w[1]
                + r1[x] as i32 * w[2]
                + r1[x + 1] as i32 * w[3];
            let gx = d0[x].0 as i32 * w[0]
                + d0[x + 1].0 as i32 * w[1]
                + d1[x].0 as i32 * w[2]
                + d1[x + 1].0 as i32 * w[3];
            let gy = d0[x].1 as i32 * w[0]
                + d0[x + 1].1 as i32 * w[1]
                + d1[x].1 as i32 * w[2]
                + d1[x + 1].1 as i32 * w[3];
            iwin[y * WIN as usize + x] = descale(v, W_BITS - 5);
            dwin[y * WIN as usize + x] = (descale(gx, W_BITS), descale(gy, W_BITS));
        }
    }
    (iwin, dwin)
}

/// `A`, the sum of the gradients' outer products (`[a11, a12, a22]`), in four SIMD lanes over the first 16
/// columns and a scalar over the last 5, as OpenCV adds them.
#[inline(always)]
fn gradient_matrix(dwin: &[(i32, i32); N]) -> [f32; 3] {
    let (mut lanes, mut tail) = ([[0f32; 4]; 3], [0f32; 3]);
    for row in dwin.chunks_exact(WIN as usize) {
        for quad in row[..16].chunks_exact(4) {
            for (l, &(gx, gy)) in quad.iter().enumerate() {
                let (fx, fy) = (gx as f32, gy as f32);
                lanes[0][l] += fx * fx;
                lanes[1][l] += fx * fy;
                lanes[2][l] += fy * fy;
            }
        }
        for &(gx, gy) in &row[16..] {
            tail[0] += (gx * gx) as f32;
            tail[1] += (gx * gy) as f32;
            tail[2] += (gy * gy) as f32;
        }
    }
    let hsum = |l: [f32; 4]| (l[0] + l[2]) + (l[1] + l[3]);
    std::array::from_fn(|i| (tail[i] + hsum(lanes[i])) * FLT_SCALE)
}

/// The sums `b = sum(It * gradient)` for the patch of `next` at `(jx, jy)`: pairs of pixels four apart summed
/// in 32-bit integers and accumulated in float lanes over the first 16 columns, a scalar over the rest, as
/// OpenCV's SIMD loop adds them.
#[inline(always)]
fn mismatch(
    j: &Padded<u8>,
    jx: i64,
    jy: i64,
    w: &[i32; 4],
    iwin: &[i32; N],
    dwin: &[(i32, i32); N],
) -> (f32, f32) {
    let (mut q0, mut q1, mut tb) = ([0f32; 4], [0f32; 4], [0f32; 2]);
    let s = j.stride;
    let mut it = [0i32; WIN as usize];
    for y in 0..WIN as usize {
        let o = (jy + WIN) as usize + y;
        let (r0, r1) = (
            &j.data[o * s + (jx + WIN) as usize..],
            &j.data[(o + 1) * s + (jx + WIN) as usize..],
        );
        let row = y * WIN as usize;
        for x in 0..WIN as usize {
            let v = r0[x] as i32 * w[0]
                + r0[x + 1] as i32 * w[1]
                + r1[x] as i32 * w[2]
                + r1[x + 1] as i32 * w[3];
            it[x] = descale(v, W_BITS - 5) - iwin[row + x];
        }
        let g = &dwin[row..row + WIN as usize];
        for x0 in [0usize, 8] {
            for (lanes, base) in [(&mut q0, x0), (&mut q1, x0 + 2)] {
                for half in 0..2 {
                    let (a, b) = (base + half, base + half + 4);
                    lanes[2 * half] += (it[a] * g[a].0 + it[b] * g[b].0) as f32;
                    lanes[2 * half + 1] += (it[a] * g[a].1 + it[b] * g[b].1) as f32;
                }
            }
        }
        for x in 16..WIN as usize {
            tb[0] += (it[x] * g[x].0) as f32;
            tb[1] += (it[x] * g[x].1) as f32;
        }
    }
    let s: [f32; 4] = std::array::from_fn(|l| q0[l] + q1[l]);
    (
        (tb[0] + (s[0] + s[2])) * FLT_SCALE,
        (tb[1] + (s[1] + s[3])) * FLT_SCALE,
    )
}

/// Tracks `pts` of `prev` into `next` (frames of one size): the new positions and whether each was found.
pub fn track(prev: &Pyramid, next: &Pyramid, pts: &[[f32; 2]]) -> (Vec<[f32; 2]>, Vec<bool>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has the features `track_avx2` is compiled for.
        return unsafe { track_avx2(prev, next, pts) };
    }
    track_any(prev, next, pts)
}

/// The same code compiled with AVX2, so that the patch loops vectorize (integer arithmetic and float sums in
/// the same order: the same result).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn track_avx2(
    prev: &Pyramid,
    next: &Pyramid,
    pts: &[[f32; 2]],
) -> (Vec<[f32; 2]>, Vec<bool>) {
    track_any(prev, next, pts)
}

#[inline(always)]
fn track_any(prev: &Pyramid, next: &Pyramid, pts: &[[f32; 2]]) -> (Vec<[f32; 2]>, Vec<bool>) {
    let mut out = vec![[0f32; 2]; pts.len()];
    let mut status = vec![true; pts.len()];
    if pts.is_empty() {
        return (out, status);
    }
    let max_level = prev.levels.len().min(next.levels.len()) - 1;
    for level in (0..=max_level).rev() {
        let ((i_img, d_img), (j_img, _)) = (&prev.levels[level], &next.levels[level]);
        let (cols, rows) = (i_img.w as i64, i_img.h as i64);
        let inside = |x: i64, y: i64| x >= -WIN && x < cols && y >= -WIN && y < rows;
        for (k, p0) in pts.iter().enumerate() {
            let s = (1.0f64 / (1u32 << level) as f64) as f32;
            let mut prev_pt = [p0[0] * s, p0[1] * s];
            let mut next_pt = if level == max_level {
                prev_pt
            } else {
                [out[k][0] * 2.0, out[k][1] * 2.0]
            };
            out[k] = next_pt;
            prev_pt = [prev_pt[0] - HALF, prev_pt[1] - HALF];
            let (ix, iy) = (prev_pt[0].floor() as i64, prev_pt[1].floor() as i64);
            if !inside(ix, iy) {
                status[k] &= level != 0;
                continue;
            }
            let w = weights(prev_pt[0] - ix as f32, prev_pt[1] - iy as f32);
            let (iwin, dwin) = patch(i_img, d_img, ix, iy, &w);
            let [a11, a12, a22] = gradient_matrix(&dwin);
            let det = a11 * a22 - a12 * a12;
            let min_eig = (a22 + a11 - ((a11 - a22) * (a11 - a22) + 4.0 * a12 * a12).sqrt())
                / (2 * WIN * WIN) as f32;
            if min_eig < MIN_EIG || det < f32::EPSILON {
                status[k] &= level != 0;
                continue;
            }
            let det = 1.0 / det;
            next_pt = [next_pt[0] - HALF, next_pt[1] - HALF];
            let mut prev_delta = [0f32; 2];
            for j in 0..MAX_ITERS {
                let (jx, jy) = (next_pt[0].floor() as i64, next_pt[1].floor() as i64);
                if !inside(jx, jy) {
                    status[k] &= level != 0;
                    break;
                }
                let w = weights(next_pt[0] - jx as f32, next_pt[1] - jy as f32);
                let (b1, b2) = mismatch(j_img, jx, jy, &w, &iwin, &dwin);
                let delta = [(a12 * b2 - a22 * b1) * det, (a12 * b1 - a11 * b2) * det];
                next_pt = [next_pt[0] + delta[0], next_pt[1] + delta[1]];
                out[k] = [next_pt[0] + HALF, next_pt[1] + HALF];
                let (dx, dy) = (delta[0] as f64, delta[1] as f64);
                if dx * dx + dy * dy <= 0.01 * 0.01 {
                    break;
                }
                if j > 0
                    && ((delta[0] + prev_delta[0]) as f64).abs() < 0.01
                    && ((delta[1] + prev_delta[1]) as f64).abs() < 0.01
                {
                    out[k] = [out[k][0] - delta[0] * 0.5, out[k][1] - delta[1] * 0.5];
                    break;
                }
                prev_delta = delta;
            }
            // OpenCV's error pass (the Python binding always asks for it) drops a point that ended outside.
            if level == 0 && status[k] {
                let (ex, ey) = (
                    (out[k][0] - HALF).floor() as i64,
                    (out[k][1] - HALF).floor() as i64,
                );
                if !inside(ex, ey) {
                    status[k] = false;
                }
            }
        }
    }
    (out, status)
}
