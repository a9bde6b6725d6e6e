//! Ultralytics `GhostBottleneck` (GhostNet): GhostConv -> [depthwise conv when strided] -> GhostConv (linear),
//! plus the input (or, strided, a depthwise + pointwise projection of it).

use super::conv::Conv;
use super::ghostconv::{GhostConv, GhostConvSpec};
use super::{check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{key, Act, Named, Slot};
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

/// The strided branch: `conv.1` (depthwise) and the `shortcut` projection.
#[derive(Module, Debug)]
pub struct GhostDown {
    pub dw: Conv,
    pub shortcut_dw: Conv,
    pub shortcut_pw: Conv,
}

#[derive(Module, Debug)]
pub struct GhostBottleneck {
    pub pw: GhostConv,
    pub down: Option<GhostDown>,
    pub linear: GhostConv,
}

impl GhostBottleneck {
    pub fn new(c1: usize, c2: usize, k: usize, s: usize, act: Act, device: &Device) -> Self {
        let c_ = c2 / 2;
        let none = Act::Identity;
        // DWConv(c, c, k, s, act=False): gcd(c, c) = c groups.
        let dw = |c: usize| Conv::new(c, c, k, s, k / 2, c, 1, none, device);
        GhostBottleneck {
            pw: GhostConv::new(c1, c_, 1, 1, 1, act, device),
            down: (s == 2).then(|| GhostDown {
                dw: dw(c_),
                shortcut_dw: dw(c1),
                shortcut_pw: Conv::new(c1, c2, 1, 1, 0, 1, 1, none, device),
            }),
            linear: GhostConv::new(c_, c2, 1, 1, 1, none, device),
        }
    }
}

impl BlockModule for GhostBottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.pw.forward(x.clone());
        let skip = match &self.down {
            Some(d) => {
                y = d.dw.forward(y);
                d.shortcut_pw.forward(d.shortcut_dw.forward(x))
            }
            None => x,
        };
        self.linear.forward(y) + skip
    }

    fn fuse(self) -> Self {
        GhostBottleneck {
            pw: self.pw.fuse(),
            down: self.down.map(|d| GhostDown {
                dw: d.dw.fuse(),
                shortcut_dw: d.shortcut_dw.fuse(),
                shortcut_pw: d.shortcut_pw.fuse(),
            }),
            linear: self.linear.fuse(),
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let mut y = self.pw.lower(l, x)?;
        let skip = match &self.down {
            Some(d) => {
                y = d.dw.lower(l, &y)?;
                let s = d.shortcut_dw.lower(l, x)?;
                d.shortcut_pw.lower(l, &s)?
            }
            None => x.clone(),
        };
        let y = self.linear.lower(l, &y)?;
        Ok(l.add(&y, &skip))
    }
}

impl Named for GhostBottleneck {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.pw.visit_named(&key(prefix, "conv.0"), f);
        if let Some(d) = &mut self.down {
            d.dw.visit_named(&key(prefix, "conv.1"), f);
            d.shortcut_dw.visit_named(&key(prefix, "shortcut.0"), f);
            d.shortcut_pw.visit_named(&key(prefix, "shortcut.1"), f);
        }
        self.linear.visit_named(&key(prefix, "conv.2"), f);
    }
}
