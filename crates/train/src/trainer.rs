//! The training loop with Ultralytics' recipe, for detectors and classifiers: warmup (bias lr from
//! warmup_bias_lr, momentum from 0.8), linear or cosine decay to lrf, nominal-batch accumulation and
//! weight-decay scaling, EMA used for validation and checkpoints, close_mosaic (detection), fitness =
//! mAP50-95 for a detector and the mean of top-1 and top-5 accuracy for a classifier. A run folder like
//! Ultralytics' with atomic checkpoints; `resume` continues from the last completed epoch.

use crate::loss::LossGains;
use crate::optim::{freeze_layers, Ema, GroupLr, Optimizer, OptimizerKind};
use crate::results::{read_csv, write_csv, EpochResult};
use crate::run_data::RunData;
use crate::step::{Learner, Schedule};
use crate::val::{validate, ValOptions};
use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use data::augment::AugmentConfig;
use model::weights::{
    load_matching, load_state_dict, save_model, state_dict, to_safetensors_bytes, write_atomic,
    HostTensor, WeightsFile,
};
use model::{ModelSpec, SpecOptions, Task, YoloModel};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything a run is configured by (written to args.yaml; `--hyp` files use the same names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainArgs {
    pub config: String,
    pub data: String,
    /// The model scale letter. Not `scale`: in Ultralytics' args and hyp files that is the augmentation gain.
    #[serde(rename = "model_scale")]
    pub scale: Option<String>,
    pub epochs: usize,
    pub imgsz: usize,
    pub batch: usize,
    pub nbs: usize,
    pub workers: usize,
    pub seed: u64,
    pub out: String,
    pub weights: Option<String>,
    pub optimizer: String,
    pub lr0: f64,
    pub lrf: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
    pub cos_lr: bool,
    /// The RepVGG recipe's regulariser for MobileOne blocks: no plain weight decay on their branch kernels,
    /// `0.5 * weight_decay * ||equivalent kernel||^2` per block added to the loss instead.
    #[serde(default)]
    pub rep_l2: bool,
    pub close_mosaic: usize,
    #[serde(rename = "box")]
    pub box_gain: f32,
    pub cls: f32,
    pub dfl: f32,
    pub cache: bool,
    pub val: bool,
    /// Augmented training samples (boxes drawn) written to the run folder at start.
    pub dump: usize,
    /// The first `freeze` layers are not trained (Ultralytics' `freeze=N`).
    pub freeze: usize,
    /// A classifier's dropout before its linear layer.
    pub dropout: f64,
    /// A classifier's augmentation policy (randaugment).
    pub auto_augment: String,
    /// A classifier's random-erasing probability.
    pub erasing: f64,
    #[serde(flatten)]
    pub augment: AugmentConfig,
}

impl Default for TrainArgs {
    fn default() -> Self {
        TrainArgs {
            config: "configs/yolov8-mobileone.yaml".into(),
            data: "datasets/trees/data.yaml".into(),
            scale: None,
            epochs: 60,
            imgsz: 320,
            batch: 8,
            nbs: 8,
            workers: 2,
            seed: 0,
            out: "runs/train/train".into(),
            weights: None,
            optimizer: "auto".into(),
            lr0: 0.01,
            lrf: 0.01,
            momentum: 0.937,
            weight_decay: 0.0005,
            warmup_epochs: 3.0,
            warmup_momentum: 0.8,
            warmup_bias_lr: 0.1,
            cos_lr: false,
            rep_l2: false,
            close_mosaic: 10,
            box_gain: 7.5,
            cls: 0.5,
            dfl: 1.5,
            cache: true,
            val: true,
            dump: 3,
            freeze: 0,
            dropout: 0.0,
            auto_augment: "randaugment".into(),
            erasing: 0.4,
            augment: AugmentConfig::default(),
        }
    }
}

impl TrainArgs {
    /// Refuses values that cannot run, whether they came from flags, a `--hyp` file or a resumed args.yaml.
    pub fn check(&self) -> std::result::Result<(), String> {
        data::args::check_image_size(self.imgsz)
            .map_err(|e| format!("imgsz {}: {e}", self.imgsz))?;
        for (k, v) in [
            ("epochs", self.epochs),
            ("batch", self.batch),
            ("nbs", self.nbs),
            ("workers", self.workers),
        ] {
            if v == 0 {
                return Err(format!("{k} 0: must be at least 1"));
            }
        }
        for (k, v, lo, hi) in [
            ("lr0", self.lr0, 0.0, 10.0),
            ("lrf", self.lrf, 0.0, 10.0),
            ("momentum", self.momentum, 0.0, 1.0),
            ("weight_decay", self.weight_decay, 0.0, 1.0),
            ("warmup_epochs", self.warmup_epochs, 0.0, 1e6),
            ("warmup_momentum", self.warmup_momentum, 0.0, 1.0),
            ("warmup_bias_lr", self.warmup_bias_lr, 0.0, 10.0),
            ("box", self.box_gain as f64, 0.0, 1e3),
            ("cls", self.cls as f64, 0.0, 1e3),
            ("dfl", self.dfl as f64, 0.0, 1e3),
            ("dropout", self.dropout, 0.0, 0.999),
            ("erasing", self.erasing, 0.0, 1.0),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{k} {v}: expected a number between {lo} and {hi}"));
            }
        }
        Ok(())
    }

    /// Reads a `--hyp` file: Ultralytics' key names over our defaults. A key we do not know is an error that
    /// names it (a typo would otherwise silently train with the default).
    pub fn from_hyp_file(path: &Path) -> Result<TrainArgs> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let value: serde_yaml::Value = serde_yaml::from_str(&text)
            .with_context(|| format!("{}: not valid YAML", path.display()))?;
        let known = serde_yaml::to_value(TrainArgs::default())?;
        let (Some(known), Some(given)) = (known.as_mapping(), value.as_mapping()) else {
            bail!(
                "{}: expected a mapping of hyperparameters (key: value)",
                path.display()
            );
        };
        let unknown: Vec<String> = given
            .keys()
            .filter(|k| !known.contains_key(*k))
            .map(|k| {
                serde_yaml::to_string(k)
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        if !unknown.is_empty() {
            let mut names: Vec<String> = known
                .keys()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            names.sort();
            bail!(
                "{}: unknown key{} {} (known: {})",
                path.display(),
                if unknown.len() > 1 { "s" } else { "" },
                unknown.join(", "),
                names.join(", ")
            );
        }
        serde_yaml::from_value(value)
            .with_context(|| format!("{}: not a hyperparameter YAML", path.display()))
    }
}

fn interp(x: f64, x0: f64, x1: f64, y0: f64, y1: f64) -> f64 {
    if x1 <= x0 {
        return y1;
    }
    let t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0);
    y0 + t * (y1 - y0)
}

/// Ultralytics' lr factor for an epoch (linear by default, `one_cycle` with cos_lr).
pub fn lr_factor(a: &TrainArgs, epoch: usize) -> f64 {
    let e = epoch as f64;
    let n = a.epochs as f64;
    if a.cos_lr {
        ((1.0 - (e * std::f64::consts::PI / n).cos()) / 2.0).max(0.0) * (a.lrf - 1.0) + 1.0
    } else {
        (1.0 - e / n).max(0.0) * (1.0 - a.lrf) + a.lrf
    }
}

/// What the run resolves to before it starts.
pub struct Plan {
    pub optimizer: OptimizerKind,
    pub lr0: f64,
    pub momentum: f64,
    pub warmup_bias_lr: f64,
    pub accumulate: usize,
    pub weight_decay: f64,
}

/// The optimizer, learning rate, momentum and accumulation a run of `a` on `n_train` images of `nc` classes
/// resolves to (`auto` as Ultralytics 8.4).
pub fn plan(a: &TrainArgs, n_train: usize, nc: usize) -> Result<Plan> {
    let accumulate = ((a.nbs as f64 / a.batch as f64).round() as usize).max(1);
    let weight_decay = a.weight_decay * a.batch as f64 * accumulate as f64 / a.nbs as f64;
    let (optimizer, lr0, momentum, warmup_bias_lr) = match a.optimizer.to_ascii_lowercase().as_str()
    {
        "auto" => {
            // Ultralytics 8.4 `auto`: MuSGD for very long runs, else AdamW at lr_fit; warmup_bias_lr forced
            // to 0.
            let iterations = n_train.div_ceil(a.batch.max(a.nbs)) * a.epochs;
            if iterations > 10_000 {
                (OptimizerKind::MuSgd, 0.01, 0.9, 0.0)
            } else {
                let lr_fit = (0.002 * 5.0 / (4.0 + nc as f64) * 1e6).round() / 1e6;
                (OptimizerKind::AdamW, lr_fit, 0.9, 0.0)
            }
        }
        other => match OptimizerKind::from_name(other) {
            Some(kind) => (kind, a.lr0, a.momentum, a.warmup_bias_lr),
            None => bail!("optimizer {other:?} is not supported: use auto, SGD, AdamW or MuSGD"),
        },
    };
    Ok(Plan {
        optimizer,
        lr0,
        momentum,
        warmup_bias_lr,
        accumulate,
        weight_decay,
    })
}

/// Learning rates, momentum and accumulation count at global step `ni` (Ultralytics' warmup: linear ramps over
/// the first `nw` steps from 0, the bias group from warmup_bias_lr, momentum from warmup_momentum, and
/// accumulation from 1 to nbs / batch).
fn warmup(a: &TrainArgs, p: &Plan, ni: usize, nw: usize, target: GroupLr) -> (GroupLr, f64, usize) {
    let mut lr = target;
    let mut n_accumulate = p.accumulate;
    // Warmup leaves SGD-family momentum at args.momentum (Ultralytics never resets it after).
    let mut momentum = if p.optimizer != OptimizerKind::AdamW && nw > 0 {
        a.momentum
    } else {
        p.momentum
    };
    if nw > 0 && ni <= nw {
        let xi = (0.0, nw as f64);
        n_accumulate = (interp(ni as f64, xi.0, xi.1, 1.0, a.nbs as f64 / a.batch as f64).round()
            as usize)
            .max(1);
        for g in 0..3 {
            let start = if g == 2 { p.warmup_bias_lr } else { 0.0 };
            lr.base[g] = interp(ni as f64, xi.0, xi.1, start, target.base[g]);
            lr.boosted[g] = interp(ni as f64, xi.0, xi.1, start, target.boosted[g]);
        }
        if p.optimizer != OptimizerKind::AdamW {
            momentum = interp(ni as f64, xi.0, xi.1, a.warmup_momentum, a.momentum);
        }
    }
    (lr, momentum, n_accumulate)
}

/// What a run starts from: the model (not yet on the training device), its optimizer and EMA, and the epoch
/// and best fitness to continue from.
struct Start {
    model: YoloModel,
    opt: Optimizer,
    ema: Ema,
    start_epoch: usize,
    best: f64,
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Saved next to `last.safetensors` so a run can continue: the trained (non-EMA) weights, optimizer buffers,
/// and counters in the metadata.
fn save_state(
    dir: &Path,
    learner: &mut Learner,
    epoch_done: usize,
    best: f64,
    args: &TrainArgs,
) -> Result<()> {
    let Learner {
        model, opt, ema, ..
    } = learner;
    let mut sd = state_dict(model);
    for (k, t) in opt.state() {
        sd.insert(format!("opt.{k}"), t);
    }
    // The EMA weights too, so this one file is the whole checkpoint (one atomic write): a kill between
    // writing last.safetensors and this file cannot leave a resume with weights of two epochs.
    for (k, t) in state_dict(&ema.model) {
        sd.insert(format!("ema.{k}"), t);
    }
    let md = HashMap::from([
        ("epoch".to_string(), epoch_done.to_string()),
        ("ema_updates".to_string(), ema.updates.to_string()),
        ("opt_steps".to_string(), opt.steps.to_string()),
        ("best_fitness".to_string(), best.to_string()),
        ("args".to_string(), serde_json::to_string(args)?),
    ]);
    write_atomic(
        &dir.join("last.state.safetensors"),
        &to_safetensors_bytes(&sd, &md)?,
    )?;
    Ok(())
}

/// What `finish_epoch` needs besides the model: the data (its validation split), loss gains, weights folder.
struct EpochEnd<'a> {
    data: &'a RunData,
    gains: LossGains,
    wdir: &'a Path,
}

/// What a run ended with.
#[derive(Debug)]
pub struct RunOutcome {
    /// One row per completed epoch, the resumed-from ones included.
    pub results: Vec<EpochResult>,
    /// Stopped early (Ctrl-C, or `max_steps`); `--resume` continues from the last completed epoch.
    pub interrupted: bool,
    /// What the model predicts (which of the results' columns it fills).
    pub task: Task,
}

/// Holds the run folder for this process: an exclusive lock on `RUN/.lock` (the OS releases it when the
/// process ends, however it ends). Two runs writing one folder would mix their args.yaml, weights and
/// results, and a later `--resume` would continue the mix.
fn lock_run_folder(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another training run (it holds {}); wait for it or choose another --out",
            run_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(anyhow::Error::new(e).context(format!("{}: cannot lock", path.display())))
        }
    }
}

pub struct Trainer {
    pub args: TrainArgs,
    /// Continue the run in `run_dir` from its checkpoint (an error when there is none). Without it a folder
    /// that already holds a run is refused, so nothing is silently continued or overwritten.
    pub resume: bool,
    pub run_dir: PathBuf,
    /// Where the model trains and validates (replica 0).
    pub device: Device,
    /// More devices for data-parallel training (`--device 0,1`): each gets an equal share of every batch.
    pub extra_devices: Vec<Device>,
    /// Set by Ctrl-C: the loop saves `last` and returns after the current batch.
    pub stop: Arc<AtomicBool>,
    /// Stop after this many optimizer steps in total (tests of resume), if set.
    pub max_steps: Option<u64>,
}

impl Trainer {
    pub fn run(&self) -> Result<RunOutcome> {
        let a = &self.args;
        let dev = &self.device;
        let n_dev = 1 + self.extra_devices.len();
        if !a.batch.is_multiple_of(n_dev) {
            bail!(
                "--batch {} must be a multiple of the device count {n_dev} (each device trains an equal share)",
                a.batch
            );
        }
        let wdir = self.run_dir.join("weights");
        std::fs::create_dir_all(&wdir)
            .with_context(|| format!("{}: cannot create", wdir.display()))?;
        let _lock = lock_run_folder(&self.run_dir)?;

        // The model's kind before the data: a classifier reads image folders, a detector a data.yaml.
        let task = ModelSpec::from_file(
            &a.config,
            &SpecOptions {
                scale: a.scale.clone(),
                nc: None,
            },
        )?
        .task();
        let data = RunData::open(a, task)?;
        let names = data.names().to_vec();
        let nc = names.len();
        let spec = ModelSpec::from_file(
            &a.config,
            &SpecOptions {
                scale: a.scale.clone(),
                nc: Some(nc),
            },
        )?;
        spec.check_input(a.imgsz, a.imgsz)
            .map_err(|e| anyhow::anyhow!("{}: {e}", spec.source))?;

        let state_path = wdir.join("last.state.safetensors");
        let resume = self.resume;
        self.check_run_folder(&state_path)?;
        let p = plan(a, data.n_train(), nc)?;
        let Start {
            model,
            opt,
            ema,
            start_epoch,
            mut best,
        } = self.start(&spec, &p, &state_path, &wdir)?;
        let gains = LossGains {
            box_gain: a.box_gain,
            cls_gain: a.cls,
            dfl_gain: a.dfl,
        };
        let mut learner = Learner::new(&spec, model, opt, ema, (dev, &self.extra_devices), gains)
            .with_dropout(a.dropout);
        if a.rep_l2 {
            // Once per optimizer step, as plain weight decay is applied: each of the `accumulate` batches adds
            // its share.
            learner = learner.with_rep_l2(0.5 * p.weight_decay / p.accumulate as f64);
        }
        if n_dev > 1 {
            eprintln!(
                "data-parallel on {n_dev} devices: {} images each per batch, gradients summed on replica 0",
                a.batch / n_dev
            );
        }

        write_atomic(
            &self.run_dir.join("args.yaml"),
            serde_yaml::to_string(a)?.as_bytes(),
        )?;
        let csv_path = self.run_dir.join("results.csv");
        let mut results = if resume {
            read_csv(&csv_path, start_epoch)
        } else {
            vec![]
        };
        eprintln!(
            "optimizer {:?} lr0 {} momentum {} weight_decay {:.6} (accumulate {} to nominal batch {}), {} epochs at {}",
            p.optimizer, p.lr0, p.momentum, p.weight_decay, p.accumulate, a.nbs, a.epochs, a.imgsz
        );
        data.dump_previews(
            &self.run_dir,
            a.dump,
            start_epoch,
            start_epoch < a.epochs.saturating_sub(a.close_mosaic),
        )?;
        if !resume {
            // A resume point before the first step, so even a run stopped in epoch 1 can continue.
            save_model(
                &mut learner.ema.model,
                &wdir.join("last.safetensors"),
                &names,
                &[],
            )?;
            save_state(&wdir, &mut learner, 0, best, a)?;
        }
        let t_run = Instant::now();
        for epoch in start_epoch..a.epochs {
            let t_epoch = Instant::now();
            let Some((train, lr)) = self.train_epoch(&mut learner, &data, &p, epoch)? else {
                self.save_interrupted(&mut learner, &names, epoch)?;
                return Ok(RunOutcome {
                    results,
                    interrupted: true,
                    task,
                });
            };
            let r = EpochResult {
                epoch,
                train,
                lr: lr.base,
                ..Default::default()
            };
            let r = self.finish_epoch(
                r,
                t_epoch,
                EpochEnd {
                    data: &data,
                    gains,
                    wdir: &wdir,
                },
                &mut best,
                &mut learner,
            )?;
            results.push(r);
            // The epoch's row before its checkpoint: a kill between the two resumes that epoch again (the rows
            // from the resumed epoch on are dropped), never past a row that was not written.
            write_csv(&csv_path, &results, task)?;
            save_state(&wdir, &mut learner, epoch + 1, best, a)?;
            if let Err(e) =
                crate::plots::results_png(&self.run_dir.join("results.png"), &results, task)
            {
                eprintln!("warning: results.png not drawn: {e:#}");
            }
        }
        if let RunData::Classify { val: Some(f), .. } = &data {
            if let Err(e) = self.classify_final_eval(&spec, f, &names, &wdir) {
                eprintln!("warning: confusion_matrix.png not drawn: {e:#}");
            }
        }
        eprintln!(
            "{} epochs in {:.1} min; best {} {:.4}; weights in {}",
            a.epochs - start_epoch,
            t_run.elapsed().as_secs_f64() / 60.0,
            match task {
                Task::Detect => "mAP50-95",
                Task::Classify => "fitness (top-1 + top-5) / 2",
            },
            best.max(0.0),
            wdir.display()
        );
        Ok(RunOutcome {
            results,
            interrupted: false,
            task,
        })
    }

    /// One epoch's batches: the mean loss components and the last learning rates, or `None` when stopped
    /// (Ctrl-C or `max_steps`) before the epoch's end.
    fn train_epoch(
        &self,
        learner: &mut Learner,
        data: &RunData,
        p: &Plan,
        epoch: usize,
    ) -> Result<Option<([f64; 3], GroupLr)>> {
        let a = &self.args;
        let nb = data.n_train().div_ceil(a.batch);
        let warm_epochs = a.warmup_epochs.min((a.epochs as f64 - 1.0).max(0.0));
        let nw = (warm_epochs * nb as f64).round() as usize;
        // Ultralytics closes mosaic once, at epoch == epochs - close_mosaic (never when that is negative).
        let close_at = a.epochs as i64 - a.close_mosaic as i64;
        let mosaic = !(a.close_mosaic > 0 && close_at >= 0 && epoch as i64 >= close_at);
        if a.close_mosaic > 0 && epoch as i64 == close_at && data.task() == Task::Detect {
            eprintln!("closing mosaic for the last {} epochs", a.close_mosaic);
        }
        let lf = lr_factor(a, epoch);
        // MuSGD trains the class branch at 3x, ramped from the same warmup start.
        let boost = if p.optimizer == OptimizerKind::MuSgd {
            3.0
        } else {
            1.0
        };
        let target = GroupLr {
            base: [p.lr0 * lf; 3],
            boosted: [boost * p.lr0 * lf; 3],
        };
        let mut lr = target;
        let mut tloss = [0f64; 3];
        let bar = indicatif::ProgressBar::new(nb as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} {bar:24} {pos}/{len} {msg} [{elapsed}<{eta}, {per_sec}]",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{:>5}/{}", epoch + 1, a.epochs));
        for (i, batch) in data.batches(epoch, a.batch, a.workers, mosaic).enumerate() {
            let batch = batch?;
            let ni = i + nb * epoch;
            let (step_lr, momentum, accumulate) = warmup(a, p, ni, nw, target);
            lr = step_lr;
            let [bsz, _, h, _] = batch.shape;
            let schedule = Schedule {
                lr,
                momentum,
                accumulate,
            };
            let components = match learner.step(batch, &schedule, None) {
                Ok(c) => c,
                Err(e) => {
                    bar.abandon();
                    bail!(
                        "{e} at epoch {}, batch {} (step {ni}); the last good checkpoint is {}",
                        epoch + 1,
                        i + 1,
                        self.run_dir.join("weights/last.safetensors").display()
                    );
                }
            };
            for (t, c) in tloss.iter_mut().zip(components) {
                *t = (*t * i as f64 + c as f64) / (i + 1) as f64;
            }
            let losses = match data.task() {
                Task::Detect => format!(
                    "box {:.3} cls {:.3} dfl {:.3}",
                    tloss[0], tloss[1], tloss[2]
                ),
                Task::Classify => format!("loss {:.3}", tloss[0]),
            };
            bar.set_message(format!("{losses} | {bsz} img {h}px | {:.0} MB", rss_mb()));
            bar.inc(1);
            if self.stop.load(Ordering::SeqCst)
                || self.max_steps.is_some_and(|m| learner.opt.steps >= m)
            {
                bar.abandon_with_message("interrupted");
                return Ok(None);
            }
        }
        bar.finish();
        Ok(Some((tloss, lr)))
    }

    /// A stopped run's partial epoch is kept beside the resume point, which stays the end of the last completed
    /// epoch (so a resumed run equals an uninterrupted one).
    fn save_interrupted(
        &self,
        learner: &mut Learner,
        names: &[String],
        epoch: usize,
    ) -> Result<()> {
        let wdir = self.run_dir.join("weights");
        let p = wdir.join("interrupted.safetensors");
        save_model(
            &mut learner.ema.model,
            &p,
            names,
            &[("epoch".into(), epoch.to_string())],
        )?;
        eprintln!(
            "saved {}; `--resume {}` restarts epoch {} from {}",
            p.display(),
            self.run_dir.display(),
            epoch + 1,
            wdir.join("last.safetensors").display()
        );
        Ok(())
    }

    /// The model, optimizer and EMA the run starts from: seeded fresh, with `--weights` transferred by name and
    /// shape, or everything from the resume checkpoint; `--freeze` applied.
    fn start(&self, spec: &ModelSpec, p: &Plan, state_path: &Path, wdir: &Path) -> Result<Start> {
        let a = &self.args;
        let dev = &self.device;
        // Seeded initialisation: the same seed gives the same run.
        dev.seed(a.seed);
        let mut model = YoloModel::new(spec, dev);
        let mut start_epoch = 0;
        let mut best = -1.0;
        let mut opt = Optimizer::new(p.optimizer, p.momentum, p.weight_decay).for_model(&model);
        if a.rep_l2 {
            let ids = model.rep_l2_params();
            if ids.is_empty() {
                bail!(
                    "--rep-l2: {} has no MobileOne block with branches to regularise",
                    a.config
                );
            }
            opt = opt.without_decay(&model, &ids);
        }
        let mut ema_updates = 0;
        let state = if self.resume {
            Some(WeightsFile::read(&state_path.to_string_lossy())?)
        } else {
            None
        };
        if let Some(st) = &state {
            let model_sd = st
                .tensors
                .iter()
                .filter(|(k, _)| k.starts_with("model."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            load_state_dict(&mut model, &model_sd, &st.path)?;
            let opt_entries: Vec<(String, HostTensor)> = st
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("opt.").map(|k| (k.to_string(), v.clone())))
                .collect();
            let num = |k: &str| {
                st.metadata
                    .get(k)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            opt.load_state(&opt_entries, dev, num("opt_steps") as u64);
            start_epoch = num("epoch") as usize;
            ema_updates = num("ema_updates") as u64;
            best = num("best_fitness");
            eprintln!(
                "resuming {} from epoch {}",
                self.run_dir.display(),
                start_epoch + 1
            );
        } else if let Some(w) = &a.weights {
            let f = WeightsFile::read(w)?;
            if f.metadata.contains_key(model::int8::META_KEY) {
                bail!(
                    "--weights {w}: an INT8 file (export --int8) cannot be trained; start from the float weights \
                     it was exported from"
                );
            }
            let t = load_matching(&mut model, &f.tensors, w)?;
            if t.loaded == 0 {
                bail!("--weights {w}: no tensor matches the model by name and shape (is --config/--scale right?)");
            }
            eprintln!(
                "initial weights from {w}: transferred {}/{} tensors",
                t.loaded, t.total
            );
            if !t.kept.is_empty() {
                let more = t.kept.len().saturating_sub(6);
                eprintln!(
                    "  kept their initial values (absent from the file or another shape): {}{}",
                    t.kept[..t.kept.len().min(6)].join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
        }
        // A deep copy: a clone would share the BatchNorm running statistics with the trained model.
        let mut ema = Ema::new(YoloModel::new(spec, dev));
        load_state_dict(&mut ema.model, &state_dict(&model), "the initial model")?;
        if let Some(st) = &state {
            let ema_sd: model::weights::StateDict = st
                .tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("ema.").map(|k| (k.to_string(), v.clone())))
                .collect();
            if ema_sd.is_empty() {
                // A checkpoint from before the EMA was kept in the state file.
                let f = WeightsFile::read(&wdir.join("last.safetensors").to_string_lossy())?;
                load_state_dict(&mut ema.model, &f.tensors, &f.path)?;
            } else {
                load_state_dict(&mut ema.model, &ema_sd, &st.path)?;
            }
            ema.updates = ema_updates;
        }
        if a.freeze >= spec.layers.len() {
            bail!(
                "--freeze {}: the model has {} layers (0..{}); freezing them all leaves nothing to train",
                a.freeze,
                spec.layers.len(),
                spec.layers.len() - 1
            );
        }
        if a.freeze > 0 {
            let n = freeze_layers(&mut model, a.freeze);
            eprintln!(
                "freezing layers 0..{} ({n} tensors are not trained)",
                a.freeze - 1
            );
        }
        Ok(Start {
            model,
            opt,
            ema,
            start_epoch,
            best,
        })
    }

    /// The end of an epoch: validation of the EMA model, `last`/`best` weights and the resume checkpoint.
    fn finish_epoch(
        &self,
        mut r: EpochResult,
        t_epoch: Instant,
        end: EpochEnd,
        best: &mut f64,
        learner: &mut Learner,
    ) -> Result<EpochResult> {
        let a = &self.args;
        let epoch = r.epoch;
        let vo = ValOptions {
            imgsz: a.imgsz,
            batch: a.batch * 2,
            workers: a.workers,
            with_loss: Some(end.gains),
            ..Default::default()
        };
        match end.data {
            RunData::Detect { val: Some(vds), .. } => {
                let vr = validate(&learner.ema.model, vds.clone(), &vo, &self.device)?;
                let m = &vr.metrics;
                (r.p, r.r, r.map50, r.map) = (m.mp(), m.mr(), m.map50(), m.map());
                r.val = vr.losses;
            }
            RunData::Classify { val: Some(f), .. } => {
                let vr = crate::classify::validate_classifier(
                    &learner.ema.model,
                    f,
                    vo.imgsz,
                    vo.batch,
                    vo.workers,
                    &self.device,
                )?;
                (r.top1, r.top5, r.val[0]) = (vr.top1, vr.top5, vr.loss);
            }
            _ => {}
        }
        r.seconds = t_epoch.elapsed().as_secs_f64();
        let (fitness, metrics) = match end.data.task() {
            Task::Detect => (
                r.map,
                format!(
                    "{{\"precision\":{},\"recall\":{},\"mAP50\":{},\"mAP50-95\":{}}}",
                    r.p, r.r, r.map50, r.map
                ),
            ),
            Task::Classify => (
                (r.top1 + r.top5) / 2.0,
                format!(
                    "{{\"accuracy_top1\":{},\"accuracy_top5\":{}}}",
                    r.top1, r.top5
                ),
            ),
        };
        let extra = vec![
            ("epoch".to_string(), (epoch + 1).to_string()),
            ("metrics".to_string(), metrics),
        ];
        let names = end.data.names();
        save_model(
            &mut learner.ema.model,
            &end.wdir.join("last.safetensors"),
            names,
            &extra,
        )?;
        if fitness > *best {
            *best = fitness;
            save_model(
                &mut learner.ema.model,
                &end.wdir.join("best.safetensors"),
                names,
                &extra,
            )?;
        }
        match end.data.task() {
            Task::Detect => eprintln!(
                "epoch {}/{}: train box {:.4} cls {:.4} dfl {:.4} | val P {:.3} R {:.3} mAP50 {:.3} mAP50-95 {:.3} | {:.1}s",
                epoch + 1, a.epochs, r.train[0], r.train[1], r.train[2], r.p, r.r, r.map50, r.map, r.seconds
            ),
            Task::Classify => eprintln!(
                "epoch {}/{}: train loss {:.4} | val loss {:.4} top1 {:.3} top5 {:.3} | {:.1}s",
                epoch + 1, a.epochs, r.train[0], r.val[0], r.top1, r.top5, r.seconds
            ),
        }
        Ok(r)
    }

    /// Ultralytics' final evaluation of a classifier: `best.safetensors` on the val split, its confusion matrix
    /// drawn (whichever run, first or resumed, wrote that epoch).
    fn classify_final_eval(
        &self,
        spec: &ModelSpec,
        folder: &data::image_folder::ImageFolder,
        names: &[String],
        wdir: &Path,
    ) -> Result<()> {
        let a = &self.args;
        let best = WeightsFile::read(&wdir.join("best.safetensors").to_string_lossy())?;
        let mut model = YoloModel::new(spec, &self.device);
        load_state_dict(&mut model, &best.tensors, &best.path)?;
        let vr = crate::classify::validate_classifier(
            &model,
            folder,
            a.imgsz,
            a.batch * 2,
            a.workers,
            &self.device,
        )?;
        crate::plots::classify_confusion(
            &self.run_dir.join("confusion_matrix.png"),
            &vr.confusion,
            names,
        )
    }

    /// A run folder holds a run exactly when its checkpoint exists: `--resume` needs one, a new run refuses one.
    fn check_run_folder(&self, state_path: &Path) -> Result<()> {
        match (self.resume, state_path.exists()) {
            (true, false) => bail!(
                "--resume {}: no checkpoint ({} is missing)",
                self.run_dir.display(),
                state_path.display()
            ),
            (false, true) => bail!(
                "{} already holds a run: continue it with --resume {}, or choose another --out",
                self.run_dir.display(),
                self.run_dir.display()
            ),
            _ => Ok(()),
        }
    }
}
