//! Image decoding (EXIF orientation applied), OpenCV-style bilinear resize and Ultralytics' letterbox.

use anyhow::{Context, Result};
use image::RgbImage;
use std::path::Path;

/// Where the letterboxed image sits inside the network input, to map boxes back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Resize gain (network pixels per original pixel).
    pub gain: f32,
    /// Left and top padding in network pixels.
    pub pad: (f32, f32),
    /// Original image size (h, w).
    pub orig: (usize, usize),
    /// Network input size (h, w).
    pub size: (usize, usize),
}

/// Decodes an image file (JPEG, PNG, BMP, WebP) to RGB, applying its EXIF orientation.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    use image::ImageDecoder;
    let reader = image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut decoder = reader
        .into_decoder()
        .with_context(|| format!("{}: not a supported image", path.display()))?;
    let orientation = decoder.orientation().ok();
    let mut img = image::DynamicImage::from_decoder(decoder)
        .with_context(|| format!("{}: corrupt image", path.display()))?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.to_rgb8())
}

/// Bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR geometry, float arithmetic).
pub fn resize_linear(src: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    if (w, h) == (new_w, new_h) {
        return src.clone();
    }
    let sx = w as f32 / new_w as f32;
    let sy = h as f32 / new_h as f32;
    let axis = |dst: u32, scale: f32, len: u32| -> (u32, u32, f32) {
        let f = ((dst as f32 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (f.floor() as u32).min(len - 1);
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, f - i0 as f32)
    };
    let xs: Vec<(u32, u32, f32)> = (0..new_w).map(|x| axis(x, sx, w)).collect();
    let mut out = RgbImage::new(new_w, new_h);
    for y in 0..new_h {
        let (y0, y1, fy) = axis(y, sy, h);
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let p = |xx, yy| src.get_pixel(xx, yy).0;
            let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
            let mut px = [0u8; 3];
            for ch in 0..3 {
                let top = a[ch] as f32 * (1.0 - fx) + b[ch] as f32 * fx;
                let bot = c[ch] as f32 * (1.0 - fx) + d[ch] as f32 * fx;
                px[ch] = (top * (1.0 - fy) + bot * fy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x as u32, y, image::Rgb(px));
        }
    }
    out
}

/// Area-average downscale (OpenCV's INTER_AREA): each output pixel averages the source pixels its footprint
/// covers, weighted by the covered fraction. Ultralytics shrinks validation images this way.
pub fn resize_area(src: &RgbImage, new_w: u32, new_h: u32) -> RgbImage {
    let (w, h) = src.dimensions();
    if new_w >= w || new_h >= h {
        return resize_linear(src, new_w, new_h);
    }
    // (source index, weight) lists per output coordinate.
    let taps = |dst: u32, len: u32| -> Vec<Vec<(u32, f32)>> {
        let s = len as f64 / dst as f64;
        (0..dst)
            .map(|o| {
                let (a, b) = (o as f64 * s, ((o + 1) as f64 * s).min(len as f64));
                let mut v = Vec::new();
                let mut i = a.floor() as u32;
                while (i as f64) < b && i < len {
                    let cover = (b.min(i as f64 + 1.0) - a.max(i as f64)).max(0.0);
                    if cover > 1e-9 {
                        v.push((i, (cover / s) as f32));
                    }
                    i += 1;
                }
                v
            })
            .collect()
    };
    let (tx, ty) = (taps(new_w, w), taps(new_h, h));
    let mut out = RgbImage::new(new_w, new_h);
    for (oy, ys) in ty.iter().enumerate() {
        for (ox, xs) in tx.iter().enumerate() {
            let mut acc = [0f32; 3];
            for &(sy, wy) in ys {
                for &(sx, wx) in xs {
                    let p = src.get_pixel(sx, sy).0;
                    for c in 0..3 {
                        acc[c] += p[c] as f32 * wx * wy;
                    }
                }
            }
            out.put_pixel(
                ox as u32,
                oy as u32,
                image::Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    out
}

/// Ultralytics' LetterBox to exactly `(h, w)` (auto=False, scaleup=True, centred, pad 114).
pub fn letterbox_image(img: &RgbImage, h: usize, w: usize) -> (RgbImage, Letterbox) {
    letterbox_with(img, h, w, None)
}

/// LetterBox with `auto` (predict): the smallest padding that makes each side a multiple of `stride`.
pub fn letterbox_auto(img: &RgbImage, imgsz: usize, stride: usize) -> (RgbImage, Letterbox) {
    letterbox_with(img, imgsz, imgsz, Some(stride))
}

fn letterbox_with(
    img: &RgbImage,
    h: usize,
    w: usize,
    auto_stride: Option<usize>,
) -> (RgbImage, Letterbox) {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let r = (h as f32 / h0 as f32).min(w as f32 / w0 as f32);
    let nw = ((w0 as f32 * r).round_ties_even() as usize).clamp(1, w);
    let nh = ((h0 as f32 * r).round_ties_even() as usize).clamp(1, h);
    let (mut pw, mut ph) = (w - nw, h - nh);
    if let Some(s) = auto_stride {
        pw %= s;
        ph %= s;
    }
    let (w, h) = (nw + pw, nh + ph);
    let dw = pw as f32 / 2.0;
    let dh = ph as f32 / 2.0;
    let left = (dw - 0.1).round_ties_even() as i64;
    let top = (dh - 0.1).round_ties_even() as i64;
    let resized = resize_linear(img, nw as u32, nh as u32);
    let mut out = RgbImage::from_pixel(w as u32, h as u32, image::Rgb([114; 3]));
    image::imageops::replace(&mut out, &resized, left, top);
    (
        out,
        Letterbox {
            gain: r,
            pad: (left as f32, top as f32),
            orig: (h0, w0),
            size: (h, w),
        },
    )
}

/// CHW float data in `[0, 1]` (the network's input layout).
pub fn to_chw(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * h * w];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * h * w + i] = px.0[c] as f32 / 255.0;
        }
    }
    data
}

/// [`letterbox_image`] as CHW float data in `[0, 1]`.
pub fn letterbox(img: &RgbImage, h: usize, w: usize) -> (Vec<f32>, Letterbox) {
    let (out, lb) = letterbox_image(img, h, w);
    (to_chw(&out), lb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_centres_and_pads_with_114() {
        let img = RgbImage::from_pixel(200, 100, image::Rgb([255, 0, 0]));
        let (d, lb) = letterbox(&img, 64, 64);
        assert_eq!(lb.gain, 0.32);
        assert_eq!(lb.pad, (0.0, 16.0));
        assert_eq!(d[0], 114.0 / 255.0, "top padding row");
        assert_eq!(d[20 * 64 + 10], 1.0, "red inside the image");
        assert_eq!(d[64 * 64 + 20 * 64 + 10], 0.0, "green inside the image");
    }

    #[test]
    fn area_resize_averages_footprints() {
        let img = RgbImage::from_fn(4, 2, |x, _| image::Rgb([(x * 40) as u8, 9, 9]));
        let r = resize_area(&img, 2, 1);
        assert_eq!(r.get_pixel(0, 0).0, [20, 9, 9]);
        assert_eq!(r.get_pixel(1, 0).0, [100, 9, 9]);
        let r = resize_area(
            &RgbImage::from_fn(5, 5, |x, _| image::Rgb([(x * 50) as u8, 0, 0])),
            2,
            2,
        );
        assert_eq!(
            r.get_pixel(0, 0).0[0],
            40,
            "2.5-pixel footprint: (0 + 50 + 0.5 * 100) / 2.5"
        );
    }

    #[test]
    fn resize_keeps_a_flat_colour_and_halves_a_ramp() {
        let img = RgbImage::from_fn(8, 2, |x, _| image::Rgb([(x * 30) as u8, 7, 7]));
        let r = resize_linear(&img, 4, 1);
        assert_eq!(r.get_pixel(0, 0).0, [15, 7, 7]);
        assert_eq!(r.get_pixel(3, 0).0, [195, 7, 7]);
    }
}
