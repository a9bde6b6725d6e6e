//! RandAugment's operations as torchvision runs them on PIL images (Ultralytics' classify training default,
//! `auto_augment=randaugment`, bilinear): Pillow 13's `ImageEnhance` (a blend of the image with a degenerate
//! one: black, its grey, its mean grey, its 3x3 smoothing), `ImageOps` (posterize, solarize, autocontrast,
//! equalize) and the affine transform behind shear, translate and rotate (torchvision's inverse matrix or
//! PIL's rotation matrix, then Pillow's generic bilinear transform, black outside), step by step so the pixels
//! are the package's to the bit.

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

/// Python's `math.radians` / `math.degrees` (CPython multiplies by `pi / 180` and `180 / pi` as doubles).
fn radians(deg: f64) -> f64 {
    deg * (std::f64::consts::PI / 180.0)
}

fn degrees(rad: f64) -> f64 {
    rad * (180.0 / std::f64::consts::PI)
}

/// torchvision's `_get_inverse_affine_matrix` (output pixel -> input pixel), in its order of operations.
fn inverse_affine_matrix(
    center: [f64; 2],
    angle: f64,
    translate: [f64; 2],
    scale: f64,
    shear: [f64; 2],
) -> [f64; 6] {
    let rot = radians(angle);
    let (sx, sy) = (radians(shear[0]), radians(shear[1]));
    let [cx, cy] = center;
    let [tx, ty] = translate;
    let a = (rot - sy).cos() / sy.cos();
    let b = -(rot - sy).cos() * sx.tan() / sy.cos() - rot.sin();
    let c = (rot - sy).sin() / sy.cos();
    let d = -(rot - sy).sin() * sx.tan() / sy.cos() + rot.cos();
    let mut m = [d, -b, 0.0, -c, a, 0.0].map(|x| x / scale);
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
    m[2] += cx;
    m[5] += cy;
    m
}

/// Python's `round(x, 15)`: the double nearest the correctly rounded 15-decimal value.
fn round15(x: f64) -> f64 {
    format!("{x:.15}").parse().unwrap_or(x)
}

/// PIL's `Image.rotate(angle)` matrix about the image centre (no expand, no translate).
fn rotate_matrix(w: u32, h: u32, angle: f64) -> [f64; 6] {
    let angle = -radians(angle.rem_euclid(360.0));
    let (cos, sin) = (round15(angle.cos()), round15(angle.sin()));
    let mut m = [cos, sin, 0.0, round15(-angle.sin()), cos, 0.0];
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let (x, y) = (-cx, -cy);
    m[2] += m[0] * x + m[1] * y;
    m[5] += m[3] * x + m[4] * y;
    m[2] += cx;
    m[5] += cy;
    m
}

/// Pillow's `ImagingGenericTransform` with `affine_transform` and `bilinear_filter32RGB`: each output pixel's
/// centre mapped by `m` into the input, blended from its four neighbours in double, truncated; black where
/// it falls outside.
fn affine(image: &RgbImage, m: [f64; 6]) -> RgbImage {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let src = image.as_raw();
    let mut out = RgbImage::new(image.width(), image.height());
    let clip = |v: i64, n: i64| v.clamp(0, n - 1) as usize;
    // C's FLOOR macro: floor below zero, truncation above.
    let floor = |v: f64| if v < 0.0 { v.floor() as i64 } else { v as i64 };
    let at = |yy: usize, xx: usize, c: usize| src[(yy * w as usize + xx) * 3 + c] as f64;
    for (y, row) in out.rows_mut().enumerate() {
        for (x, px) in row.enumerate() {
            let (xo, yo) = (x as f64 + 0.5, y as f64 + 0.5);
            let mut xin = m[0] * xo + m[1] * yo + m[2];
            let mut yin = m[3] * xo + m[4] * yo + m[5];
            if xin < 0.0 || xin >= w as f64 || yin < 0.0 || yin >= h as f64 {
                continue;
            }
            xin -= 0.5;
            yin -= 0.5;
            let (ix, iy) = (floor(xin), floor(yin));
            let (dx, dy) = (xin - ix as f64, yin - iy as f64);
            let (x0, x1) = (clip(ix, w), clip(ix + 1, w));
            let r0 = clip(iy, h);
            for c in 0..3 {
                let v1 = at(r0, x0, c) + (at(r0, x1, c) - at(r0, x0, c)) * dx;
                let v2 = if iy + 1 >= 0 && iy + 1 < h {
                    let r1 = (iy + 1) as usize;
                    at(r1, x0, c) + (at(r1, x1, c) - at(r1, x0, c)) * dx
                } else {
                    v1
                };
                px[c] = (v1 + (v2 - v1) * dy) as u8;
            }
        }
    }
    out
}

/// `F.affine` on a PIL image: the inverse matrix about `center` (the image centre when `None`).
fn tv_affine(
    image: &RgbImage,
    translate: [f64; 2],
    shear: [f64; 2],
    center: Option<[f64; 2]>,
) -> RgbImage {
    let center = center.unwrap_or([image.width() as f64 * 0.5, image.height() as f64 * 0.5]);
    affine(
        image,
        inverse_affine_matrix(center, 0.0, translate, 1.0, shear),
    )
}

/// `F.rotate` on a PIL image (`Image.rotate`, whose 0 and 180 degrees are exact copies, and 90 or 270 too for
/// a square image).
fn rotate(image: &RgbImage, angle: f64) -> RgbImage {
    let a = angle.rem_euclid(360.0);
    if a == 0.0 {
        return image.clone();
    }
    if a == 180.0 {
        return image::imageops::rotate180(image);
    }
    if image.width() == image.height() && (a == 90.0 || a == 270.0) {
        // PIL's ROTATE_90 turns counter-clockwise, the image crate's rotate90 clockwise.
        return if a == 90.0 {
            image::imageops::rotate270(image)
        } else {
            image::imageops::rotate90(image)
        };
    }
    affine(image, rotate_matrix(image.width(), image.height(), angle))
}

/// One of RandAugment's operations by torchvision's name, with `_apply_op`'s magnitude (the enhance factor
/// is `1 + magnitude`, posterize takes `int(magnitude)` bits, a shear `degrees(atan(magnitude))` about the
/// top-left corner, a translation `int(magnitude)` pixels); `None` for a name not handled here.
pub fn apply(image: &RgbImage, op: &str, magnitude: f64) -> Option<RgbImage> {
    Some(match op {
        "Identity" => image.clone(),
        "ShearX" => tv_affine(
            image,
            [0.0, 0.0],
            [degrees(magnitude.atan()), 0.0],
            Some([0.0, 0.0]),
        ),
        "ShearY" => tv_affine(
            image,
            [0.0, 0.0],
            [0.0, degrees(magnitude.atan())],
            Some([0.0, 0.0]),
        ),
        "TranslateX" => tv_affine(image, [magnitude.trunc(), 0.0], [0.0, 0.0], None),
        "TranslateY" => tv_affine(image, [0.0, magnitude.trunc()], [0.0, 0.0], None),
        "Rotate" => rotate(image, magnitude),
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

/// RandAugment's operations, in torchvision's order (`_augmentation_space`).
pub const OPS: [&str; 14] = [
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
];

/// Whether RandAugment flips the operation's magnitude with probability one half.
pub fn signed(op: &str) -> bool {
    matches!(
        op,
        "ShearX"
            | "ShearY"
            | "TranslateX"
            | "TranslateY"
            | "Rotate"
            | "Brightness"
            | "Color"
            | "Contrast"
            | "Sharpness"
    )
}

/// The magnitude of `op` at `bin` of 31 for an `h x w` image, as RandAugment's float32 tables
/// (`torch.linspace(start, end, 31)[bin]`, `start + step * bin` below the middle).
pub fn magnitude(op: &str, bin: usize, h: u32, w: u32) -> f64 {
    let lin = |start: f32, end: f32| {
        let step = (end - start) / 30.0;
        (start + step * bin as f32) as f64
    };
    match op {
        "ShearX" | "ShearY" => lin(0.0, 0.3),
        "TranslateX" => lin(0.0, (150.0 / 331.0 * w as f64) as f32),
        "TranslateY" => lin(0.0, (150.0 / 331.0 * h as f64) as f32),
        "Rotate" => lin(0.0, 30.0),
        "Brightness" | "Color" | "Contrast" | "Sharpness" => lin(0.0, 0.9),
        "Posterize" => 8.0 - (bin as f32 / 7.5).round_ties_even() as f64,
        "Solarize" => lin(255.0, 0.0),
        _ => 0.0,
    }
}

/// torchvision's `RandAugment(num_ops, magnitude)` on one image: `num_ops` operations drawn uniformly, each
/// signed one negated with probability one half. The draws are ours (`rng`), the pixels torchvision's.
pub fn rand_augment<R: rand::Rng>(
    image: &RgbImage,
    num_ops: usize,
    bin: usize,
    rng: &mut R,
) -> RgbImage {
    let mut img = image.clone();
    for _ in 0..num_ops {
        let op = OPS[rng.random_range(0..OPS.len())];
        let mut m = magnitude(op, bin, img.height(), img.width());
        if signed(op) && rng.random_bool(0.5) {
            m = -m;
        }
        img = apply(&img, op, m).unwrap_or(img);
    }
    img
}
