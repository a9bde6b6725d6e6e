//! Shi-Tomasi corners as `cv2.goodFeaturesToTrack(img, maxCorners, qualityLevel, minDistance=0, blockSize=3)`:
//! the smaller eigenvalue of the 3x3-summed gradient covariance (`cornerMinEigenVal`), thresholded at a fraction
//! of its maximum, kept where it is its 3x3 neighbourhood's maximum, strongest first.
//!
//! The float arithmetic follows OpenCV's x86 build step by step (its Sobel filters use fused multiply-adds, its
//! box filter sums in float64), so the eigenvalues, and with them the corners and their order, are OpenCV's.

use super::image::{reflect101, Gray};

/// `Sobel(ksize=3, scale=1/(4*3*255))` derivatives of an 8-bit image, in OpenCV's evaluation order (its x86
/// filters fuse the multiply-adds: dx's column smoothing as `(r0 + r2) * k + r1 * 2k`, dy's row smoothing as
/// a chain left to right), with reflected borders.
#[inline(always)]
fn sobel(g: &Gray) -> (Vec<f32>, Vec<f32>) {
    let (w, h) = (g.w, g.h);
    let k1 = (1.0f64 / 3060.0) as f32;
    let k0 = (2.0f64 / 3060.0) as f32;
    let (l, r) = (reflect101(-1, w), reflect101(w as i64, w));
    // Per row: the horizontal difference and the horizontal smoothing.
    let mut diff = vec![0f32; w * h];
    let mut smooth = vec![0f32; w * h];
    let mut p = vec![0f32; w + 2];
    for y in 0..h {
        let row = &g.px[y * w..][..w];
        p[0] = row[l] as f32;
        p[w + 1] = row[r] as f32;
        for (d, &v) in p[1..=w].iter_mut().zip(row) {
            *d = v as f32;
        }
        let (dr, sr) = (&mut diff[y * w..][..w], &mut smooth[y * w..][..w]);
        for x in 0..w {
            dr[x] = p[x + 2] - p[x];
            let a = p[x] * k1;
            let b = p[x + 1].mul_add(k0, a);
            sr[x] = p[x + 2].mul_add(k1, b);
        }
    }
    let mut dx = vec![0f32; w * h];
    let mut dy = vec![0f32; w * h];
    for y in 0..h {
        let (y0, y2) = (reflect101(y as i64 - 1, h), reflect101(y as i64 + 1, h));
        let (d0, d1, d2) = (
            &diff[y0 * w..][..w],
            &diff[y * w..][..w],
            &diff[y2 * w..][..w],
        );
        let (s0, s2) = (&smooth[y0 * w..][..w], &smooth[y2 * w..][..w]);
        let (ox, oy) = (&mut dx[y * w..][..w], &mut dy[y * w..][..w]);
        for x in 0..w {
            ox[x] = (d0[x] + d2[x]).mul_add(k1, d1[x] * k0);
            oy[x] = s2[x] - s0[x];
        }
    }
    (dx, dy)
}

/// One row's gradient products `dx^2, dx*dy, dy^2` in float64, each summed with its left and right
/// neighbours (reflected border).
#[inline(always)]
fn row_sums(gx: &[f32], gy: &[f32], prod: &mut [Vec<f64>; 3], out: [&mut [f64]; 3]) {
    let w = gx.len();
    let (l, r) = (reflect101(-1, w), reflect101(w as i64, w));
    for x in 0..w {
        let (a, b) = (gx[x], gy[x]);
        prod[0][x + 1] = (a * a) as f64;
        prod[1][x + 1] = (a * b) as f64;
        prod[2][x + 1] = (b * b) as f64;
    }
    for (p, o) in prod.iter_mut().zip(out) {
        p[0] = p[l + 1];
        p[w + 1] = p[r + 1];
        for x in 0..w {
            o[x] = p[x] + p[x + 1] + p[x + 2];
        }
    }
}

/// `cornerMinEigenVal(img, blockSize=3, ksize=3)`: the gradient products summed over 3x3 (reflected border) in
/// float64, as OpenCV's box filter does for float input, then the smaller eigenvalue in float32.
#[inline(always)]
fn min_eigen(g: &Gray) -> Vec<f32> {
    let (w, h) = (g.w, g.h);
    let (dx, dy) = sobel(g);
    let mut prod: [Vec<f64>; 3] = std::array::from_fn(|_| vec![0f64; w + 2]);
    // The row sums of the three source rows of an output row, kept in a ring of three.
    let mut ring: [Vec<f64>; 9] = std::array::from_fn(|_| vec![0f64; w]);
    let mut have = [usize::MAX; 3];
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let src = [reflect101(y as i64 - 1, h), y, reflect101(y as i64 + 1, h)];
        for &sy in &src {
            let slot = sy % 3;
            if have[slot] != sy {
                let [a, b, c] = &mut ring[3 * slot..3 * slot + 3] else {
                    unreachable!()
                };
                row_sums(&dx[sy * w..][..w], &dy[sy * w..][..w], &mut prod, [a, b, c]);
                have[slot] = sy;
            }
        }
        let [s0, s1, s2] = src.map(|sy| 3 * (sy % 3));
        let sum = |k: usize| -> [&[f64]; 3] {
            [&ring[s0 + k][..w], &ring[s1 + k][..w], &ring[s2 + k][..w]]
        };
        let ([a0, a1, a2], [b0, b1, b2], [c0, c1, c2]) = (sum(0), sum(1), sum(2));
        let o = &mut out[y * w..][..w];
        for x in 0..w {
            let a = (a0[x] + a1[x] + a2[x]) as f32 * 0.5;
            let b = (b0[x] + b1[x] + b2[x]) as f32;
            let c = (c0[x] + c1[x] + c2[x]) as f32 * 0.5;
            let t = a - c;
            o[x] = (a + c) - (t * t + b * b).sqrt();
        }
    }
    out
}

/// The corners, strongest first (ties: the later pixel in row order first, as OpenCV sorts their addresses),
/// at most `max_corners`, at integer pixel positions.
pub fn good_features(g: &Gray, max_corners: usize, quality: f64) -> Vec<[f32; 2]> {
    if g.w < 3 || g.h < 3 {
        return Vec::new();
    }
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features `good_features_avx2` is compiled for.
        return unsafe { good_features_avx2(g, max_corners, quality) };
    }
    good_features_any(g, max_corners, quality)
}

/// The same code compiled with AVX2 and FMA, so that the loops vectorize and the fused multiply-adds are
/// single instructions (the arithmetic, and so the result, is the same).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn good_features_avx2(g: &Gray, max_corners: usize, quality: f64) -> Vec<[f32; 2]> {
    good_features_any(g, max_corners, quality)
}

#[inline(always)]
fn good_features_any(g: &Gray, max_corners: usize, quality: f64) -> Vec<[f32; 2]> {
    let (w, h) = (g.w, g.h);
    let mut eig = min_eigen(g);
    let max = eig.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
    let thresh = (max * quality) as f32;
    for v in eig.iter_mut() {
        *v = if *v > thresh { *v } else { 0.0 };
    }
    // A 3x3 dilation, row maxima first.
    let mut hmax = vec![0f32; w * h];
    for y in 0..h {
        let (r, o) = (&eig[y * w..][..w], &mut hmax[y * w..][..w]);
        for x in 1..w - 1 {
            o[x] = r[x - 1].max(r[x]).max(r[x + 1]);
        }
    }
    let mut found: Vec<(f32, usize)> = Vec::new();
    for y in 1..h - 1 {
        let (a, b, c) = (
            &hmax[(y - 1) * w..][..w],
            &hmax[y * w..][..w],
            &hmax[(y + 1) * w..][..w],
        );
        let r = &eig[y * w..][..w];
        for x in 1..w - 1 {
            let v = r[x];
            if v != 0.0 && v == a[x].max(b[x]).max(c[x]) {
                found.push((v, y * w + x));
            }
        }
    }
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1));
    if max_corners > 0 && found.len() > max_corners {
        found.select_nth_unstable_by(max_corners - 1, order);
        found.truncate(max_corners);
    }
    found.sort_by(order);
    found
        .iter()
        .map(|&(_, i)| [(i % w) as f32, (i / w) as f32])
        .collect()
}
