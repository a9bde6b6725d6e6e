//! `nn.ConvTranspose2d` as a YAML row (YOLOv6's upsampling): a learned upsampling with a bias and no norm.

use super::{check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::Macs;
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Ctx};
use burn::module::{Module, Param};
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;
use burn::tensor::{Device, Distribution, Tensor};

/// `nn.ConvTranspose2d(c1, c2, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTransposeSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl BlockSpec for ConvTransposeSpec {
    type Module = ConvTranspose;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "torch.nn.modules.conv.ConvTranspose2d";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        const SIG: &str =
            "[c2, kernel_size, stride=1, padding=0, output_padding=0, groups=1, bias=True]";
        check_arity(r, 1, 6, SIG, ctx)?;
        let k = as_usize(&r[0], "kernel_size", ctx)?;
        let s = optional(r, 1, 1, |a| as_usize(a, "stride", ctx))?;
        let p = optional(r, 2, 0, |a| as_usize(a, "padding", ctx))?;
        if optional(r, 3, 0, |a| as_usize(a, "output_padding", ctx))? != 0
            || optional(r, 4, 1, |a| as_usize(a, "groups", ctx))? != 1
            || !optional(r, 5, true, |a| as_bool(a, "bias", ctx))?
        {
            return Err(ctx.err(format!(
                "only output_padding 0, groups 1 and bias True are supported: {SIG}"
            )));
        }
        if s == 0 || 2 * p >= k {
            return Err(ctx.err(format!(
                "kernel_size {k}, stride {s}, padding {p}: stride at least 1, padding below half the kernel"
            )));
        }
        Ok(ConvTransposeSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            s,
            p,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x: usize| ((x.max(1) - 1) * self.s + self.k).saturating_sub(2 * self.p);
        (o(h), o(w))
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        // thop walks a transposed conv's input: c1 * h * w * c2 * k * k.
        acc.conv(self.c2, self.c1, self.k, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_kernel("kernel_size", self.k, ctx)?;
        check_kernel("stride", self.s, ctx)
    }

    fn build(&self, device: &Device) -> ConvTranspose {
        // PyTorch's default init: uniform +-1/sqrt(fan_in), fan_in = c2 * k * k for a transposed conv.
        let bound = 1.0 / ((self.c2 * self.k * self.k) as f64).sqrt();
        let u = Distribution::Uniform(-bound, bound);
        ConvTranspose {
            weight: Param::from_tensor(Tensor::random(
                [self.c1, self.c2, self.k, self.k],
                u,
                device,
            )),
            bias: Param::from_tensor(Tensor::random([self.c2], u, device)),
            stride: self.s,
            padding: self.p,
        }
    }
}

#[derive(Module, Debug)]
pub struct ConvTranspose {
    /// `(c1, c2, k, k)`, PyTorch's layout for a transposed conv.
    pub weight: Param<Tensor<4>>,
    pub bias: Param<Tensor<1>>,
    pub stride: usize,
    pub padding: usize,
}

impl BlockModule for ConvTranspose {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (s, p) = (self.stride, self.padding);
        conv_transpose2d(
            x,
            self.weight.val(),
            Some(self.bias.val()),
            ConvTransposeOptions::new([s, s], [p, p], [0, 0], [1, 1], 1),
        )
    }

    fn fuse(self) -> Self {
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        Ok(l.conv_transpose2d(x, self))
    }
}
