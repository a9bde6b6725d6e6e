//! The detector in a web page: a weights file and an image's RGBA pixels in, boxes out, through the same
//! steps as `deploy predict` (`deploy::predict::Detector`) on the CPU engine's WebAssembly SIMD128 kernels.
//! `scripts/build_web.sh` builds it with wasm-bindgen into `web/dist/`; `web/yolo.js` wraps it as
//! `window.yolo`. On the host this crate is its plain Rust core, tested by `cargo test`.

#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod bindings;

use anyhow::{bail, Result};
use data::args::ImgSize;
use deploy::predict::Detector;
use image::RgbImage;
use model::burn::tensor::Device;
use model::postprocess::{Detection, NmsOptions};
use model::weights::{load_model_bytes, LoadOptions};

/// What `detect` is asked for, as the page's options name it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub imgsz: usize,
    pub conf: f32,
    pub iou: f32,
    pub max_det: usize,
}

impl Default for Options {
    /// `deploy predict`'s defaults.
    fn default() -> Options {
        let nms = NmsOptions::predict();
        Options {
            imgsz: 640,
            conf: nms.conf,
            iou: nms.iou,
            max_det: nms.max_det,
        }
    }
}

/// A loaded model and what the page shows about it.
pub struct Model {
    detector: Detector,
}

impl Model {
    /// Reads our safetensors file (fused or not; fused here if not). `name` stands for the file in messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Model> {
        if bytes.is_empty() {
            bail!("{name}: an empty file");
        }
        let loaded = load_model_bytes(bytes, name, &LoadOptions::default(), &Device::flex())?;
        Ok(Model {
            detector: Detector::new(loaded)?,
        })
    }

    pub fn backend(&self) -> String {
        self.detector.backend()
    }

    pub fn names(&self) -> &[String] {
        self.detector.names()
    }

    /// The boxes in an image given as RGBA bytes (a canvas's `ImageData`; alpha is ignored, as `predict`
    /// drops it when it reads a PNG with transparency).
    pub fn detect_rgba(
        &self,
        rgba: &[u8],
        width: u32,
        height: u32,
        o: &Options,
    ) -> Result<Vec<Detection>> {
        let image = rgb_from_rgba(rgba, width, height)?;
        let unit = 0.0..=1.0;
        if o.imgsz == 0 || !unit.contains(&o.conf) || !unit.contains(&o.iou) {
            bail!(
                "imgsz {} conf {} iou {}: imgsz must be a positive multiple of the model's stride, conf and \
                 iou numbers in 0..1",
                o.imgsz,
                o.conf,
                o.iou
            );
        }
        let nms = NmsOptions {
            conf: o.conf,
            iou: o.iou,
            max_det: o.max_det,
            ..NmsOptions::predict()
        };
        self.detector.detect(&image, ImgSize::square(o.imgsz), &nms)
    }
}

fn rgb_from_rgba(rgba: &[u8], width: u32, height: u32) -> Result<RgbImage> {
    let want = width as usize * height as usize * 4;
    if width == 0 || height == 0 || rgba.len() != want {
        bail!(
            "an image of {width}x{height} RGBA pixels needs {want} bytes, not {}",
            rgba.len()
        );
    }
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| anyhow::anyhow!("{width}x{height}: not an image size"))
}

/// Detections as the page's JSON: `[{cls, name, conf, box: [x1, y1, x2, y2]}]`.
pub fn to_json(dets: &[Detection], names: &[String]) -> String {
    let v: Vec<serde_json::Value> = dets
        .iter()
        .map(|d| {
            serde_json::json!({
                "cls": d.cls,
                "name": names.get(d.cls).cloned().unwrap_or_default(),
                "conf": d.conf,
                "box": [d.x1, d.y1, d.x2, d.y2],
            })
        })
        .collect();
    serde_json::Value::Array(v).to_string()
}

#[cfg(test)]
mod tests;
