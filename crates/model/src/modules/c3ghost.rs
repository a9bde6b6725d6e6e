//! Ultralytics `C3Ghost`: `C3` with `GhostBottleneck`s.

use super::conv::Conv;
use super::ghost_bottleneck::{GhostBottleneck, GhostBottleneckSpec};
use super::{csp_args, expand, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{key, visit_list, Act, Named, Slot};
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C3Ghost(c1, c2, n=1, shortcut=True, g=1, e=0.5)` (shortcut and g are unused, as in Ultralytics).
#[derive(Debug, Clone, PartialEq)]
pub struct C3GhostSpec {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub e: f64,
    pub act: Act,
}

impl C3GhostSpec {
    fn hidden(&self) -> usize {
        (self.c2 as f64 * self.e) as usize
    }

    fn bottleneck(&self) -> GhostBottleneckSpec {
        let c_ = self.hidden();
        GhostBottleneckSpec {
            c1: c_,
            c2: c_,
            k: 3,
            s: 1,
            act: self.act,
        }
    }
}

impl BlockSpec for C3GhostSpec {
    type Module = C3Ghost;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C3Ghost";

    fn parse(row: &Row) -> Result<Self> {
        let (_, _, e) = csp_args(row, true)?;
        Ok(C3GhostSpec {
            c1: row.c1,
            c2: row.c2,
            n: row.n,
            e,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let c_ = self.hidden();
        acc.conv_bn(self.c1, c_, 1, 1, h, w);
        acc.conv_bn(self.c1, c_, 1, 1, h, w);
        for _ in 0..self.n {
            self.bottleneck().macs(c_in, h, w, acc);
        }
        acc.conv_bn(2 * c_, self.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c_ = expand(self.c2, self.e, ctx)?;
        if !c_.is_multiple_of(2) || c_ < 4 {
            return Err(ctx.err(format!(
                "hidden width {c_}: GhostBottleneck halves it twice, so it must be even and at least 4"
            )));
        }
        Ok(())
    }

    fn build(&self, device: &Device) -> C3Ghost {
        let c_ = self.hidden();
        C3Ghost {
            cv1: Conv::simple(self.c1, c_, 1, 1, self.act, device),
            cv2: Conv::simple(self.c1, c_, 1, 1, self.act, device),
            cv3: Conv::simple(2 * c_, self.c2, 1, 1, self.act, device),
            m: (0..self.n)
                .map(|_| self.bottleneck().build(device))
                .collect(),
        }
    }
}

#[derive(Module, Debug)]
pub struct C3Ghost {
    pub cv1: Conv,
    pub cv2: Conv,
    pub cv3: Conv,
    pub m: Vec<GhostBottleneck>,
}

impl BlockModule for C3Ghost {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut a = self.cv1.forward(x.clone());
        for m in &self.m {
            a = m.forward(a);
        }
        self.cv3
            .forward(Tensor::cat(vec![a, self.cv2.forward(x)], 1))
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self.cv3 = self.cv3.fuse();
        self.m = self.m.into_iter().map(GhostBottleneck::fuse).collect();
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let mut a = self.cv1.lower(l, x)?;
        for m in &self.m {
            a = m.lower(l, &a)?;
        }
        let b = self.cv2.lower(l, x)?;
        let cat = l.concat(&[a, b]);
        self.cv3.lower(l, &cat)
    }
}

impl Named for C3Ghost {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
        self.cv3.visit_named(&key(prefix, "cv3"), f);
        visit_list(&mut self.m, &key(prefix, "m"), f);
    }
}
