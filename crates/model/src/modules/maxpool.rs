//! `nn.MaxPool2d` as a YAML row (YOLOv3-tiny's downsampling).

use super::{check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::{conv_out, Macs};
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Arg, Ctx};
use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor};

/// `nn.MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False)`.
#[derive(Debug, Clone, PartialEq)]
pub struct MaxPoolSpec {
    pub c: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl BlockSpec for MaxPoolSpec {
    type Module = MaxPool;
    const ROLE: Role = Role::SameChannels;
    const TYPE_PATH: &'static str = "torch.nn.modules.pooling.MaxPool2d";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        const SIG: &str =
            "[kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False]";
        check_arity(r, 1, 6, SIG, ctx)?;
        let k = as_usize(&r[0], "kernel_size", ctx)?;
        let s = match r.get(1) {
            None | Some(Arg::None) => k,
            Some(a) => as_usize(a, "stride", ctx)?,
        };
        let p = optional(r, 2, 0, |a| as_usize(a, "padding", ctx))?;
        if optional(r, 3, 1, |a| as_usize(a, "dilation", ctx))? != 1 {
            return Err(ctx.err("nn.MaxPool2d: only dilation 1 is supported"));
        }
        if optional(r, 4, false, |a| as_bool(a, "return_indices", ctx))?
            || optional(r, 5, false, |a| as_bool(a, "ceil_mode", ctx))?
        {
            return Err(ctx.err("nn.MaxPool2d: return_indices and ceil_mode must be False"));
        }
        if s == 0 || 2 * p > k {
            return Err(ctx.err(format!(
                "stride {s}, padding {p}: stride at least 1, padding at most half the kernel (PyTorch's rule)"
            )));
        }
        Ok(MaxPoolSpec { c: row.c1, k, s, p })
    }

    fn c_out(&self) -> usize {
        self.c
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x| conv_out(x, self.k, self.s, self.p, 1);
        (o(h), o(w))
    }

    fn macs(&self, _c_in: usize, _h: usize, _w: usize, _acc: &mut Macs) {}

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_kernel("kernel_size", self.k, ctx)?;
        check_kernel("stride", self.s, ctx)
    }

    fn build(&self, _device: &Device) -> MaxPool {
        MaxPool {
            k: self.k,
            s: self.s,
            p: self.p,
        }
    }
}

#[derive(Module, Debug)]
pub struct MaxPool {
    pub k: usize,
    pub s: usize,
    pub p: usize,
}

impl BlockModule for MaxPool {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        max_pool2d(
            x,
            MaxPoolOptions::new([self.k, self.k])
                .with_stride([self.s, self.s])
                .with_padding([self.p, self.p]),
        )
    }

    fn fuse(self) -> Self {
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        Ok(l.max_pool(x, self.k, self.s, self.p))
    }
}
