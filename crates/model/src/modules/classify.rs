//! The `Classify` head: Conv(c1, 1280, k, s, p, g) -> adaptive average pool to 1x1 -> dropout -> Linear(1280,
//! nc); softmax at inference. Like `Detect` it ends the model, so the graph holds it as a head row rather than
//! a registry block (its output is a vector per image, not a map).

use super::conv::{autopad, Conv, ConvSpec};
use super::{check_groups, check_kernel, BlockModule, BlockSpec};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{Act, Conv2d};
use crate::shapes::{conv_out, Macs};
use crate::yaml_args::{as_usize, check_arity, optional, Arg, Ctx};
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Distribution, Tensor};

/// The hidden width of Ultralytics' head (`c_ = 1280`, EfficientNet-B0's).
pub const HIDDEN: usize = 1280;

/// `Classify(c1, c2, k=1, s=1, p=None, g=1)`; `c2` is the class count, never width-scaled.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifySpec {
    pub c1: usize,
    pub nc: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub g: usize,
    pub act: Act,
}

impl ClassifySpec {
    pub const TYPE_PATH: &'static str = "ultralytics.nn.modules.head.Classify";
    pub const SIGNATURE: &'static str = "[nc, k=1, s=1, p=None, g=1]";

    /// The row's arguments after `c2` (`[k, s, p, g]`), for an input of `c1` channels.
    pub fn parse(args: &[Arg], c1: usize, nc: usize, act: Act, ctx: &Ctx) -> Result<ClassifySpec> {
        check_arity(args, 0, 4, Self::SIGNATURE, ctx)?;
        let k = optional(args, 0, 1, |a| as_usize(a, "k", ctx))?;
        let s = optional(args, 1, 1, |a| as_usize(a, "s", ctx))?;
        let p = match args.get(2) {
            None | Some(Arg::None) => autopad(k, 1),
            Some(a) => as_usize(a, "p", ctx)?,
        };
        let g = optional(args, 3, 1, |a| as_usize(a, "g", ctx))?;
        if nc == 0 {
            return Err(ctx.err("Classify: nc must be at least 1"));
        }
        check_kernel("k", k, ctx)?;
        if s == 0 || s > super::MAX_KERNEL || p > k {
            return Err(ctx.err(format!(
                "Classify: s {s}, p {p}: the stride must be between 1 and {}, padding at most k",
                super::MAX_KERNEL
            )));
        }
        check_groups(g, c1, HIDDEN, ctx)?;
        Ok(ClassifySpec {
            c1,
            nc,
            k,
            s,
            p,
            g,
            act,
        })
    }

    fn conv(&self) -> ConvSpec {
        ConvSpec {
            c1: self.c1,
            c2: HIDDEN,
            k: self.k,
            s: self.s,
            p: self.p,
            g: self.g,
            d: 1,
            act: self.act,
        }
    }

    /// Multiply-accumulates as thop counts them for an `h x w` input map: the Conv, the adaptive pool's add per
    /// input and divide per output, the Linear's `in * out`.
    pub fn macs(&self, h: usize, w: usize, acc: &mut Macs) {
        let (ho, wo) = (
            conv_out(h, self.k, self.s, self.p, 1),
            conv_out(w, self.k, self.s, self.p, 1),
        );
        acc.conv_bn(self.c1, HIDDEN, self.k, self.g, ho, wo);
        acc.adaptive_avg_pool(HIDDEN, ho, wo);
        acc.conv(HIDDEN, self.nc, 1, 1, 1, 1);
    }

    /// PyTorch's default initialisation (the Conv's BatchNorm at 1/0).
    pub fn build(&self, device: &Device) -> Classify {
        Classify {
            conv: self.conv().build(device),
            linear: Linear::new(HIDDEN, self.nc, device),
        }
    }
}

/// `nn.Linear`, held as a 1x1 conv filter `(out, in, 1, 1)` so that the engine, the ONNX writer and the
/// optimizer see one more conv; its weight is saved and loaded as PyTorch's `(out, in)` (see `nn::Slot::Linear`).
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
}

impl Linear {
    /// PyTorch's default init: uniform +-1/sqrt(in_features) for weight and bias.
    pub fn new(c_in: usize, c_out: usize, device: &Device) -> Linear {
        let bound = 1.0 / (c_in as f64).sqrt();
        let u = Distribution::Uniform(-bound, bound);
        Linear {
            weight: Param::from_tensor(Tensor::random([c_out, c_in, 1, 1], u, device)),
            bias: Param::from_tensor(Tensor::random([c_out], u, device)),
        }
    }

    /// The same tensors as a 1x1 `Conv2d` (shared, not copied).
    pub fn as_conv(&self) -> Conv2d {
        Conv2d {
            weight: self.weight.clone(),
            bias: Some(self.bias.clone()),
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

#[derive(Module, Debug)]
pub struct Classify {
    pub conv: Conv,
    pub linear: Linear,
}

impl Classify {
    /// The logits `(N, nc)`, the training output. `dropout` (Ultralytics' `dropout` key, 0 by default) zeroes
    /// pooled features with that probability and scales the rest by `1 / (1 - dropout)`, as `nn.Dropout` in
    /// training mode; inference passes 0.
    pub fn forward_logits(&self, x: Tensor<4>, dropout: f64) -> Tensor<2> {
        let y = self.conv.forward(x);
        let mut pooled = y.mean_dim(3).mean_dim(2);
        if dropout > 0.0 {
            let keep = 1.0 - dropout;
            pooled = pooled.clone() * pooled.random_like(Distribution::Bernoulli(keep)) / keep;
        }
        let [n, _, _, _] = pooled.dims();
        let logits = self.linear.as_conv().forward(pooled);
        let nc = logits.dims()[1];
        logits.reshape([n, nc])
    }

    /// The inference output: class probabilities `(N, nc)`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        softmax(self.forward_logits(x, 0.0), 1)
    }

    pub fn nc(&self) -> usize {
        self.linear.weight.shape().dims::<4>()[0]
    }

    /// The Conv's BatchNorm folded. Idempotent.
    pub fn fuse(self) -> Classify {
        Classify {
            conv: self.conv.fuse(),
            linear: self.linear,
        }
    }

    /// The head as primitive operations: the logits as an `(N, nc, 1, 1)` map (an exporter or engine adds the
    /// softmax, as it adds Detect's decode).
    pub fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = BlockModule::lower(&self.conv, l, x)?;
        let pooled = l.adaptive_avg_pool(&y);
        Ok(l.conv2d(&pooled, &self.linear.as_conv()))
    }
}
