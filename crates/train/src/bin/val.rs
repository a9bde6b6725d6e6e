//! `val`: P, R, mAP50, mAP50-95 of a weights file on a dataset split, computed like Ultralytics.

use anyhow::{bail, Context, Result};
use clap::Parser;
use data::{DataConfig, Dataset};
use model::weights::load_model;
use std::path::PathBuf;
use std::sync::Arc;
use train::val::{render, to_json, validate, ValOptions};

#[derive(Parser)]
#[command(
    name = "val",
    about = "Validate YOLO weights on a dataset split (Ultralytics' metrics)"
)]
struct Cli {
    /// Our safetensors (unfused, fused or converted from Ultralytics).
    #[arg(long)]
    weights: String,
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: PathBuf,
    #[arg(long, default_value = "val")]
    split: String,
    #[arg(long, default_value_t = 640, value_parser = data::args::image_size)]
    imgsz: usize,
    #[arg(long, default_value_t = 16, value_parser = data::args::at_least_one)]
    batch: usize,
    #[arg(long, default_value_t = 0.001)]
    conf: f32,
    #[arg(long, default_value_t = 0.7)]
    iou: f32,
    #[arg(long, default_value_t = 300, value_parser = data::args::at_least_one)]
    max_det: usize,
    #[arg(long, default_value_t = 2, value_parser = data::args::at_least_one)]
    workers: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Write PR_curve.png and confusion_matrix.png into --out.
    #[arg(long)]
    plots: bool,
    #[arg(long, default_value = "runs/val")]
    out: PathBuf,
    #[command(flatten)]
    foreign: model::cli::ForeignModelArgs,
    /// auto (the first hardware GPU through wgpu, else the CPU), cpu, wgpu, wgpu:N (or N), wgpu:cpu.
    #[arg(long, default_value = "auto")]
    device: String,
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    let a = Cli::parse();
    let device = model::device::select(&a.device)?;
    let loaded = load_model(&a.weights, &a.foreign.load_options(), &device)?;
    let spec = &loaded.model.spec;
    spec.check_input(a.imgsz, a.imgsz)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.weights))?;
    let cfg = DataConfig::from_file(&a.data)?;
    if cfg.nc() != loaded.model.nc() {
        bail!(
            "{}: the model has {} classes but {} names {}",
            a.weights,
            loaded.model.nc(),
            a.data.display(),
            cfg.nc()
        );
    }
    let ds = Arc::new(Dataset::load(&cfg, &a.split)?);
    eprint!("{}", ds.report());
    let opts = ValOptions {
        imgsz: a.imgsz,
        batch: a.batch,
        conf: a.conf,
        iou: a.iou,
        max_det: a.max_det,
        workers: a.workers,
        with_loss: None,
    };
    let r = validate(&loaded.model, ds, &opts, &device)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&r, &cfg.names))?
        );
    } else {
        print!("{}", render(&r, &cfg.names));
    }
    if a.plots {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("{}: cannot create", a.out.display()))?;
        train::plots::pr_curve(&a.out.join("PR_curve.png"), &r.metrics, &cfg.names)?;
        train::plots::confusion(
            &a.out.join("confusion_matrix.png"),
            &r.confusion,
            &cfg.names,
        )?;
        eprintln!("plots in {}", a.out.display());
    }
    Ok(())
}
