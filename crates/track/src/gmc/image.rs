//! The grey, downscaled frame GMC works on, with OpenCV's integer arithmetic: `cvtColor(BGR2GRAY)` and
//! `resize` to half size (which OpenCV runs as a 2x2 box average when the size halves exactly).

/// An 8-bit single-channel image, rows packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gray {
    pub w: usize,
    pub h: usize,
    pub px: Vec<u8>,
}

impl Gray {
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.px[y * self.w + x]
    }
}

/// One video frame as the tracker's caller holds it: RGB bytes, rows packed.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub width: usize,
    pub height: usize,
    pub rgb: &'a [u8],
}

impl Frame<'_> {
    /// Whether the bytes hold the frame it says (a frame the motion estimate can look at).
    pub fn is_whole(&self) -> bool {
        self.width > 0 && self.height > 0 && self.rgb.len() >= self.width * self.height * 3
    }
}

/// OpenCV's `BGR2GRAY` for 8-bit: 14-bit fixed-point weights, rounded.
#[inline(always)]
fn luma(p: &[u8]) -> u32 {
    (p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + (1 << 13)) >> 14
}

pub fn gray(f: Frame<'_>) -> Gray {
    let px = f
        .rgb
        .chunks_exact(3)
        .take(f.width * f.height)
        .map(|p| luma(p) as u8)
        .collect();
    Gray {
        w: f.width,
        h: f.height,
        px,
    }
}

/// `half(&gray(f))` in one pass over the frame when its size halves exactly.
pub fn half_gray(f: Frame<'_>) -> Gray {
    let (w, h) = (f.width / 2, f.height / 2);
    if f.width != 2 * w || f.height != 2 * h || f.rgb.len() < f.width * f.height * 3 {
        return half(&gray(f));
    }
    let stride = f.width * 3;
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h {
        let (r0, r1) = (
            &f.rgb[2 * y * stride..][..stride],
            &f.rgb[(2 * y + 1) * stride..][..stride],
        );
        for (a, b) in r0.chunks_exact(6).zip(r1.chunks_exact(6)) {
            let s = luma(&a[..3]) + luma(&a[3..]) + luma(&b[..3]) + luma(&b[3..]);
            px.push(((s + 2) >> 2) as u8);
        }
    }
    Gray { w, h, px }
}

/// `cv2.resize(img, (w // 2, h // 2))` with the default bilinear interpolation.
pub fn half(g: &Gray) -> Gray {
    let (w, h) = (g.w / 2, g.h / 2);
    if g.w == 2 * w && g.h == 2 * h {
        // OpenCV switches an exact halving to its area kernel: the rounded mean of each 2x2 block.
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                let s = g.at(2 * x, 2 * y) as u32
                    + g.at(2 * x + 1, 2 * y) as u32
                    + g.at(2 * x, 2 * y + 1) as u32
                    + g.at(2 * x + 1, 2 * y + 1) as u32;
                px.push(((s + 2) >> 2) as u8);
            }
        }
        return Gray { w, h, px };
    }
    bilinear(g, w.max(1), h.max(1))
}

/// OpenCV's fixed-point bilinear resize (11-bit coefficients per axis) for sizes that do not halve exactly, the
/// vertical blend rounded as its SIMD loop does (`((b * (s >> 4)) >> 16)` per row, then `(sum + 2) >> 2`).
fn bilinear(g: &Gray, w: usize, h: usize) -> Gray {
    const SCALE: f32 = 2048.0;
    let taps = |dst: usize, src: usize| -> Vec<(usize, i32, i32)> {
        let s = src as f64 / dst as f64;
        (0..dst)
            .map(|d| {
                let f = ((d as f64 + 0.5) * s - 0.5) as f32;
                let mut i = f.floor() as i64;
                let mut fx = f - i as f32;
                if i < 0 {
                    i = 0;
                    fx = 0.0;
                }
                if i + 1 >= src as i64 {
                    i = src as i64 - 1;
                    fx = 0.0;
                }
                let a0 = ((1.0 - fx) * SCALE).round_ties_even() as i32;
                (i as usize, a0, 2048 - a0)
            })
            .collect()
    };
    let (tx, ty) = (taps(w, g.w), taps(h, g.h));
    let row = |y: usize| -> Vec<i32> {
        tx.iter()
            .map(|&(x, a0, a1)| {
                let x1 = (x + 1).min(g.w - 1);
                g.at(x, y) as i32 * a0 + g.at(x1, y) as i32 * a1
            })
            .collect()
    };
    let mut px = Vec::with_capacity(w * h);
    for &(y, b0, b1) in &ty {
        let (r0, r1) = (row(y), row((y + 1).min(g.h - 1)));
        for x in 0..w {
            let v = (((b0 * (r0[x] >> 4)) >> 16) + ((b1 * (r1[x] >> 4)) >> 16) + 2) >> 2;
            px.push(v.clamp(0, 255) as u8);
        }
    }
    Gray { w, h, px }
}

/// OpenCV's `BORDER_REFLECT_101` index: `gfedcb|abcdefgh|gfedcba`.
pub fn reflect101(mut p: i64, n: usize) -> usize {
    let n = n as i64;
    if n <= 1 {
        return 0;
    }
    loop {
        if p < 0 {
            p = -p;
        } else if p >= n {
            p = 2 * n - 2 - p;
        } else {
            return p as usize;
        }
    }
}
