//! YOLO11's `C2PSA`: half the channels pass through `n` position-sensitive attention blocks (multi-head
//! self-attention over the map's pixels with a depthwise positional conv, then a two-conv feed-forward), the
//! other half joins unchanged.

use super::conv::Conv;
use super::{expand, BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::Act;
use crate::shapes::Macs;
use crate::yaml_args::{as_f64, check_arity, optional, Ctx};
use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};

/// `C2PSA(c1, c2, n=1, e=0.5)` (c1 must equal c2).
#[derive(Debug, Clone, PartialEq)]
pub struct C2PsaSpec {
    pub c1: usize,
    pub c2: usize,
    pub n: usize,
    pub e: f64,
    pub act: Act,
}

/// `Attention(dim, num_heads, attn_ratio=0.5)`'s widths: `(heads, key_dim, head_dim)`.
pub fn attention_dims(dim: usize) -> (usize, usize, usize) {
    let heads = (dim / 64).max(1);
    let head_dim = dim / heads;
    let key_dim = (head_dim as f64 * 0.5) as usize;
    (heads, key_dim, head_dim)
}

impl C2PsaSpec {
    fn hidden(&self) -> usize {
        (self.c1 as f64 * self.e) as usize
    }
}

impl BlockSpec for C2PsaSpec {
    type Module = C2Psa;
    const ROLE: Role = Role::C2FirstRepeat;
    const TYPE_PATH: &'static str = "ultralytics.nn.modules.block.C2PSA";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        check_arity(r, 0, 1, "[c2, e=0.5]", ctx)?;
        if row.c1 != row.c2 {
            return Err(ctx.err(format!(
                "C2PSA keeps its width: c1 {} must equal c2 {}",
                row.c1, row.c2
            )));
        }
        Ok(C2PsaSpec {
            c1: row.c1,
            c2: row.c2,
            n: row.n,
            e: optional(r, 0, 0.5, |a| as_f64(a, "e", ctx))?,
            act: row.act,
        })
    }

    fn c_out(&self) -> usize {
        self.c1
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let c = self.hidden();
        let (heads, kd, hd) = attention_dims(c);
        acc.conv_bn(self.c1, 2 * c, 1, 1, h, w);
        for _ in 0..self.n {
            acc.conv_bn(c, c + 2 * kd * heads, 1, 1, h, w);
            acc.attention(heads, kd, hd, h * w);
            acc.conv_bn(c, c, 1, 1, h, w);
            acc.conv_bn(c, c, 3, c, h, w);
            acc.conv_bn(c, 2 * c, 1, 1, h, w);
            acc.conv_bn(2 * c, c, 1, 1, h, w);
        }
        acc.conv_bn(2 * c, self.c1, 1, 1, h, w);
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let c = expand(self.c1, self.e, ctx)?;
        let (heads, kd, _) = attention_dims(c);
        if kd == 0 || !c.is_multiple_of(heads) {
            return Err(ctx.err(format!(
                "hidden width {c}: too narrow for attention ({heads} heads need a key width of at least 1)"
            )));
        }
        Ok(())
    }

    fn build(&self, device: &Device) -> C2Psa {
        let (c, act) = (self.hidden(), self.act);
        let none = Act::Identity;
        let (heads, kd, hd) = attention_dims(c);
        C2Psa {
            cv1: Conv::simple(self.c1, 2 * c, 1, 1, act, device),
            cv2: Conv::simple(2 * c, self.c1, 1, 1, act, device),
            m: (0..self.n)
                .map(|_| PsaBlock {
                    attn: Attention {
                        qkv: Conv::new(c, c + 2 * kd * heads, 1, 1, 0, 1, 1, none, device),
                        proj: Conv::new(c, c, 1, 1, 0, 1, 1, none, device),
                        pe: Conv::new(c, c, 3, 1, 1, c, 1, none, device),
                        heads,
                        key_dim: kd,
                        head_dim: hd,
                    },
                    ffn: (
                        Conv::simple(c, 2 * c, 1, 1, act, device),
                        Conv::new(2 * c, c, 1, 1, 0, 1, 1, none, device),
                    ),
                })
                .collect(),
            c,
        }
    }
}

/// Ultralytics `Attention`: multi-head self-attention over the pixels plus a depthwise conv of the values.
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Conv,
    pub proj: Conv,
    pub pe: Conv,
    pub heads: usize,
    pub key_dim: usize,
    pub head_dim: usize,
}

impl Attention {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let (nh, kd, hd) = (self.heads, self.key_dim, self.head_dim);
        let qkv: Tensor<4> = self.qkv.forward(x).reshape([b, nh, 2 * kd + hd, n]);
        let q = qkv.clone().narrow(2, 0, kd);
        let k = qkv.clone().narrow(2, kd, kd);
        let v = qkv.narrow(2, 2 * kd, hd);
        let scale = (kd as f64).powf(-0.5);
        let attn = softmax((q * scale).swap_dims(2, 3).matmul(k), 3);
        let y: Tensor<4> = v.clone().matmul(attn.swap_dims(2, 3)).reshape([b, c, h, w]);
        let y = y + self.pe.forward(v.reshape([b, c, h, w]));
        self.proj.forward(y)
    }
}

/// Ultralytics `PSABlock`: `x + attn(x)`, then `x + ffn(x)` (`ffn` an `nn.Sequential` of two Convs).
#[derive(Module, Debug)]
pub struct PsaBlock {
    pub attn: Attention,
    pub ffn: (Conv, Conv),
}

#[derive(Module, Debug)]
pub struct C2Psa {
    pub cv1: Conv,
    pub cv2: Conv,
    pub m: Vec<PsaBlock>,
    pub c: usize,
}

impl BlockModule for PsaBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = x.clone() + self.attn.forward(x);
        x.clone() + self.ffn.1.forward(self.ffn.0.forward(x))
    }

    fn fuse(self) -> Self {
        PsaBlock {
            attn: Attention {
                qkv: self.attn.qkv.fuse(),
                proj: self.attn.proj.fuse(),
                pe: self.attn.pe.fuse(),
                ..self.attn
            },
            ffn: (self.ffn.0.fuse(), self.ffn.1.fuse()),
        }
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let a = &self.attn;
        let qkv = a.qkv.lower(l, x)?;
        let (y, v) = l.attention(&qkv, x, a.heads, a.key_dim, a.head_dim);
        let pe = a.pe.lower(l, &v)?;
        let y = l.add(&y, &pe);
        let y = a.proj.lower(l, &y)?;
        let x = l.add(x, &y);
        let f = self.ffn.0.lower(l, &x)?;
        let f = self.ffn.1.lower(l, &f)?;
        Ok(l.add(&x, &f))
    }
}

impl BlockModule for C2Psa {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        let a = y.clone().narrow(1, 0, self.c);
        let mut b = y.narrow(1, self.c, self.c);
        for m in &self.m {
            b = m.forward(b);
        }
        self.cv2.forward(Tensor::cat(vec![a, b], 1))
    }

    fn fuse(mut self) -> Self {
        self.cv1 = self.cv1.fuse();
        self.cv2 = self.cv2.fuse();
        self.m = self.m.into_iter().map(PsaBlock::fuse).collect();
        self
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let y = self.cv1.lower(l, x)?;
        let halves = l.split(&y, &[self.c, self.c]);
        let mut b = halves[1].clone();
        for m in &self.m {
            b = m.lower(l, &b)?;
        }
        let cat = l.concat(&[halves[0].clone(), b]);
        self.cv2.lower(l, &cat)
    }
}
