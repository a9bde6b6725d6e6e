//! YOLOv8's `C2f`: CSP bottleneck with two convolutions, every bottleneck's output joined.

use super::bottleneck::Bottleneck;
use super::conv::Conv;
use super::{check_groups, csp_args, expand, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{key, visit_list, Act, Named, Slot};
use crate::shapes::Macs;
use crate::yaml_args::Ctx;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `C2f(c1, c2, n=1, shortcut=False, g=1, e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C2fSpec {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub shortcut: bool,
    pub g: usize,
    pub e: f64,
    pub act: Act,
}

impl BlockSpec for C2fSpec {
    type Module = C2f;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C2f";

    fn parse(row: &Row) -> Result<Self> {
        let (shortcut, g, e) = csp_args(row, false)?;
        Ok(C2fSpec {
            c1: row.c1,
            c2: row.c2,
            n: row.n,
            shortcut,
            g,
            e,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let (c, n) = ((self.c2 as f64 * self.e) as usize, self.n);
        acc.conv_bn(self.c1, 2 * c, 1, 1, h, w);
        for _ in 0..n {
            acc.conv_bn(c, c, 3, 1, h, w);
            acc.conv_bn(c, c, 3, self.g, h, w);
        }
        acc.conv_bn((2 + n) * c, self.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c = expand(self.c2, self.e, ctx)?;
        check_groups(self.g, c, c, ctx)
    }

    fn build(&self, device: &Device) -> C2f {
        let s = self;
        C2f::new(s.c1, s.c2, s.n, s.shortcut, s.g, s.e, s.act, device)
    }
}

#[derive(Module, Debug)]
pub struct C2f {
    pub cv1: Conv,
    pub cv2: Conv,
    pub m: Vec<Bottleneck>,
    pub c: usize,
}

impl C2f {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        act: Act,
        device: &Device,
    ) -> Self {
        let c = (c2 as f64 * e) as usize;
        C2f {
            cv1: Conv::simple(c1, 2 * c, 1, 1, act, device),
            cv2: Conv::simple((2 + n) * c, c2, 1, 1, act, device),
            m: (0..n)
                .map(|_| Bottleneck::new(c, c, shortcut, g, (3, 3), 1.0, act, device))
                .collect(),
            c,
        }
    }
}

impl BlockModule for C2f {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        let mut ys = vec![y.clone().narrow(1, 0, self.c), y.narrow(1, self.c, self.c)];
        for m in &self.m {
            let last = ys.last().expect("two chunks present").clone();
            ys.push(m.forward(last));
        }
        self.cv2.forward(Tensor::cat(ys, 1))
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self.m = self.m.into_iter().map(Bottleneck::fuse).collect();
        self
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

impl Named for C2f {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
        visit_list(&mut self.m, &key(prefix, "m"), f);
    }
}
