//! The `Detect` head: per level a box branch (`cv2`) and a class branch (`cv3`), each Conv 3x3 -> Conv 3x3 ->
//! Conv2d 1x1 (v3/v5/v8, Ultralytics' `legacy`), or since 8.4 (YOLO11) a class branch of depthwise 3x3 +
//! pointwise convs twice, and the DFL decode of the box logits.

use super::conv::Conv;
use super::BlockModule;
use crate::error::Result;
use crate::lowering::Lowering;
use crate::nn::{Act, Conv2d, FixedConv};
use crate::shapes::Macs;
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};

/// The hidden widths of the box and class branches: `(c2, c3)`.
pub fn branch_widths(nc: usize, reg_max: usize, ch: &[usize]) -> (usize, usize) {
    let c2 = 16.max(ch[0] / 4).max(reg_max * 4);
    let c3 = ch[0].max(nc.min(100));
    (c2, c3)
}

/// The head's multiply-accumulates for input maps of `sizes[i]` with `ch[i]` channels.
pub fn macs(
    nc: usize,
    reg_max: usize,
    ch: &[usize],
    legacy: bool,
    sizes: &[(usize, usize)],
    acc: &mut Macs,
) {
    let (c2, c3) = branch_widths(nc, reg_max, ch);
    for (&c, &(fh, fw)) in ch.iter().zip(sizes) {
        acc.conv_bn(c, c2, 3, 1, fh, fw);
        acc.conv_bn(c2, c2, 3, 1, fh, fw);
        acc.conv(c2, 4 * reg_max, 1, 1, fh, fw);
        if legacy {
            acc.conv_bn(c, c3, 3, 1, fh, fw);
            acc.conv_bn(c3, c3, 3, 1, fh, fw);
        } else {
            acc.conv_bn(c, c, 3, c, fh, fw);
            acc.conv_bn(c, c3, 1, 1, fh, fw);
            acc.conv_bn(c3, c3, 3, c3, fh, fw);
            acc.conv_bn(c3, c3, 1, 1, fh, fw);
        }
        acc.conv(c3, nc, 1, 1, fh, fw);
    }
}

/// One stage of a head branch: a Conv 3x3, or in the 8.4 class branch `nn.Sequential(DWConv 3x3, Conv 1x1)`.
/// A head holds six of them, built once: the size difference is not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Stage {
    Conv(Conv),
    Depthwise((Conv, Conv)),
}

impl Stage {
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Stage::Conv(c) => c.forward(x),
            Stage::Depthwise((dw, pw)) => pw.forward(dw.forward(x)),
        }
    }

    pub fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        match self {
            Stage::Conv(c) => c.lower(l, x),
            Stage::Depthwise((dw, pw)) => {
                let y = dw.lower(l, x)?;
                pw.lower(l, &y)
            }
        }
    }

    pub fn fuse(self) -> Stage {
        match self {
            Stage::Conv(c) => Stage::Conv(c.fuse()),
            Stage::Depthwise((dw, pw)) => Stage::Depthwise((dw.fuse(), pw.fuse())),
        }
    }
}

/// One detection level's branch, Ultralytics' `nn.Sequential(stage, stage, nn.Conv2d 1x1)`.
pub type HeadBranch = (Stage, Stage, Conv2d);

/// Conv(3x3) -> Conv(3x3) -> Conv2d(1x1, bias): every box branch, and the class branch of v3/v5/v8.
pub fn head_branch(cin: usize, c: usize, cout: usize, act: Act, device: &Device) -> HeadBranch {
    (
        Stage::Conv(Conv::simple(cin, c, 3, 1, act, device)),
        Stage::Conv(Conv::simple(c, c, 3, 1, act, device)),
        Conv2d::new(c, cout, 1, 1, 0, 1, 1, true, device),
    )
}

/// The 8.4 class branch: `[DWConv(x, x, 3), Conv(x, c, 1)], [DWConv(c, c, 3), Conv(c, c, 1)], Conv2d`.
pub fn depthwise_branch(
    cin: usize,
    c: usize,
    cout: usize,
    act: Act,
    device: &Device,
) -> HeadBranch {
    let dw = |c: usize| Conv::new(c, c, 3, 1, 1, c, 1, act, device);
    (
        Stage::Depthwise((dw(cin), Conv::simple(cin, c, 1, 1, act, device))),
        Stage::Depthwise((dw(c), Conv::simple(c, c, 1, 1, act, device))),
        Conv2d::new(c, cout, 1, 1, 0, 1, 1, true, device),
    )
}

fn branch_forward((s0, s1, out): &HeadBranch, x: Tensor<4>) -> Tensor<4> {
    out.forward(s1.forward(s0.forward(x)))
}

fn branch_lower<L: Lowering>((s0, s1, out): &HeadBranch, l: &mut L, x: &L::V) -> Result<L::V> {
    let y = s0.lower(l, x)?;
    let y = s1.lower(l, &y)?;
    Ok(l.conv2d(&y, out))
}

fn branch_fuse((s0, s1, out): HeadBranch) -> HeadBranch {
    (s0.fuse(), s1.fuse(), out)
}

/// Ultralytics' `DFL` module: its one fixed conv.
#[derive(Module, Debug)]
pub struct Dfl {
    pub conv: FixedConv,
}

/// The Detect head with DFL box decoding.
#[derive(Module, Debug)]
pub struct Detect {
    pub cv2: Vec<HeadBranch>,
    pub cv3: Vec<HeadBranch>,
    /// The frozen DFL projection (weights 0..reg_max-1), kept as a tensor so it is saved like Ultralytics does.
    pub dfl: Dfl,
    pub nc: usize,
    pub reg_max: usize,
    #[module(skip)]
    pub strides: Vec<f32>,
}

impl Detect {
    pub fn new(
        nc: usize,
        reg_max: usize,
        ch: &[usize],
        strides: Vec<f32>,
        legacy: bool,
        act: Act,
        device: &Device,
    ) -> Self {
        let (c2, c3) = branch_widths(nc, reg_max, ch);
        let mut cv2: Vec<HeadBranch> = ch
            .iter()
            .map(|&x| head_branch(x, c2, 4 * reg_max, act, device))
            .collect();
        let mut cv3: Vec<HeadBranch> = ch
            .iter()
            .map(|&x| {
                if legacy {
                    head_branch(x, c3, nc, act, device)
                } else {
                    depthwise_branch(x, c3, nc, act, device)
                }
            })
            .collect();
        // Ultralytics' bias_init: box logits 2.0, class prior ~5 objects per 640 image.
        for (i, (a, b)) in cv2.iter_mut().zip(cv3.iter_mut()).enumerate() {
            a.2.bias = Some(Param::from_tensor(Tensor::full([4 * reg_max], 2.0, device)));
            let s = strides[i] as f64;
            let prior = (5.0 / nc as f64 / (640.0 / s).powi(2)).ln();
            b.2.bias = Some(Param::from_tensor(Tensor::full([nc], prior, device)));
        }
        let proj: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
        let dfl = Tensor::<1>::from_floats(proj.as_slice(), device).reshape([1, reg_max, 1, 1]);
        Detect {
            cv2,
            cv3,
            dfl: Dfl {
                conv: FixedConv {
                    weight: Param::from_tensor(dfl).set_require_grad(false),
                },
            },
            nc,
            reg_max,
            strides,
        }
    }

    /// Per-level raw maps `(B, 4*reg_max + nc, H, W)`: box logits first, then class logits.
    pub fn forward_raw(&self, xs: Vec<Tensor<4>>) -> Vec<Tensor<4>> {
        xs.into_iter()
            .enumerate()
            .map(|(i, x)| {
                Tensor::cat(
                    vec![
                        branch_forward(&self.cv2[i], x.clone()),
                        branch_forward(&self.cv3[i], x),
                    ],
                    1,
                )
            })
            .collect()
    }

    /// The raw map of each level (box logits, then class logits) as primitive operations.
    pub fn lower<L: Lowering>(&self, l: &mut L, xs: &[L::V]) -> Result<Vec<L::V>> {
        xs.iter()
            .zip(self.cv2.iter().zip(&self.cv3))
            .map(|(x, (bx, cl))| {
                let b = branch_lower(bx, l, x)?;
                let c = branch_lower(cl, l, x)?;
                Ok(l.concat(&[b, c]))
            })
            .collect()
    }

    /// Decodes raw maps to `(B, 4 + nc, A)`: cx, cy, w, h in input pixels, then sigmoid scores.
    pub fn decode(&self, raw: &[Tensor<4>]) -> Tensor<3> {
        let device = raw[0].device();
        let b = raw[0].dims()[0];
        let x = flatten_levels(raw);
        let a = x.dims()[2];
        let boxes = x.clone().narrow(1, 0, 4 * self.reg_max);
        let cls = x.narrow(1, 4 * self.reg_max, self.nc);
        let dist = softmax(boxes.reshape([b, 4, self.reg_max, a]), 2);
        let proj = self.dfl.conv.weight.val().reshape([1, 1, self.reg_max, 1]);
        let dist: Tensor<3> = (dist * proj).sum_dim(2).reshape([b, 4, a]);
        let (pts, strides) = anchor_grid(&map_sizes(raw), &self.strides);
        // Channel-major (x row, then y row) to broadcast against (B, 2, A).
        let xy: Vec<f32> = pts
            .iter()
            .map(|p| p[0])
            .chain(pts.iter().map(|p| p[1]))
            .collect();
        // In the maps' float type (a float64 reference model decodes in float64 too).
        let dtype = dist.dtype();
        let anc = Tensor::<1>::from_floats(xy.as_slice(), &device)
            .cast(dtype)
            .reshape([1, 2, a]);
        let st = Tensor::<1>::from_floats(strides.as_slice(), &device)
            .cast(dtype)
            .reshape([1, 1, a]);
        let lt = dist.clone().narrow(1, 0, 2);
        let rb = dist.narrow(1, 2, 2);
        let x1y1 = anc.clone() - lt;
        let x2y2 = anc + rb;
        let c = (x1y1.clone() + x2y2.clone()) / 2.0;
        let wh = x2y2 - x1y1;
        let bx = Tensor::cat(vec![c, wh], 1) * st;
        Tensor::cat(vec![bx, sigmoid(cls)], 1)
    }
}

/// The per-level raw maps `(B, C, H_i, W_i)` joined along anchors: `(B, C, A)`, P3 first, row-major.
pub fn flatten_levels(raw: &[Tensor<4>]) -> Tensor<3> {
    let flat: Vec<Tensor<3>> = raw
        .iter()
        .map(|t| {
            let [b, c, h, w] = t.dims();
            t.clone().reshape([b, c, h * w])
        })
        .collect();
    Tensor::cat(flat, 2)
}

/// Anchor centres in grid units (cell centres, levels in order, row-major) and each anchor's stride, for
/// feature maps of the given `(h, w)` sizes (Ultralytics' `make_anchors`).
pub fn anchor_grid(sizes: &[(usize, usize)], strides: &[f32]) -> (Vec<[f32; 2]>, Vec<f32>) {
    let mut pts = Vec::new();
    let mut st = Vec::new();
    for (&(h, w), &s) in sizes.iter().zip(strides) {
        for y in 0..h {
            for x in 0..w {
                pts.push([x as f32 + 0.5, y as f32 + 0.5]);
                st.push(s);
            }
        }
    }
    (pts, st)
}

/// The `(h, w)` of each raw head map.
pub fn map_sizes(raw: &[Tensor<4>]) -> Vec<(usize, usize)> {
    raw.iter().map(|t| (t.dims()[2], t.dims()[3])).collect()
}

impl Detect {
    /// The ids of the class branches' tensors (`cv3`), which MuSGD trains at a boosted rate.
    pub fn class_branch_ids(&self) -> Vec<ParamId> {
        struct Ids(Vec<ParamId>);
        impl ModuleVisitor for Ids {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                self.0.push(param.id);
            }
        }
        let mut ids = Ids(Vec::new());
        self.cv3.visit(&mut ids);
        ids.0
    }
}

impl Detect {
    /// BatchNorm folded into every branch conv. Idempotent.
    pub fn fuse(mut self) -> Detect {
        self.cv2 = self.cv2.into_iter().map(branch_fuse).collect();
        self.cv3 = self.cv3.into_iter().map(branch_fuse).collect();
        self
    }
}
