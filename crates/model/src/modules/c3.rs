//! YOLOv5's `C3`: CSP bottleneck with three convolutions.

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

/// `C3(c1, c2, n=1, shortcut=True, g=1, e=0.5)`.
#[derive(Debug, Clone, PartialEq)]
pub struct C3Spec {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub shortcut: bool,
    pub g: usize,
    pub e: f64,
    pub act: Act,
}

impl BlockSpec for C3Spec {
    type Module = C3;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C3";

    fn parse(row: &Row) -> Result<Self> {
        let (shortcut, g, e) = csp_args(row, true)?;
        Ok(C3Spec {
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
        let c_ = (self.c2 as f64 * self.e) as usize;
        acc.conv_bn(self.c1, c_, 1, 1, h, w);
        acc.conv_bn(self.c1, c_, 1, 1, h, w);
        for _ in 0..self.n {
            acc.conv_bn(c_, c_, 1, 1, h, w);
            acc.conv_bn(c_, c_, 3, self.g, h, w);
        }
        acc.conv_bn(2 * c_, self.c2, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c = expand(self.c2, self.e, ctx)?;
        check_groups(self.g, c, c, ctx)
    }

    fn build(&self, device: &Device) -> C3 {
        let s = self;
        C3::new(s.c1, s.c2, s.n, s.shortcut, s.g, s.e, s.act, device)
    }
}

#[derive(Module, Debug)]
pub struct C3 {
    pub cv1: Conv,
    pub cv2: Conv,
    pub cv3: Conv,
    pub m: Vec<Bottleneck>,
}

impl C3 {
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
        let c_ = (c2 as f64 * e) as usize;
        C3 {
            cv1: Conv::simple(c1, c_, 1, 1, act, device),
            cv2: Conv::simple(c1, c_, 1, 1, act, device),
            cv3: Conv::simple(2 * c_, c2, 1, 1, act, device),
            m: (0..n)
                .map(|_| Bottleneck::new(c_, c_, shortcut, g, (1, 3), 1.0, act, device))
                .collect(),
        }
    }
}

impl BlockModule for C3 {
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
        self.m = self.m.into_iter().map(Bottleneck::fuse).collect();
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

impl Named for C3 {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
        self.cv3.visit_named(&key(prefix, "cv3"), f);
        visit_list(&mut self.m, &key(prefix, "m"), f);
    }
}
