//! RandAugment's colour operations as torchvision runs them on PIL images (Ultralytics' classify training
//! default, `auto_augment=randaugment`): Pillow 13's `ImageEnhance` (a blend of the image with a degenerate
//! one: black, its grey, its mean grey, its 3x3 smoothing) and `ImageOps` (posterize, solarize, autocontrast,
//! equalize), step by step so the pixels are the package's to the bit. The geometric operations (shear,
//! translate, rotate) are not here yet.

use image::{Rgb, RgbImage};

/// Pillow's `ImagingBlend(im1, im2, alpha)`: `im1 + alpha * (im2 - im1)` in C `float`, truncated, clipped
/// when extrapolating.
fn blend(im1: &RgbImage, im2: &RgbImage, alpha: f32) -> RgbImage {
    if alpha == 0.0 {
        return im1.clone();
    }
    if alpha == 1.0 {
        return im2.clone();
    }
    let mut out = im1.clone();
    let inside = (0.0..=1.0).contains(&alpha);
    for (o, (&a, &b)) in out
        .iter_mut()
        .zip(im1.as_raw().iter().zip(im2.as_raw().iter()))
    {
        let t = a as i32 as f32 + alpha * (b as i32 - a as i32) as f32;
        *o = if inside {
            t as u8
        } else if t <= 0.0 {
            0
        } else if t >= 255.0 {
            255
        } else {
            t as u8
        };
    }
    out
}

/// `ImageEnhance`'s `enhance(factor)`: `Image.blend(degenerate, image, factor)` with the factor as the C
/// `float` the binding receives.
fn enhance(image: &RgbImage, degenerate: &RgbImage, factor: f64) -> RgbImage {
    blend(degenerate, image, factor as f32)
}

/// ITU-R 601-2 luma as Pillow's `rgb2l`: `(R * 19595 + G * 38470 + B * 7471 + 0x8000) >> 16`.
fn luma(p: &Rgb<u8>) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

/// `ImageEnhance.Brightness`: a blend with black.
pub fn brightness(image: &RgbImage, factor: f64) -> RgbImage {
    let black = RgbImage::new(image.width(), image.height());
    enhance(image, &black, factor)
}

/// `ImageEnhance.Color` (torchvision's `adjust_saturation` on PIL): a blend with the image's grey.
pub fn color(image: &RgbImage, factor: f64) -> RgbImage {
    let grey = RgbImage::from_fn(image.width(), image.height(), |x, y| {
        let l = luma(image.get_pixel(x, y));
        Rgb([l, l, l])
    });
    enhance(image, &grey, factor)
}

/// `ImageEnhance.Contrast`: a blend with the mean of the image's grey, rounded (`int(mean + 0.5)`).
pub fn contrast(image: &RgbImage, factor: f64) -> RgbImage {
    let n = (image.width() as u64 * image.height() as u64).max(1);
    let sum: u64 = image.pixels().map(|p| luma(p) as u64).sum();
    let mean = (sum as f64 / n as f64 + 0.5) as u8;
    let flat = RgbImage::from_pixel(image.width(), image.height(), Rgb([mean; 3]));
    enhance(image, &flat, factor)
}

/// `ImageFilter.SMOOTH` (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13) as `ImagingFilter3x3`: float taps
/// `1f / 13f` and `5f / 13f`, rows summed bottom to top onto an offset of 0.5, truncated; the outermost rows and
/// columns copied. An image under 3 pixels a side is returned as it is.
fn smooth(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width() as usize, image.height() as usize);
    if w < 3 || h < 3 {
        return image.clone();
    }
    let k = [1.0f32 / 13.0, 5.0f32 / 13.0];
    let src = image.as_raw();
    let mut out = image.clone();
    let dst: &mut [u8] = &mut out;
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| src[(yy * w + xx) * 3 + c] as f32;
                let row = |yy: usize, mid: f32| {
                    at(yy, x - 1) * k[0] + at(yy, x) * mid + at(yy, x + 1) * k[0]
                };
                let mut ss = 0.5f32;
                ss += row(y + 1, k[0]);
                ss += row(y, k[1]);
                ss += row(y - 1, k[0]);
                dst[(y * w + x) * 3 + c] = ss.clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// `ImageEnhance.Sharpness`: a blend with the image smoothed.
pub fn sharpness(image: &RgbImage, factor: f64) -> RgbImage {
    enhance(image, &smooth(image), factor)
}

/// A lookup table applied to every channel (`Image.point`).
fn point(image: &RgbImage, lut: &[u8; 256]) -> RgbImage {
    let mut out = image.clone();
    for v in out.iter_mut() {
        *v = lut[*v as usize];
    }
    out
}

/// `ImageOps.posterize`: keep the `bits` high bits (1..=8).
pub fn posterize(image: &RgbImage, bits: u32) -> RgbImage {
    let bits = bits.clamp(1, 8);
    let mask = !((1u32 << (8 - bits)) - 1) as u8;
    point(image, &std::array::from_fn(|i| i as u8 & mask))
}

/// `ImageOps.solarize`: values at or above `threshold` inverted.
pub fn solarize(image: &RgbImage, threshold: f64) -> RgbImage {
    point(
        image,
        &std::array::from_fn(|i| {
            if (i as f64) < threshold {
                i as u8
            } else {
                255 - i as u8
            }
        }),
    )
}

fn histograms(image: &RgbImage) -> [[u64; 256]; 3] {
    let mut h = [[0u64; 256]; 3];
    for p in image.pixels() {
        for c in 0..3 {
            h[c][p[c] as usize] += 1;
        }
    }
    h
}

/// A lookup table per channel.
fn point3(image: &RgbImage, luts: &[[u8; 256]; 3]) -> RgbImage {
    let mut out = image.clone();
    for p in out.pixels_mut() {
        for c in 0..3 {
            p[c] = luts[c][p[c] as usize];
        }
    }
    out
}

/// `ImageOps.autocontrast` (no cutoff): each channel stretched from its lowest to its highest value,
/// `int(v * scale + offset)` in double.
pub fn autocontrast(image: &RgbImage) -> RgbImage {
    let luts = histograms(image).map(|h| {
        let lo = (0..256).find(|&i| h[i] > 0).unwrap_or(0);
        let hi = (0..256).rev().find(|&i| h[i] > 0).unwrap_or(0);
        if hi <= lo {
            return std::array::from_fn(|i| i as u8);
        }
        let scale = 255.0 / (hi - lo) as f64;
        let offset = -(lo as f64) * scale;
        std::array::from_fn(|i| (i as f64 * scale + offset).clamp(0.0, 255.0) as i64 as u8)
    });
    point3(image, &luts)
}

/// `ImageOps.equalize`: each channel through its cumulative histogram, with Pillow's integer steps.
pub fn equalize(image: &RgbImage) -> RgbImage {
    let luts = histograms(image).map(|h| {
        let used: Vec<u64> = h.iter().copied().filter(|&v| v > 0).collect();
        let identity = std::array::from_fn(|i| i as u8);
        if used.len() <= 1 {
            return identity;
        }
        let step = (used.iter().sum::<u64>() - used[used.len() - 1]) / 255;
        if step == 0 {
            return identity;
        }
        let mut n = step / 2;
        let mut lut = [0u8; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            *v = (n / step).min(255) as u8;
            n += h[i];
        }
        lut
    });
    point3(image, &luts)
}

/// One of RandAugment's colour operations by torchvision's name, with `_apply_op`'s magnitude (the enhance
/// factor is `1 + magnitude`, posterize takes `int(magnitude)` bits); `None` for a name not handled here.
pub fn apply(image: &RgbImage, op: &str, magnitude: f64) -> Option<RgbImage> {
    Some(match op {
        "Identity" => image.clone(),
        "Brightness" => brightness(image, 1.0 + magnitude),
        "Color" => color(image, 1.0 + magnitude),
        "Contrast" => contrast(image, 1.0 + magnitude),
        "Sharpness" => sharpness(image, 1.0 + magnitude),
        "Posterize" => posterize(image, magnitude as u32),
        "Solarize" => solarize(image, magnitude),
        "AutoContrast" => autocontrast(image),
        "Equalize" => equalize(image),
        _ => return None,
    })
}
