//! YOLOv5's `C3`: CSP bottleneck with three convolutions, `cv3(cat(m(cv1(x)), cv2(x)))`.

use super::bottleneck::Bottleneck;
use super::conv::Conv;
use super::{BlockModule, BlockSpec, CspArgs, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C3(c1, c2, n=1, shortcut=True, g=1, e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C3Spec(pub CspArgs);

impl BlockSpec for C3Spec {
    type Module = C3;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C3";

    fn parse(row: &Row) -> Result<Self> {
        CspArgs::parse(row, true).map(C3Spec)
    }

    fn c_out(&self) -> usize {
        self.0.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let a = &self.0;
        let c_ = a.hidden();
        acc.conv_bn(a.c1, c_, 1, 1, h, w);
        acc.conv_bn(a.c1, c_, 1, 1, h, w);
        for _ in 0..a.n {
            acc.conv_bn(c_, c_, 1, 1, h, w);
            acc.conv_bn(c_, c_, 3, a.g, h, w);
        }
        acc.conv_bn(2 * c_, a.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        self.0.check(ctx)
    }

    fn build(&self, device: &Device) -> C3 {
        let a = &self.0;
        let c_ = a.hidden();
        C3 {
            cv1: Conv::simple(a.c1, c_, 1, 1, a.act, device),
            cv2: Conv::simple(a.c1, c_, 1, 1, a.act, device),
            cv3: Conv::simple(2 * c_, a.c2, 1, 1, a.act, device),
            m: (0..a.n)
                .map(|_| Bottleneck::new(c_, c_, a.shortcut, a.g, (1, 3), 1.0, a.act, device))
                .collect(),
        }
    }
}

/// A C3 of any inner block (`C3Ghost`'s are GhostBottlenecks, `C3k`'s 3x3 Bottlenecks).
#[derive(Module, Debug)]
pub struct Csp3<M: Module> {
    pub cv1: Conv,
    pub cv2: Conv,
    pub cv3: Conv,
    pub m: Vec<M>,
}

pub type C3 = Csp3<Bottleneck>;

impl<M: Module + BlockModule> BlockModule for Csp3<M> {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut a = self.cv1.forward(x.clone());
        for m in &self.m {
            a = m.forward(a);
        }
        self.cv3
            .forward(Tensor::cat(vec![a, self.cv2.forward(x)], 1))
    }

    fn fuse(self) -> Self {
        Csp3 {
            cv1: self.cv1.fuse(),
            cv2: self.cv2.fuse(),
            cv3: self.cv3.fuse(),
            m: self.m.into_iter().map(M::fuse).collect(),
        }
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
