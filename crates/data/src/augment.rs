//! Ultralytics' detection training augmentation: mosaic of 4, random perspective (affine by default) with box
//! transform and filtering, optional mixup, HSV jitter, flips; plus the letterboxed validation sample.
//!
//! Every random draw comes from an RNG seeded by (seed, epoch, index), so a sample is the same whatever the
//! number of worker threads.

use crate::dataset::Dataset;
use crate::image_ops::read_rgb;
use crate::labels::Label;
use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, OnceLock};

pub const PAD: u8 = 114;

/// Augmentation settings under Ultralytics' hyperparameter names and defaults.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    pub mosaic: f32,
    pub mixup: f32,
    pub degrees: f32,
    pub translate: f32,
    pub scale: f32,
    pub shear: f32,
    pub perspective: f32,
    pub hsv_h: f32,
    pub hsv_s: f32,
    pub hsv_v: f32,
    pub flipud: f32,
    pub fliplr: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            mosaic: 1.0,
            mixup: 0.0,
            degrees: 0.0,
            translate: 0.1,
            scale: 0.5,
            shear: 0.0,
            perspective: 0.0,
            hsv_h: 0.015,
            hsv_s: 0.7,
            hsv_v: 0.4,
            flipud: 0.0,
            fliplr: 0.5,
        }
    }
}

/// A box in pixels (corners) with its class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PixBox {
    pub cls: usize,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl PixBox {
    fn from_label(l: &Label, w: f32, h: f32) -> PixBox {
        PixBox {
            cls: l.cls,
            x1: (l.cx - l.w / 2.0) * w,
            y1: (l.cy - l.h / 2.0) * h,
            x2: (l.cx + l.w / 2.0) * w,
            y2: (l.cy + l.h / 2.0) * h,
        }
    }

    pub fn to_label(self, w: f32, h: f32) -> Label {
        Label {
            cls: self.cls,
            cx: (self.x1 + self.x2) / 2.0 / w,
            cy: (self.y1 + self.y2) / 2.0 / h,
            w: (self.x2 - self.x1) / w,
            h: (self.y2 - self.y1) / h,
        }
    }

    fn shifted(self, dx: f32, dy: f32) -> PixBox {
        PixBox {
            x1: self.x1 + dx,
            y1: self.y1 + dy,
            x2: self.x2 + dx,
            y2: self.y2 + dy,
            ..self
        }
    }

    fn clipped(self, w: f32, h: f32) -> PixBox {
        PixBox {
            x1: self.x1.clamp(0.0, w),
            y1: self.y1.clamp(0.0, h),
            x2: self.x2.clamp(0.0, w),
            y2: self.y2.clamp(0.0, h),
            ..self
        }
    }
}

/// An augmented training image (imgsz x imgsz) with normalized labels.
#[derive(Debug, Clone)]
pub struct TrainSample {
    pub image: RgbImage,
    pub labels: Vec<Label>,
}

/// A letterboxed evaluation image with what maps its boxes back to the original.
#[derive(Debug, Clone)]
pub struct ValSample {
    pub image: RgbImage,
    pub labels: Vec<Label>,
    pub letterbox: crate::image_ops::Letterbox,
}

type Loaded = Arc<(RgbImage, Vec<PixBox>)>;

/// Builds training and validation samples from a dataset.
pub struct Augmenter {
    pub dataset: Arc<Dataset>,
    pub cfg: AugmentConfig,
    pub imgsz: usize,
    pub seed: u64,
    /// Decoded, resized images kept in memory (Ultralytics' `cache=ram`) when enabled.
    cache: Option<Vec<OnceLock<Loaded>>>,
    warned: std::sync::Mutex<std::collections::HashSet<usize>>,
}

/// A per-(seed, epoch, index) RNG, independent of threads and order.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [epoch as u64, index as u64] {
        h = (h ^ v).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 31;
    }
    ChaCha8Rng::seed_from_u64(h)
}

impl Augmenter {
    pub fn new(
        dataset: Arc<Dataset>,
        cfg: AugmentConfig,
        imgsz: usize,
        seed: u64,
        cache_images: bool,
    ) -> Augmenter {
        let cache = cache_images.then(|| (0..dataset.len()).map(|_| OnceLock::new()).collect());
        Augmenter {
            dataset,
            cfg,
            imgsz,
            seed,
            cache,
            warned: Default::default(),
        }
    }

    /// Decodes sample `i` and resizes it so its long side is `imgsz` (Ultralytics' `load_image`), with its
    /// boxes in resized pixels. A file that fails to decode now is reported once and replaced by a grey image
    /// without boxes, so a long run does not stop on one bad file.
    pub fn load(&self, i: usize) -> Loaded {
        if let Some(c) = &self.cache {
            return c[i].get_or_init(|| self.load_uncached(i)).clone();
        }
        self.load_uncached(i)
    }

    fn load_uncached(&self, i: usize) -> Loaded {
        let s = &self.dataset.samples[i];
        let img = match read_rgb(&s.image) {
            Ok(img) => img,
            Err(e) => {
                if self.warned.lock().map(|mut w| w.insert(i)).unwrap_or(false) {
                    eprintln!("warning: {e:#}; using a blank image in its place");
                }
                return Arc::new((
                    RgbImage::from_pixel(self.imgsz as u32, self.imgsz as u32, Rgb([PAD; 3])),
                    vec![],
                ));
            }
        };
        let (img, _) = crate::image_ops::resize_long_side(img, self.imgsz);
        let (w, h) = (img.width() as f32, img.height() as f32);
        let boxes = s
            .labels
            .iter()
            .map(|l| PixBox::from_label(l, w, h))
            .collect();
        Arc::new((img, boxes))
    }

    /// One training sample. `mosaic_enabled` is false during Ultralytics' close_mosaic epochs.
    pub fn train_sample(&self, index: usize, epoch: usize, mosaic_enabled: bool) -> TrainSample {
        let mut rng = sample_rng(self.seed, epoch, index);
        let (mut img, mut boxes) = self.mosaic_or_single(index, &mut rng, mosaic_enabled);
        if mosaic_enabled && self.cfg.mixup > 0.0 && rng.random::<f32>() < self.cfg.mixup {
            let j = rng.random_range(0..self.dataset.len());
            let (img2, boxes2) = self.mosaic_or_single(j, &mut rng, mosaic_enabled);
            let r: f32 = rand_distr::Distribution::sample(
                &rand_distr::Beta::new(32.0f32, 32.0).expect("valid"),
                &mut rng,
            );
            for (a, b) in img.pixels_mut().zip(img2.pixels()) {
                for c in 0..3 {
                    a.0[c] = (a.0[c] as f32 * r + b.0[c] as f32 * (1.0 - r)) as u8;
                }
            }
            boxes.extend(boxes2);
        }
        hsv_jitter(&mut img, &self.cfg, &mut rng);
        let (w, h) = (img.width() as f32, img.height() as f32);
        if rng.random::<f32>() < self.cfg.flipud {
            image::imageops::flip_vertical_in_place(&mut img);
            for b in &mut boxes {
                (b.y1, b.y2) = (h - b.y2, h - b.y1);
            }
        }
        if rng.random::<f32>() < self.cfg.fliplr {
            image::imageops::flip_horizontal_in_place(&mut img);
            for b in &mut boxes {
                (b.x1, b.x2) = (w - b.x2, w - b.x1);
            }
        }
        TrainSample {
            labels: boxes.iter().map(|b| b.to_label(w, h)).collect(),
            image: img,
        }
    }

    fn mosaic_or_single(
        &self,
        index: usize,
        rng: &mut ChaCha8Rng,
        mosaic_enabled: bool,
    ) -> (RgbImage, Vec<PixBox>) {
        let s = self.imgsz;
        if mosaic_enabled && rng.random::<f32>() < self.cfg.mosaic {
            let (canvas, boxes) = self.mosaic4(index, rng);
            let border = -(s as i64) / 2;
            random_perspective(&canvas, &boxes, border, &self.cfg, rng)
        } else {
            let loaded = self.load(index);
            let (img, boxes) = (&loaded.0, &loaded.1);
            let (canvas, boxes) = pad_center(img, boxes, s, s);
            random_perspective(&canvas, &boxes, 0, &self.cfg, rng)
        }
    }

    /// Four images around a random centre on a 2s x 2s canvas (YOLOv5/v8 placement rules).
    fn mosaic4(&self, index: usize, rng: &mut ChaCha8Rng) -> (RgbImage, Vec<PixBox>) {
        let s = self.imgsz as i64;
        let yc = rng.random_range(s as f32 / 2.0..1.5 * s as f32) as i64;
        let xc = rng.random_range(s as f32 / 2.0..1.5 * s as f32) as i64;
        let mut ids = vec![index];
        for _ in 0..3 {
            ids.push(rng.random_range(0..self.dataset.len()));
        }
        let mut canvas = RgbImage::from_pixel(2 * s as u32, 2 * s as u32, Rgb([PAD; 3]));
        let mut out = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let loaded = self.load(id);
            let (img, boxes) = (&loaded.0, &loaded.1);
            let (w, h) = (img.width() as i64, img.height() as i64);
            let (x1a, y1a, x2a, y2a, x1b, y1b);
            match k {
                0 => {
                    (x1a, y1a, x2a, y2a) = ((xc - w).max(0), (yc - h).max(0), xc, yc);
                    (x1b, y1b) = (w - (x2a - x1a), h - (y2a - y1a));
                }
                1 => {
                    (x1a, y1a, x2a, y2a) = (xc, (yc - h).max(0), (xc + w).min(2 * s), yc);
                    (x1b, y1b) = (0, h - (y2a - y1a));
                }
                2 => {
                    (x1a, y1a, x2a, y2a) = ((xc - w).max(0), yc, xc, (2 * s).min(yc + h));
                    (x1b, y1b) = (w - (x2a - x1a), 0);
                }
                _ => {
                    (x1a, y1a, x2a, y2a) = (xc, yc, (xc + w).min(2 * s), (2 * s).min(yc + h));
                    (x1b, y1b) = (0, 0);
                }
            }
            for y in 0..(y2a - y1a) {
                for x in 0..(x2a - x1a) {
                    let p = *img.get_pixel((x1b + x) as u32, (y1b + y) as u32);
                    canvas.put_pixel((x1a + x) as u32, (y1a + y) as u32, p);
                }
            }
            let (padw, padh) = ((x1a - x1b) as f32, (y1a - y1b) as f32);
            out.extend(boxes.iter().map(|b| b.shifted(padw, padh)));
        }
        let side = 2.0 * s as f32;
        let out = out
            .into_iter()
            .map(|b| b.clipped(side, side))
            .filter(|b| b.x2 > b.x1 && b.y2 > b.y1)
            .collect();
        (canvas, out)
    }

    /// A validation sample: long side resized to `imgsz` (up or down, as `load_image`), then letterboxed into
    /// `h x w` without scaling up (a square `imgsz`, or a rectangular batch's shape).
    pub fn val_sample(&self, index: usize, h: usize, w: usize) -> ValSample {
        let s = &self.dataset.samples[index];
        let img = match read_rgb(&s.image) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("warning: {e:#}; using a blank image in its place");
                RgbImage::from_pixel(s.size.0.max(1), s.size.1.max(1), Rgb([PAD; 3]))
            }
        };
        // Ultralytics' val path: load_image (long side to imgsz, size rounded up, INTER_LINEAR both ways in
        // 8.4), then LetterBox, which only pads what is now a fitting image.
        let (w0, h0) = img.dimensions();
        let (resized, r) = crate::image_ops::resize_long_side(img, self.imgsz);
        let (rw, rh) = resized.dimensions();
        let (image, mut lb) = crate::image_ops::letterbox_no_scaleup(&resized, h, w);
        // Labels follow the image as Ultralytics' LetterBox moves them: denormalized with the resized image's
        // own size (each side rounded up by load_image, so its scale differs from r per axis), scaled by the
        // letterbox gain, shifted by the padding, normalized to the letterboxed input.
        let g = lb.gain;
        let (sx, sy) = (rw as f32 * g, rh as f32 * g);
        let (lw, lh) = (lb.size.1 as f32, lb.size.0 as f32);
        let labels = s
            .labels
            .iter()
            .map(|l| Label {
                cls: l.cls,
                cx: (l.cx * sx + lb.pad.0) / lw,
                cy: (l.cy * sy + lb.pad.1) / lh,
                w: l.w * sx / lw,
                h: l.h * sy / lh,
            })
            .collect();
        lb.gain *= r as f32;
        lb.orig = (h0 as usize, w0 as usize);
        ValSample {
            image,
            labels,
            letterbox: lb,
        }
    }
}

/// Centres `img` on a `w x h` canvas of 114 (LetterBox without resize: images are already resized).
fn pad_center(img: &RgbImage, boxes: &[PixBox], w: usize, h: usize) -> (RgbImage, Vec<PixBox>) {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let dw = (w.saturating_sub(iw)) as f32 / 2.0;
    let dh = (h.saturating_sub(ih)) as f32 / 2.0;
    let left = (dw - 0.1).round_ties_even().max(0.0) as i64;
    let top = (dh - 0.1).round_ties_even().max(0.0) as i64;
    let mut canvas = RgbImage::from_pixel(w as u32, h as u32, Rgb([PAD; 3]));
    image::imageops::overlay(&mut canvas, img, left, top);
    let boxes = boxes
        .iter()
        .map(|b| b.shifted(left as f32, top as f32))
        .collect();
    (canvas, boxes)
}

type Mat3 = [[f64; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn invert(m: &Mat3) -> Option<Mat3> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 {
        return None;
    }
    let c =
        |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [
            c(1, 1, 2, 2) / det,
            -c(0, 1, 2, 2) / det,
            c(0, 1, 1, 2) / det,
        ],
        [
            -c(1, 0, 2, 2) / det,
            c(0, 0, 2, 2) / det,
            -c(0, 0, 1, 2) / det,
        ],
        [
            c(1, 0, 2, 1) / det,
            -c(0, 0, 2, 1) / det,
            c(0, 0, 1, 1) / det,
        ],
    ])
}

/// `dst(x, y) = src(M^-1 (x, y))` with bilinear sampling and a constant 114 border (cv2.warpAffine /
/// warpPerspective geometry: integer pixel coordinates).
pub fn warp(src: &RgbImage, m: &Mat3, out_w: u32, out_h: u32) -> RgbImage {
    let inv = invert(m).unwrap_or([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let raw = src.as_raw();
    let mut out = RgbImage::from_pixel(out_w, out_h, Rgb([PAD; 3]));
    let pad = [PAD as f32; 3];
    for y in 0..out_h {
        for x in 0..out_w {
            let (xf, yf) = (x as f64, y as f64);
            let wz = inv[2][0] * xf + inv[2][1] * yf + inv[2][2];
            if wz.abs() < 1e-12 {
                continue;
            }
            let sx = (inv[0][0] * xf + inv[0][1] * yf + inv[0][2]) / wz;
            let sy = (inv[1][0] * xf + inv[1][1] * yf + inv[1][2]) / wz;
            if sx <= -1.0 || sy <= -1.0 || sx >= sw as f64 || sy >= sh as f64 {
                continue;
            }
            let (x0, y0) = (sx.floor() as i64, sy.floor() as i64);
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let px = |xx: i64, yy: i64| -> [f32; 3] {
                if xx < 0 || yy < 0 || xx >= sw || yy >= sh {
                    pad
                } else {
                    let o = ((yy * sw + xx) * 3) as usize;
                    [raw[o] as f32, raw[o + 1] as f32, raw[o + 2] as f32]
                }
            };
            let (a, b, c, d) = (
                px(x0, y0),
                px(x0 + 1, y0),
                px(x0, y0 + 1),
                px(x0 + 1, y0 + 1),
            );
            let mut v = [0u8; 3];
            for ch in 0..3 {
                let top = a[ch] + (b[ch] - a[ch]) * fx;
                let bot = c[ch] + (d[ch] - c[ch]) * fx;
                v[ch] = (top + (bot - top) * fy).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x, y, Rgb(v));
        }
    }
    out
}

/// Ultralytics' RandomPerspective: M = T S R P C, output (canvas + 2 * border) square; boxes transformed by
/// their corners, clipped, and kept when w, h > 2 px, area > 10% of the scaled original, aspect < 100.
pub fn random_perspective(
    img: &RgbImage,
    boxes: &[PixBox],
    border: i64,
    cfg: &AugmentConfig,
    rng: &mut ChaCha8Rng,
) -> (RgbImage, Vec<PixBox>) {
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let width = (iw as i64 + 2 * border).max(1) as f64;
    let height = (ih as i64 + 2 * border).max(1) as f64;
    let mut uni = |lo: f64, hi: f64| {
        if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        }
    };
    let c: Mat3 = [
        [1.0, 0.0, -iw / 2.0],
        [0.0, 1.0, -ih / 2.0],
        [0.0, 0.0, 1.0],
    ];
    let pp = cfg.perspective as f64;
    let p: Mat3 = [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [uni(-pp, pp), uni(-pp, pp), 1.0],
    ];
    let angle = uni(-cfg.degrees as f64, cfg.degrees as f64).to_radians();
    let s = uni(1.0 - cfg.scale as f64, 1.0 + cfg.scale as f64);
    let (al, be) = (s * angle.cos(), s * angle.sin());
    let r: Mat3 = [[al, be, 0.0], [-be, al, 0.0], [0.0, 0.0, 1.0]];
    let sh = cfg.shear as f64;
    let shx = uni(-sh, sh).to_radians().tan();
    let shy = uni(-sh, sh).to_radians().tan();
    let sm: Mat3 = [[1.0, shx, 0.0], [shy, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let t = cfg.translate as f64;
    let tx = uni(0.5 - t, 0.5 + t) * width;
    let ty = uni(0.5 - t, 0.5 + t) * height;
    let tm: Mat3 = [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]];
    let m = matmul(&tm, &matmul(&sm, &matmul(&r, &matmul(&p, &c))));
    let out = warp(img, &m, width as u32, height as u32);
    let apply = |x: f64, y: f64| {
        let z = m[2][0] * x + m[2][1] * y + m[2][2];
        let z = if pp != 0.0 { z } else { 1.0 };
        (
            (m[0][0] * x + m[0][1] * y + m[0][2]) / z,
            (m[1][0] * x + m[1][1] * y + m[1][2]) / z,
        )
    };
    let mut kept = Vec::new();
    for b in boxes {
        let pts = [
            apply(b.x1 as f64, b.y1 as f64),
            apply(b.x2 as f64, b.y2 as f64),
            apply(b.x1 as f64, b.y2 as f64),
            apply(b.x2 as f64, b.y1 as f64),
        ];
        let nb = PixBox {
            cls: b.cls,
            x1: pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min) as f32,
            y1: pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min) as f32,
            x2: pts.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max) as f32,
            y2: pts.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max) as f32,
        }
        .clipped(width as f32, height as f32);
        let (w1, h1) = ((b.x2 - b.x1) * s as f32, (b.y2 - b.y1) * s as f32);
        let (w2, h2) = (nb.x2 - nb.x1, nb.y2 - nb.y1);
        let ar = (w2 / (h2 + 1e-16)).max(h2 / (w2 + 1e-16));
        if w2 > 2.0 && h2 > 2.0 && w2 * h2 / (w1 * h1 + 1e-16) > 0.1 && ar < 100.0 {
            kept.push(nb);
        }
    }
    (out, kept)
}

/// OpenCV-convention HSV (H in 0..180) of one RGB pixel.
fn rgb_to_hsv(p: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
    let v = r.max(g).max(b);
    let mn = r.min(g).min(b);
    let d = v - mn;
    let s = if v > 0.0 { d * 255.0 / v } else { 0.0 };
    let mut h = if d == 0.0 {
        0.0
    } else if v == r {
        60.0 * (g - b) / d
    } else if v == g {
        120.0 + 60.0 * (b - r) / d
    } else {
        240.0 + 60.0 * (r - g) / d
    };
    if h < 0.0 {
        h += 360.0;
    }
    [
        ((h / 2.0).round() as u32 % 180) as u8,
        s.round().min(255.0) as u8,
        v as u8,
    ]
}

fn hsv_to_rgb(p: [u8; 3]) -> [u8; 3] {
    let h = p[0] as f32 * 2.0;
    let s = p[1] as f32 / 255.0;
    let v = p[2] as f32;
    let c = v * s;
    let hp = h / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [
        (r + m).round().clamp(0.0, 255.0) as u8,
        (g + m).round().clamp(0.0, 255.0) as u8,
        (b + m).round().clamp(0.0, 255.0) as u8,
    ]
}

/// RandomHSV: random gains in [-1, 1] x (h, s, v) applied through lookup tables in HSV space (hue additive,
/// saturation of pure grey kept at 0, as Ultralytics 8.3.79+).
pub fn hsv_jitter(img: &mut RgbImage, cfg: &AugmentConfig, rng: &mut ChaCha8Rng) {
    if cfg.hsv_h == 0.0 && cfg.hsv_s == 0.0 && cfg.hsv_v == 0.0 {
        return;
    }
    let r: [f32; 3] = [
        rng.random_range(-1.0f32..1.0) * cfg.hsv_h,
        rng.random_range(-1.0f32..1.0) * cfg.hsv_s,
        rng.random_range(-1.0f32..1.0) * cfg.hsv_v,
    ];
    let (mut lut_h, mut lut_s, mut lut_v) = ([0u8; 256], [0u8; 256], [0u8; 256]);
    for (x, ((h, sat), v)) in lut_h
        .iter_mut()
        .zip(lut_s.iter_mut())
        .zip(lut_v.iter_mut())
        .enumerate()
    {
        let xf = x as f32;
        *h = (xf + r[0] * 180.0).rem_euclid(180.0) as u8;
        *sat = (xf * (r[1] + 1.0)).clamp(0.0, 255.0) as u8;
        *v = (xf * (r[2] + 1.0)).clamp(0.0, 255.0) as u8;
    }
    lut_s[0] = 0;
    for p in img.pixels_mut() {
        let hsv = rgb_to_hsv(p.0);
        p.0 = hsv_to_rgb([
            lut_h[hsv[0] as usize],
            lut_s[hsv[1] as usize],
            lut_v[hsv[2] as usize],
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_round_trip_is_close() {
        for p in [
            [10u8, 200, 30],
            [255, 255, 255],
            [0, 0, 0],
            [120, 60, 200],
            [250, 10, 10],
        ] {
            let q = hsv_to_rgb(rgb_to_hsv(p));
            for c in 0..3 {
                assert!((p[c] as i32 - q[c] as i32).abs() <= 3, "{p:?} -> {q:?}");
            }
        }
    }

    #[test]
    fn identity_warp_keeps_pixels_and_translation_moves_boxes() {
        let img = RgbImage::from_fn(20, 10, |x, y| Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let id: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert_eq!(warp(&img, &id, 20, 10), img);
        let cfg = AugmentConfig {
            translate: 0.0,
            scale: 0.0,
            ..Default::default()
        };
        let mut rng = sample_rng(1, 0, 0);
        let b = PixBox {
            cls: 2,
            x1: 2.0,
            y1: 2.0,
            x2: 12.0,
            y2: 8.0,
        };
        let (out, boxes) = random_perspective(&img, &[b], 0, &cfg, &mut rng);
        assert_eq!(out.dimensions(), (20, 10));
        assert_eq!(
            boxes,
            vec![b],
            "centre-translate with scale 1 is the identity"
        );
        let (out, boxes) = random_perspective(&img, &[b], -3, &cfg, &mut rng);
        assert_eq!(out.dimensions(), (14, 4));
        assert_eq!(boxes.len(), 1);
        assert_eq!((boxes[0].x1, boxes[0].x2), (0.0, 9.0));
    }
}
