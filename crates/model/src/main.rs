//! `model info`: the per-layer table and totals of a model YAML at a scale.

use anyhow::Result;
use clap::{Parser, Subcommand};
use model::burn::tensor::Device;
use model::info::{model_info, render_table};
use model::weights::{load_model, LoadOptions};
use model::{ModelSpec, SpecOptions, YoloModel};

#[derive(Parser)]
#[command(name = "model", about = "Inspect YOLO model YAML files")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per-layer table (idx, from, n, params, module, args), parameters and GFLOPs, unfused and fused.
    Info {
        /// Model YAML (a scaled name like yolov8n-mobileone.yaml picks the scale).
        #[arg(long, required_unless_present = "weights")]
        config: Option<String>,
        /// Our safetensors file (its embedded YAML is used).
        #[arg(long)]
        weights: Option<String>,
        /// Scale letter (n/s/m/l/x); default: from the file name, else the first in `scales`.
        #[arg(long)]
        scale: Option<String>,
        #[arg(long)]
        nc: Option<usize>,
        /// Image size: one number (square) or H,W.
        #[arg(long, default_value = "640")]
        imgsz: String,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Info {
            config,
            weights,
            scale,
            nc,
            imgsz,
            json,
        } => {
            let (h, w) = model::cli::parse_hw(&imgsz).map_err(anyhow::Error::msg)?;
            let opts = SpecOptions { scale, nc };
            let device = Device::flex();
            let model = match (&weights, &config) {
                (Some(w), _) => {
                    let lo = LoadOptions {
                        config: config.clone(),
                        spec: opts,
                    };
                    let loaded = load_model(w, &lo, &device)?;
                    if loaded.model.clone().is_fused() {
                        anyhow::bail!(
                            "{w}: a fused model; info needs the unfused (training) weights"
                        );
                    }
                    loaded.model
                }
                (None, Some(c)) => YoloModel::new(&ModelSpec::from_file(c, &opts)?, &device),
                (None, None) => unreachable!("clap requires one"),
            };
            model
                .spec
                .check_input(h, w)
                .map_err(|e| anyhow::anyhow!("{}: {e}", model.spec.source))?;
            let info = model_info(&model, h, w);
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", render_table(&info));
            }
        }
    }
    Ok(())
}
