//! `export --int8`: static post-training quantization of a fused model for the CPU engine. Each convolution's
//! input (dense and depthwise) is calibrated per tensor (u8, asymmetric) on the data set's train images
//! letterboxed as `predict` does, one range per group of maps (the layers reading one map and its slices
//! share it, so the engine stores that map as u8 once); weights are symmetric per output channel
//! ([`crate::engine::qconv`]). Each layer's INT8 error is then measured alone (its float input, its output
//! in INT8 against float) and the layers whose error is above `--int8-keep` stay float32. The file is the fused model's safetensors with the quantized
//! weights in int8 and the input quantization in its metadata ([`model::int8`]).

use crate::engine::{ConvInput, Engine, QuantIn, QuantTable};
use anyhow::{bail, Context, Result};
use model::burn::module::ParamId;
use model::int8::{InputQuant, Int8Info, Int8Tensor, META_KEY, SCALE_SUFFIX};
use model::weights::{
    model_metadata, state_dict, to_safetensors_bytes_with_int8, write_atomic, HostTensor,
};
use model::YoloModel;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// How a convolution input's range is chosen from the calibration values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// The smallest and largest value seen.
    MinMax,
    /// The given percentile at each end (e.g. 99.99: the top and bottom 0.01% clip).
    Percentile(f64),
}

impl std::str::FromStr for Calibration {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Calibration> {
        let s = s.trim();
        if s == "minmax" {
            return Ok(Calibration::MinMax);
        }
        if let Some(p) = s.strip_prefix("percentile") {
            let p = p.trim_start_matches([':', '=']);
            let v: f64 = if p.is_empty() {
                99.99
            } else {
                p.parse().with_context(|| {
                    format!("--int8-calibration {s}: percentile:N with N a number")
                })?
            };
            if !(50.0..=100.0).contains(&v) {
                bail!("--int8-calibration {s}: the percentile must lie in 50..100");
            }
            return Ok(Calibration::Percentile(v));
        }
        bail!("--int8-calibration {s}: expected minmax or percentile[:N]")
    }
}

#[derive(Debug, Clone)]
pub struct Int8Options {
    /// The data set YAML whose train images calibrate.
    pub data: PathBuf,
    /// The share of the train images used (Ultralytics' `fraction`), at most `max_images` of them.
    pub fraction: f64,
    pub max_images: usize,
    pub imgsz: (usize, usize),
    pub method: Calibration,
    /// Layers whose relative output error (RMS error / RMS output) is above this stay float32.
    pub keep_above: f64,
    /// Images the per-layer error is measured on (the first of the calibration images).
    pub error_images: usize,
}

#[derive(Debug, Clone)]
pub struct Int8Summary {
    pub path: PathBuf,
    pub images: usize,
    pub skipped: usize,
    /// Every eligible layer's relative INT8 error, by weight key, in model order.
    pub errors: Vec<(String, f64)>,
    pub int8_layers: usize,
    pub float_layers: Vec<String>,
    pub bytes: u64,
}

/// Values seen at one convolution's input.
#[derive(Default)]
struct Stats {
    lo: f32,
    hi: f32,
    seen: bool,
    samples: Vec<f32>,
}

/// Convolutions on fewer input channels stay float.
const MIN_CIN: usize = 8;

/// Values of each image and layer kept for percentiles (evenly strided).
const SAMPLES_PER_IMAGE: usize = 4096;

impl Stats {
    fn add(&mut self, v: &[f32], keep_samples: bool) {
        let (lo, hi) = v
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        if self.seen {
            self.lo = self.lo.min(lo);
            self.hi = self.hi.max(hi);
        } else {
            (self.lo, self.hi, self.seen) = (lo, hi, true);
        }
        if keep_samples {
            let step = v.len().div_ceil(SAMPLES_PER_IMAGE).max(1);
            self.samples.extend(v.iter().step_by(step));
        }
    }

    fn range(&mut self, method: Calibration) -> (f32, f32) {
        match method {
            Calibration::MinMax => (self.lo, self.hi),
            Calibration::Percentile(p) => {
                let s = &mut self.samples;
                if s.is_empty() {
                    return (self.lo, self.hi);
                }
                s.sort_by(f32::total_cmp);
                let n = s.len() - 1;
                let at = |q: f64| s[((q / 100.0) * n as f64).round() as usize];
                (at(100.0 - p), at(p))
            }
        }
    }
}

/// The calibration images: the train split's, the first `fraction` of them in name order, at most `max`.
fn calibration_images(o: &Int8Options) -> Result<Vec<PathBuf>> {
    if !(o.fraction > 0.0 && o.fraction <= 1.0) {
        bail!("--fraction {}: must lie in (0, 1]", o.fraction);
    }
    let cfg = data::config::DataConfig::from_file(&o.data)
        .with_context(|| format!("--data {}", o.data.display()))?;
    let sources = cfg
        .split("train")
        .with_context(|| format!("--data {}", o.data.display()))?;
    let mut files = data::config::image_files(sources)
        .with_context(|| format!("--data {}: the train images", o.data.display()))?;
    files.sort();
    if files.is_empty() {
        bail!(
            "--data {}: no train images to calibrate on (looked in {})",
            o.data.display(),
            sources
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let n = ((files.len() as f64 * o.fraction).ceil() as usize).clamp(1, o.max_images.max(1));
    files.truncate(n);
    Ok(files)
}

/// Every image letterboxed to `imgsz` as CHW floats; unreadable ones are skipped with one warning each.
fn load_images(files: &[PathBuf], (h, w): (usize, usize)) -> (Vec<(PathBuf, Vec<f32>)>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for f in files {
        match data::image_ops::read_rgb(f) {
            Ok(img) => out.push((f.clone(), data::image_ops::letterbox(&img, h, w).0)),
            Err(e) => {
                eprintln!("warning: skipping a calibration image: {e}");
                skipped += 1;
            }
        }
    }
    (out, skipped)
}

/// Calibrates `model` (fused, float32) and writes the INT8 file to `path`.
pub fn export_int8(
    model: &YoloModel,
    names: &[String],
    o: &Int8Options,
    path: &Path,
) -> Result<Int8Summary> {
    if model.int8.is_some() {
        bail!("the model is already INT8: quantize the float weights it was made from");
    }
    if !model.is_fused() {
        bail!("INT8 export quantizes the fused model (internal: fuse first)");
    }
    let (h, w) = o.imgsz;
    let files = calibration_images(o)?;
    let (images, skipped) = load_images(&files, o.imgsz);
    if images.is_empty() {
        bail!(
            "--data {}: none of the {} calibration images could be read",
            o.data.display(),
            files.len()
        );
    }
    let engine = Engine::for_calibration(model).context("INT8 calibration runs on the engine")?;
    let keys = crate::engine::conv_weight_keys(model);
    let keep_samples = matches!(o.method, Calibration::Percentile(_));
    let mut stats: BTreeMap<usize, Stats> = BTreeMap::new();
    // Layers in the order the model runs them, each named by its first weight. A convolution on fewer than
    // `MIN_CIN` channels (the stem, on the image) stays float: its groups of 4 input channels would be
    // mostly padding (measured 2x slower in INT8).
    let mut order: Vec<Vec<ParamId>> = Vec::new();
    let mut narrow: Vec<bool> = Vec::new();
    let bar = crate::predict::progress_bar(images.len() as u64, "calibrating");
    for (i, (file, x)) in images.iter().enumerate() {
        let mut bad: Option<String> = None;
        let mut layer = 0usize;
        engine
            .conv_inputs(x, h, w, &mut |c: ConvInput<'_>| {
                if i == 0 {
                    order.push(c.ids.to_vec());
                    narrow.push(c.c < MIN_CIN);
                }
                if bad.is_none() && c.values.iter().any(|v| !v.is_finite()) {
                    bad = Some(keys.get(&c.ids[0]).cloned().unwrap_or_default());
                }
                stats.entry(layer).or_default().add(c.values, keep_samples);
                layer += 1;
            })
            .with_context(|| format!("calibration image {}", file.display()))?;
        if let Some(k) = bad {
            bail!(
                "calibration image {}: the input of {k} holds non-finite values (NaN or infinity): \
                 the float model is broken on it, so no INT8 ranges can be taken",
                file.display()
            );
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // One range per group of maps (a map and the slices, pooled and copied maps joined to it): the layers
    // reading one group share its quantization, so the map between them can be stored as u8 once.
    let groups = engine.input_groups();
    let mut ranges: BTreeMap<usize, (f32, f32)> = BTreeMap::new();
    let mut group_of = Vec::with_capacity(order.len());
    for (layer, ids) in order.iter().enumerate() {
        let g = groups
            .get(&ids[0])
            .copied()
            .context("a calibrated layer without a map group")?;
        group_of.push(g);
        if narrow[layer] {
            continue;
        }
        let s = stats
            .get_mut(&layer)
            .context("a layer without statistics")?;
        let (lo, hi) = s.range(o.method);
        let r = ranges.entry(g).or_insert((lo, hi));
        *r = (r.0.min(lo), r.1.max(hi));
    }
    let mut table = QuantTable::new();
    let mut inputs: BTreeMap<String, InputQuant> = BTreeMap::new();
    for (layer, ids) in order.iter().enumerate() {
        if narrow[layer] {
            continue;
        }
        let (lo, hi) = ranges[&group_of[layer]];
        let q = QuantIn::from_range(lo, hi);
        for id in ids {
            table.insert(*id, q);
        }
    }
    // Each layer's own INT8 error, on its float input.
    let mut acc: HashMap<ParamId, (f64, f64)> = HashMap::new();
    let n_err = o.error_images.clamp(1, images.len());
    for (file, x) in images.iter().take(n_err) {
        engine
            .int8_errors(x, h, w, &table, &mut acc)
            .with_context(|| format!("per-layer INT8 error on {}", file.display()))?;
    }
    let mut errors = Vec::new();
    let mut float_layers = Vec::new();
    for (layer, ids) in order.iter().enumerate() {
        if narrow[layer] {
            for id in ids {
                if let Some(k) = keys.get(id) {
                    float_layers.push(k.clone());
                }
            }
            continue;
        }
        let (e, r) = acc.get(&ids[0]).copied().unwrap_or((0.0, 0.0));
        let rel = if r > 0.0 { (e / r).sqrt() } else { 0.0 };
        let keep_float = rel > o.keep_above;
        for id in ids {
            let key = keys
                .get(id)
                .with_context(|| "a convolution weight without a state_dict key")?;
            errors.push((key.clone(), rel));
            if keep_float {
                float_layers.push(key.clone());
            } else {
                let q = table[id];
                inputs.insert(
                    key.clone(),
                    InputQuant {
                        scale: q.scale,
                        zero: q.zero,
                    },
                );
            }
        }
    }
    let info = Int8Info {
        inputs,
        calibration: serde_json::json!({
            "method": format!("{:?}", o.method),
            "images": images.len(),
            "data": o.data.display().to_string(),
            "fraction": o.fraction,
            "imgsz": [h, w],
            "weights": "symmetric per output channel, -63..63",
            "inputs": "per map group: the layers reading one map (and its slices) share one range",
            "activations": "per tensor, u8 with zero point",
            "keep_float_above_relative_error": o.keep_above,
            "float_layers": float_layers,
        }),
    };
    let bytes = int8_file_bytes(model, names, &info)?;
    write_atomic(path, &bytes)?;
    Ok(Int8Summary {
        path: path.to_path_buf(),
        images: images.len(),
        skipped,
        errors,
        int8_layers: info.inputs.len(),
        float_layers,
        bytes: bytes.len() as u64,
    })
}

/// The safetensors bytes of an INT8 file: the quantized weights as int8 with their scales.
fn int8_file_bytes(model: &YoloModel, names: &[String], info: &Int8Info) -> Result<Vec<u8>> {
    let mut sd = state_dict(model);
    let mut int8 = BTreeMap::new();
    for key in info.inputs.keys() {
        let t = sd
            .get(key)
            .with_context(|| format!("no tensor {key} in the model"))?;
        let cout = t.shape[0];
        let (q, scales) = crate::engine::qconv::quantize_weights(&t.data, cout);
        int8.insert(
            key.clone(),
            Int8Tensor {
                shape: t.shape.clone(),
                data: q,
            },
        );
        sd.insert(
            format!("{key}{SCALE_SUFFIX}"),
            HostTensor {
                shape: vec![cout],
                data: scales,
            },
        );
    }
    let mut m = model.clone();
    let mut md = model_metadata(&mut m, names);
    md.insert(META_KEY.to_string(), serde_json::to_string(info)?);
    Ok(to_safetensors_bytes_with_int8(&sd, &int8, &md)?)
}
