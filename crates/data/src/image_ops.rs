//! Image decoding (EXIF orientation applied), OpenCV-style bilinear resize and Ultralytics' letterbox.

use anyhow::{Context, Result};
use image::{ImageBuffer, RgbImage};
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

/// Larger images are refused before decoding: PIL's `Image.MAX_IMAGE_PIXELS * 2`, where PIL (and so
/// Ultralytics' dataset checks) raises its decompression-bomb error.
pub const MAX_PIXELS: u64 = 178_956_970;

/// Decodes an image file (JPEG, PNG, BMP, WebP) to RGB, applying its EXIF orientation.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot open", path.display()))?;
    decode_rgb(&bytes, &path.display().to_string())
}

/// Writes `img` in the format its extension names, encoded in memory first: the image crate's own `save`
/// buffers the file and drops a failing final flush, so a full disk would lose a small image without a word.
pub fn save_rgb(img: &RgbImage, path: &Path) -> Result<()> {
    let format = image::ImageFormat::from_path(path)
        .with_context(|| format!("{}: no image format for this extension", path.display()))?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, format)
        .with_context(|| format!("{}: cannot encode", path.display()))?;
    std::fs::write(path, bytes.into_inner())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// [`read_rgb`] on bytes in memory; `name` is for messages. JPEGs decode through libjpeg-turbo's code, so
/// the pixels equal cv2.imread's (what Ultralytics sees); other formats through the image crate.
pub fn decode_rgb(bytes: &[u8], name: &str) -> Result<RgbImage> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{name}: cannot read"))?;
    let is_jpeg = reader.format() == Some(image::ImageFormat::Jpeg);
    let mut decoder = reader
        .into_decoder()
        .with_context(|| format!("{name}: not a supported image"))?;
    // The header's size is checked before any pixel is allocated: a few bytes can claim gigapixels.
    let (w, h) = decoder.dimensions();
    if w as u64 * h as u64 > MAX_PIXELS {
        anyhow::bail!(
            "{name}: the header says {w}x{h} pixels, more than the {MAX_PIXELS} allowed (PIL's decompression-bomb limit)"
        );
    }
    let orientation = decoder.orientation().ok();
    let mut img = match is_jpeg.then(|| decode_jpeg_libjpeg(bytes)).flatten() {
        Some(img) => image::DynamicImage::ImageRgb8(img),
        None => image::DynamicImage::from_decoder(decoder)
            .with_context(|| format!("{name}: corrupt image"))?,
    };
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_rgb8())
}

/// libjpeg-turbo's default decode (accurate integer IDCT, fancy upsampling) to RGB. `None` for what it cannot
/// convert to RGB (CMYK) or cannot read, so the image crate's decoder gets the file and reports the error.
#[cfg(not(target_arch = "wasm32"))]
fn decode_jpeg_libjpeg(bytes: &[u8]) -> Option<RgbImage> {
    // MozJPEG reports libjpeg errors by unwinding (without the panic hook): caught here.
    std::panic::catch_unwind(|| {
        let d = mozjpeg::Decompress::new_mem(bytes).ok()?;
        let mut started = d.rgb().ok()?;
        let (w, h) = (started.width() as u32, started.height() as u32);
        let pixels: Vec<u8> = started.read_scanlines().ok()?;
        started.finish().ok()?;
        RgbImage::from_raw(w, h, pixels)
    })
    .ok()
    .flatten()
}

/// WebAssembly has no libjpeg-turbo here (the browser decodes the page's images itself).
#[cfg(target_arch = "wasm32")]
fn decode_jpeg_libjpeg(_bytes: &[u8]) -> Option<RgbImage> {
    None
}

/// OpenCV's `cv::resize(.., INTER_LINEAR)` on 8-bit images, bit for bit (what Ultralytics' LetterBox and
/// load_image call). OpenCV works in fixed point: horizontal taps are 11-bit integer weights (rounded half to
/// even from float32 fractions), and the vertical pass is its SIMD kernel, which OpenCV uses for whole rows:
/// `((S0 >> 4) * b0 >> 16) + ((S1 >> 4) * b1 >> 16)`, then `(t + 2) >> 2`. An exact 2x shrink takes its
/// INTER_AREA shortcut, as OpenCV does. Proven against cv2.resize outputs (`tests/fixtures/cv2_resize`), for
/// RGB and for grey (the tracker's motion estimate).
pub fn resize_linear<P: image::Pixel<Subpixel = u8>>(
    src: &ImageBuffer<P, Vec<u8>>,
    new_w: u32,
    new_h: u32,
) -> ImageBuffer<P, Vec<u8>> {
    let cn = P::CHANNEL_COUNT as usize;
    const ONE: i32 = 2048;
    let (w, h) = (src.width() as usize, src.height() as usize);
    let (nw, nh) = (new_w as usize, new_h as usize);
    if (w, h) == (nw, nh) || nw == 0 || nh == 0 || w == 0 || h == 0 {
        return if (w, h) == (nw, nh) {
            src.clone()
        } else {
            ImageBuffer::new(new_w, new_h)
        };
    }
    let (scale_x, scale_y) = (1.0 / (nw as f64 / w as f64), 1.0 / (nh as f64 / h as f64));
    let exactly_two =
        |s: f64| (s - s.round_ties_even()).abs() < f64::EPSILON && s.round_ties_even() == 2.0;
    if exactly_two(scale_x) && exactly_two(scale_y) {
        return halve_area(src, nw, nh);
    }
    let weights = |f: f32| {
        let q = |v: f32| (v * ONE as f32).round_ties_even().clamp(-32768.0, 32767.0) as i32;
        (q(1.0 - f), q(f))
    };
    // Source column and weights per output column; columns past the right edge copy the last pixel.
    let mut xmax = nw;
    let xs: Vec<(usize, i32, i32)> = (0..nw)
        .map(|dx| {
            let mut fx = ((dx as f64 + 0.5) * scale_x - 0.5) as f32;
            let mut sx = fx.floor() as i64;
            fx -= sx as f32;
            if sx < 0 {
                (fx, sx) = (0.0, 0);
            }
            if sx + 1 >= w as i64 {
                xmax = xmax.min(dx);
                if sx >= w as i64 - 1 {
                    (fx, sx) = (0.0, w as i64 - 1);
                }
            }
            let (a0, a1) = weights(fx);
            (sx as usize, a0, a1)
        })
        .collect();
    let raw = src.as_raw();
    let hresize = |row: usize, out: &mut Vec<i32>| {
        out.clear();
        let line = &raw[row * w * cn..(row + 1) * w * cn];
        for (dx, &(sx, a0, a1)) in xs.iter().enumerate() {
            for c in 0..cn {
                let p0 = line[sx * cn + c] as i32;
                out.push(if dx < xmax {
                    p0 * a0 + line[(sx + 1) * cn + c] as i32 * a1
                } else {
                    p0 * ONE
                });
            }
        }
    };
    let mut out = vec![0u8; nw * nh * cn];
    let (mut rows, mut cached): ([Vec<i32>; 2], [Option<usize>; 2]) = Default::default();
    for dy in 0..nh {
        let mut fy = ((dy as f64 + 0.5) * scale_y - 0.5) as f32;
        let sy = fy.floor() as i64;
        fy -= sy as f32;
        let (b0, b1) = weights(fy);
        let clip = |y: i64| y.clamp(0, h as i64 - 1) as usize;
        let want = [clip(sy), clip(sy + 1)];
        // Reuse a horizontally resized row from the previous output row where possible.
        if cached[0] != Some(want[0]) && cached[1] == Some(want[0]) {
            rows.swap(0, 1);
            cached.swap(0, 1);
        }
        for k in 0..2 {
            if cached[k] != Some(want[k]) {
                hresize(want[k], &mut rows[k]);
                cached[k] = Some(want[k]);
            }
        }
        let dst = &mut out[dy * nw * cn..(dy + 1) * nw * cn];
        for ((d, &s0), &s1) in dst.iter_mut().zip(&rows[0]).zip(&rows[1]) {
            let t = (((s0 >> 4) * b0) >> 16) + (((s1 >> 4) * b1) >> 16);
            *d = ((t + 2) >> 2).clamp(0, 255) as u8;
        }
    }
    ImageBuffer::from_raw(new_w, new_h, out).expect("buffer sized for the image")
}

/// Ultralytics' `load_image` (rect mode): the long side to `imgsz`, each side `ceil(side * r)` capped at
/// `imgsz`, INTER_LINEAR; returns the image and `r`.
pub fn resize_long_side(img: RgbImage, imgsz: usize) -> (RgbImage, f64) {
    let (w0, h0) = img.dimensions();
    let r = imgsz as f64 / w0.max(h0) as f64;
    if r == 1.0 {
        return (img, r);
    }
    let side = |s: u32| ((s as f64 * r).ceil() as u32).clamp(1, imgsz as u32);
    (resize_linear(&img, side(w0), side(h0)), r)
}

/// OpenCV's INTER_AREA for an exact 2x shrink: the rounded mean of each 2x2 block.
fn halve_area<P: image::Pixel<Subpixel = u8>>(
    src: &ImageBuffer<P, Vec<u8>>,
    nw: usize,
    nh: usize,
) -> ImageBuffer<P, Vec<u8>> {
    let cn = P::CHANNEL_COUNT as usize;
    let (raw, stride) = (src.as_raw(), src.width() as usize * cn);
    let mut out = Vec::with_capacity(nw * nh * cn);
    for y in 0..nh {
        let (r0, r1) = (&raw[2 * y * stride..], &raw[(2 * y + 1) * stride..]);
        for x in 0..nw {
            for c in 0..cn {
                let (i, j) = (2 * x * cn + c, (2 * x + 1) * cn + c);
                let sum = r0[i] as u32 + r0[j] as u32 + r1[i] as u32 + r1[j] as u32;
                out.push(((sum + 2) >> 2) as u8);
            }
        }
    }
    ImageBuffer::from_raw(nw as u32, nh as u32, out).expect("buffer sized for the image")
}

/// Ultralytics' LetterBox to exactly `(h, w)` (auto=False, scaleup=True, centred, pad 114).
pub fn letterbox_image(img: &RgbImage, h: usize, w: usize) -> (RgbImage, Letterbox) {
    letterbox_with(img, h, w, None, true)
}

/// LetterBox with `scaleup=False` (validation): shrinks an image larger than `(h, w)`, only pads a smaller one.
pub fn letterbox_no_scaleup(img: &RgbImage, h: usize, w: usize) -> (RgbImage, Letterbox) {
    letterbox_with(img, h, w, None, false)
}

/// LetterBox with `auto` (predict): fitted into `h x w`, then the smallest padding that makes each side a
/// multiple of `stride`.
pub fn letterbox_auto(img: &RgbImage, h: usize, w: usize, stride: usize) -> (RgbImage, Letterbox) {
    letterbox_with(img, h, w, Some(stride), true)
}

fn letterbox_with(
    img: &RgbImage,
    h: usize,
    w: usize,
    auto_stride: Option<usize>,
    scaleup: bool,
) -> (RgbImage, Letterbox) {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    // Python floats (f64) and round(), as LetterBox computes them.
    let mut r = (h as f64 / h0 as f64).min(w as f64 / w0 as f64);
    if !scaleup {
        r = r.min(1.0);
    }
    let nw = ((w0 as f64 * r).round_ties_even() as usize).clamp(1, w);
    let nh = ((h0 as f64 * r).round_ties_even() as usize).clamp(1, h);
    let (mut pw, mut ph) = (w - nw, h - nh);
    if let Some(s) = auto_stride {
        pw %= s;
        ph %= s;
    }
    let (w, h) = (nw + pw, nh + ph);
    let dw = pw as f64 / 2.0;
    let dh = ph as f64 / 2.0;
    let left = (dw - 0.1).round_ties_even() as i64;
    let top = (dh - 0.1).round_ties_even() as i64;
    let resized = resize_linear(img, nw as u32, nh as u32);
    let mut out = RgbImage::from_pixel(w as u32, h as u32, image::Rgb([114; 3]));
    image::imageops::replace(&mut out, &resized, left, top);
    (
        out,
        Letterbox {
            gain: r as f32,
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
    fn resize_keeps_a_flat_colour_and_halves_a_ramp() {
        let img = RgbImage::from_fn(8, 2, |x, _| image::Rgb([(x * 30) as u8, 7, 7]));
        let r = resize_linear(&img, 4, 1);
        assert_eq!(r.get_pixel(0, 0).0, [15, 7, 7]);
        assert_eq!(r.get_pixel(3, 0).0, [195, 7, 7]);
    }
}
