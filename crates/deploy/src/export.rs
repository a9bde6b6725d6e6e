//! `export`: fuse a trained model, prove the fused one equal on a real image and on random input, then write
//! safetensors / burn record / ONNX files. Nothing is written when a check fails, and files appear only
//! complete (temporary names, renamed at the end).

use crate::onnx::export_onnx;
use crate::preprocess::{batch_tensor, letterbox};
use crate::verify::{compare_output, Check, Report};
use anyhow::{bail, Context, Result};
use model::burn::module::Module;
use model::burn::tensor::{Device, Distribution, Tensor};
use model::shapes::gflops;
use model::weights::{host, model_metadata, state_dict, to_safetensors_bytes, write_atomic};
use model::YoloModel;
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
        None => image::load_from_memory(DEFAULT_CHECK_IMAGE)
            .context("the built-in check image")?
            .to_rgb8(),
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

/// The fused-vs-unfused check (also useful on its own).
pub fn check_fusion(
    unfused: &YoloModel,
    fused: &YoloModel,
    inputs: &[(String, Tensor<4>)],
) -> Report {
    let mut report = Report::default();
    for (name, x) in inputs {
        let a = host(unfused.forward(x.clone()));
        let b = host(fused.forward(x.clone()));
        compare_output(&format!("fused vs unfused, {name}"), &b, &a, &mut report);
        let max_rel = a
            .data
            .iter()
            .zip(&b.data)
            .map(|(x, y)| (x - y).abs() / x.abs().max(1e-3))
            .fold(0f32, f32::max);
        eprintln!("  {name}: max relative difference {max_rel:.2e}");
    }
    report
}

pub fn export(
    mut model: YoloModel,
    names: &[String],
    opts: &ExportOptions,
    device: &Device,
) -> Result<ExportSummary> {
    let (h, w) = opts.imgsz;
    if let Err(e) = model::shapes::check_input_size(&model.spec, h, w) {
        bail!("--imgsz: {e}");
    }
    if opts.formats.contains(&Format::Onnx) && !opts.fuse {
        bail!("ONNX export writes the fused graph; drop --no-fuse or the onnx format");
    }
    let was_fused = model.is_fused();
    let params_before = model.parameter_count();
    let gflops_before = gflops(&model.spec, h, w, was_fused);
    let mut out_model = if opts.fuse {
        model.clone().fuse()
    } else {
        model.clone()
    };
    let params_after = out_model.parameter_count();
    let gflops_after = gflops(&model.spec, h, w, opts.fuse || was_fused);
    eprintln!(
        "parameters {params_before} -> {params_after}, GFLOPs at {h}x{w} {gflops_before:.2} -> {gflops_after:.2}"
    );

    let report = if opts.fuse && !was_fused {
        let inputs = check_inputs(opts, device)?;
        check_fusion(&model, &out_model, &inputs)
    } else {
        Report {
            checks: vec![Check {
                name: "no fusion to check (weights already fused or --no-fuse)".into(),
                max_abs: 0.0,
                tol: 0.0,
            }],
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
                let sd = state_dict(&mut out_model);
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
