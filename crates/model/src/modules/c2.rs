//! Ultralytics `C2`: CSP bottleneck with two convolutions; the bottlenecks run on one half, the other half
//! joins unchanged (the YOLOv8-P6 neck).

use super::bottleneck::Bottleneck;
use super::conv::Conv;
use super::{BlockModule, BlockSpec, CspArgs, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C2(c1, c2, n=1, shortcut=True, g=1, e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C2Spec(pub CspArgs);

impl BlockSpec for C2Spec {
    type Module = C2;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C2";

    fn parse(row: &Row) -> Result<Self> {
        CspArgs::parse(row, true).map(C2Spec)
    }

    fn c_out(&self) -> usize {
        self.0.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let a = &self.0;
        let c = a.hidden();
        acc.conv_bn(a.c1, 2 * c, 1, 1, h, w);
        for _ in 0..a.n {
            acc.conv_bn(c, c, 3, 1, h, w);
            acc.conv_bn(c, c, 3, a.g, h, w);
        }
        acc.conv_bn(2 * c, a.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        self.0.check(ctx)
    }

    fn build(&self, device: &Device) -> C2 {
        let a = &self.0;
        let c = a.hidden();
        C2 {
            cv1: Conv::simple(a.c1, 2 * c, 1, 1, a.act, device),
            cv2: Conv::simple(2 * c, a.c2, 1, 1, a.act, device),
            m: (0..a.n)
                .map(|_| Bottleneck::new(c, c, a.shortcut, a.g, (3, 3), 1.0, a.act, device))
                .collect(),
            c,
        }
    }
}

#[derive(Module, Debug)]
pub struct C2 {
    pub cv1: Conv,
    pub cv2: Conv,
    pub m: Vec<Bottleneck>,
    pub c: usize,
}

impl BlockModule for C2 {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        let mut a = y.clone().narrow(1, 0, self.c);
        for m in &self.m {
            a = m.forward(a);
        }
        let b = y.narrow(1, self.c, self.c);
        self.cv2.forward(Tensor::cat(vec![a, b], 1))
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self.m = self.m.into_iter().map(Bottleneck::fuse).collect();
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let halves = l.split(&y, &[self.c, self.c]);
        let mut a = halves[0].clone();
        for m in &self.m {
            a = m.lower(l, &a)?;
        }
        let cat = l.concat(&[a, halves[1].clone()]);
        self.cv2.lower(l, &cat)
    }
}
