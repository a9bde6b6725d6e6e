//! `bench_step`: where a training step's time goes (data, forward, loss, backward, optimizer, EMA), per phase,
//! on the shipped dataset (a classifier's on its image folder). Prints a table of milliseconds per batch and images/s (`--json`: one JSON line).
//! `--parity` instead runs one step on the CPU (burn-flex) and on `--device` from the same weights and batch
//! and prints the largest differences (exit 1 when beyond float32 noise).
//!
//! `cargo run --release -p train --bin bench_step -- [--steps 12] [train's flags: --batch 8 --imgsz 320 --device cpu
//! --optimizer AdamW ...]`

use anyhow::{bail, Result};
use clap::Parser;
use model::burn::tensor::Device;
use model::weights::state_dict;
use model::{ModelSpec, SpecOptions, YoloModel};
use std::time::Instant;
use train::cli::TrainCli;
use train::loss::LossGains;
use train::optim::{Ema, GroupLr, Optimizer};
use train::parity::{fixed_batch, one_step, StepDiff};
use train::run_data::RunData;
use train::step::{Learner, Phase, PhaseTimer, Schedule};
use train::trainer::{plan, TrainArgs};

#[derive(Parser)]
#[command(name = "bench_step", about = "Time the phases of a training step")]
struct Cli {
    /// The trainer's own arguments (model, data, imgsz, batch, device, optimizer, recipe): the step timed is
    /// the one `train` runs with the same flags.
    #[command(flatten)]
    train: TrainCli,
    /// Timed steps (after the --warmup ones).
    #[arg(long, default_value_t = 12, value_parser = data::args::at_least_one)]
    steps: usize,
    /// Untimed steps first (kernel compilation and autotuning on a GPU).
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Stop the timed steps after this many seconds (0: run all --steps).
    #[arg(long, default_value_t = 0.0)]
    seconds: f64,
    /// Print one JSON line instead of the table.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    json: bool,
    /// Compare one training step on --device with the same step on the CPU.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    parity: bool,
}

/// What a timed step runs with: the trainer's resolved arguments and the device names for the report.
struct Run {
    args: TrainArgs,
    device: String,
}

fn main() -> std::process::ExitCode {
    startup::init();
    startup::exit(bench(Cli::parse()))
}

fn bench(a: Cli) -> Result<()> {
    if a.train.resumes() {
        bail!("bench_step times a fresh run's step; --resume does not apply");
    }
    let args = a.train.fresh_args()?;
    args.check()
        .map_err(|e| anyhow::anyhow!("training arguments: {e}"))?;
    let mut devices = a.train.devices()?;
    let dev = devices.remove(0);
    let run = Run {
        device: format!("{dev:?}"),
        args,
    };
    let args = &run.args;
    let opts = |nc| SpecOptions {
        scale: args.scale.clone(),
        nc,
    };
    let task = ModelSpec::from_file(&args.config, &opts(None))?.task();
    // The train split only, decoded per sample as a run without --cache.
    let data = RunData::open(
        &TrainArgs {
            val: false,
            cache: false,
            ..args.clone()
        },
        task,
    )?;
    let nc = data.names().len();
    let spec = ModelSpec::from_file(&args.config, &opts(Some(nc)))?;
    spec.check_input(args.imgsz, args.imgsz)
        .map_err(|e| anyhow::anyhow!("{}: {e}", spec.source))?;
    if a.parity {
        spec.require_detector("bench_step --parity")
            .map_err(anyhow::Error::msg)?;
        return parity(&a, &run, &spec, &dev);
    }
    dev.seed(args.seed);
    let p = plan(args, data.n_train(), nc)?;
    let kind = p.optimizer;
    let model = YoloModel::new(&spec, &dev);
    let opt = Optimizer::new(kind, p.momentum, p.weight_decay).for_model(&model);
    let ema = Ema::new(YoloModel::new(&spec, &dev));
    let gains = LossGains::default();
    // The trainer's own step, optimizer stepping on every batch.
    let mut learner =
        Learner::new(&spec, model, opt, ema, (&dev, &devices), gains).with_dropout(args.dropout);
    let schedule = Schedule {
        lr: GroupLr::uniform([p.lr0; 3]),
        momentum: p.momentum,
        accumulate: 1,
    };
    let mut timer = PhaseTimer::default();
    let mut images = 0;
    let (mut done, mut epoch) = (0, 0);
    let start = Instant::now();
    'outer: loop {
        let mut batches = data.batches(epoch, args.batch, args.workers, true);
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
                "config": args.config, "scale": args.scale, "batch": args.batch, "imgsz": args.imgsz,
                "device": run.device, "optimizer": format!("{kind:?}"), "steps": n,
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
        args.batch,
        args.imgsz,
        kind
    );
    Ok(())
}

/// One step on the CPU and on `dev` from the same weights and batch (`--batch` made-up images).
fn parity(a: &Cli, run: &Run, spec: &ModelSpec, dev: &Device) -> Result<()> {
    let args = &run.args;
    let cpu = Device::flex();
    cpu.seed(0);
    let init = state_dict(&YoloModel::new(spec, &cpu));
    let batch = fixed_batch(args.batch, args.imgsz, args.imgsz, spec.nc);
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
        "device": run.device, "batch": args.batch, "imgsz": args.imgsz,
    });
    if a.json {
        println!("{line}");
    } else {
        println!(
            "one step, {} vs cpu: loss {:.2e}, weights {:.2e} ({}), eval output {:.2e} -> {}",
            run.device,
            d.loss,
            d.weights,
            d.worst_tensor,
            d.eval_out,
            if ok { "ok" } else { "DIFFERENT" }
        );
    }
    if !ok {
        anyhow::bail!("the step on {} differs from the CPU's: {d:?}", run.device);
    }
    Ok(())
}
