//! `bench_step`: where a training step's time goes (data, forward, loss, backward, optimizer, EMA), per phase,
//! on the shipped dataset. Prints a table of milliseconds per batch and images/s.
//!
//! `cargo run --release -p train --bin bench_step -- [--steps 12] [--batch 8] [--imgsz 320] [--device cpu]`

use anyhow::{bail, Result};
use clap::Parser;
use data::augment::{AugmentConfig, Augmenter};
use data::loader::train_batches;
use data::{DataConfig, Dataset};
use model::burn::module::Module;
use model::burn::tensor::{Tensor, TensorData};
use model::{ModelSpec, SpecOptions, YoloModel};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use train::loss::{detection_loss, LossGains};
use train::optim::{accumulate, Ema, GradMap, GroupLr, Optimizer, OptimizerKind};

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
    /// Timed steps (after two untimed ones).
    #[arg(long, default_value_t = 12, value_parser = data::args::at_least_one)]
    steps: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = "AdamW")]
    optimizer: String,
}

/// Reads one value back, which waits for queued work on asynchronous backends.
fn sync<const D: usize>(t: &Tensor<D>) {
    let _ = t.clone().sum().into_data();
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    let a = Cli::parse();
    let dev = model::device::select(&a.device)?;
    let train_dev = dev.clone().autodiff();
    let cfg = DataConfig::from_file(Path::new(&a.data))?;
    let ds = Arc::new(Dataset::load(&cfg, "train")?);
    let spec = ModelSpec::from_file(
        &a.config,
        &SpecOptions {
            scale: Some(a.scale.clone()),
            nc: Some(cfg.nc()),
        },
    )?;
    dev.seed(0);
    let mut model = YoloModel::new(&spec, &dev).fork(&train_dev).train();
    let Some(kind) = OptimizerKind::from_name(&a.optimizer) else {
        bail!("--optimizer {}: expected SGD, AdamW or MuSGD", a.optimizer);
    };
    let mut opt = Optimizer::new(kind, 0.9, 5e-4).for_model(&model);
    let mut ema = Ema::new(YoloModel::new(&spec, &dev));
    let aug = Arc::new(Augmenter::new(
        ds.clone(),
        AugmentConfig::default(),
        a.imgsz,
        0,
        false,
    ));
    let strides = model.detect().strides.clone();
    let (nc, reg_max) = (model.nc(), model.detect().reg_max);
    let names = ["data", "forward", "loss", "backward", "optimizer", "EMA"];
    let mut totals = [0f64; 6];
    let mut images = 0;
    let (mut done, mut epoch) = (0, 0);
    let start = Instant::now();
    'outer: loop {
        let mut batches = train_batches(aug.clone(), epoch, a.batch, 2, true);
        loop {
            let t0 = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            let [bsz, _, h, w] = batch.shape;
            let x = Tensor::<4>::from_data(TensorData::new(batch.images, batch.shape), &train_dev);
            let t1 = Instant::now();
            let raw = model.forward_raw(x);
            raw.iter().for_each(sync);
            let t2 = Instant::now();
            let gains = LossGains {
                box_gain: 7.5,
                cls_gain: 0.5,
                dfl_gain: 1.5,
            };
            let out = detection_loss(&raw, &strides, nc, reg_max, &batch.targets, (h, w), gains);
            sync(&out.total);
            let t3 = Instant::now();
            let grads = out.total.backward();
            let mut acc: GradMap = HashMap::new();
            accumulate(&mut acc, &mut model, &grads);
            if let Some(g) = acc.values().next() {
                match g {
                    train::optim::AnyTensor::R1(t) => sync(t),
                    train::optim::AnyTensor::R4(t) => sync(t),
                }
            }
            let t4 = Instant::now();
            opt.step(&mut model, &acc, GroupLr::uniform([1e-3; 3]), 0.9);
            let t5 = Instant::now();
            ema.update(&mut model);
            let t6 = Instant::now();
            done += 1;
            if done > 2 {
                let ts = [t0, t1, t2, t3, t4, t5, t6];
                for (i, tot) in totals.iter_mut().enumerate() {
                    *tot += (ts[i + 1] - ts[i]).as_secs_f64();
                }
                images += bsz;
            }
            eprint!(
                "\rstep {done}/{} ({:.0} s)",
                a.steps + 2,
                start.elapsed().as_secs_f64()
            );
            if done >= a.steps + 2 {
                break 'outer;
            }
        }
        epoch += 1;
    }
    eprintln!();
    let n = (done - 2) as f64;
    let sum: f64 = totals.iter().sum();
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
