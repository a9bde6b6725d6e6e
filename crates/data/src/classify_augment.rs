//! Ultralytics' classification training transform (`classify_augmentations` with 8.4's defaults):
//! RandomResizedCrop (area 0.5-1 of the image, aspect 3/4-4/3, Pillow's bilinear resize), horizontal flip,
//! RandAugment ([`crate::randaugment`]), ToTensor, RandomErasing (probability 0.4, zeros). Each step is
//! torchvision's algorithm (its parameter sampling, its fallbacks, Python's rounding); the draws come from our
//! seeded generator, so a sample is reproducible from (seed, epoch, index) but not torch's.

use crate::classify::pil_resize_bilinear;
use image::RgbImage;
use rand::Rng;

/// The hyperparameters Ultralytics passes (`scale`, `fliplr`, `flipud`, `auto_augment`, `erasing`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifyAugment {
    /// RandomResizedCrop's area range, `(1 - scale, 1)` from Ultralytics' `scale` 0.5.
    pub area: (f64, f64),
    pub ratio: (f64, f64),
    pub hflip: f64,
    pub vflip: f64,
    /// RandAugment (2 operations, magnitude 9 of 31) when on.
    pub rand_augment: bool,
    pub erasing: f64,
}

impl Default for ClassifyAugment {
    fn default() -> Self {
        ClassifyAugment {
            area: (0.5, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip: 0.5,
            vflip: 0.0,
            rand_augment: true,
            erasing: 0.4,
        }
    }
}

/// A region `(top, left, height, width)`.
pub type Region = (u32, u32, u32, u32);

/// `RandomResizedCrop.get_params`: ten tries at an area and a log-uniform aspect ratio that fit, then the
/// centre crop clamped to the ratio range.
pub fn crop_params<R: Rng>(
    w: u32,
    h: u32,
    area: (f64, f64),
    ratio: (f64, f64),
    rng: &mut R,
) -> Region {
    let total = (w as f64) * (h as f64);
    let (lr0, lr1) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target = total * rng.random_range(area.0..=area.1);
        let aspect = rng.random_range(lr0..=lr1).exp();
        let cw = (target * aspect).sqrt().round_ties_even() as i64;
        let ch = (target / aspect).sqrt().round_ties_even() as i64;
        if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
            let i = rng.random_range(0..=(h as i64 - ch)) as u32;
            let j = rng.random_range(0..=(w as i64 - cw)) as u32;
            return (i, j, ch as u32, cw as u32);
        }
    }
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < ratio.0.min(ratio.1) {
        (
            w,
            (w as f64 / ratio.0.min(ratio.1)).round_ties_even() as u32,
        )
    } else if in_ratio > ratio.0.max(ratio.1) {
        (
            (h as f64 * ratio.0.max(ratio.1)).round_ties_even() as u32,
            h,
        )
    } else {
        (w, h)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// `F.resized_crop` on a PIL image: the region cut out, then resized to `size x size` with Pillow's bilinear
/// filter.
pub fn resized_crop(img: &RgbImage, r: Region, size: u32) -> RgbImage {
    let (i, j, h, w) = r;
    let crop = image::imageops::crop_imm(img, j, i, w, h).to_image();
    pil_resize_bilinear(&crop, size, size)
}

/// `RandomErasing.get_params` on a `c x h x w` tensor: ten tries at an area of 2-33% and a log-uniform aspect
/// ratio of 0.3-3.3 that fit strictly inside; `None` when none does (the image is left as it is).
pub fn erase_params<R: Rng>(h: u32, w: u32, rng: &mut R) -> Option<Region> {
    let area = (h as f64) * (w as f64);
    let (lr0, lr1) = ((0.3f64).ln(), (3.3f64).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.02..=0.33);
        let aspect = rng.random_range(lr0..=lr1).exp();
        let eh = (target * aspect).sqrt().round_ties_even() as i64;
        let ew = (target / aspect).sqrt().round_ties_even() as i64;
        if !(eh < h as i64 && ew < w as i64) {
            continue;
        }
        let i = rng.random_range(0..=(h as i64 - eh)) as u32;
        let j = rng.random_range(0..=(w as i64 - ew)) as u32;
        return Some((i, j, eh as u32, ew as u32));
    }
    None
}

/// `[3, size, size]` RGB in 0..1 (ToTensor; Ultralytics' mean 0 and std 1 leave it), the region zeroed
/// (`F.erase` with value 0).
pub fn to_chw(img: &RgbImage, erase: Option<Region>) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let n = w * h;
    let mut chw = vec![0f32; 3 * n];
    for (k, p) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * n + k] = p[c] as f32 / 255.0;
        }
    }
    if let Some((i, j, eh, ew)) = erase {
        for c in 0..3 {
            for y in i as usize..(i + eh) as usize {
                let row = c * n + y * w;
                chw[row + j as usize..row + (j + ew) as usize].fill(0.0);
            }
        }
    }
    chw
}

impl ClassifyAugment {
    /// One training input: `[3, size, size]`, the transform's steps in Ultralytics' order.
    pub fn apply<R: Rng>(&self, img: &RgbImage, size: u32, rng: &mut R) -> Vec<f32> {
        let r = crop_params(img.width(), img.height(), self.area, self.ratio, rng);
        let mut x = resized_crop(img, r, size);
        if rng.random::<f64>() < self.hflip {
            x = image::imageops::flip_horizontal(&x);
        }
        if rng.random::<f64>() < self.vflip {
            x = image::imageops::flip_vertical(&x);
        }
        if self.rand_augment {
            x = crate::randaugment::rand_augment(&x, 2, 9, rng);
        }
        let erase = (rng.random::<f64>() < self.erasing)
            .then(|| erase_params(size, size, rng))
            .flatten();
        to_chw(&x, erase)
    }
}
