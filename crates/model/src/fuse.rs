//! Deploy-time folding of a whole model: every block's [`crate::modules::BlockModule::fuse`] (BatchNorm
//! folded into conv weights, MobileOne's branches into one depthwise 3x3 and one pointwise 1x1 conv) and
//! the BatchNorm fold they share. The kernel maths is done with tensor ops, so it is differentiable.

use crate::graph::{Layer, YoloModel};
use crate::modules::Block;
use crate::nn::{Bn, Conv2d};
use burn::module::Param;
use burn::tensor::Tensor;

/// Folds a BN that follows a conv kernel (and optional conv bias) into `(W', b')`:
/// `W' = W * gamma/std`, `b' = beta + (b - mean) * gamma/std`, `std = sqrt(var + eps)`.
pub fn fold_bn(weight: Tensor<4>, bias: Option<Tensor<1>>, bn: &Bn) -> (Tensor<4>, Tensor<1>) {
    let std = (bn.running_var.value() + bn.eps).sqrt();
    let t = bn.weight.val() / std;
    let c = t.dims()[0];
    let w = weight * t.clone().reshape([c, 1, 1, 1]);
    let shift = match bias {
        Some(b) => b - bn.running_mean.value(),
        None => bn.running_mean.value().neg(),
    };
    (w, bn.bias.val() + shift * t)
}

/// A fused conv built from a kernel and bias, keeping the geometry of `like`.
pub(crate) fn conv_from(like: &Conv2d, w: Tensor<4>, b: Tensor<1>) -> Conv2d {
    Conv2d {
        weight: Param::from_tensor(w.detach()),
        bias: Some(Param::from_tensor(b.detach())),
        stride: like.stride,
        padding: like.padding,
        dilation: like.dilation,
        groups: like.groups,
    }
}

impl YoloModel {
    /// Folds every BN and reparameterizes every MobileOne block (inference form). Idempotent.
    pub fn fuse(self) -> YoloModel {
        let layers = self
            .model
            .into_iter()
            .map(|l| match l {
                Layer::Single(b) => Layer::Single(b.fuse()),
                Layer::Stack(bs) => Layer::Stack(bs.into_iter().map(Block::fuse).collect()),
                Layer::Detect(d) => Layer::Detect(d.fuse()),
                Layer::Classify(c) => Layer::Classify(c.fuse()),
                other => other,
            })
            .collect();
        YoloModel {
            model: layers,
            spec: self.spec,
            int8: self.int8,
        }
    }
}
