//! Small helpers shared by the command-line tools of the workspace, and the `model` commands (info), so the
//! `model` and `yolo` binaries share them.

use crate::burn::tensor::Device;
use crate::info::{model_info, render_table};
use crate::spec::SpecOptions;
use crate::weights::{load_model, LoadOptions};
use crate::{ModelSpec, YoloModel};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
#[cfg(not(target_arch = "wasm32"))]
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A flag the first Ctrl-C (or SIGTERM) sets (after printing `what` happens next); a second one exits at once
/// with 130, after [`data::forced_exit::run`] removes temporary files and closes a JSON being written.
/// For the binaries' `main`: it installs the process's one Ctrl-C handler.
pub fn ctrl_c_flag(what: &'static str) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(not(target_arch = "wasm32"))]
    on_ctrl_c(what, stop.clone());
    // No signals in WebAssembly: the flag is never set.
    #[cfg(target_arch = "wasm32")]
    let _ = what;
    stop
}

#[cfg(not(target_arch = "wasm32"))]
fn on_ctrl_c(what: &'static str, flag: Arc<AtomicBool>) {
    let _ = ctrlc::set_handler(move || {
        data::interrupt();
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nsecond Ctrl-C: stopping now");
            data::forced_exit::run();
            std::process::exit(130);
        }
        eprintln!("\nCtrl-C: {what} (Ctrl-C again to stop at once)");
    });
}

/// What `--model` names, by its extension: a model YAML (a model built fresh) or a weights file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Yaml(String),
    Weights(String),
}

impl std::str::FromStr for ModelSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ext = Path::new(s)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("yaml" | "yml") => Ok(ModelSource::Yaml(s.to_string())),
            Some("safetensors" | "pt" | "pth") => Ok(ModelSource::Weights(s.to_string())),
            _ => Err(format!(
                "{s}: a model is a YAML (.yaml, .yml) or a weights file (.safetensors, .pt)"
            )),
        }
    }
}

impl ModelSource {
    /// `--model` next to `--weights` and `--config` as one answer: `(weights, config)`. Naming the same thing
    /// twice is an error.
    pub fn resolve(
        model: Option<ModelSource>,
        weights: Option<String>,
        config: Option<String>,
    ) -> anyhow::Result<(Option<String>, Option<String>)> {
        match (model, weights, config) {
            (Some(ModelSource::Yaml(m)), _, Some(c)) => {
                anyhow::bail!("--model {m} and --config {c}: give the YAML once")
            }
            (Some(ModelSource::Weights(m)), Some(w), _) => {
                anyhow::bail!("--model {m} and --weights {w}: give the weights once")
            }
            (Some(ModelSource::Yaml(m)), w, None) => Ok((w, Some(crate::spec::find_config(&m)))),
            (Some(ModelSource::Weights(m)), None, c) => Ok((Some(m), c)),
            (None, w, c) => Ok((w, c)),
        }
    }
}

/// The weights a command runs: `--weights FILE`, or `--model FILE` as Ultralytics names it.
#[derive(clap::Args, Debug, Clone)]
pub struct WeightsArg {
    /// Our safetensors (unfused, fused or converted) or an Ultralytics .pt checkpoint.
    #[arg(long, required_unless_present = "model")]
    pub weights: Option<String>,
    /// The model, Ultralytics' name for it: here a weights file (.safetensors, .pt), as --weights.
    #[arg(long, conflicts_with = "weights")]
    pub model: Option<ModelSource>,
}

impl WeightsArg {
    /// The weights file; a YAML given as `--model` is refused with what `verb` needs instead.
    pub fn path(&self, verb: &str) -> anyhow::Result<String> {
        match (&self.weights, &self.model) {
            (Some(w), _) | (None, Some(ModelSource::Weights(w))) => Ok(w.clone()),
            (None, Some(ModelSource::Yaml(y))) => anyhow::bail!(
                "--model {y}: {verb} runs trained weights (.safetensors, .pt), not a model YAML"
            ),
            (None, None) => anyhow::bail!("{verb} needs --weights (or --model) FILE"),
        }
    }
}

/// `--config/--scale/--nc`: how to build the model for weights that carry no YAML of their own.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ForeignModelArgs {
    /// Model YAML for weights without our metadata (e.g. converted from another tool).
    #[arg(long)]
    pub config: Option<String>,
    /// Scale letter (n/s/m/l/x) for --config.
    #[arg(long)]
    pub scale: Option<String>,
    /// Number of classes for --config.
    #[arg(long)]
    pub nc: Option<usize>,
}

impl ForeignModelArgs {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            config: self.config.clone(),
            spec: SpecOptions {
                scale: self.scale.clone(),
                nc: self.nc,
            },
        }
    }
}

/// `--scale/--nc/--imgsz`: which variant of a model YAML, at which input size (`info`, `bench`).
#[derive(clap::Args, Debug, Clone)]
pub struct VariantArgs {
    /// Scale letter (n/s/m/l/x); default: from the file name, else the first in `scales`.
    #[arg(long)]
    pub scale: Option<String>,
    /// Number of classes; default: the YAML's `nc`.
    #[arg(long)]
    pub nc: Option<usize>,
    /// Image size: one number (square) or H,W.
    #[arg(long, default_value = "640")]
    pub imgsz: data::args::ImgSize,
}

impl VariantArgs {
    pub fn spec_options(&self) -> SpecOptions {
        SpecOptions {
            scale: self.scale.clone(),
            nc: self.nc,
        }
    }

    /// `--imgsz` as (height, width).
    pub fn hw(&self) -> (usize, usize) {
        (self.imgsz.h, self.imgsz.w)
    }
}

/// `--device`, the same in every command.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto (the first hardware GPU through wgpu, else the CPU), cpu, wgpu, wgpu:N (or N), wgpu:cpu,
    /// cuda:N (`cuda` feature).
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl DeviceArgs {
    pub fn select(&self) -> anyhow::Result<Device> {
        Ok(crate::device::select(&self.device)?)
    }
}

/// `base/name`, or `base/name2`, `name3`, ... when taken (Ultralytics' run folder numbering).
pub fn next_run_dir(base: &Path, name: &str) -> PathBuf {
    let first = base.join(name);
    if !first.exists() {
        return first;
    }
    (2..)
        .map(|i| base.join(format!("{name}{i}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Per-layer table (idx, from, n, params, module, args), parameters and GFLOPs, unfused and fused.
    Info(InfoArgs),
}

/// Per-layer table (idx, from, n, params, module, args), parameters and GFLOPs, unfused and fused.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Model YAML (a scaled name like yolov8n-mobileone.yaml picks the scale).
    #[arg(long, required_unless_present_any = ["weights", "model"])]
    config: Option<String>,
    /// Our safetensors file or an Ultralytics .pt (its embedded YAML is used).
    #[arg(long)]
    weights: Option<String>,
    /// A YAML (as --config) or a weights file (as --weights).
    #[arg(long)]
    model: Option<ModelSource>,
    #[command(flatten)]
    variant: VariantArgs,
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    json: bool,
}

/// Runs one `model` command.
pub fn run(cmd: Cmd) -> anyhow::Result<()> {
    match cmd {
        Cmd::Info(a) => {
            let InfoArgs {
                config,
                weights,
                model,
                variant,
                json,
            } = a;
            let (weights, config) = ModelSource::resolve(model, weights, config)?;
            let (h, w) = variant.hw();
            let opts = variant.spec_options();
            let device = Device::flex();
            let model = match (&weights, &config) {
                (Some(w), _) => {
                    let lo = LoadOptions {
                        config: config.clone(),
                        spec: opts,
                    };
                    let loaded = load_model(w, &lo, &device)?;
                    if loaded.model.is_fused() {
                        anyhow::bail!(
                            "{w}: a fused model; info needs the unfused (training) weights"
                        );
                    }
                    loaded.model
                }
                (None, Some(c)) => YoloModel::new(&ModelSpec::from_file(c, &opts)?, &device),
                (None, None) => anyhow::bail!("info needs --config, --weights or --model"),
            };
            model
                .spec
                .check_input(h, w)
                .map_err(|e| anyhow::anyhow!("{}: {e}", model.spec.source))?;
            let info = model_info(&model, h, w)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", render_table(&info));
            }
        }
    }
    Ok(())
}
