//! Ultralytics `Bottleneck`: two convs with an optional residual.

use super::conv::Conv;
use super::{check_groups, check_kernel, expand, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::Macs;
use crate::yaml_args::{as_bool, as_f64, as_usize, check_arity, optional, Arg, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `Bottleneck(c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct BottleneckSpec {
    pub c1: usize,
    pub c2: usize,
    pub shortcut: bool,
    pub g: usize,
    pub k: (usize, usize),
    pub e: f64,
    pub act: Act,
}

impl BlockSpec for BottleneckSpec {
    type Module = Bottleneck;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.Bottleneck";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 4, "[c2, shortcut=True, g=1, k=(3, 3), e=0.5]", ctx)?;
        let shortcut = optional(r, 0, true, |a| as_bool(a, "shortcut", ctx))?;
        let g = optional(r, 1, 1, |a| as_usize(a, "g", ctx))?;
        let k = match r.get(2) {
            None => (3, 3),
            Some(Arg::List(v)) if v.len() == 2 => {
                (as_usize(&v[0], "k", ctx)?, as_usize(&v[1], "k", ctx)?)
            }
            Some(other) => {
                return Err(ctx.err(format!("k: expected a pair like [3, 3], got {other}")))
            }
        };
        let e = optional(r, 3, 0.5, |a| as_f64(a, "e", ctx))?;
        Ok(BottleneckSpec {
            c1: row.c1,
            c2: row.c2,
            shortcut,
            g,
            k,
            e,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let c_ = (self.c2 as f64 * self.e) as usize;
        acc.conv_bn(self.c1, c_, self.k.0, 1, h, w);
        acc.conv_bn(c_, self.c2, self.k.1, self.g, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c_ = expand(self.c2, self.e, ctx)?;
        check_kernel("k", self.k.0, ctx)?;
        check_kernel("k", self.k.1, ctx)?;
        check_groups(self.g, c_, self.c2, ctx)
    }

    fn build(&self, device: &Device) -> Bottleneck {
        let s = self;
        Bottleneck::new(s.c1, s.c2, s.shortcut, s.g, s.k, s.e, s.act, device)
    }
}

#[derive(Module, Debug)]
pub struct Bottleneck {
    pub cv1: Conv,
    pub cv2: Conv,
    pub add: bool,
}

impl Bottleneck {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        shortcut: bool,
        g: usize,
        k: (usize, usize),
        e: f64,
        act: Act,
        device: &Device,
    ) -> Self {
        let c_ = (c2 as f64 * e) as usize;
        Bottleneck {
            cv1: Conv::new(c1, c_, k.0, 1, k.0 / 2, 1, 1, act, device),
            cv2: Conv::new(c_, c2, k.1, 1, k.1 / 2, g, 1, act, device),
            add: shortcut && c1 == c2,
        }
    }
}

impl BlockModule for Bottleneck {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv2.forward(self.cv1.forward(x.clone()));
        if self.add {
            x + y
        } else {
            y
        }
    }

    fn fuse(self) -> Self {
        Bottleneck {
            cv1: self.cv1.fuse(),
            cv2: self.cv2.fuse(),
            add: self.add,
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let y = self.cv2.lower(l, &y)?;
        Ok(if self.add { l.add(x, &y) } else { y })
    }
}
