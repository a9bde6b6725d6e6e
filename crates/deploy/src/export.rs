//! `export`: fuse a trained model, prove the fused one equal on a real image and on random input, then write
//! safetensors / burn record / ONNX files. Nothing is written when a check fails, and files appear only
//! complete (temporary names, renamed at the end).

use crate::onnx::export_onnx;
use crate::preprocess::{batch_tensor, letterbox};
use crate::verify::{Check, Report};
use anyhow::{bail, Context, Result};
use model::burn::module::Module;
use model::burn::tensor::activation::softmax;
use model::burn::tensor::{Device, Distribution, FloatDType, Tensor};
use model::weights::{
    host, model_metadata, state_dict, to_safetensors_bytes, write_atomic, HostTensor,
};
use model::{Task, YoloModel};
use std::path::{Path, PathBuf};

/// The image the pre-export check runs on when none is given: a NEON aerial tile (CC0, from the deepforest
/// package's sample data), so the check always sees real image statistics.
pub const DEFAULT_CHECK_IMAGE: &[u8] = include_bytes!("../tests/data/OSBS_029.jpg");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Safetensors,
    Burn,
    Onnx,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Format> {
        Ok(match s.trim() {
            "safetensors" => Format::Safetensors,
            "burn" | "bpk" => Format::Burn,
            "onnx" => Format::Onnx,
            other => bail!("unknown format '{other}' (expected safetensors, burn or onnx)"),
        })
    }
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Safetensors => "safetensors",
            Format::Burn => "bpk",
            Format::Onnx => "onnx",
        }
    }
}

pub struct ExportOptions {
    pub formats: Vec<Format>,
    pub imgsz: (usize, usize),
    pub fuse: bool,
    pub out: PathBuf,
    /// File stem of the outputs (`best` -> `best_fused.onnx`).
    pub stem: String,
    pub image: Option<PathBuf>,
}

#[derive(Debug)]
pub struct ExportSummary {
    pub files: Vec<PathBuf>,
    pub report: Report,
    pub params: (usize, usize),
    pub gflops: (f64, f64),
}

/// Random input and a letterboxed real image, both at the export size.
fn check_inputs(opts: &ExportOptions, device: &Device) -> Result<Vec<(String, Tensor<4>)>> {
    let (h, w) = opts.imgsz;
    let img = match &opts.image {
        Some(p) => crate::preprocess::read_rgb(p)?,
        None => data::image_ops::decode_rgb(DEFAULT_CHECK_IMAGE, "the built-in check image")?,
    };
    let (chw, _) = letterbox(&img, h, w);
    let seeded = {
        device.seed(7);
        Tensor::<4>::random([2, 3, h, w], Distribution::Uniform(0.0, 1.0), device)
    };
    Ok(vec![
        ("image".to_string(), batch_tensor(&[chw], h, w, device)),
        ("random".to_string(), seeded),
    ])
}

/// How much larger than the unfused float32 model's own rounding error the fused model's may be. Folding
/// moves rounding around (PyTorch's fused and unfused models differ by ~1e-4 of the output scale on strong
/// BatchNorm statistics), it does not multiply it; a wrong fold is off by orders of magnitude more.
pub const NOISE_FACTOR: f32 = 8.0;
/// The floor of the tolerance, relative to the largest value of the group (about float32's epsilon).
pub const NOISE_FLOOR_REL: f32 = 1e-7;

fn max_abs_err(x: &[f32], reference: &[f64]) -> f32 {
    x.iter()
        .zip(reference)
        .map(|(a, r)| (*a as f64 - r).abs())
        .fold(0f64, f64::max) as f32
}

/// Channels `lo..hi` of every image of a `(B, C, A)` buffer.
fn channel_rows<T: Copy>(v: &[T], [n, rows, anchors]: [usize; 3], lo: usize, hi: usize) -> Vec<T> {
    (0..n)
        .flat_map(|i| {
            v[(i * rows + lo) * anchors..(i * rows + hi) * anchors]
                .iter()
                .copied()
        })
        .collect()
}

/// The head's raw maps `(B, 4 * reg_max + nc, A)` and the decoded output, on the host; a classifier's logits
/// `(B, nc, 1)` and probabilities.
fn raw_and_decoded(model: &YoloModel, x: Tensor<4>) -> (HostTensor, HostTensor) {
    if model.task() == Task::Classify {
        let logits = raw_map(model, x);
        let probs = softmax(logits.clone().squeeze_dim::<2>(2), 1);
        return (host(logits), host(probs));
    }
    let (raw, out) = model.forward_both(x);
    (host(model::nn::flatten_levels(&raw)), host(out))
}

/// The head's raw output as `(B, rows, A)`: a detector's maps flattened, a classifier's logits with `A = 1`.
fn raw_map(model: &YoloModel, x: Tensor<4>) -> Tensor<3> {
    if model.task() == Task::Classify {
        let logits = model.forward_logits(x, 0.0);
        let [n, nc] = logits.dims();
        return logits.reshape([n, nc, 1]);
    }
    model::nn::flatten_levels(&model.forward_raw(x))
}

/// The fused-vs-unfused check, calibrated to the float32 noise of the model at hand: both float32 models are
/// compared with a float64 run of the unfused one (on the CPU), on the head's raw maps (box distribution and
/// class logits; decoded boxes add anchor offsets whose rounding would hide the network's), and the fused
/// model passes when its error is at most [`NOISE_FACTOR`] times the unfused model's own (plus a floor of
/// [`NOISE_FLOOR_REL`] of the largest value). Non-finite outputs are an error.
pub fn check_fusion(
    unfused: &YoloModel,
    fused: &YoloModel,
    inputs: &[(String, Tensor<4>)],
) -> Result<Report> {
    let cpu = Device::flex();
    let reference = unfused.cast_to(FloatDType::F64, &cpu);
    let box_rows = match unfused.task() {
        Task::Classify => 0,
        Task::Detect => 4 * unfused.detect().reg_max,
    };
    let mut report = Report::default();
    for (name, x) in inputs {
        let (a, a_out) = raw_and_decoded(unfused, x.clone());
        let (b, b_out) = raw_and_decoded(fused, x.clone());
        for out in [&a_out, &b_out] {
            ensure_finite_output(out, name)?;
        }
        let raw64 = raw_map(&reference, x.clone().to_device(&cpu).cast(FloatDType::F64));
        let r: Vec<f64> = raw64
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .map_err(|e| anyhow::anyhow!("float64 reference: {e:?}"))?;
        let shape = [a.shape[0], a.shape[1], a.shape[2]];
        let groups = [
            ("box logits", 0, box_rows),
            ("class logits", box_rows, shape[1]),
        ];
        for &(group, lo, hi) in groups.iter().filter(|g| g.2 > g.1) {
            let r_group = channel_rows(&r, shape, lo, hi);
            let scale = r_group.iter().fold(0f64, |m, v| m.max(v.abs())) as f32;
            let e_unfused = max_abs_err(&channel_rows(&a.data, shape, lo, hi), &r_group);
            let e_fused = max_abs_err(&channel_rows(&b.data, shape, lo, hi), &r_group);
            report.checks.push(Check {
                name: format!("fused vs float64, {name} {group} (unfused {e_unfused:.1e})"),
                max_abs: e_fused,
                tol: NOISE_FACTOR * e_unfused + NOISE_FLOOR_REL * scale,
            });
        }
    }
    Ok(report)
}

/// Non-finite outputs (NaN or inf weights, or values that overflow) are an error.
fn ensure_finite_output(out: &HostTensor, input: &str) -> Result<()> {
    let bad = out.data.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        bail!(
            "the model gives {bad} non-finite outputs (NaN or inf) of {} on the {input} input: the weights are \
             broken (NaN/inf, or overflowing values); nothing written",
            out.data.len()
        );
    }
    Ok(())
}

fn ensure_finite(model: &YoloModel, inputs: &[(String, Tensor<4>)]) -> Result<()> {
    for (name, x) in inputs {
        ensure_finite_output(&raw_and_decoded(model, x.clone()).1, name)?;
    }
    Ok(())
}

pub fn export(
    model: YoloModel,
    names: &[String],
    opts: &ExportOptions,
    device: &Device,
) -> Result<ExportSummary> {
    let (h, w) = opts.imgsz;
    if let Err(e) = model::shapes::check_input_size(&model.spec, h, w) {
        bail!("--imgsz: {e}");
    }
    if opts.formats.contains(&Format::Onnx) && !opts.fuse {
        bail!("ONNX export writes the fused graph; drop --fuse false or the onnx format");
    }
    let was_fused = model.is_fused();
    let params_before = model.parameter_count();
    let gflops_before = model.gflops(h, w)?;
    let mut out_model = if opts.fuse {
        model.clone().fuse()
    } else {
        model.clone()
    };
    let params_after = out_model.parameter_count();
    let gflops_after = out_model.gflops(h, w)?;
    eprintln!(
        "parameters {params_before} -> {params_after}, GFLOPs at {h}x{w} {gflops_before:.2} -> {gflops_after:.2}"
    );

    let inputs = check_inputs(opts, device)?;
    let report = if opts.fuse && !was_fused {
        check_fusion(&model, &out_model, &inputs)?
    } else {
        ensure_finite(&out_model, &inputs)?;
        Report {
            checks: vec![Check {
                name: "no fusion to check (weights already fused or --fuse false)".into(),
                max_abs: 0.0,
                tol: 0.0,
            }],
            notes: vec![],
        }
    };
    eprint!("{}", report.render());
    if !report.ok() {
        bail!("the fused model does not reproduce the unfused one; nothing written");
    }

    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("{}: cannot create the output folder", opts.out.display()))?;
    let suffix = if opts.fuse || was_fused { "_fused" } else { "" };
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let cleanup = |staged: &[(PathBuf, PathBuf)]| {
        for (tmp, _) in staged {
            let _ = std::fs::remove_file(tmp);
        }
    };
    for &f in &opts.formats {
        let target = opts.out.join(format!("{}{suffix}.{}", opts.stem, f.ext()));
        let tmp = opts
            .out
            .join(format!(".{}{suffix}.{}.tmp", opts.stem, f.ext()));
        let bytes = match f {
            Format::Safetensors => {
                let sd = state_dict(&out_model);
                let md = model_metadata(&mut out_model, names);
                to_safetensors_bytes(&sd, &md).map_err(anyhow::Error::from)
            }
            Format::Burn => out_model
                .clone()
                .into_record()
                .into_bytes()
                .map(|b| b.to_vec())
                .map_err(|e| anyhow::anyhow!("burn record: {e:?}")),
            Format::Onnx => export_onnx(&out_model, h, w),
        };
        let written = bytes.and_then(|b| write_atomic(&tmp, &b).map_err(anyhow::Error::from));
        if let Err(e) = written {
            cleanup(&staged);
            let _ = std::fs::remove_file(&tmp);
            return Err(e.context(format!("writing {}", target.display())));
        }
        staged.push((tmp, target));
    }
    let mut files = Vec::new();
    for (tmp, target) in &staged {
        if let Err(e) = std::fs::rename(tmp, target) {
            cleanup(&staged);
            return Err(
                anyhow::Error::from(e).context(format!("{}: cannot write", target.display()))
            );
        }
        files.push(target.clone());
    }
    Ok(ExportSummary {
        files,
        report,
        params: (params_before, params_after),
        gflops: (gflops_before, gflops_after),
    })
}

/// Loads a burn record written by `export` into the fused structure of `spec`'s model.
pub fn load_burn_record(path: &Path, skeleton: YoloModel) -> Result<YoloModel> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let record = model::burn::store::ModuleRecord::from_bytes(
        model::burn::tensor::Bytes::from_bytes_vec(bytes),
    )
    .map_err(|e| anyhow::anyhow!("{}: not a burn record: {e:?}", path.display()))?;
    skeleton
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("{}: does not fit the model: {e:?}", path.display()))
}
