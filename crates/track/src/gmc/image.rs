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

/// `cv2.resize(img, (w // 2, h // 2))` with the default bilinear interpolation: the data crate's bit-exact
/// port of OpenCV's resize (its 2x2 mean for an exact halving, its fixed-point blend otherwise).
pub fn half(g: &Gray) -> Gray {
    let (w, h) = ((g.w / 2).max(1), (g.h / 2).max(1));
    let img = ::image::GrayImage::from_raw(g.w as u32, g.h as u32, g.px.clone())
        .expect("a Gray holds w * h pixels");
    let px = data::image_ops::resize_linear(&img, w as u32, h as u32).into_raw();
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
