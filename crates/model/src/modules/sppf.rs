//! `SPPF`: spatial pyramid pooling, fast (`n` max pools in series, all joined).

use super::conv::Conv;
use super::{check_channels, check_kernel, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{same_max_pool, Act};
use crate::shapes::Macs;
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Ctx};
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// `SPPF(c1, c2, k=5, n=3, shortcut=False)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SppfSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub n: usize,
    pub shortcut: bool,
    /// parse_model gives the classic rows (<= 3 constructor args) the model's activation on cv1; newer ones
    /// have none there.
    pub cv1_act: Act,
    pub act: Act,
}

impl BlockSpec for SppfSpec {
    type Module = Sppf;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.SPPF";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 3, "[c2, k=5, n=3, shortcut=False]", ctx)?;
        let k = optional(r, 0, 5, |a| as_usize(a, "k", ctx))?;
        let n = optional(r, 1, 3, |a| as_usize(a, "n", ctx))?;
        let shortcut = optional(r, 2, false, |a| as_bool(a, "shortcut", ctx))?;
        // parse_model restores SiLU on cv1 for the classic rows (<= 3 constructor args).
        let cv1_act = row.act.or_none(r.len() + 2 <= 3);
        Ok(SppfSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            n,
            shortcut,
            cv1_act,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        pyramid_macs(self.c1, self.c2, self.n, h, w, acc);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        check_pyramid(self.c1, &[self.k], ctx)
    }

    fn build(&self, device: &Device) -> Sppf {
        let s = self;
        Sppf::new(s.c1, s.c2, s.k, s.n, s.shortcut, [s.cv1_act, s.act], device)
    }
}

/// The two convs of SPP and SPPF: `c1 -> c1 / 2`, then the `pools + 1` joined maps `-> c2`.
pub(crate) fn pyramid_macs(c1: usize, c2: usize, pools: usize, h: usize, w: usize, acc: &mut Macs) {
    let c_ = c1 / 2;
    acc.conv_bn(c1, c_, 1, 1, h, w);
    acc.conv_bn(c_ * (pools + 1), c2, 1, 1, h, w);
}

/// SPP's and SPPF's pools run with stride 1 and padding `k // 2`: an even kernel would change the map size.
pub(crate) fn check_pyramid(c1: usize, kernels: &[usize], ctx: &Ctx) -> Result<()> {
    for &k in kernels {
        check_kernel("k", k, ctx)?;
        if k.is_multiple_of(2) {
            return Err(ctx.err(format!(
                "k {k}: the pools use stride 1 and padding k // 2, so an even k changes the map size; use an odd k"
            )));
        }
    }
    check_channels("c1 // 2", c1 / 2, ctx)
}

#[derive(Module, Debug)]
pub struct Sppf {
    pub cv1: Conv,
    pub cv2: Conv,
    pub k: usize,
    pub n: usize,
    pub add: bool,
}

impl Sppf {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        n: usize,
        shortcut: bool,
        [cv1_act, act]: [Act; 2],
        device: &Device,
    ) -> Self {
        let c_ = c1 / 2;
        Sppf {
            cv1: Conv::new(c1, c_, 1, 1, 0, 1, 1, cv1_act, device),
            cv2: Conv::simple(c_ * (n + 1), c2, 1, 1, act, device),
            k,
            n,
            add: shortcut && c1 == c2,
        }
    }
}

impl BlockModule for Sppf {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut ys = vec![self.cv1.forward(x.clone())];
        for _ in 0..self.n {
            let last = ys.last().expect("cv1 output present").clone();
            ys.push(same_max_pool(last, self.k));
        }
        let y = self.cv2.forward(Tensor::cat(ys, 1));
        if self.add {
            y + x
        } else {
            y
        }
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let mut ys = vec![self.cv1.lower(l, x)?];
        for _ in 0..self.n {
            let last = ys.last().expect("cv1 output").clone();
            ys.push(l.max_pool(&last, self.k, 1, self.k / 2));
        }
        let cat = l.concat(&ys);
        let y = self.cv2.lower(l, &cat)?;
        Ok(if self.add { l.add(&y, x) } else { y })
    }
}
