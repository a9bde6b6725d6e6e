//! Deploy-time folding: BatchNorm into conv weights, and MobileOne's branches into one depthwise 3x3
//! and one pointwise 1x1 conv. The kernel maths is done with tensor ops, so
//! [`MobileOneBlock::equivalent_kernel_bias`] is differentiable and usable during training.

use crate::graph::{Block, Layer, YoloModel};
use crate::nn::{
    Bn, Bottleneck, Conv, Conv2d, ConvBn, Detect, HeadBranch, MobileOneBlock, MobileOneFused,
};
use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

/// Folds a BN that follows a conv kernel (and optional conv bias) into `(W', b')`:
/// `W' = W * gamma/std`, `b' = beta + (b - mean) * gamma/std`, `std = sqrt(var + eps)`.
pub fn fold_bn(weight: Tensor<4>, bias: Option<Tensor<1>>, bn: &Bn) -> (Tensor<4>, Tensor<1>) {
    let std = (bn.running_var.value_sync() + bn.eps).sqrt();
    let t = bn.weight.val() / std;
    let c = t.dims()[0];
    let w = weight * t.clone().reshape([c, 1, 1, 1]);
    let shift = match bias {
        Some(b) => b - bn.running_mean.value_sync(),
        None => bn.running_mean.value_sync().neg(),
    };
    (w, bn.bias.val() + shift * t)
}

/// A fused conv built from a kernel and bias, keeping the geometry of `like`.
fn conv_from(like: &Conv2d, w: Tensor<4>, b: Tensor<1>) -> Conv2d {
    Conv2d {
        weight: Param::from_tensor(w.detach()),
        bias: Some(Param::from_tensor(b.detach())),
        stride: like.stride,
        padding: like.padding,
        dilation: like.dilation,
        groups: like.groups,
    }
}

impl Conv {
    /// Conv+BN -> conv with bias. Idempotent.
    pub fn fuse(self) -> Conv {
        match &self.bn {
            None => self,
            Some(bn) => {
                let (w, b) = fold_bn(
                    self.conv.weight.val(),
                    self.conv.bias.as_ref().map(|b| b.val()),
                    bn,
                );
                Conv {
                    conv: conv_from(&self.conv, w, b),
                    bn: None,
                    act: self.act,
                }
            }
        }
    }
}

impl ConvBn {
    fn kernel_bias(&self) -> (Tensor<4>, Tensor<1>) {
        fold_bn(
            self.conv.weight.val(),
            self.conv.bias.as_ref().map(|b| b.val()),
            &self.bn,
        )
    }
}

/// The identity as a conv kernel: depthwise `(c, 1, k, k)` or full `(c, c, 1, 1)`, a 1 at the centre tap.
fn identity_kernel(c: usize, depthwise: bool, ks: usize, like: &Tensor<1>) -> Tensor<4> {
    let in_dim = if depthwise { 1 } else { c };
    let mut v = vec![0f32; c * in_dim * ks * ks];
    for i in 0..c {
        let j = if depthwise { 0 } else { i };
        v[((i * in_dim + j) * ks + ks / 2) * ks + ks / 2] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [c, in_dim, ks, ks]), &like.device())
}

fn bn_as_kernel(bn: &Bn, depthwise: bool, ks: usize) -> (Tensor<4>, Tensor<1>) {
    let c = bn.weight.dims()[0];
    let k = identity_kernel(c, depthwise, ks, &bn.weight.val());
    fold_bn(k, None, bn)
}

impl MobileOneBlock {
    /// The single-conv equivalent of each stage: `(dw_kernel (c1,1,3,3), dw_bias, pw_kernel (c2,c1,1,1), pw_bias)`.
    /// Built from tensor ops, so gradients flow through it (for the seed's kernel regulariser).
    pub fn equivalent_kernel_bias(&self) -> Option<(Tensor<4>, Tensor<1>, Tensor<4>, Tensor<1>)> {
        let b = self.branches.as_ref()?;
        let (k1, mut dw_b) = b.dw_1x1.kernel_bias();
        let mut dw_k = k1.pad([(0, 0), (0, 0), (1, 1), (1, 1)], 0.0);
        for br in &b.dw_3x3 {
            let (k, bias) = br.kernel_bias();
            dw_k = dw_k + k;
            dw_b = dw_b + bias;
        }
        if let Some(bn) = &b.dw_bn_layer {
            let (k, bias) = bn_as_kernel(bn, true, 3);
            dw_k = dw_k + k;
            dw_b = dw_b + bias;
        }
        let (mut pw_k, mut pw_b) = b.pw_1x1[0].kernel_bias();
        for br in &b.pw_1x1[1..] {
            let (k, bias) = br.kernel_bias();
            pw_k = pw_k + k;
            pw_b = pw_b + bias;
        }
        if let Some(bn) = &b.pw_bn_layer {
            let (k, bias) = bn_as_kernel(bn, false, 1);
            pw_k = pw_k + k;
            pw_b = pw_b + bias;
        }
        Some((dw_k, dw_b, pw_k, pw_b))
    }

    /// The seed's optional training regulariser (left a stub there): the squared L2 norm of the equivalent
    /// deploy kernels, so weight decay can act on what the fused conv will hold rather than on each branch.
    pub fn custom_l2(&self) -> Option<Tensor<1>> {
        let (dw_k, _, pw_k, _) = self.equivalent_kernel_bias()?;
        Some(dw_k.powf_scalar(2.0).sum() + pw_k.powf_scalar(2.0).sum())
    }

    /// Replaces the branches by `dw_reparam` / `pw_reparam`; the branch parameters are dropped. Idempotent.
    pub fn reparameterize(mut self) -> MobileOneBlock {
        if let Some((dw_k, dw_b, pw_k, pw_b)) = self.equivalent_kernel_bias() {
            let b = self
                .branches
                .take()
                .expect("equivalent_kernel_bias saw branches");
            let dw_like = &b.dw_3x3.first().unwrap_or(&b.dw_1x1).conv;
            let dw = Conv2d {
                padding: 1,
                ..conv_from(dw_like, dw_k, dw_b)
            };
            let pw = conv_from(&b.pw_1x1[0].conv, pw_k, pw_b);
            self.fused = Some(MobileOneFused {
                dw_reparam: dw,
                pw_reparam: pw,
            });
        }
        self
    }
}

impl Bottleneck {
    fn fuse(self) -> Bottleneck {
        Bottleneck {
            cv1: self.cv1.fuse(),
            cv2: self.cv2.fuse(),
            add: self.add,
        }
    }
}

impl HeadBranch {
    fn fuse(self) -> HeadBranch {
        HeadBranch {
            c0: self.c0.fuse(),
            c1: self.c1.fuse(),
            out: self.out,
        }
    }
}

impl Block {
    pub fn fuse(self) -> Block {
        match self {
            Block::Conv(m) => Block::Conv(m.fuse()),
            Block::Bottleneck(m) => Block::Bottleneck(m.fuse()),
            Block::C2f(mut m) => {
                m.cv1 = m.cv1.fuse();
                m.cv2 = m.cv2.fuse();
                m.m = m.m.into_iter().map(Bottleneck::fuse).collect();
                Block::C2f(m)
            }
            Block::C3(mut m) => {
                m.cv1 = m.cv1.fuse();
                m.cv2 = m.cv2.fuse();
                m.cv3 = m.cv3.fuse();
                m.m = m.m.into_iter().map(Bottleneck::fuse).collect();
                Block::C3(m)
            }
            Block::Sppf(mut m) => {
                m.cv1 = m.cv1.fuse();
                m.cv2 = m.cv2.fuse();
                Block::Sppf(m)
            }
            Block::Spp(mut m) => {
                m.cv1 = m.cv1.fuse();
                m.cv2 = m.cv2.fuse();
                Block::Spp(m)
            }
            Block::MobileOne(m) => Block::MobileOne(m.reparameterize()),
        }
    }
}

impl Detect {
    fn fuse(mut self) -> Detect {
        self.cv2 = self.cv2.into_iter().map(HeadBranch::fuse).collect();
        self.cv3 = self.cv3.into_iter().map(HeadBranch::fuse).collect();
        self
    }
}

impl YoloModel {
    /// Folds every BN and reparameterizes every MobileOne block (inference form). Idempotent.
    pub fn fuse(self) -> YoloModel {
        let layers = self
            .layers
            .into_iter()
            .map(|l| match l {
                Layer::Single(b) => Layer::Single(b.fuse()),
                Layer::Stack(bs) => Layer::Stack(bs.into_iter().map(Block::fuse).collect()),
                Layer::Detect(d) => Layer::Detect(d.fuse()),
                other => other,
            })
            .collect();
        YoloModel {
            layers,
            spec: self.spec,
        }
    }
}
