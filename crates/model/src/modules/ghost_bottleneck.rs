//! Ultralytics `GhostBottleneck` (GhostNet): GhostConv -> [depthwise conv when strided] -> GhostConv (linear),
//! plus the input (or, strided, a depthwise + pointwise projection of it).

use super::conv::Conv;
use super::ghostconv::{GhostConv, GhostConvSpec};
use super::{check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::Macs;
use crate::yaml_args::{as_usize, check_arity, optional, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `GhostBottleneck(c1, c2, k=3, s=1)`: a GhostConv's arguments without groups (`k` and `s` are the strided
/// depthwise conv's), and a GhostConv's output shape.
#[derive(Debug, Clone, PartialEq)]
pub struct GhostBottleneckSpec(pub GhostConvSpec);

impl BlockSpec for GhostBottleneckSpec {
    type Module = GhostBottleneck;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.GhostBottleneck";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 2, "[c2, k=3, s=1]", ctx)?;
        let k = optional(r, 0, 3, |a| as_usize(a, "k", ctx))?;
        let s = optional(r, 1, 1, |a| as_usize(a, "s", ctx))?;
        if s != 1 && s != 2 {
            return Err(ctx.err(format!("s {s}: GhostBottleneck takes stride 1 or 2")));
        }
        if s == 1 && row.c1 != 2 * (row.c2 / 2) {
            return Err(ctx.err(format!(
                "c1 {} and c2 {}: without a stride the input is added to the output, so c1 must equal c2 (even)",
                row.c1, row.c2
            )));
        }
        Ok(GhostBottleneckSpec(GhostConvSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            s,
            g: 1,
            act: row.act,
        }))
    }

    fn c_out(&self) -> usize {
        self.0.c_out()
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        self.0.out_hw(h, w)
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let GhostConvSpec { c1, c2, k, s, .. } = self.0;
        let c_ = c2 / 2;
        let (ho, wo) = self.out_hw(h, w);
        // GhostConv(c1, c_, 1, 1) at the input size.
        acc.conv_bn(c1, c_ / 2, 1, 1, h, w);
        acc.conv_bn(c_ / 2, c_ / 2, 5, c_ / 2, h, w);
        if s == 2 {
            acc.conv_bn(c_, c_, k, c_, ho, wo);
            acc.conv_bn(c1, c1, k, c1, ho, wo);
            acc.conv_bn(c1, c2, 1, 1, ho, wo);
        }
        acc.conv_bn(c_, c2 / 2, 1, 1, ho, wo);
        acc.conv_bn(c2 / 2, c2 / 2, 5, c2 / 2, ho, wo);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_kernel("k", self.0.k, ctx)?;
        super::check_channels("c2 // 4", self.0.c2 / 4, ctx)
    }

    fn build(&self, device: &Device) -> GhostBottleneck {
        let GhostConvSpec { c1, c2, k, s, .. } = self.0;
        GhostBottleneck::new(c1, c2, k, s, self.0.act, device)
    }
}

/// Ultralytics' `GhostBottleneck`: `conv`, an `nn.Sequential(GhostConv, DWConv if s == 2 else Identity,
/// GhostConv)`, plus `shortcut`, `nn.Sequential(DWConv, Conv)` if s == 2 else the identity.
#[derive(Module, Debug)]
pub struct GhostBottleneck {
    pub conv: (GhostConv, Option<Conv>, GhostConv),
    pub shortcut: Option<(Conv, Conv)>,
}

impl GhostBottleneck {
    pub fn new(c1: usize, c2: usize, k: usize, s: usize, act: Act, device: &Device) -> Self {
        let c_ = c2 / 2;
        let none = Act::Identity;
        // DWConv(c, c, k, s, act=False): gcd(c, c) = c groups.
        let dw = |c: usize| Conv::new(c, c, k, s, k / 2, c, 1, none, device);
        GhostBottleneck {
            conv: (
                GhostConv::new(c1, c_, 1, 1, 1, act, device),
                (s == 2).then(|| dw(c_)),
                GhostConv::new(c_, c2, 1, 1, 1, none, device),
            ),
            shortcut: (s == 2).then(|| (dw(c1), Conv::new(c1, c2, 1, 1, 0, 1, 1, none, device))),
        }
    }
}

impl BlockModule for GhostBottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let (pw, dw, linear) = &self.conv;
        let mut y = pw.forward(x.clone());
        if let Some(dw) = dw {
            y = dw.forward(y);
        }
        let skip = match &self.shortcut {
            Some((dw, pw)) => pw.forward(dw.forward(x)),
            None => x,
        };
        linear.forward(y) + skip
    }

    fn fuse(self) -> Self {
        let (pw, dw, linear) = self.conv;
        GhostBottleneck {
            conv: (pw.fuse(), dw.map(Conv::fuse), linear.fuse()),
            shortcut: self.shortcut.map(|(dw, pw)| (dw.fuse(), pw.fuse())),
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let (pw, dw, linear) = &self.conv;
        let mut y = pw.lower(l, x)?;
        if let Some(dw) = dw {
            y = dw.lower(l, &y)?;
        }
        let skip = match &self.shortcut {
            Some((dw, pw)) => {
                let s = dw.lower(l, x)?;
                pw.lower(l, &s)?
            }
            None => x.clone(),
        };
        let y = linear.lower(l, &y)?;
        Ok(l.add(&y, &skip))
    }
}
