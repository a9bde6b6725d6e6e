//! One training step, the same code for `train` and `bench_step`: forward, loss and backward of a batch
//! (split across the data-parallel replicas), gradients accumulated up to the nominal batch, then the
//! optimizer step, the EMA update and the replicas' weights refreshed.

use crate::loss::LossGains;
use crate::optim::{Ema, GradMap, GroupLr, Optimizer};
use crate::parallel::{LossSetup, Replicas};
use anyhow::Result;
use data::loader::Batch;
use model::burn::module::Module;
use model::burn::tensor::{Device, Tensor};
use model::{ModelSpec, YoloModel};
use std::time::Instant;

/// Learning rates, momentum and accumulation count for one step (the trainer's warmup and decay).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub lr: GroupLr,
    pub momentum: f64,
    /// The optimizer steps once this many batches have added their gradients.
    pub accumulate: usize,
}

/// The phases a step's time is split into (`bench_step`'s table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Data,
    Forward,
    Loss,
    Backward,
    Optimizer,
    Ema,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Data,
        Phase::Forward,
        Phase::Loss,
        Phase::Backward,
        Phase::Optimizer,
        Phase::Ema,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::Forward => "forward",
            Phase::Loss => "loss",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
            Phase::Ema => "EMA",
        }
    }
}

/// Seconds per phase, summed over the timed steps. A timed step waits for each phase's results before the
/// next starts, which takes the overlap away from asynchronous (GPU) backends: only `bench_step` times.
#[derive(Debug, Clone)]
pub struct PhaseTimer {
    pub seconds: [f64; 6],
    last: Instant,
}

impl Default for PhaseTimer {
    fn default() -> Self {
        PhaseTimer {
            seconds: [0.0; 6],
            last: Instant::now(),
        }
    }
}

impl PhaseTimer {
    /// Starts the clock for the next phase without counting the time since the last lap.
    pub fn restart(&mut self) {
        self.last = Instant::now();
    }

    /// The time since the last lap belongs to `phase`.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        self.seconds[phase as usize] += (now - self.last).as_secs_f64();
        self.last = now;
    }

    /// Reads one value of `t` back (waits for queued work on asynchronous backends), then laps.
    pub fn lap_after<const D: usize>(&mut self, phase: Phase, t: &Tensor<D>) {
        let _ = t.clone().sum().into_data();
        self.lap(phase);
    }

    pub fn total(&self) -> f64 {
        self.seconds.iter().sum()
    }
}

/// What a run trains: the model (train mode, on the autodiff device), its optimizer and EMA, the other
/// replicas, and the gradients accumulated since the last optimizer step.
pub struct Learner {
    pub model: YoloModel,
    pub opt: Optimizer,
    pub ema: Ema,
    replicas: Replicas,
    loss: LossSetup,
    device: Device,
    acc: GradMap,
    pending: usize,
}

impl Learner {
    /// `model` (on `device`, not yet on its autodiff device) trains there; `extra` devices each hold a replica.
    pub fn new(
        spec: &ModelSpec,
        model: YoloModel,
        opt: Optimizer,
        ema: Ema,
        (device, extra): (&Device, &[Device]),
        gains: LossGains,
    ) -> Learner {
        let mut model = model.fork(&device.clone().autodiff()).train();
        let replicas = Replicas::new(spec, extra, &mut model);
        let loss = LossSetup::of(&model, gains);
        Learner {
            model,
            opt,
            ema,
            replicas,
            loss,
            device: device.clone(),
            acc: GradMap::new(),
            pending: 0,
        }
    }

    /// Adds `coef * rep_l2` ([`YoloModel::rep_l2`]) to every batch's loss.
    pub fn with_rep_l2(mut self, coef: f64) -> Learner {
        self.loss.rep_l2 = coef;
        self
    }

    /// A classifier's head drops pooled features with probability `p` while training (Ultralytics' `dropout`).
    pub fn with_dropout(mut self, p: f64) -> Learner {
        self.loss.dropout = p;
        self
    }

    /// Forward and backward of `batch`, then the optimizer step, EMA update and replica sync once
    /// `s.accumulate` batches are in. Returns the batch's loss components (box, cls, dfl; a classifier's loss,
    /// 0, 0); fails when the loss is not finite (nothing is added then).
    pub fn step(
        &mut self,
        batch: Batch,
        s: &Schedule,
        mut timer: Option<&mut PhaseTimer>,
    ) -> Result<[f32; 3]> {
        let out = self.replicas.step(
            &mut self.model,
            &self.device,
            batch,
            &self.loss,
            &mut self.acc,
            timer.as_deref_mut(),
        )?;
        self.pending += 1;
        if self.pending >= s.accumulate {
            self.opt.step(&mut self.model, &self.acc, s.lr, s.momentum);
            if let Some(t) = timer.as_deref_mut() {
                t.lap(Phase::Optimizer);
            }
            self.acc.clear();
            self.pending = 0;
            self.ema.update(&mut self.model);
            self.replicas.sync(&mut self.model);
            if let Some(t) = timer {
                t.lap(Phase::Ema);
            }
        }
        Ok(out.components)
    }
}
