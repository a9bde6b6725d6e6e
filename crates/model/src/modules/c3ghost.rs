//! Ultralytics `C3Ghost`: `C3` with `GhostBottleneck`s.

use super::c3::Csp3;
use super::conv::Conv;
use super::ghost_bottleneck::{GhostBottleneck, GhostBottleneckSpec};
use super::ghostconv::GhostConvSpec;
use super::{expand, BlockSpec, CspArgs, Role, Row};
use crate::error::Result;
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::tensor::Device;

/// `C3Ghost(c1, c2, n=1, shortcut=True, g=1, e=0.5)` (shortcut and g are unused, as in Ultralytics).
#[derive(Debug, Clone, PartialEq)]
pub struct C3GhostSpec(pub CspArgs);

impl C3GhostSpec {
    fn hidden(&self) -> usize {
        self.0.hidden()
    }

    fn bottleneck(&self) -> GhostBottleneckSpec {
        let c_ = self.hidden();
        GhostBottleneckSpec(GhostConvSpec {
            c1: c_,
            c2: c_,
            k: 3,
            s: 1,
            g: 1,
            act: self.0.act,
        })
    }
}

impl BlockSpec for C3GhostSpec {
    type Module = C3Ghost;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C3Ghost";

    fn parse(row: &Row) -> Result<Self> {
        CspArgs::parse(row, true).map(C3GhostSpec)
    }

    fn c_out(&self) -> usize {
        self.0.c2
    }

    fn macs(&self, c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let (a, c_) = (&self.0, self.hidden());
        acc.conv_bn(a.c1, c_, 1, 1, h, w);
        acc.conv_bn(a.c1, c_, 1, 1, h, w);
        for _ in 0..a.n {
            self.bottleneck().macs(c_in, h, w, acc);
        }
        acc.conv_bn(2 * c_, a.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c_ = expand(self.0.c2, self.0.e, ctx)?;
        if !c_.is_multiple_of(2) || c_ < 4 {
            return Err(ctx.err(format!(
                "hidden width {c_}: GhostBottleneck halves it twice, so it must be even and at least 4"
            )));
        }
        Ok(())
    }

    fn build(&self, device: &Device) -> C3Ghost {
        let (a, c_) = (&self.0, self.hidden());
        Csp3 {
            cv1: Conv::simple(a.c1, c_, 1, 1, a.act, device),
            cv2: Conv::simple(a.c1, c_, 1, 1, a.act, device),
            cv3: Conv::simple(2 * c_, a.c2, 1, 1, a.act, device),
            m: (0..a.n).map(|_| self.bottleneck().build(device)).collect(),
        }
    }
}

pub type C3Ghost = Csp3<GhostBottleneck>;
