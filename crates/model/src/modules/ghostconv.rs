//! Ultralytics `GhostConv` (GhostNet): a conv to half the channels, a cheap depthwise 5x5 conv of those, both
//! joined.

use super::conv::Conv;
use super::{check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::{conv_out, Macs};
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `GhostConv(c1, c2, k=1, s=1, g=1, act=True)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GhostConvSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub s: usize,
    pub g: usize,
    pub act: Act,
}

impl BlockSpec for GhostConvSpec {
    type Module = GhostConv;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.conv.GhostConv";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 4, "[c2, k=1, s=1, g=1, act=True]", ctx)?;
        let spec = GhostConvSpec {
            c1: row.c1,
            c2: row.c2,
            k: optional(r, 0, 1, |a| as_usize(a, "k", ctx))?,
            s: optional(r, 1, 1, |a| as_usize(a, "s", ctx))?,
            g: optional(r, 2, 1, |a| as_usize(a, "g", ctx))?,
            act: row
                .act
                .or_none(optional(r, 3, true, |a| as_bool(a, "act", ctx))?),
        };
        if spec.k == 0 || spec.s == 0 {
            return Err(ctx.err("k and s must be at least 1"));
        }
        let c_ = spec.c2 / 2;
        if spec.g == 0 || !spec.c1.is_multiple_of(spec.g) || !c_.is_multiple_of(spec.g) {
            return Err(ctx.err(format!(
                "groups {} must divide c1 {} and c2 // 2 = {c_}",
                spec.g, spec.c1
            )));
        }
        Ok(spec)
    }

    fn c_out(&self) -> usize {
        2 * (self.c2 / 2)
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x| conv_out(x, self.k, self.s, self.k / 2, 1);
        (o(h), o(w))
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let c_ = self.c2 / 2;
        let (ho, wo) = self.out_hw(h, w);
        acc.conv_bn(self.c1, c_, self.k, self.g, ho, wo);
        acc.conv_bn(c_, c_, 5, c_, ho, wo);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_kernel("k", self.k, ctx)?;
        super::check_channels("c2 // 2", self.c2 / 2, ctx)
    }

    fn build(&self, device: &Device) -> GhostConv {
        GhostConv::new(self.c1, self.c2, self.k, self.s, self.g, self.act, device)
    }
}

#[derive(Module, Debug)]
pub struct GhostConv {
    pub cv1: Conv,
    pub cv2: Conv,
}

impl GhostConv {
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        s: usize,
        g: usize,
        act: Act,
        device: &Device,
    ) -> Self {
        let c_ = c2 / 2;
        GhostConv {
            cv1: Conv::new(c1, c_, k, s, k / 2, g, 1, act, device),
            cv2: Conv::new(c_, c_, 5, 1, 2, c_, 1, act, device),
        }
    }
}

impl BlockModule for GhostConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        Tensor::cat(vec![y.clone(), self.cv2.forward(y)], 1)
    }

    fn fuse(self) -> Self {
        GhostConv {
            cv1: self.cv1.fuse(),
            cv2: self.cv2.fuse(),
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let z = self.cv2.lower(l, &y)?;
        Ok(l.concat(&[y, z]))
    }
}
