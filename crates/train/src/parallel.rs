//! Data-parallel training on several devices (`--device 0,1`), with Ultralytics' DDP semantics: each batch
//! is split evenly across the replicas; every replica runs forward, loss and backward on its share, so
//! BatchNorm normalizes with its share's statistics and the running statistics kept are replica 0's (DDP
//! broadcasts rank 0's buffers); the gradients are summed on device 0 (DDP averages the gradients of losses
//! that Ultralytics multiplies by the world size, which is a sum); the optimizer steps once, on device 0, and
//! the new weights are copied to the other replicas. Learning rate, accumulation and weight decay follow the
//! total batch, as one device with the whole batch. A classifier's loss is a mean over its share, so the sum
//! is N times one device's gradient on N devices: Ultralytics' DDP does the same (each rank's mean loss times
//! the world size, averaged), and AdamW, the `auto` choice, is nearly blind to the gradient's scale.
//!
//! The sum copies each replica's gradients to device 0, which works on every backend (flex, wgpu, CUDA):
//! burn 0.22's collective `all_reduce` is implemented only for CUDA (NCCL), and a plain sum is what it computes.

use crate::loss::{classification_loss, detection_loss, LossGains};
use crate::optim::{accumulate, add_grad, AnyTensor, GradMap};
use crate::step::{Phase, PhaseTimer};
use anyhow::{bail, Result};
use data::loader::{Batch, Target};
use model::burn::module::{Module, Param};
use model::burn::tensor::{Device, Tensor, TensorData};
use model::nn::{Named, Slot};
use model::{ModelSpec, Task, YoloModel};

/// What the loss needs besides the model output: a detector's strides, classes and box bins and the gains,
/// or (for a classifier) the dropout of its head.
#[derive(Clone)]
pub struct LossSetup {
    pub task: Task,
    pub strides: Vec<f32>,
    pub nc: usize,
    pub reg_max: usize,
    pub gains: LossGains,
    pub dropout: f64,
    /// The coefficient of the model's [`YoloModel::rep_l2`] added to the loss (0: none).
    pub rep_l2: f64,
}

impl LossSetup {
    pub fn of(model: &YoloModel, gains: LossGains) -> LossSetup {
        let task = model.task();
        let (strides, reg_max) = match task {
            Task::Detect => (model.detect().strides.clone(), model.detect().reg_max),
            Task::Classify => (vec![], 0),
        };
        LossSetup {
            task,
            strides,
            nc: model.nc(),
            reg_max,
            gains,
            dropout: 0.0,
            rep_l2: 0.0,
        }
    }
}

/// One replica's share of a batch: images `[n, 3, h, w]` and their targets, `batch_idx` counted within the share.
#[derive(Debug, Clone)]
pub struct Shard {
    pub images: Vec<f32>,
    pub shape: [usize; 4],
    pub targets: Vec<Target>,
}

/// Splits a batch into `n` contiguous shares whose sizes differ by at most one (the first ones larger);
/// shares that would be empty (a last batch smaller than `n`) are left out. One share takes the batch's
/// buffers as they are (the single-device path copies nothing).
pub fn split(batch: Batch, n: usize) -> Vec<Shard> {
    let [b, c, h, w] = batch.shape;
    if n <= 1 || b <= 1 {
        return vec![Shard {
            images: batch.images,
            shape: batch.shape,
            targets: batch.targets,
        }];
    }
    let per_image = c * h * w;
    let mut out = Vec::with_capacity(n);
    let mut start = 0;
    for r in 0..n {
        let len = b / n + usize::from(r < b % n);
        if len == 0 {
            continue;
        }
        let end = start + len;
        out.push(Shard {
            images: batch.images[start * per_image..end * per_image].to_vec(),
            shape: [len, c, h, w],
            targets: batch
                .targets
                .iter()
                .filter(|t| (start..end).contains(&t.batch_idx))
                .map(|t| Target {
                    batch_idx: t.batch_idx - start,
                    ..*t
                })
                .collect(),
        });
        start = end;
    }
    out
}

/// Forward, loss and backward of one share on `model` (on the autodiff device `train_dev`); adds the
/// gradients to `acc` and returns the loss components. `timer` (bench_step) gets each phase's time.
pub fn shard_step(
    model: &mut YoloModel,
    train_dev: &Device,
    shard: Shard,
    loss: &LossSetup,
    acc: &mut GradMap,
    mut timer: Option<&mut PhaseTimer>,
) -> [f32; 3] {
    let [_, _, h, w] = shard.shape;
    let x = Tensor::<4>::from_data(TensorData::new(shard.images, shard.shape), train_dev);
    let out = match loss.task {
        Task::Classify => {
            let logits = model.forward_logits(x, loss.dropout);
            if let Some(t) = timer.as_deref_mut() {
                t.lap_after(Phase::Forward, &logits);
            }
            let mut classes = vec![0; shard.shape[0]];
            for t in &shard.targets {
                if let Some(c) = classes.get_mut(t.batch_idx) {
                    *c = t.cls;
                }
            }
            classification_loss(logits, &classes)
        }
        Task::Detect => {
            let raw = model.forward_raw(x);
            if let Some(t) = timer.as_deref_mut() {
                raw.iter().for_each(|r| t.lap_after(Phase::Forward, r));
            }
            detection_loss(
                &raw,
                &loss.strides,
                loss.nc,
                loss.reg_max,
                &shard.targets,
                (h, w),
                loss.gains,
            )
        }
    };
    let total = match model.rep_l2().filter(|_| loss.rep_l2 > 0.0) {
        Some(l2) => out.total + l2 * loss.rep_l2,
        None => out.total,
    };
    if let Some(t) = timer.as_deref_mut() {
        t.lap_after(Phase::Loss, &total);
    }
    if out.components.iter().all(|c| c.is_finite()) {
        let grads = total.backward();
        accumulate(acc, model, &grads);
    }
    if let Some(t) = timer {
        match acc.values().next() {
            Some(AnyTensor::R1(g)) => t.lap_after(Phase::Backward, g),
            Some(AnyTensor::R4(g)) => t.lap_after(Phase::Backward, g),
            None => t.lap(Phase::Backward),
        }
    }
    out.components
}

/// A replica beyond the first: its own copy of the model (its own BatchNorm statistics) on its device.
struct Replica {
    device: Device,
    train_dev: Device,
    model: YoloModel,
}

/// The replicas of data-parallel training; replica 0 is the trained model itself, held by the caller.
pub struct Replicas {
    extra: Vec<Replica>,
}

/// The result of one data-parallel forward/backward.
pub struct ReplicaStep {
    /// Loss components averaged over the replicas, weighted by their share of the batch.
    pub components: [f32; 3],
}

impl Replicas {
    /// Replicas on `devices` (those after device 0), their weights copied from `main`.
    pub fn new(spec: &ModelSpec, devices: &[Device], main: &mut YoloModel) -> Replicas {
        let mut r = Replicas {
            extra: devices
                .iter()
                .map(|d| {
                    let train_dev = d.clone().autodiff();
                    Replica {
                        device: d.clone(),
                        model: YoloModel::new(spec, d).fork(&train_dev).train(),
                        train_dev,
                    }
                })
                .collect(),
        };
        r.sync(main);
        r
    }

    /// How many devices train, replica 0 included.
    pub fn count(&self) -> usize {
        1 + self.extra.len()
    }

    /// Copies `main`'s trainable weights to every other replica (after each optimizer step).
    pub fn sync(&mut self, main: &mut YoloModel) {
        if self.extra.is_empty() {
            return;
        }
        // Frozen layers (`--freeze`) stay frozen on every replica.
        let mut weights = vec![];
        main.visit_named("", &mut |_, slot| match slot {
            Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => {
                weights.push((AnyTensor::R4(p.val().inner()), p.is_require_grad()))
            }
            Slot::W1(p) | Slot::Norm(p) => {
                weights.push((AnyTensor::R1(p.val().inner()), p.is_require_grad()))
            }
            Slot::Stat(_) => {}
        });
        for rep in &mut self.extra {
            let mut i = 0;
            let dev = rep.device.clone();
            rep.model.visit_named("", &mut |_, slot| {
                match (slot, &weights[i]) {
                    (Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p), (AnyTensor::R4(t), grad)) => {
                        let t = t.clone().to_device(&dev).autodiff();
                        *p = Param::initialized(p.id, t).set_require_grad(*grad);
                    }
                    (Slot::W1(p) | Slot::Norm(p), (AnyTensor::R1(t), grad)) => {
                        let t = t.clone().to_device(&dev).autodiff();
                        *p = Param::initialized(p.id, t).set_require_grad(*grad);
                    }
                    (Slot::Stat(_), _) => return,
                    _ => unreachable!("replicas are built from the same spec"),
                }
                i += 1;
            });
        }
    }

    /// Forward and backward of `batch` split across the replicas; every replica's gradients are summed into
    /// `acc` (on replica 0's device). Replica 0 (`main`, on `train_dev`) runs on this thread, the others on
    /// their own threads at the same time. Fails when any replica's loss is not finite. `timer` times replica 0.
    pub fn step(
        &mut self,
        main: &mut YoloModel,
        main_dev: &Device,
        batch: Batch,
        loss: &LossSetup,
        acc: &mut GradMap,
        timer: Option<&mut PhaseTimer>,
    ) -> Result<ReplicaStep> {
        let images = batch.shape[0];
        let mut shards = split(batch, self.count());
        let sizes: Vec<usize> = shards.iter().map(|s| s.shape[0]).collect();
        let first = shards.remove(0);
        let train_dev = main_dev.clone().autodiff();
        // The regulariser is the model's, not the batch's: replica 0 adds it once.
        let extra_loss = LossSetup {
            rep_l2: 0.0,
            ..loss.clone()
        };
        let extra_loss = &extra_loss;
        let (main_comp, extra) = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .extra
                .iter_mut()
                .zip(shards)
                .map(|(rep, shard)| {
                    s.spawn(move || {
                        let mut grads = GradMap::new();
                        let c = shard_step(
                            &mut rep.model,
                            &rep.train_dev,
                            shard,
                            extra_loss,
                            &mut grads,
                            None,
                        );
                        (c, grads)
                    })
                })
                .collect();
            let main_comp = shard_step(main, &train_dev, first, loss, acc, timer);
            let extra: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect();
            (main_comp, extra)
        });
        let mut comps = vec![main_comp];
        for (comp, grads) in extra {
            comps.push(comp);
            add_on(acc, grads, main_dev);
        }
        if let Some((r, comp)) = comps
            .iter()
            .enumerate()
            .find(|(_, c)| c.iter().any(|v| !v.is_finite()))
        {
            match self.extra.is_empty() {
                true => bail!("loss is {comp:?}"),
                false => bail!("replica {r}: loss is {comp:?}"),
            }
        }
        let mut weighted = [0f32; 3];
        for (comp, n) in comps.iter().zip(&sizes) {
            for (w, c) in weighted.iter_mut().zip(comp) {
                *w += c * *n as f32;
            }
        }
        Ok(ReplicaStep {
            components: weighted.map(|w| w / images as f32),
        })
    }
}

/// Adds gradients from another device to `acc`, which lives on `device`.
fn add_on(acc: &mut GradMap, grads: GradMap, device: &Device) {
    for (key, g) in grads {
        let g = match g {
            AnyTensor::R4(t) => AnyTensor::R4(t.to_device(device)),
            AnyTensor::R1(t) => AnyTensor::R1(t.to_device(device)),
        };
        add_grad(acc, key, g);
    }
}
