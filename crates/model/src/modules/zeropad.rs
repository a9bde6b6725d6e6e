//! `nn.ZeroPad2d` as a YAML row (YOLOv3-tiny pads right and bottom before its last stride-1 pool).

use super::{BlockModule, BlockSpec, Role, Row, MAX_KERNEL};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::shapes::Macs;
use crate::yaml_args::{as_usize, check_arity, Arg, Ctx};
use burn::module::Module;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// `nn.ZeroPad2d(padding)`: one size for all sides, or `[left, right, top, bottom]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ZeroPadSpec {
    pub c: usize,
    /// `(left, right, top, bottom)`.
    pub pad: (usize, usize, usize, usize),
}

impl BlockSpec for ZeroPadSpec {
    type Module = ZeroPad;
    const ROLE: Role = Role::SameChannels;
    const TYPE_PATH: &'static str = "torch.nn.modules.padding.ZeroPad2d";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(
            r,
            1,
            1,
            "[padding] (an int or [left, right, top, bottom])",
            ctx,
        )?;
        let pad = match &r[0] {
            Arg::List(v) if v.len() == 4 => {
                let p = v
                    .iter()
                    .map(|a| as_usize(a, "padding", ctx))
                    .collect::<Result<Vec<_>>>()?;
                (p[0], p[1], p[2], p[3])
            }
            Arg::List(v) => {
                return Err(ctx.err(format!(
                    "padding: expected 4 sizes [left, right, top, bottom], got {}",
                    v.len()
                )))
            }
            a => {
                let p = as_usize(a, "padding", ctx)?;
                (p, p, p, p)
            }
        };
        Ok(ZeroPadSpec { c: row.c1, pad })
    }

    fn c_out(&self) -> usize {
        self.c
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let (l, r, t, b) = self.pad;
        (h + t + b, w + l + r)
    }

    fn macs(&self, _c_in: usize, _h: usize, _w: usize, _acc: &mut Macs) {}

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let (l, r, t, b) = self.pad;
        if [l, r, t, b].iter().any(|&p| p > MAX_KERNEL) {
            return Err(ctx.err(format!("padding {:?}: at most {MAX_KERNEL}", self.pad)));
        }
        Ok(())
    }

    fn build(&self, _device: &Device) -> ZeroPad {
        let (left, right, top, bottom) = self.pad;
        ZeroPad {
            left,
            right,
            top,
            bottom,
        }
    }
}

#[derive(Module, Debug)]
pub struct ZeroPad {
    pub left: usize,
    pub right: usize,
    pub top: usize,
    pub bottom: usize,
}

impl BlockModule for ZeroPad {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        x.pad(
            (self.left, self.right, self.top, self.bottom),
            PadMode::Constant(0.0),
        )
    }

    fn fuse(self) -> Self {
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        Ok(l.zero_pad(x, (self.left, self.right, self.top, self.bottom)))
    }
}
