//! Ultralytics' classification evaluation transform (`classify_transforms`, what its `ClassificationDataset`
//! applies at validation and predict time): the image resized so its shorter side is `size` (torchvision's
//! `Resize(size)` on a PIL image, so Pillow's antialiased bilinear resampling), the centre `size` x `size` crop
//! (`CenterCrop`), then RGB values / 255 (`ToTensor`; the default mean 0 and std 1 leave them).
//!
//! The resampling is Pillow's `ImagingResample` step by step (float64 triangle weights over the scaled support,
//! normalized, 22-bit fixed point, one pass per axis in Pillow 13's order, each rounded and clipped to 8 bits),
//! so the pixels are the package's to the bit. No Rust crate reproduces Pillow's fixed-point filter; the
//! `image` crate's bilinear filter is float and differs by a level here and there.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's `precompute_coeffs` for the bilinear filter, normalized to fixed point: per output pixel, the first
/// input pixel and the weights.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) truncates towards zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax)
                .map(|x| {
                    let t = ((x as f64 - center + 0.5) * ss).abs();
                    if t < 1.0 {
                        1.0 - t
                    } else {
                        0.0
                    }
                })
                .collect();
            let sum: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&v| {
                    let v = if sum != 0.0 { v / sum } else { v };
                    let s = v * (1u32 << PRECISION_BITS) as f64;
                    (if v < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One pass along rows (`horizontal`) or columns of a packed RGB image `w` x `h`, to `out` pixels.
fn pass(src: &[u8], w: usize, h: usize, out: usize, horizontal: bool) -> Vec<u8> {
    let (len, lines) = if horizontal { (w, h) } else { (h, w) };
    let (ow, oh) = if horizontal { (out, h) } else { (w, out) };
    // The byte offset of pixel `i` along `line` in an image `width` wide.
    let at = |line: usize, i: usize, width: usize| {
        3 * if horizontal {
            line * width + i
        } else {
            i * width + line
        }
    };
    let coeffs = coefficients(len, out);
    let mut dst = vec![0u8; ow * oh * 3];
    for line in 0..lines {
        for (o, (first, k)) in coeffs.iter().enumerate() {
            for c in 0..3 {
                let mut s = 1i32 << (PRECISION_BITS - 1);
                for (i, &kv) in k.iter().enumerate() {
                    s += src[at(line, first + i, w) + c] as i32 * kv;
                }
                dst[at(line, o, ow) + c] = clip8(s);
            }
        }
    }
    dst
}

/// `Image.resize((w, h), Image.BILINEAR)` on an RGB image (Pillow 13: the vertical pass goes first when the
/// height shrinks by more than twice what the width does, the horizontal one otherwise).
pub fn pil_resize_bilinear(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let (w, h) = (w as usize, h as usize);
    let shrink_h = ih as i64 - h as i64;
    let vertical_first = shrink_h > 0 && shrink_h > (iw as i64 - w as i64) * 2;
    let mut px = img.as_raw().clone();
    let (mut cw, mut ch) = (iw, ih);
    let order = if vertical_first {
        [false, true]
    } else {
        [true, false]
    };
    for horizontal in order {
        if horizontal && w != cw {
            px = pass(&px, cw, ch, w, true);
            cw = w;
        } else if !horizontal && h != ch {
            px = pass(&px, cw, ch, h, false);
            ch = h;
        }
    }
    RgbImage::from_raw(cw as u32, ch as u32, px).expect("sizes match")
}

/// The size torchvision's `Resize(size)` gives an image: the shorter side `size`, the longer scaled and
/// truncated.
pub fn shorter_side_size(w: u32, h: u32, size: u32) -> (u32, u32) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (size as f64 * long as f64 / short as f64) as u32;
    if w <= h {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// `CenterCrop(size)` after the resize: the centred square (offsets rounded half to even, as Python's
/// `round`); an image smaller than the crop is padded with zeros around it, as torchvision does.
pub fn center_crop(img: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let s = size as i64;
    let offset = |len: i64| {
        if len >= s {
            ((len - s) as f64 / 2.0).round_ties_even() as i64
        } else {
            // Padded by (s - len) / 2 before, the rest after.
            -((s - len) / 2)
        }
    };
    let (left, top) = (offset(w), offset(h));
    RgbImage::from_fn(size, size, |x, y| {
        let (sx, sy) = (x as i64 + left, y as i64 + top);
        if (0..w).contains(&sx) && (0..h).contains(&sy) {
            *img.get_pixel(sx as u32, sy as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// The evaluation input of an image: resized, centre-cropped, `[3, size, size]` RGB in 0..1.
pub fn eval_input(img: &RgbImage, size: u32) -> Vec<f32> {
    let (w, h) = shorter_side_size(img.width(), img.height(), size);
    let crop = center_crop(&pil_resize_bilinear(img, w, h), size);
    let n = (size * size) as usize;
    let mut chw = vec![0f32; 3 * n];
    for (i, p) in crop.pixels().enumerate() {
        for c in 0..3 {
            chw[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    chw
}
