//! YOLO11's `C3k2`: a `C2f` whose inner blocks are Bottlenecks or, with `c3k`, `C3k`s (a `C3` with 3x3
//! bottlenecks); Ultralytics turns `c3k` on for the m, l and x scales.

use super::bottleneck::Bottleneck;
use super::c2f::SplitChain;
use super::c3::C3;
use super::conv::Conv;
use super::{check_groups, expand, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::Macs;
use crate::yaml_args::{as_bool, as_f64, as_usize, check_arity, optional, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C3k2(c1, c2, n=1, c3k=False, e=0.5, attn=False, g=1, shortcut=True)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C3k2Spec {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub c3k: bool,
    pub e: f64,
    pub g: usize,
    pub shortcut: bool,
    pub act: Act,
}

impl C3k2Spec {
    fn hidden(&self) -> usize {
        (self.c2 as f64 * self.e) as usize
    }
}

impl BlockSpec for C3k2Spec {
    type Module = C3k2;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C3k2";
    const MODERN_HEAD: bool = true;

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(
            r,
            0,
            5,
            "[c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True]",
            ctx,
        )?;
        // parse_model: `if scale in "mlx": c3k = True`.
        let c3k = optional(r, 0, false, |a| as_bool(a, "c3k", ctx))?
            || matches!(row.scale, "m" | "l" | "x");
        if optional(r, 2, false, |a| as_bool(a, "attn", ctx))? {
            return Err(ctx.err("C3k2: attn=True (YOLO26's attention blocks) is not supported"));
        }
        Ok(C3k2Spec {
            c1: row.c1,
            c2: row.c2,
            n: row.n,
            c3k,
            e: optional(r, 1, 0.5, |a| as_f64(a, "e", ctx))?,
            g: optional(r, 3, 1, |a| as_usize(a, "g", ctx))?,
            shortcut: optional(r, 4, true, |a| as_bool(a, "shortcut", ctx))?,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let c = self.hidden();
        acc.conv_bn(self.c1, 2 * c, 1, 1, h, w);
        for _ in 0..self.n {
            if self.c3k {
                let c_ = c / 2;
                acc.conv_bn(c, c_, 1, 1, h, w);
                acc.conv_bn(c, c_, 1, 1, h, w);
                for _ in 0..2 {
                    acc.conv_bn(c_, c_, 3, 1, h, w);
                    acc.conv_bn(c_, c_, 3, self.g, h, w);
                }
                acc.conv_bn(2 * c_, c, 1, 1, h, w);
            } else {
                acc.conv_bn(c, c / 2, 3, 1, h, w);
                acc.conv_bn(c / 2, c, 3, self.g, h, w);
            }
        }
        acc.conv_bn((2 + self.n) * c, self.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c = expand(self.c2, self.e, ctx)?;
        if c < 2 {
            return Err(ctx.err(format!("hidden width {c}: C3k2 halves it, so at least 2")));
        }
        check_groups(self.g, c / 2, c, ctx)
    }

    fn build(&self, device: &Device) -> C3k2 {
        let (c, act, g, sc) = (self.hidden(), self.act, self.g, self.shortcut);
        let m = (0..self.n)
            .map(|_| {
                if self.c3k {
                    // C3k(c, c, n=2, shortcut, g, e=0.5, k=3).
                    let c_ = c / 2;
                    C3k2Inner::C3k(C3 {
                        cv1: Conv::simple(c, c_, 1, 1, act, device),
                        cv2: Conv::simple(c, c_, 1, 1, act, device),
                        cv3: Conv::simple(2 * c_, c, 1, 1, act, device),
                        m: (0..2)
                            .map(|_| Bottleneck::new(c_, c_, sc, g, (3, 3), 1.0, act, device))
                            .collect(),
                    })
                } else {
                    C3k2Inner::Bottleneck(Bottleneck::new(c, c, sc, g, (3, 3), 0.5, act, device))
                }
            })
            .collect();
        SplitChain {
            cv1: Conv::simple(self.c1, 2 * c, 1, 1, act, device),
            cv2: Conv::simple((2 + self.n) * c, self.c2, 1, 1, act, device),
            m,
            c,
        }
    }
}

/// One inner block: built once per layer, so the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum C3k2Inner {
    Bottleneck(Bottleneck),
    C3k(C3),
}

pub type C3k2 = SplitChain<C3k2Inner>;

impl BlockModule for C3k2Inner {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            C3k2Inner::Bottleneck(b) => b.forward(x),
            C3k2Inner::C3k(b) => b.forward(x),
        }
    }

    fn fuse(self) -> Self {
        match self {
            C3k2Inner::Bottleneck(b) => C3k2Inner::Bottleneck(b.fuse()),
            C3k2Inner::C3k(b) => C3k2Inner::C3k(b.fuse()),
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        match self {
            C3k2Inner::Bottleneck(b) => b.lower(l, x),
            C3k2Inner::C3k(b) => b.lower(l, x),
        }
    }
}
