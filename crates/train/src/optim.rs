//! Ultralytics' optimizer recipe, written out because burn's built-ins differ from PyTorch where it matters
//! here: three parameter groups (weights with decay, norm weights and biases without), SGD with Nesterov
//! momentum and no dampening or AdamW (eps 1e-8), global-norm gradient clipping at 10, per-group learning
//! rates for warmup, and the weight EMA. State is keyed by the Ultralytics tensor name, so it can be saved.

use burn::module::Param;
use burn::tensor::Gradients;
use burn::tensor::Tensor;
use model::nn::{Named, Slot};
use model::weights::HostTensor;
use model::YoloModel;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    Sgd,
    AdamW,
}

/// Ultralytics' parameter groups: 0 = weights (decayed), 1 = norm-layer weights, 2 = biases.
pub fn group_of(key: &str) -> usize {
    if key.ends_with(".bias") {
        2
    } else if key.contains(".bn.") || key.contains("bn_layer.") {
        1
    } else {
        0
    }
}

/// A tensor of rank 1 or 4 (what the model holds).
#[derive(Clone, Debug)]
pub enum AnyTensor {
    R1(Tensor<1>),
    R4(Tensor<4>),
}

impl AnyTensor {
    fn host(&self) -> HostTensor {
        match self {
            AnyTensor::R1(t) => model::weights::host(t.clone()),
            AnyTensor::R4(t) => model::weights::host(t.clone()),
        }
    }
}

pub struct Optimizer {
    pub kind: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub beta2: f64,
    pub max_norm: f64,
    /// SGD momentum buffers, or Adam first moments.
    pub m: HashMap<String, AnyTensor>,
    /// Adam second moments.
    pub v: HashMap<String, AnyTensor>,
    pub steps: u64,
}

/// Gradients by tensor name, summed over the batches of one accumulation step (Ultralytics accumulates
/// `.grad` until the nominal batch size is reached).
pub type GradMap = HashMap<String, AnyTensor>;

/// Adds the gradients of one backward pass to `acc`.
pub fn accumulate(acc: &mut GradMap, model: &mut YoloModel, grads: &Gradients) {
    model.visit_named("model", &mut |key, slot| {
        let g = match slot {
            Slot::W4(p) if p.is_require_grad() => p.val().grad(grads).map(AnyTensor::R4),
            Slot::W1(p) if p.is_require_grad() => p.val().grad(grads).map(AnyTensor::R1),
            _ => None,
        };
        let Some(g) = g else { return };
        let sum = match (acc.remove(&key), g) {
            (Some(AnyTensor::R4(a)), AnyTensor::R4(b)) => AnyTensor::R4(a + b),
            (Some(AnyTensor::R1(a)), AnyTensor::R1(b)) => AnyTensor::R1(a + b),
            (_, g) => g,
        };
        acc.insert(key, sum);
    });
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, momentum: f64, weight_decay: f64) -> Self {
        Optimizer {
            kind,
            momentum,
            weight_decay,
            beta2: 0.999,
            max_norm: 10.0,
            m: HashMap::new(),
            v: HashMap::new(),
            steps: 0,
        }
    }

    /// One update with per-group learning rates `lr[g]` (and SGD momentum `momentum`, changed by warmup).
    /// Returns the gradient norm before clipping.
    pub fn step(
        &mut self,
        model: &mut YoloModel,
        grads: &GradMap,
        lr: [f64; 3],
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
        let (b1, b2) = (momentum, self.beta2);
        let (bc1, bc2) = (
            1.0 - b1.powi(self.steps as i32),
            1.0 - b2.powi(self.steps as i32),
        );
        let kind = self.kind;
        let wd = self.weight_decay;
        let (m_map, v_map) = (&mut self.m, &mut self.v);
        macro_rules! update {
            ($p:expr, $key:expr, $variant:ident) => {{
                let Some(AnyTensor::$variant(g)) = grads.get(&$key).cloned() else {
                    return;
                };
                let group = group_of(&$key);
                let lr_g = lr[group];
                let w = $p.val().inner();
                let mut g = g * clip;
                let decay = if group == 0 { wd } else { 0.0 };
                let new_w = match kind {
                    OptimizerKind::Sgd => {
                        if decay > 0.0 {
                            g = g + w.clone() * decay;
                        }
                        let buf = match m_map.remove(&$key) {
                            Some(AnyTensor::$variant(b)) => b * momentum + g.clone(),
                            _ => g.clone(),
                        };
                        let upd = g + buf.clone() * momentum;
                        m_map.insert($key.clone(), AnyTensor::$variant(buf));
                        w - upd * lr_g
                    }
                    OptimizerKind::AdamW => {
                        let w = if decay > 0.0 {
                            w * (1.0 - lr_g * decay)
                        } else {
                            w
                        };
                        let m = match m_map.remove(&$key) {
                            Some(AnyTensor::$variant(m)) => m * b1 + g.clone() * (1.0 - b1),
                            _ => g.clone() * (1.0 - b1),
                        };
                        let v = match v_map.remove(&$key) {
                            Some(AnyTensor::$variant(v)) => {
                                v * b2 + g.clone().powi_scalar(2) * (1.0 - b2)
                            }
                            _ => g.powi_scalar(2) * (1.0 - b2),
                        };
                        let upd = (m.clone() / bc1) / ((v.clone() / bc2).sqrt() + 1e-8);
                        m_map.insert($key.clone(), AnyTensor::$variant(m));
                        v_map.insert($key.clone(), AnyTensor::$variant(v));
                        w - upd * lr_g
                    }
                };
                *$p = Param::initialized($p.id, new_w.detach().autodiff().require_grad());
            }};
        }
        model.visit_named("model", &mut |key, slot| match slot {
            Slot::W4(p) => update!(p, key, R4),
            Slot::W1(p) => update!(p, key, R1),
            Slot::Stat(_) => {}
        });
        norm
    }

    /// Buffers as host tensors (`m.{key}`, `v.{key}`) for a checkpoint.
    pub fn state(&self) -> Vec<(String, HostTensor)> {
        let mut out: Vec<(String, HostTensor)> = self
            .m
            .iter()
            .map(|(k, t)| (format!("m.{k}"), t.host()))
            .collect();
        out.extend(self.v.iter().map(|(k, t)| (format!("v.{k}"), t.host())));
        out
    }

    /// Restores buffers saved by [`Self::state`].
    pub fn load_state(
        &mut self,
        entries: &[(String, HostTensor)],
        device: &burn::tensor::Device,
        steps: u64,
    ) {
        self.steps = steps;
        for (k, t) in entries {
            let data = burn::tensor::TensorData::new(t.data.clone(), t.shape.clone());
            let v = if t.shape.len() == 4 {
                AnyTensor::R4(Tensor::from_data(data, device))
            } else {
                AnyTensor::R1(Tensor::from_data(data, device))
            };
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
    model.visit_named("model", &mut |_, slot| match slot {
        Slot::W4(p) => v.push(AnyTensor::R4(p.val().inner())),
        Slot::W1(p) => v.push(AnyTensor::R1(p.val().inner())),
        Slot::Stat(s) => v.push(AnyTensor::R1(s.value_sync().inner())),
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
        self.model.visit_named("model", &mut |_, slot| {
            let s = &src[i];
            i += 1;
            match (slot, s) {
                (Slot::W4(p), AnyTensor::R4(t)) => {
                    let v = p.val() * d + t.clone() * (1.0 - d);
                    *p = Param::initialized(p.id, v);
                }
                (Slot::W1(p), AnyTensor::R1(t)) => {
                    let v = p.val() * d + t.clone() * (1.0 - d);
                    *p = Param::initialized(p.id, v);
                }
                (Slot::Stat(r), AnyTensor::R1(t)) => {
                    let v = r.value_sync() * d + t.clone() * (1.0 - d);
                    r.update(v);
                }
                _ => unreachable!("the EMA mirrors the trained model's structure"),
            }
        });
    }
}
