//! `SPP`: spatial pyramid pooling with parallel max pools (YOLOv3-SPP).

use super::conv::Conv;
use super::sppf::{check_pyramid, pyramid_macs};
use super::{BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{same_max_pool, Act};
use crate::shapes::Macs;
use crate::yaml_args::{as_usize, check_arity, Arg, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `SPP(c1, c2, k=(5, 9, 13))`.
#[derive(Debug, Clone, PartialEq)]
pub struct SppSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: Vec<usize>,
    pub act: Act,
}

impl BlockSpec for SppSpec {
    type Module = Spp;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.SPP";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 1, "[c2, k=(5, 9, 13)]", ctx)?;
        let k = match r.first() {
            None => vec![5, 9, 13],
            Some(Arg::List(v)) => v
                .iter()
                .map(|a| as_usize(a, "k", ctx))
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(ctx.err(format!("k: expected a list of kernel sizes, got {other}")))
            }
        };
        Ok(SppSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        pyramid_macs(self.c1, self.c2, self.k.len(), h, w, acc);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_pyramid(self.c1, &self.k, ctx)
    }

    fn build(&self, device: &Device) -> Spp {
        Spp::new(self.c1, self.c2, self.k.clone(), self.act, device)
    }
}

#[derive(Module, Debug)]
pub struct Spp {
    pub cv1: Conv,
    pub cv2: Conv,
    #[module(skip)]
    pub k: Vec<usize>,
}

impl Spp {
    pub fn new(c1: usize, c2: usize, k: Vec<usize>, act: Act, device: &Device) -> Self {
        let c_ = c1 / 2;
        Spp {
            cv1: Conv::simple(c1, c_, 1, 1, act, device),
            cv2: Conv::simple(c_ * (k.len() + 1), c2, 1, 1, act, device),
            k,
        }
    }
}

impl BlockModule for Spp {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.cv1.forward(x);
        let mut ys = vec![x.clone()];
        for &k in &self.k {
            ys.push(same_max_pool(x.clone(), k));
        }
        self.cv2.forward(Tensor::cat(ys, 1))
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let mut ys = vec![y.clone()];
        for &k in &self.k {
            ys.push(l.max_pool(&y, k, 1, k / 2));
        }
        let cat = l.concat(&ys);
        self.cv2.lower(l, &cat)
    }
}
