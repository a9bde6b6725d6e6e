//! The operations the engine runs: kernels on channel slices ([`View`]) of map buffers. Made by
//! [`super::plan`] from the optimized graph; sizes follow from the input's at run time.

use super::attention::{attention, AttentionShape};
use super::conv::PackedConv;
use super::depthwise::PackedDepthwise;
use super::graph::ConvWeights;
use super::ops::{self, Affine, Ew, EwJob};
use super::qconv::{PackedQConv, QOutput, QuantIn};
use super::{Act, Dst, Level, Maps, Src, Unary};
use model::burn::module::ParamId;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::nn::Conv2d;

/// A channel slice of a map buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub buf: usize,
    pub off: usize,
}

#[derive(Debug, Clone)]
pub enum Op {
    Conv {
        pc: PackedConv,
        src: View,
        dst: View,
        act: Act,
        add: Option<View>,
        /// The parameters of a dense convolution's weights (none for a group's share): calibration reads
        /// their inputs.
        ids: Vec<ParamId>,
        /// The float weights, kept by an engine made for calibration (to measure each layer's INT8 error).
        raw: Option<Box<ConvWeights>>,
        /// The output is a u8 map with this quantization (the direct kernel only).
        out: Option<QuantIn>,
    },
    /// An INT8 convolution: the input quantized into the workspace's byte buffer first, unless it is a u8
    /// map already ([`super::qmaps`]).
    QConv {
        pq: PackedQConv,
        src: View,
        dst: View,
        act: Act,
        add: Option<View>,
        /// The parameters of its weights (several when stacked).
        ids: Vec<ParamId>,
        /// The input is a u8 map (quantized with `pq.x`).
        src_u8: bool,
        /// The output is a u8 map with this quantization.
        out: Option<QuantIn>,
    },
    /// Float, or INT8 (`pd.int8`: the input quantized into the workspace's byte buffer first unless it is
    /// a u8 map).
    Depthwise {
        pd: PackedDepthwise,
        src: View,
        dst: View,
        act: Act,
        /// The parameters of its weights (calibration reads their inputs).
        ids: Vec<ParamId>,
        /// The float weights, kept by an engine made for calibration.
        raw: Option<Box<ConvWeights>>,
        /// The input is a u8 map (quantized with `pd.int8`'s `x`).
        src_u8: bool,
        /// The output is a u8 map with this quantization.
        out: Option<QuantIn>,
    },
    /// A convolution without an engine kernel (dilation), run by burn on this one operation.
    Fallback {
        conv: Conv2d,
        act: Act,
        src: View,
        dst: View,
    },
    Col2Im {
        k: usize,
        s: usize,
        p: usize,
        bias: Vec<f32>,
        src: View,
        dst: View,
    },
    Affine {
        a: Affine,
        src: View,
        dst: View,
        act: Act,
        add: Option<View>,
    },
    /// `f(a)`, `act(a + b)` or `act(a * b)` (a one-pixel `b` is broadcast: a squeeze-excite gate).
    Elementwise {
        kind: EwKind,
        c: usize,
        act: Act,
        a: View,
        b: Option<View>,
        dst: View,
    },
    MaxPool {
        k: usize,
        s: usize,
        p: usize,
        c: usize,
        src: View,
        dst: View,
        /// On u8 maps.
        u8: bool,
    },
    ZeroPad {
        pad: (usize, usize, usize, usize),
        c: usize,
        src: View,
        dst: View,
    },
    Upsample {
        s: usize,
        c: usize,
        src: View,
        dst: View,
        /// On u8 maps.
        u8: bool,
    },
    GlobalAvgPool {
        c: usize,
        src: View,
        dst: View,
    },
    Attention {
        shape: AttentionShape,
        src: View,
        dst: View,
    },
    Copy {
        c: usize,
        src: View,
        dst: View,
        /// On u8 maps.
        u8: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EwKind {
    Unary(Unary),
    Add,
    Mul,
}

/// A convolution's output size, or why the map is too small for its kernel.
fn conv_out(
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    (h, w): (usize, usize),
) -> Result<(usize, usize), String> {
    let span = d * (k - 1) + 1;
    if h + 2 * p < span || w + 2 * p < span {
        return Err(format!("a {h}x{w} map is smaller than a {k}x{k} kernel"));
    }
    Ok(((h + 2 * p - span) / s + 1, (w + 2 * p - span) / s + 1))
}

impl Op {
    /// The buffers read, first the one whose size the output follows.
    pub fn reads(&self) -> Vec<usize> {
        match self {
            Op::Conv { src, add, .. }
            | Op::QConv { src, add, .. }
            | Op::Affine { src, add, .. } => {
                std::iter::once(src.buf).chain(add.map(|a| a.buf)).collect()
            }
            Op::Elementwise { a, b, .. } => {
                std::iter::once(a.buf).chain(b.map(|b| b.buf)).collect()
            }
            Op::Depthwise { src, .. }
            | Op::Fallback { src, .. }
            | Op::Col2Im { src, .. }
            | Op::MaxPool { src, .. }
            | Op::ZeroPad { src, .. }
            | Op::Upsample { src, .. }
            | Op::GlobalAvgPool { src, .. }
            | Op::Attention { src, .. }
            | Op::Copy { src, .. } => vec![src.buf],
        }
    }

    pub fn writes(&self) -> usize {
        self.dst().buf
    }

    fn dst(&self) -> View {
        match self {
            Op::Conv { dst, .. }
            | Op::QConv { dst, .. }
            | Op::Depthwise { dst, .. }
            | Op::Fallback { dst, .. }
            | Op::Col2Im { dst, .. }
            | Op::Affine { dst, .. }
            | Op::Elementwise { dst, .. }
            | Op::MaxPool { dst, .. }
            | Op::ZeroPad { dst, .. }
            | Op::Upsample { dst, .. }
            | Op::GlobalAvgPool { dst, .. }
            | Op::Attention { dst, .. }
            | Op::Copy { dst, .. } => *dst,
        }
    }

    /// The output size for inputs of `dims` (per buffer), or why these sizes cannot run.
    pub fn out_size(&self, dims: &[Option<(usize, usize)>]) -> Result<(usize, usize), String> {
        let reads = self.reads();
        let size =
            |b: usize| dims[b].ok_or_else(|| "a map is read before it is written".to_string());
        let x = size(reads[0])?;
        let out = match self {
            Op::Conv { pc, .. } => conv_out(pc.k, pc.s, pc.p, 1, x)?,
            Op::QConv { pq, .. } => conv_out(pq.k, pq.s, pq.p, 1, x)?,
            Op::Depthwise { pd, .. } => conv_out(pd.k, pd.s, pd.p, 1, x)?,
            Op::Fallback { conv, .. } => {
                let k = conv.weight.shape().dims::<4>()[2];
                conv_out(k, conv.stride, conv.padding, conv.dilation, x)?
            }
            Op::Col2Im { k, s, p, .. } => {
                let o = |v: usize| ((v.max(1) - 1) * s + k).checked_sub(2 * p);
                match (o(x.0), o(x.1)) {
                    (Some(h), Some(w)) if h > 0 && w > 0 => (h, w),
                    _ => return Err(format!("a {}x{} map is too small to upsample", x.0, x.1)),
                }
            }
            Op::MaxPool { k, s, p, .. } => conv_out(*k, *s, *p, 1, x)?,
            Op::ZeroPad { pad, .. } => (x.0 + pad.2 + pad.3, x.1 + pad.0 + pad.1),
            Op::Upsample { s, .. } => (x.0 * s, x.1 * s),
            Op::GlobalAvgPool { .. } => (1, 1),
            Op::Affine { .. } | Op::Elementwise { .. } | Op::Attention { .. } | Op::Copy { .. } => {
                x
            }
        };
        if let Some(&second) = reads.get(1) {
            let y = size(second)?;
            let gate = matches!(
                self,
                Op::Elementwise {
                    kind: EwKind::Mul,
                    ..
                }
            );
            let fits = y == out || (gate && y == (1, 1));
            if !fits {
                return Err(format!(
                    "an elementwise operation on maps of different sizes ({}x{} and {}x{})",
                    out.0, out.1, y.0, y.1
                ));
            }
        }
        Ok(out)
    }

    /// What the operation is, for the per-operation profile.
    pub fn describe(&self) -> String {
        let plus = |add: &Option<View>| if add.is_some() { " +add" } else { "" };
        let u8s = |u8: bool| if u8 { " u8" } else { "" };
        match self {
            Op::Conv {
                pc, act, add, out, ..
            } => format!(
                "conv {k}x{k}/{s} {}->{} {act:?}{}{}",
                pc.cin,
                pc.cout,
                plus(add),
                if out.is_some() { " u8 out" } else { "" },
                k = pc.k,
                s = pc.s
            ),
            Op::QConv {
                pq,
                act,
                add,
                src_u8,
                out,
                ..
            } => format!(
                "int8 conv {k}x{k}/{s} {}->{} {act:?}{}{}{}",
                pq.cin,
                pq.cout,
                plus(add),
                if *src_u8 { " u8 in" } else { "" },
                if out.is_some() { " u8 out" } else { "" },
                k = pq.k,
                s = pq.s
            ),
            Op::Depthwise {
                pd,
                act,
                src_u8,
                out,
                ..
            } => format!(
                "{}depthwise {k}x{k}/{s} {} {act:?}{}{}",
                if pd.int8.is_some() { "int8 " } else { "" },
                pd.c,
                if *src_u8 { " u8 in" } else { "" },
                if out.is_some() { " u8 out" } else { "" },
                k = pd.k,
                s = pd.s
            ),
            Op::Fallback { conv, act, .. } => {
                let [co, ci, k, _] = conv.weight.shape().dims::<4>();
                format!("conv {k}x{k} d{} {ci}->{co} {act:?} (burn)", conv.dilation)
            }
            Op::Col2Im { k, s, bias, .. } => {
                format!("transposed conv gather {k}x{k}/{s} {}", bias.len())
            }
            Op::Affine { a, act, add, .. } => format!("batchnorm {} {act:?}{}", a.c, plus(add)),
            Op::Elementwise { kind, c, act, .. } => format!("{kind:?} {c} {act:?}"),
            Op::MaxPool { k, s, c, u8, .. } => {
                format!("maxpool {k}x{k}/{s} {c}{}", u8s(*u8))
            }
            Op::ZeroPad { c, pad, .. } => format!("zero pad {pad:?} {c}"),
            Op::Upsample { s, c, u8, .. } => format!("upsample x{s} {c}{}", u8s(*u8)),
            Op::GlobalAvgPool { c, .. } => format!("global average pool {c}"),
            Op::Attention { shape, .. } => format!(
                "attention {} heads x ({} + {})",
                shape.heads, shape.key_dim, shape.head_dim
            ),
            Op::Copy { c, u8, .. } => format!("copy {c}{}", u8s(*u8)),
        }
    }

    /// Runs the operation on the buffers of `maps`.
    pub fn run(&self, level: Level, maps: &Maps, zeros: &[f32], qbuf: &mut [u8], parallel: bool) {
        let src = |v: View| maps.src(v);
        let dst = |v: View| maps.dst(v);
        match self {
            Op::Conv {
                pc,
                src: s,
                dst: d,
                act,
                add,
                out,
                ..
            } => match maps.output(*d, *out) {
                QOutput::Quantized(qd, q) => {
                    pc.run_quantized(src(*s), qd, q, *act, add.map(src), zeros, parallel)
                }
                QOutput::Float(fd) => pc.run(src(*s), fd, *act, add.map(src), zeros, parallel),
            },
            Op::QConv {
                pq,
                src: s,
                dst: d,
                act,
                add,
                src_u8,
                out,
                ..
            } => {
                let (input, output) = (maps.input(*s, *src_u8, qbuf), maps.output(*d, *out));
                pq.run(input, output, *act, add.map(src), parallel)
            }
            Op::Depthwise {
                pd,
                src: s,
                dst: d,
                act,
                src_u8,
                out,
                ..
            } => {
                let (input, output) = (maps.input(*s, *src_u8, qbuf), maps.output(*d, *out));
                pd.run_with(input, output, *act, parallel)
            }
            Op::Fallback {
                conv,
                act,
                src: s,
                dst: d,
            } => fallback_conv(conv, *act, src(*s), dst(*d)),
            Op::Col2Im {
                k,
                s,
                p,
                bias,
                src: x,
                dst: d,
            } => ops::col2im(src(*x), dst(*d), *k, *s, *p, bias, parallel),
            Op::Affine {
                a,
                src: s,
                dst: d,
                act,
                add,
            } => a.run(level, src(*s), dst(*d), *act, add.map(src), parallel),
            Op::Elementwise {
                kind,
                c,
                act,
                a,
                b,
                dst: d,
            } => {
                let (a, b, d) = (src(*a), b.map(src), dst(*d));
                let one_pixel = b.is_some_and(|b| b.h * b.w == 1 && d.h * d.w > 1);
                EwJob {
                    kind: match kind {
                        EwKind::Unary(f) => Ew::Unary(*f),
                        EwKind::Add => Ew::Add,
                        EwKind::Mul if one_pixel => Ew::MulBroadcast,
                        EwKind::Mul => Ew::Mul,
                    },
                    act: *act,
                    c: *c,
                    a,
                    b,
                    dst: d,
                }
                .run(level, parallel)
            }
            Op::MaxPool {
                k,
                s,
                p,
                c,
                src: x,
                dst: d,
                u8,
            } => {
                let window = [*k, *s, *p];
                if *u8 {
                    ops::max_pool(level, maps.qsrc(*x), maps.qdst(*d), *c, window, parallel)
                } else {
                    ops::max_pool(level, src(*x), dst(*d), *c, window, parallel)
                }
            }
            Op::ZeroPad {
                pad,
                c,
                src: x,
                dst: d,
            } => ops::zero_pad(src(*x), dst(*d), *c, *pad),
            Op::Upsample {
                s,
                c,
                src: x,
                dst: d,
                u8,
            } => {
                if *u8 {
                    ops::upsample(maps.qsrc(*x), maps.qdst(*d), *c, *s, parallel)
                } else {
                    ops::upsample(src(*x), dst(*d), *c, *s, parallel)
                }
            }
            Op::GlobalAvgPool { c, src: x, dst: d } => ops::global_avg_pool(src(*x), dst(*d), *c),
            Op::Attention {
                shape,
                src: x,
                dst: d,
            } => attention(level, *shape, src(*x), dst(*d), parallel),
            Op::Copy {
                c,
                src: x,
                dst: d,
                u8,
            } => {
                if *u8 {
                    ops::copy(maps.qsrc(*x), maps.qdst(*d), *c, parallel)
                } else {
                    ops::copy(src(*x), dst(*d), *c, parallel)
                }
            }
        }
    }
}

/// A convolution burn runs for the engine: the view gathered to NCHW, the module's forward, the result
/// written back with the activation.
fn fallback_conv(conv: &Conv2d, act: Act, src: Src, dst: Dst) {
    let [_, cin_g, _, _] = conv.weight.shape().dims::<4>();
    let cin = cin_g * conv.groups;
    let (h, w) = (src.h, src.w);
    let mut x = vec![0.0f32; cin * h * w];
    for p in 0..h * w {
        for c in 0..cin {
            // SAFETY: the view is valid for its geometry and holds at least `cin` channels per pixel.
            x[c * h * w + p] = unsafe { *src.ptr.add(p * src.stride + c) };
        }
    }
    let device = Device::flex();
    let t = Tensor::<4>::from_data(TensorData::new(x, [1, cin, h, w]), &device);
    let y = model::weights::host(conv.forward(t));
    let (cout, n) = (y.shape[1], dst.h * dst.w);
    for p in 0..n {
        for c in 0..cout {
            // SAFETY: as above, for the destination's `cout` channels.
            unsafe { *dst.ptr.add(p * dst.stride + c) = act.scalar(y.data[c * n + p]) };
        }
    }
}
