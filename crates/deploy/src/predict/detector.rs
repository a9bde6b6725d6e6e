//! One image at a time, in memory: the steps `predict` takes for each image (letterbox, forward, NMS, boxes
//! back in the image's pixels) without files, threads or a progress bar, for a program that embeds the
//! detector (the web page in `crates/web`).

use super::{whole_view, InputShape, Net, PredictStats};
use crate::engine::Engine;
use anyhow::{anyhow, Result};
use data::args::ImgSize;
use image::RgbImage;
use model::burn::tensor::Device;
use model::postprocess::{Detection, NmsOptions};
use model::weights::Loaded;
use model::YoloModel;

/// A detection model ready to run: fused (here, when the file holds the unfused model) and lowered to the
/// CPU engine where it can run, else burn on the CPU.
pub struct Detector {
    model: YoloModel,
    /// The engine, or why burn runs the model instead.
    engine: std::result::Result<Engine, String>,
    names: Vec<String>,
    device: Device,
}

impl Detector {
    pub fn new(loaded: Loaded) -> Result<Detector> {
        let Loaded {
            model, names, file, ..
        } = loaded;
        model
            .spec
            .require_detector("this detector")
            .map_err(|e| anyhow!("{e}"))?;
        let model = if model.is_fused() {
            model
        } else {
            model.fuse()
        };
        let engine = Engine::new(&model).map_err(|e| format!("{}: {e}", file.path));
        Ok(Detector {
            model,
            engine,
            names,
            device: Device::flex(),
        })
    }

    /// What runs the model: `engine (<SIMD level>)`, or `burn (<why not the engine>)`.
    pub fn backend(&self) -> String {
        match &self.engine {
            Ok(e) => format!("engine ({:?})", e.level()),
            Err(why) => format!("burn ({why})"),
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The boxes in `image`'s pixels, as `predict` finds them at this input size and with these options.
    pub fn detect(
        &self,
        image: &RgbImage,
        imgsz: ImgSize,
        nms: &NmsOptions,
    ) -> Result<Vec<Detection>> {
        self.model
            .spec
            .check_input(imgsz.h, imgsz.w)
            .map_err(|e| anyhow!("{e}"))?;
        if image.width() == 0 || image.height() == 0 {
            return Err(anyhow!(
                "an empty image ({}x{})",
                image.width(),
                image.height()
            ));
        }
        let shape = InputShape {
            imgsz,
            stride: input_stride(&self.model),
            crop: false,
        };
        let view = whole_view(image, shape);
        let net = Net {
            model: &self.model,
            engine: self.engine.as_ref().ok(),
            nms,
            device: &self.device,
            nc: self.model.nc(),
        };
        let what = || "the image".to_string();
        let mut dets = net.forward(&[&view], &what, &mut PredictStats::default())?;
        Ok(dets.pop().unwrap_or_default())
    }
}

/// What each side of a letterboxed image is padded to a multiple of: the model's largest stride (64 for P6
/// models); 32 for a classifier.
pub fn input_stride(model: &YoloModel) -> usize {
    if model.task() == model::Task::Classify {
        return 32;
    }
    model
        .detect()
        .strides
        .iter()
        .fold(32.0f32, |a, &s| a.max(s)) as usize
}
