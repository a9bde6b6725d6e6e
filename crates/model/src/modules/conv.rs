//! Ultralytics `Conv`: Conv2d(bias=False) -> BatchNorm2d -> SiLU; fused: Conv2d(bias=True) -> SiLU.

use super::{check_kernel, BlockModule, BlockSpec, Role, Row, MAX_KERNEL};
use crate::error::Result;
use crate::fuse::{conv_from, fold_bn};
use crate::lowering::{activate, Lowering};
use crate::nn::{Act, Bn, Conv2d};
use crate::shapes::{conv_out, Macs};
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Arg, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `Conv(c1, c2, k=1, s=1, p=None, g=1, d=1, act=True)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub g: usize,
    pub d: usize,
    pub act: Act,
}

impl BlockSpec for ConvSpec {
    type Module = Conv;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.conv.Conv";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx, c1, c2) = (row.args, row.ctx, row.c1, row.c2);
        check_arity(r, 0, 6, "[c2, k=1, s=1, p=None, g=1, d=1, act=True]", ctx)?;
        let k = optional(r, 0, 1, |a| as_usize(a, "k", ctx))?;
        let s = optional(r, 1, 1, |a| as_usize(a, "s", ctx))?;
        let d = optional(r, 4, 1, |a| as_usize(a, "d", ctx))?;
        let p = match r.get(2) {
            None | Some(Arg::None) => autopad(k, d),
            Some(a) => as_usize(a, "p", ctx)?,
        };
        let g = optional(r, 3, 1, |a| as_usize(a, "g", ctx))?;
        let act = row
            .act
            .or_none(optional(r, 5, true, |a| as_bool(a, "act", ctx))?);
        if g == 0 || !c1.is_multiple_of(g) || !c2.is_multiple_of(g) {
            return Err(ctx.err(format!("groups {g} must divide c1 {c1} and c2 {c2}")));
        }
        if k == 0 || s == 0 {
            return Err(ctx.err("k and s must be at least 1"));
        }
        Ok(ConvSpec {
            c1,
            c2,
            k,
            s,
            p,
            g,
            d,
            act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x| conv_out(x, self.k, self.s, self.p, self.d);
        (o(h), o(w))
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let (ho, wo) = self.out_hw(h, w);
        acc.conv_bn(self.c1, self.c2, self.k, self.g, ho, wo);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let (k, s, p, d) = (self.k, self.s, self.p, self.d);
        check_kernel("k", k, ctx)?;
        if s > MAX_KERNEL || d == 0 || d > MAX_KERNEL || p > d * k {
            return Err(ctx.err(format!(
                "s {s}, p {p}, d {d}: stride and dilation must be between 1 and {MAX_KERNEL}, padding at most d * k"
            )));
        }
        Ok(())
    }

    fn build(&self, device: &Device) -> Conv {
        let s = self;
        Conv::new(s.c1, s.c2, s.k, s.s, s.p, s.g, s.d, s.act, device)
    }
}

/// Ultralytics' `autopad`: "same" padding for odd kernels, dilation included.
pub fn autopad(k: usize, d: usize) -> usize {
    let ke = if d > 1 { d * (k - 1) + 1 } else { k };
    ke / 2
}

#[derive(Module, Debug)]
pub struct Conv {
    pub conv: Conv2d,
    pub bn: Option<Bn>,
    #[module(skip)]
    pub act: Act,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        s: usize,
        p: usize,
        g: usize,
        d: usize,
        act: Act,
        device: &Device,
    ) -> Self {
        Conv {
            conv: Conv2d::new(c1, c2, k, s, p, g, d, false, device),
            bn: Some(Bn::new(c2, device)),
            act,
        }
    }

    /// `Conv(c1, c2, k, s)` with auto padding, no groups or dilation, and the model's activation.
    pub fn simple(c1: usize, c2: usize, k: usize, s: usize, act: Act, device: &Device) -> Self {
        Self::new(c1, c2, k, s, k / 2, 1, 1, act, device)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.conv.forward(x);
        if let Some(bn) = &self.bn {
            y = bn.forward(y);
        }
        self.act.apply(y)
    }

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

impl BlockModule for Conv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        Conv::forward(self, x)
    }

    fn fuse(self) -> Self {
        Conv::fuse(self)
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let mut y = l.conv2d(x, &self.conv);
        if let Some(bn) = &self.bn {
            y = l.batch_norm(&y, bn);
        }
        Ok(activate(l, self.act, y))
    }
}
