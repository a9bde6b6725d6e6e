//! One training step (forward in train mode, loss, backward, an SGD step) run on two devices from the same
//! weights and batch, and the differences: how a GPU backend is checked against burn-flex (the wgpu test on
//! lavapipe, `bench_step --parity` on a real GPU).

use crate::loss::LossGains;
use crate::optim::{GradMap, GroupLr, Optimizer, OptimizerKind};
use crate::parallel::{shard_step, LossSetup, Shard};
use data::loader::Target;
use model::burn::module::Module;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::weights::{load_state_dict, state_dict, StateDict};
use model::{ModelSpec, YoloModel};

/// What one step produced on one device.
pub struct StepResult {
    pub loss: [f32; 3],
    /// Every tensor after the step (parameters and BatchNorm statistics).
    pub after: StateDict,
    /// The eval-mode output `(B, 4 + nc, A)` of the stepped model on the same images.
    pub eval_out: Vec<f32>,
    pub gradient_count: usize,
}

/// A fixed batch of `b` made-up images of `h x w` with three objects (classes 0, 2, 1 below `nc`).
pub fn fixed_batch(b: usize, h: usize, w: usize, nc: usize) -> Shard {
    let t = |batch_idx: usize, cls: usize, cx, cy, w, h| Target {
        batch_idx: batch_idx.min(b.max(1) - 1),
        cls: cls % nc.max(1),
        cx,
        cy,
        w,
        h,
    };
    Shard {
        images: (0..b * 3 * h * w)
            .map(|i| ((i * 37 % 251) as f32) / 251.0)
            .collect(),
        shape: [b, 3, h, w],
        targets: vec![
            t(0, 0, 0.3, 0.4, 0.2, 0.3),
            t(0, 2, 0.7, 0.6, 0.4, 0.5),
            t(1, 1, 0.5, 0.5, 0.1, 0.15),
        ],
    }
}

/// One SGD step (lr 0.05, momentum 0.9, weight decay 5e-4) of the model `spec` with weights `init` on
/// `device`.
pub fn one_step(spec: &ModelSpec, device: &Device, init: &StateDict, batch: &Shard) -> StepResult {
    let mut model = YoloModel::new(spec, device);
    load_state_dict(&mut model, init, "init").expect("weights of the same spec");
    let train_dev = device.clone().autodiff();
    let mut model = model.fork(&train_dev).train();
    let gains = LossGains::default();
    let setup = LossSetup::of(&model, gains);
    let mut acc = GradMap::new();
    let loss = shard_step(
        &mut model,
        &train_dev,
        batch.clone(),
        &setup,
        &mut acc,
        None,
    );
    let gradient_count = acc.len();
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.9, 5e-4);
    opt.step(&mut model, &acc, GroupLr::uniform([0.05; 3]), 0.9);
    let after = state_dict(&model);
    let mut eval = YoloModel::new(spec, device);
    load_state_dict(&mut eval, &after, "after the step").expect("weights of the same spec");
    let x = TensorData::new(batch.images.clone(), batch.shape);
    let eval_out = eval
        .forward(Tensor::<4>::from_data(x, device))
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    StepResult {
        loss,
        after,
        eval_out,
        gradient_count,
    }
}

/// Largest differences between two devices' steps.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepDiff {
    /// Per loss component, relative to max(|loss|, 1).
    pub loss: f32,
    /// Per weight, relative to max(|weight|, 1), and the tensor where it is largest.
    pub weights: f32,
    pub worst_tensor: String,
    /// Of the eval output, relative to its largest magnitude.
    pub eval_out: f32,
    /// Any value not finite on either side (a difference of NaN would compare as small).
    pub non_finite: bool,
}

impl StepDiff {
    pub fn of(want: &StepResult, got: &StepResult) -> StepDiff {
        let mut non_finite = false;
        let mut rel = |a: f32, b: f32, scale: f32| {
            non_finite |= !a.is_finite() || !b.is_finite();
            (a - b).abs() / scale
        };
        let loss = want
            .loss
            .iter()
            .zip(got.loss)
            .fold(0f32, |m, (a, b)| m.max(rel(*a, b, a.abs().max(1.0))));
        let mut weights = (0f32, String::new());
        for (k, a) in &want.after {
            let Some(b) = got.after.get(k) else {
                weights = (f32::INFINITY, k.clone());
                continue;
            };
            for (x, y) in a.data.iter().zip(&b.data) {
                let d = rel(*x, *y, x.abs().max(1.0));
                if d > weights.0 {
                    weights = (d, k.clone());
                }
            }
        }
        let scale = want.eval_out.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let eval_out = if want.eval_out.len() == got.eval_out.len() {
            want.eval_out
                .iter()
                .zip(&got.eval_out)
                .fold(0f32, |m, (a, b)| m.max(rel(*a, *b, scale)))
        } else {
            f32::INFINITY
        };
        StepDiff {
            loss,
            weights: weights.0,
            worst_tensor: weights.1,
            eval_out,
            non_finite,
        }
    }

    /// Within float32 noise: 1e-4 relative everywhere, everything finite.
    pub fn ok(&self) -> bool {
        !self.non_finite && self.loss <= 1e-4 && self.weights <= 1e-4 && self.eval_out <= 1e-4
    }
}
