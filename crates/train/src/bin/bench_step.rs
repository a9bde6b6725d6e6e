//! `bench_step`: where a training step's time goes (data, forward, loss, backward, optimizer, EMA), per phase,
//! on the shipped dataset. Prints a table of milliseconds per batch and images/s (`--json`: one JSON line).
//! `--parity` instead runs one step on the CPU (burn-flex) and on `--device` from the same weights and batch
//! and prints the largest differences (exit 1 when beyond float32 noise).
//!
//! `cargo run --release -p train --bin bench_step -- [--steps 12] [--batch 8] [--imgsz 320] [--device cpu]`

use anyhow::{bail, Result};
use clap::Parser;
use data::augment::{AugmentConfig, Augmenter};
use data::loader::train_batches;
use data::{DataConfig, Dataset};
use model::burn::tensor::Device;
use model::weights::state_dict;
use model::{ModelSpec, SpecOptions, YoloModel};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use train::loss::LossGains;
use train::optim::{Ema, GroupLr, Optimizer, OptimizerKind};
use train::parity::{fixed_batch, one_step, StepDiff};
use train::step::{Learner, Phase, PhaseTimer, Schedule};

#[derive(Parser)]
#[command(name = "bench_step", about = "Time the phases of a training step")]
struct Cli {
    #[arg(long, default_value = "configs/yolov8-mobileone.yaml")]
    config: String,
    #[arg(long, default_value = "n")]
    scale: String,
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: String,
    #[arg(long, default_value_t = 320, value_parser = data::args::image_size)]
    imgsz: usize,
    #[arg(long, default_value_t = 8, value_parser = data::args::at_least_one)]
    batch: usize,
    /// Timed steps (after the --warmup ones).
    #[arg(long, default_value_t = 12, value_parser = data::args::at_least_one)]
    steps: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "AdamW")]
    optimizer: String,
    /// Data loader threads.
    #[arg(long, default_value_t = 2, value_parser = data::args::at_least_one)]
    workers: usize,
    /// Untimed steps first (kernel compilation and autotuning on a GPU).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Stop the timed steps after this many seconds (0: run all --steps).
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    json: bool,
    /// Compare one training step on --device with the same step on the CPU.
    #[arg(long)]
    parity: bool,
}

fn main() -> std::process::ExitCode {
    startup::init();
    startup::exit(bench(Cli::parse()))
}

fn bench(a: Cli) -> Result<()> {
    let dev = model::device::select(&a.device)?;
    let cfg = DataConfig::from_file(Path::new(&a.data))?;
    let spec = ModelSpec::from_file(
        &a.config,
        &SpecOptions {
            scale: Some(a.scale.clone()),
            nc: Some(cfg.nc()),
        },
    )?;
    spec.check_input(a.imgsz, a.imgsz)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.source))?;
    if a.parity {
        return parity(&a, &spec, &dev);
    }
    let ds = Arc::new(Dataset::load(&cfg, "train")?);
    dev.seed(0);
    let Some(kind) = OptimizerKind::from_name(&a.optimizer) else {
        bail!("--optimizer {}: expected SGD, AdamW or MuSGD", a.optimizer);
    };
    let model = YoloModel::new(&spec, &dev);
    let opt = Optimizer::new(kind, 0.9, 5e-4).for_model(&model);
    let ema = Ema::new(YoloModel::new(&spec, &dev));
    let gains = LossGains::default();
    // The trainer's own step, optimizer stepping on every batch.
    let mut learner = Learner::new(&spec, model, opt, ema, (&dev, &[]), gains);
    let schedule = Schedule {
        lr: GroupLr::uniform([1e-3; 3]),
        momentum: 0.9,
        accumulate: 1,
    };
    let aug = Arc::new(Augmenter::new(
        ds.clone(),
        AugmentConfig::default(),
        a.imgsz,
        0,
        false,
    ));
    let mut timer = PhaseTimer::default();
    let mut images = 0;
    let (mut done, mut epoch) = (0, 0);
    let start = Instant::now();
    'outer: loop {
        let mut batches = train_batches(aug.clone(), epoch, a.batch, a.workers, true);
        loop {
            // Warmup steps run on a scratch timer: only the timed ones count.
            let mut scratch = PhaseTimer::default();
            let t = if done >= a.warmup {
                &mut timer
            } else {
                &mut scratch
            };
            t.restart();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            t.lap(Phase::Data);
            let bsz = batch.shape[0];
            learner.step(batch, &schedule, Some(t))?;
            done += 1;
            if done > a.warmup {
                images += bsz;
            }
            eprint!(
                "\rstep {done}/{} ({:.0} s)",
                a.steps + a.warmup,
                start.elapsed().as_secs_f64()
            );
            if done >= a.steps + a.warmup
                || (a.seconds > 0.0 && done > a.warmup && timer.total() >= a.seconds)
            {
                break 'outer;
            }
        }
        epoch += 1;
    }
    eprintln!();
    let n = (done - a.warmup) as f64;
    let totals = timer.seconds;
    let sum = timer.total();
    let names = Phase::ALL.map(Phase::name);
    if a.json {
        let phases: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(totals)
            .map(|(name, t)| (name.to_string(), (t / n * 1e3).into()))
            .collect();
        let compute = sum - totals[0];
        println!(
            "{}",
            serde_json::json!({
                "config": a.config, "scale": a.scale, "batch": a.batch, "imgsz": a.imgsz,
                "device": a.device, "optimizer": format!("{kind:?}"), "steps": n,
                "ms_per_batch": phases, "images_per_s": images as f64 / sum,
                "images_per_s_without_data": images as f64 / compute,
            })
        );
        return Ok(());
    }
    println!("| phase | ms/batch | share |");
    println!("|---|---|---|");
    for (name, t) in names.iter().zip(totals) {
        println!("| {name} | {:.1} | {:.0}% |", t / n * 1e3, t / sum * 100.0);
    }
    println!(
        "| total | {:.1} | {:.2} images/s (batch {}, {}px, {:?}) |",
        sum / n * 1e3,
        images as f64 / sum,
        a.batch,
        a.imgsz,
        kind
    );
    Ok(())
}

/// One step on the CPU and on `dev` from the same weights and batch (`--batch` made-up images).
fn parity(a: &Cli, spec: &ModelSpec, dev: &Device) -> Result<()> {
    let cpu = Device::flex();
    cpu.seed(0);
    let init = state_dict(&YoloModel::new(spec, &cpu));
    let batch = fixed_batch(a.batch, a.imgsz, a.imgsz, spec.nc);
    let t0 = Instant::now();
    let want = one_step(spec, &cpu, &init, &batch);
    let t1 = Instant::now();
    let got = one_step(spec, dev, &init, &batch);
    let t2 = Instant::now();
    let d = StepDiff::of(&want, &got);
    let ok = d.ok() && got.gradient_count == want.gradient_count;
    let line = serde_json::json!({
        "parity": d, "ok": ok, "loss_cpu": want.loss, "loss_device": got.loss,
        "gradients": [want.gradient_count, got.gradient_count],
        "seconds_cpu": (t1 - t0).as_secs_f64(), "seconds_device": (t2 - t1).as_secs_f64(),
        "device": a.device, "batch": a.batch, "imgsz": a.imgsz,
    });
    if a.json {
        println!("{line}");
    } else {
        println!(
            "one step, {} vs cpu: loss {:.2e}, weights {:.2e} ({}), eval output {:.2e} -> {}",
            a.device,
            d.loss,
            d.weights,
            d.worst_tensor,
            d.eval_out,
            if ok { "ok" } else { "DIFFERENT" }
        );
    }
    if !ok {
        anyhow::bail!("the step on {} differs from the CPU's: {d:?}", a.device);
    }
    Ok(())
}
