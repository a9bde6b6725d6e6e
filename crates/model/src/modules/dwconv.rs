//! Ultralytics `DWConv`: a `Conv` with `gcd(c1, c2)` groups (depthwise when the widths are equal).

use super::conv::{autopad, Conv, ConvSpec};
use super::{BlockSpec, Role, Row};
use crate::error::Result;
use crate::shapes::Macs;
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Ctx};
use burn::tensor::Device;

/// `DWConv(c1, c2, k=1, s=1, d=1, act=True)`: the Conv it builds.
#[derive(Debug, Clone, PartialEq)]
pub struct DwConvSpec(pub ConvSpec);

pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl BlockSpec for DwConvSpec {
    type Module = Conv;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.conv.DWConv";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 4, "[c2, k=1, s=1, d=1, act=True]", ctx)?;
        let k = optional(r, 0, 1, |a| as_usize(a, "k", ctx))?;
        let s = optional(r, 1, 1, |a| as_usize(a, "s", ctx))?;
        let d = optional(r, 2, 1, |a| as_usize(a, "d", ctx))?;
        let act = row
            .act
            .or_none(optional(r, 3, true, |a| as_bool(a, "act", ctx))?);
        if k == 0 || s == 0 || d == 0 {
            return Err(ctx.err("k, s and d must be at least 1"));
        }
        Ok(DwConvSpec(ConvSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            s,
            p: autopad(k, d),
            g: gcd(row.c1, row.c2),
            d,
            act,
        }))
    }

    fn c_out(&self) -> usize {
        self.0.c_out()
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        self.0.out_hw(h, w)
    }

    fn macs(&self, c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        self.0.macs(c_in, h, w, acc)
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        self.0.check(ctx)
    }

    fn build(&self, device: &Device) -> Conv {
        self.0.build(device)
    }
}
