//! Ultralytics' optimizer recipe, written out because burn's built-ins differ from PyTorch where it matters
//! here: three parameter groups (weights with decay, norm weights and biases without), SGD with Nesterov
//! momentum and no dampening, AdamW (eps 1e-8), Ultralytics' MuSGD (Muon on conv filters plus SGD),
//! global-norm gradient clipping at 10, per-group learning rates for warmup, and the weight EMA. State is
//! keyed by the Ultralytics tensor name, so it can be saved.

use burn::module::Param;
use burn::tensor::Gradients;
use burn::tensor::Tensor;
use model::nn::{Named, NamedRef, Slot};
use model::weights::HostTensor;
use model::YoloModel;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    Sgd,
    AdamW,
    /// Ultralytics 8.4's hybrid: conv filters get an orthogonalized Muon step (x0.2) plus an SGD step;
    /// everything else plain SGD. `optimizer auto` picks it for runs of more than 10k iterations.
    MuSgd,
}

impl OptimizerKind {
    /// SGD, AdamW or MuSGD, in any case (Ultralytics' names).
    pub fn from_name(name: &str) -> Option<OptimizerKind> {
        match name.to_ascii_lowercase().as_str() {
            "sgd" => Some(OptimizerKind::Sgd),
            "adamw" => Some(OptimizerKind::AdamW),
            "musgd" => Some(OptimizerKind::MuSgd),
            _ => None,
        }
    }
}

/// Ultralytics' parameter groups: 0 = weights (decayed), 1 = norm-layer weights, 2 = biases; from the kind
/// the module gave the tensor.
pub fn group_of(slot: &Slot) -> usize {
    match slot {
        Slot::W4(_) | Slot::Linear(_) | Slot::Frozen(_) => 0,
        Slot::Norm(_) => 1,
        Slot::W1(_) | Slot::Stat(_) => 2,
    }
}

/// Learning rates per group (see [`group_of`]) for one step. MuSGD trains the head's class branch
/// (`Detect.cv3`) at three times the rate; warmup ramps that rate from the same start, so it is kept apart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupLr {
    pub base: [f64; 3],
    pub boosted: [f64; 3],
}

impl GroupLr {
    pub fn uniform(base: [f64; 3]) -> GroupLr {
        GroupLr {
            base,
            boosted: base,
        }
    }
}

/// A tensor of rank 1 or 4 (what the model holds).
#[derive(Clone, Debug)]
pub enum AnyTensor {
    R1(Tensor<1>),
    R4(Tensor<4>),
}

impl AnyTensor {
    /// Rank 1 becomes `[n, 1, 1, 1]`, so one update rule serves both ranks.
    fn into4(self) -> Tensor<4> {
        match self {
            AnyTensor::R1(t) => {
                let n = t.dims()[0];
                t.reshape([n, 1, 1, 1])
            }
            AnyTensor::R4(t) => t,
        }
    }
}

pub struct Optimizer {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub beta2: f64,
    pub max_norm: f64,
    /// MuSGD's weights of its Muon and SGD parts (Ultralytics: 0.2 and 1.0).
    pub muon_scale: f64,
    pub sgd_scale: f64,
    /// The tensors trained at the boosted rate (MuSGD: the Detect head's class branches).
    pub boosted: HashSet<String>,
    /// Filters without plain weight decay (`--rep-l2`: the MobileOne branch kernels).
    pub no_decay: HashSet<String>,
    /// SGD momentum buffers, Adam first moments, or MuSGD's Muon momentum.
    pub m: HashMap<String, Tensor<4>>,
    /// Adam second moments, or MuSGD's SGD momentum of the Muon-trained tensors.
    pub v: HashMap<String, Tensor<4>>,
    pub steps: u64,
}

/// Gradients by tensor name, summed over the batches of one accumulation step (Ultralytics accumulates
/// `.grad` until the nominal batch size is reached).
pub type GradMap = HashMap<String, AnyTensor>;

/// Adds the gradients of one backward pass to `acc`.
pub fn accumulate(acc: &mut GradMap, model: &mut YoloModel, grads: &Gradients) {
    model.visit_named("", &mut |key, slot| {
        let g = match slot {
            Slot::W4(p) | Slot::Linear(p) if p.is_require_grad() => {
                p.val().grad(grads).map(AnyTensor::R4)
            }
            Slot::W1(p) | Slot::Norm(p) if p.is_require_grad() => {
                p.val().grad(grads).map(AnyTensor::R1)
            }
            _ => None,
        };
        if let Some(g) = g {
            add_grad(acc, key, g);
        }
    });
}

/// Adds one tensor's gradient to `acc` (on the same device).
pub fn add_grad(acc: &mut GradMap, key: String, g: AnyTensor) {
    let sum = match (acc.remove(&key), g) {
        (Some(AnyTensor::R4(a)), AnyTensor::R4(b)) => AnyTensor::R4(a + b),
        (Some(AnyTensor::R1(a)), AnyTensor::R1(b)) => AnyTensor::R1(a + b),
        (_, g) => g,
    };
    acc.insert(key, sum);
}

/// Stops training the first `layers` layers (Ultralytics' `freeze=N`: every tensor of rows `0..N`), walking
/// those rows' own modules; returns how many parameters that froze. BatchNorm statistics still update, as in
/// Ultralytics.
pub fn freeze_layers(model: &mut YoloModel, layers: usize) -> usize {
    let mut n = 0;
    for (i, layer) in model.model.iter_mut().take(layers).enumerate() {
        layer.visit_named(&format!("model.{i}"), &mut |_, slot| match slot {
            Slot::W4(p) | Slot::Linear(p) => {
                *p = p.clone().set_require_grad(false);
                n += 1;
            }
            Slot::W1(p) | Slot::Norm(p) => {
                *p = p.clone().set_require_grad(false);
                n += 1;
            }
            Slot::Stat(_) | Slot::Frozen(_) => {}
        });
    }
    n
}

/// Muon's quintic Newton-Schulz iteration (5 steps, Ultralytics' coefficients): an approximate `U V^T` of
/// `g = U S V^T`. Ultralytics runs it in bfloat16; this is float32.
pub fn orthogonalize(g: Tensor<2>) -> Tensor<2> {
    let [rows, cols] = g.dims();
    let wide = rows <= cols;
    let x = if wide { g } else { g.transpose() };
    let norm = x.clone().powi_scalar(2).sum().sqrt().reshape([1, 1]);
    let mut x = x / (norm + 1e-7);
    let (a, b, c) = (3.4445, -4.7750, 2.0315);
    for _ in 0..5 {
        let xxt = x.clone().matmul(x.clone().transpose());
        let poly = xxt.clone() * b + xxt.clone().matmul(xxt) * c;
        x = x.clone() * a + poly.matmul(x);
    }
    if wide {
        x
    } else {
        x.transpose()
    }
}

/// The Muon direction of a conv filter: rows are output channels, scaled like Ultralytics by
/// `sqrt(max(1, dim[-2] / dim[-1]))`.
fn muon_direction(u: Tensor<4>) -> Tensor<4> {
    let [o, i, kh, kw] = u.dims();
    let x = orthogonalize(u.reshape([o, i * kh * kw])).reshape([o, i, kh, kw]);
    x * (kh as f64 / kw as f64).max(1.0).sqrt()
}

/// PyTorch's SGD step (Nesterov, no dampening, L2 decay added to the gradient); `buf` is the momentum.
fn sgd(
    buf: Option<Tensor<4>>,
    w: Tensor<4>,
    g: Tensor<4>,
    lr: f64,
    decay: f64,
    momentum: f64,
) -> (Tensor<4>, Tensor<4>) {
    let g = if decay > 0.0 {
        g + w.clone() * decay
    } else {
        g
    };
    let buf = match buf {
        Some(b) => b * momentum + g.clone(),
        None => g.clone(),
    };
    let upd = g + buf.clone() * momentum;
    (w - upd * lr, buf)
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Self {
        Optimizer {
            kind,
            momentum,
            weight_decay,
            beta2: 0.999,
            max_norm: 10.0,
            muon_scale: 0.2,
            sgd_scale: 1.0,
            boosted: HashSet::new(),
            no_decay: HashSet::new(),
            m: HashMap::new(),
            v: HashMap::new(),
            steps: 0,
        }
    }

    /// MuSGD trains `model`'s class branch at the boosted rate, as Ultralytics does.
    pub fn for_model(mut self, model: &YoloModel) -> Self {
        if self.kind == OptimizerKind::MuSgd {
            let ids: HashSet<_> = model.detect().class_branch_ids().into_iter().collect();
            model.for_each_named("", &mut |k, slot| {
                if ids.contains(&slot.id()) {
                    self.boosted.insert(k);
                }
            });
        }
        self
    }

    /// No plain weight decay on the tensors of `ids` (their regulariser is in the loss).
    pub fn without_decay(
        mut self,
        model: &YoloModel,
        ids: &[model::burn::module::ParamId],
    ) -> Self {
        let ids: HashSet<_> = ids.iter().copied().collect();
        model.for_each_named("", &mut |k, slot| {
            if ids.contains(&slot.id()) {
                self.no_decay.insert(k);
            }
        });
        self
    }

    /// One update with per-group learning rates (and the momentum warmup has reached). Returns the
    /// gradient norm before clipping.
    pub fn step(
        &mut self,
        model: &mut YoloModel,
        grads: &GradMap,
        lr: GroupLr,
        momentum: f64,
    ) -> f64 {
        // Global gradient norm over every parameter (PyTorch's clip_grad_norm_), one read-back.
        let mut sq: Option<Tensor<1>> = None;
        // A fixed summation order keeps runs reproducible (HashMap order changes between processes).
        let mut keys: Vec<&String> = grads.keys().collect();
        keys.sort();
        for g in keys.into_iter().map(|k| &grads[k]) {
            let s = match g {
                AnyTensor::R4(t) => t.clone().powi_scalar(2).sum(),
                AnyTensor::R1(t) => t.clone().powi_scalar(2).sum(),
            };
            sq = Some(match sq.take() {
                Some(acc) => acc + s,
                None => s,
            });
        }
        let norm = sq
            .map(|t| {
                t.into_data()
                    .convert::<f64>()
                    .try_into_vec::<f64>()
                    .expect("scalar")[0]
                    .sqrt()
            })
            .unwrap_or(0.0);
        let clip = if norm > self.max_norm {
            self.max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        self.steps += 1;
        model.visit_named("", &mut |key, slot| {
            let group = group_of(&slot);
            match slot {
                Slot::W4(p) | Slot::Linear(p) => {
                    let Some(AnyTensor::R4(g)) = grads.get(&key) else {
                        return;
                    };
                    let w =
                        self.update(&key, p.val().inner(), g.clone() * clip, group, lr, momentum);
                    *p = Param::initialized(p.id, w.detach().autodiff().require_grad());
                }
                Slot::W1(p) | Slot::Norm(p) => {
                    let Some(AnyTensor::R1(g)) = grads.get(&key) else {
                        return;
                    };
                    let n = g.dims()[0];
                    let w = AnyTensor::R1(p.val().inner()).into4();
                    let g = AnyTensor::R1(g.clone() * clip).into4();
                    let w = self.update(&key, w, g, group, lr, momentum).reshape([n]);
                    *p = Param::initialized(p.id, w.detach().autodiff().require_grad());
                }
                Slot::Stat(_) | Slot::Frozen(_) => {}
            }
        });
        norm
    }

    /// The new value of tensor `key` (in optimizer group `group`, see [`group_of`]; group 0 are the conv
    /// filters) after one step with gradient `g`.
    pub fn update(
        &mut self,
        key: &str,
        w: Tensor<4>,
        g: Tensor<4>,
        group: usize,
        lr: GroupLr,
        momentum: f64,
    ) -> Tensor<4> {
        let filter = group == 0;
        let boosted = self.boosted.contains(key);
        let lr_g = if boosted {
            lr.boosted[group]
        } else {
            lr.base[group]
        };
        let decay = if group == 0 && !self.no_decay.contains(key) {
            self.weight_decay
        } else {
            0.0
        };
        match self.kind {
            OptimizerKind::MuSgd if filter => {
                let buf = match self.m.remove(key) {
                    Some(b) => b * momentum + g.clone() * (1.0 - momentum),
                    None => g.clone() * (1.0 - momentum),
                };
                let nesterov = buf.clone() * momentum + g.clone() * (1.0 - momentum);
                self.m.insert(key.to_string(), buf);
                let w = w - muon_direction(nesterov) * (lr_g * self.muon_scale);
                let sgd_lr = lr_g * self.sgd_scale;
                let (w, buf) = sgd(self.v.remove(key), w, g, sgd_lr, decay, momentum);
                self.v.insert(key.to_string(), buf);
                w
            }
            // MuSGD trains everything but conv filters with plain SGD.
            OptimizerKind::Sgd | OptimizerKind::MuSgd => {
                let (w, buf) = sgd(self.m.remove(key), w, g, lr_g, decay, momentum);
                self.m.insert(key.to_string(), buf);
                w
            }
            OptimizerKind::AdamW => {
                let (b1, b2) = (momentum, self.beta2);
                let t = self.steps.max(1) as i32;
                let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let w = if decay > 0.0 {
                    w * (1.0 - lr_g * decay)
                } else {
                    w
                };
                let m = match self.m.remove(key) {
                    Some(m) => m * b1 + g.clone() * (1.0 - b1),
                    None => g.clone() * (1.0 - b1),
                };
                let v = match self.v.remove(key) {
                    Some(v) => v * b2 + g.clone().powi_scalar(2) * (1.0 - b2),
                    None => g.powi_scalar(2) * (1.0 - b2),
                };
                let upd = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + 1e-8);
                self.m.insert(key.to_string(), m);
                self.v.insert(key.to_string(), v);
                w - upd * lr_g
            }
        }
    }

    /// Buffers as host tensors (`m.{key}`, `v.{key}`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, HostTensor)> {
        let mut out: Vec<(String, HostTensor)> = self
            .m
            .iter()
            .map(|(k, t)| (format!("m.{k}"), model::weights::host(t.clone())))
            .collect();
        out.extend(
            self.v
                .iter()
                .map(|(k, t)| (format!("v.{k}"), model::weights::host(t.clone()))),
        );
        out
    }

    /// Restores buffers saved by [`Self::state`] (rank-1 buffers of older checkpoints too).
    pub fn load_state(
        &mut self,
        entries: &[(String, HostTensor)],
        device: &burn::tensor::Device,
        steps: u64,
    ) {
        self.steps = steps;
        for (k, t) in entries {
            let mut shape = t.shape.clone();
            shape.resize(4, 1);
            let data = burn::tensor::TensorData::new(t.data.clone(), shape);
            let v = Tensor::<4>::from_data(data, device);
            if let Some(key) = k.strip_prefix("m.") {
                self.m.insert(key.to_string(), v);
            } else if let Some(key) = k.strip_prefix("v.") {
                self.v.insert(key.to_string(), v);
            }
        }
    }
}

/// The trained model's tensors (parameters and BN statistics) without autodiff, in visit order.
pub fn plain_tensors(model: &mut YoloModel) -> Vec<AnyTensor> {
    let mut v = Vec::new();
    model.visit_named("", &mut |_, slot| match slot {
        Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => v.push(AnyTensor::R4(p.val().inner())),
        Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => v.push(AnyTensor::R1(p.val().inner())),
    });
    v
}

/// Ultralytics' ModelEMA: `ema = d * ema + (1 - d) * model` over every float tensor, with
/// `d = decay * (1 - exp(-updates / tau))`.
pub struct Ema {
    pub model: YoloModel,
    pub updates: u64,
    pub decay: f64,
    pub tau: f64,
}

impl Ema {
    pub fn new(model: YoloModel) -> Ema {
        Ema {
            model,
            updates: 0,
            decay: 0.9999,
            tau: 2000.0,
        }
    }

    pub fn update(&mut self, trained: &mut YoloModel) {
        self.updates += 1;
        let d = self.decay * (1.0 - (-(self.updates as f64) / self.tau).exp());
        let src = plain_tensors(trained);
        let mut i = 0;
        self.model.visit_named("", &mut |_, slot| {
            let s = &src[i];
            i += 1;
            match (slot, s) {
                (Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p), AnyTensor::R4(t)) => {
                    let v = p.val() * d + t.clone() * (1.0 - d);
                    *p = Param::initialized(p.id, v);
                }
                (Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p), AnyTensor::R1(t)) => {
                    let v = p.val() * d + t.clone() * (1.0 - d);
                    *p = Param::initialized(p.id, v);
                }
                _ => unreachable!("the EMA mirrors the trained model's structure"),
            }
        });
    }
}
