//! YOLOv8's `C2f`: CSP bottleneck with two convolutions; every inner block's output is joined.

use super::bottleneck::Bottleneck;
use super::conv::Conv;
use super::{BlockModule, BlockSpec, CspArgs, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C2f(c1, c2, n=1, shortcut=False, g=1, e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C2fSpec(pub CspArgs);

impl BlockSpec for C2fSpec {
    type Module = C2f;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C2f";

    fn parse(row: &Row) -> Result<Self> {
        CspArgs::parse(row, false).map(C2fSpec)
    }

    fn c_out(&self) -> usize {
        self.0.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let a = &self.0;
        let (c, n) = (a.hidden(), a.n);
        acc.conv_bn(a.c1, 2 * c, 1, 1, h, w);
        for _ in 0..n {
            acc.conv_bn(c, c, 3, 1, h, w);
            acc.conv_bn(c, c, 3, a.g, h, w);
        }
        acc.conv_bn((2 + n) * c, a.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        self.0.check(ctx)
    }

    fn build(&self, device: &Device) -> C2f {
        let a = &self.0;
        C2f::new(a.c1, a.c2, a.n, a.shortcut, a.g, a.e, a.act, device)
    }
}

/// The C2f dataflow for any inner block (`C3k2`'s are Bottlenecks or C3ks): `cv1` splits into two halves,
/// each inner block runs on the last output, `cv2` joins them all.
#[derive(Module, Debug)]
pub struct SplitChain<M: Module> {
    pub cv1: Conv,
    pub cv2: Conv,
    pub m: Vec<M>,
    pub c: usize,
}

pub type C2f = SplitChain<Bottleneck>;

impl C2f {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        act: crate::nn::Act,
        device: &Device,
    ) -> Self {
        let c = (c2 as f64 * e) as usize;
        SplitChain {
            cv1: Conv::simple(c1, 2 * c, 1, 1, act, device),
            cv2: Conv::simple((2 + n) * c, c2, 1, 1, act, device),
            m: (0..n)
                .map(|_| Bottleneck::new(c, c, shortcut, g, (3, 3), 1.0, act, device))
                .collect(),
            c,
        }
    }
}

impl<M: Module + BlockModule> BlockModule for SplitChain<M> {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        let mut ys = vec![y.clone().narrow(1, 0, self.c), y.narrow(1, self.c, self.c)];
        for m in &self.m {
            let last = ys.last().expect("two chunks present").clone();
            ys.push(m.forward(last));
        }
        self.cv2.forward(Tensor::cat(ys, 1))
    }

    fn fuse(self) -> Self {
        SplitChain {
            cv1: self.cv1.fuse(),
            cv2: self.cv2.fuse(),
            m: self.m.into_iter().map(M::fuse).collect(),
            c: self.c,
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let mut ys = l.split(&y, &[self.c, self.c]);
        for m in &self.m {
            let last = ys.last().expect("two halves").clone();
            ys.push(m.lower(l, &last)?);
        }
        let cat = l.concat(&ys);
        self.cv2.lower(l, &cat)
    }
}
