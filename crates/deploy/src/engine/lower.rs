//! Lowering a fused [`YoloModel`] to the engine's operation list: every block becomes convolutions on
//! channel slices (C2f's split and join, SPPF's pooled copies and a Concat row's inputs are written in place
//! into one buffer instead of being copied), and the Detect head's two first convolutions per level, which
//! read the same map, become one.

use super::conv::PackedConv;
use super::depthwise::PackedDepthwise;
use super::ops::{Affine, SqueezeExcite};
use super::{Act, DetectOut, EngineError, Level, Op, View};
use model::burn::tensor::Tensor;
use model::graph::{Block, Layer};
use model::nn::{Bn, Bottleneck, Conv, Conv2d, ConvBn, Detect, MobileOneBlock};
use model::spec::ModuleSpec;
use model::YoloModel;

pub(super) struct Lowered {
    pub ops: Vec<Op>,
    pub channels: Vec<usize>,
    pub input: usize,
    pub detect: DetectOut,
    pub max_cin: usize,
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

fn squeeze_excite(se: &model::nn::Se, c: usize) -> SqueezeExcite {
    let rd = se.reduce.out_channels();
    let b = |c: &Option<model::burn::module::Param<Tensor<1>>>, n: usize| {
        c.as_ref().map_or(vec![0.0; n], |b| host(b.val()))
    };
    SqueezeExcite {
        c,
        rd,
        w1: host(se.reduce.weight.val()),
        b1: b(&se.reduce.bias, rd),
        w2: host(se.expand.weight.val()),
        b2: b(&se.expand.bias, c),
    }
}

struct Lower {
    level: Level,
    ops: Vec<Op>,
    channels: Vec<usize>,
    max_cin: usize,
}

/// A 2-d convolution's host weights and geometry.
struct ConvW {
    w: Vec<f32>,
    b: Vec<f32>,
    cout: usize,
    cin_g: usize,
    k: usize,
    s: usize,
    p: usize,
    groups: usize,
}

fn conv_w(c: &Conv2d, what: &str) -> Result<ConvW, EngineError> {
    let [cout, cin_g, kh, kw] = c.weight.shape().dims::<4>();
    if kh != kw {
        return Err(EngineError::Unsupported(format!(
            "{what}: a {kh}x{kw} kernel"
        )));
    }
    if c.dilation != 1 {
        return Err(EngineError::Unsupported(format!(
            "{what}: dilation {}",
            c.dilation
        )));
    }
    let b = match &c.bias {
        Some(b) => host(b.val()),
        None => vec![0.0; cout],
    };
    Ok(ConvW {
        w: host(c.weight.val()),
        b,
        cout,
        cin_g,
        k: kh,
        s: c.stride,
        p: c.padding,
        groups: c.groups,
    })
}

impl Lower {
    fn buf(&mut self, c: usize) -> usize {
        self.channels.push(c);
        self.channels.len() - 1
    }

    /// A dense (groups 1) convolution with packed weights.
    fn dense(&mut self, cw: &ConvW, src: View, dst: View, act: Act, add: Option<View>) {
        self.max_cin = self.max_cin.max(cw.cin_g);
        self.ops.push(Op::Conv {
            pc: PackedConv::new(
                self.level, &cw.w, &cw.b, cw.cout, cw.cin_g, cw.k, cw.s, cw.p,
            ),
            src,
            dst,
            act,
            add,
        });
    }

    fn conv2d(
        &mut self,
        c: &Conv2d,
        act: Act,
        src: View,
        dst: View,
        add: Option<View>,
        what: &str,
    ) -> Result<(), EngineError> {
        let cw = conv_w(c, what)?;
        let cin = cw.cin_g * cw.groups;
        if cw.groups == 1 {
            self.dense(&cw, src, dst, act, add);
        } else if cw.groups == cin && cw.cout == cin && add.is_none() {
            self.ops.push(Op::Depthwise {
                pd: PackedDepthwise::new(self.level, &cw.w, &cw.b, cin, cw.k, cw.s, cw.p),
                src,
                dst,
                act,
            });
        } else {
            return Err(EngineError::Unsupported(format!(
                "{what}: a grouped convolution (groups {}, {} -> {} channels)",
                cw.groups, cin, cw.cout
            )));
        }
        Ok(())
    }

    fn conv(
        &mut self,
        c: &Conv,
        src: View,
        dst: View,
        add: Option<View>,
        what: &str,
    ) -> Result<(), EngineError> {
        let act = match c.act {
            model::nn::Act::Silu => Act::Silu,
            model::nn::Act::Relu => Act::Relu,
            model::nn::Act::Identity => Act::None,
        };
        match &c.bn {
            None => self.conv2d(&c.conv, act, src, dst, add, what),
            Some(bn) => {
                let t = View {
                    buf: self.buf(c.conv.out_channels()),
                    off: 0,
                };
                self.conv2d(&c.conv, Act::None, src, t, None, what)?;
                self.bn(bn, t, dst, act, false, add);
                Ok(())
            }
        }
    }

    /// An unfused BatchNorm: `dst = act((acc ? dst : 0) + bn(src)) (+ add)`.
    fn bn(&mut self, bn: &Bn, src: View, dst: View, act: Act, acc: bool, add: Option<View>) {
        let a = Affine::from_bn(
            &host(bn.weight.val()),
            &host(bn.bias.val()),
            &host(bn.running_mean.value_sync()),
            &host(bn.running_var.value_sync()),
            bn.eps,
        );
        self.ops.push(Op::Affine {
            a,
            src,
            dst,
            act,
            acc,
            add,
        });
    }

    /// The sum of an unfused MobileOne stage's branches (conv + BN each, plus the identity BN) into `dst`,
    /// the activation applied with the last one.
    fn branch_sum(
        &mut self,
        convs: &[&ConvBn],
        identity: Option<&Bn>,
        src: View,
        dst: View,
        act: Act,
        what: &str,
    ) -> Result<(), EngineError> {
        let n = convs.len() + usize::from(identity.is_some());
        for (i, br) in convs.iter().enumerate() {
            let t = View {
                buf: self.buf(br.conv.out_channels()),
                off: 0,
            };
            self.conv2d(&br.conv, Act::None, src, t, None, what)?;
            let a = if i + 1 == n { act } else { Act::None };
            self.bn(&br.bn, t, dst, a, i > 0, None);
        }
        if let Some(bn) = identity {
            self.bn(bn, src, dst, act, !convs.is_empty(), None);
        }
        Ok(())
    }

    fn bottleneck(
        &mut self,
        m: &Bottleneck,
        src: View,
        dst: View,
        what: &str,
    ) -> Result<(), EngineError> {
        let t = self.buf(m.cv1.conv.out_channels());
        let tv = View { buf: t, off: 0 };
        self.conv(&m.cv1, src, tv, None, what)?;
        self.conv(&m.cv2, tv, dst, m.add.then_some(src), what)
    }

    fn mobileone(
        &mut self,
        m: &MobileOneBlock,
        src: View,
        dst: View,
        what: &str,
    ) -> Result<(), EngineError> {
        let t = View {
            buf: self.buf(m.c1),
            off: 0,
        };
        let se = m.se.as_ref().map(|se| squeeze_excite(se, m.c1));
        let dw_act = if se.is_some() { Act::None } else { Act::Relu };
        match (&m.fused, &m.branches) {
            (Some(f), _) => {
                self.conv2d(&f.dw_reparam, dw_act, src, t, None, what)?;
                if let Some(se) = se {
                    self.ops.push(Op::SqueezeExcite { se, x: t });
                }
                self.conv2d(&f.pw_reparam, Act::Relu, t, dst, None, what)
            }
            (None, Some(b)) => {
                let dw: Vec<&ConvBn> = b.dw_3x3.iter().chain(std::iter::once(&b.dw_1x1)).collect();
                self.branch_sum(&dw, b.dw_bn_layer.as_ref(), src, t, dw_act, what)?;
                if let Some(se) = se {
                    self.ops.push(Op::SqueezeExcite { se, x: t });
                }
                let pw: Vec<&ConvBn> = b.pw_1x1.iter().collect();
                self.branch_sum(&pw, b.pw_bn_layer.as_ref(), t, dst, Act::Relu, what)
            }
            (None, None) => Err(EngineError::NotFused(what.to_string())),
        }
    }

    /// One block from `src` (`cin` channels) into `dst`.
    fn block(&mut self, b: &Block, src: View, dst: View, what: &str) -> Result<(), EngineError> {
        match b {
            Block::Conv(m) | Block::DwConv(m) => self.conv(m, src, dst, None, what),
            Block::Bottleneck(m) => self.bottleneck(m, src, dst, what),
            Block::C2f(m) => {
                let c = m.c;
                let n = m.m.len();
                let cat = self.buf((2 + n) * c);
                self.conv(&m.cv1, src, View { buf: cat, off: 0 }, None, what)?;
                for (i, bn) in m.m.iter().enumerate() {
                    let s = View {
                        buf: cat,
                        off: (1 + i) * c,
                    };
                    let d = View {
                        buf: cat,
                        off: (2 + i) * c,
                    };
                    self.bottleneck(bn, s, d, what)?;
                }
                self.conv(&m.cv2, View { buf: cat, off: 0 }, dst, None, what)
            }
            Block::C3(m) => {
                let c_ = m.cv1.conv.out_channels();
                let cat = self.buf(2 * c_);
                let first = View { buf: cat, off: 0 };
                if m.m.is_empty() {
                    self.conv(&m.cv1, src, first, None, what)?;
                } else {
                    let mut cur = View {
                        buf: self.buf(c_),
                        off: 0,
                    };
                    self.conv(&m.cv1, src, cur, None, what)?;
                    for (i, bn) in m.m.iter().enumerate() {
                        let d = if i + 1 == m.m.len() {
                            first
                        } else {
                            View {
                                buf: self.buf(c_),
                                off: 0,
                            }
                        };
                        self.bottleneck(bn, cur, d, what)?;
                        cur = d;
                    }
                }
                self.conv(&m.cv2, src, View { buf: cat, off: c_ }, None, what)?;
                self.conv(&m.cv3, first, dst, None, what)
            }
            Block::Sppf(m) => {
                let c_ = m.cv1.conv.out_channels();
                let cat = self.buf(c_ * (m.n + 1));
                self.conv(&m.cv1, src, View { buf: cat, off: 0 }, None, what)?;
                for i in 0..m.n {
                    self.ops.push(Op::MaxPool {
                        k: m.k,
                        c: c_,
                        src: View {
                            buf: cat,
                            off: i * c_,
                        },
                        dst: View {
                            buf: cat,
                            off: (i + 1) * c_,
                        },
                    });
                }
                let add = m.add.then_some(src);
                self.conv(&m.cv2, View { buf: cat, off: 0 }, dst, add, what)
            }
            Block::Spp(m) => {
                let c_ = m.cv1.conv.out_channels();
                let cat = self.buf(c_ * (m.k.len() + 1));
                self.conv(&m.cv1, src, View { buf: cat, off: 0 }, None, what)?;
                for (i, &k) in m.k.iter().enumerate() {
                    self.ops.push(Op::MaxPool {
                        k,
                        c: c_,
                        src: View { buf: cat, off: 0 },
                        dst: View {
                            buf: cat,
                            off: (i + 1) * c_,
                        },
                    });
                }
                self.conv(&m.cv2, View { buf: cat, off: 0 }, dst, None, what)
            }
            Block::MobileOne(m) => self.mobileone(m, src, dst, what),
            // Blocks without engine kernels run through burn (predict falls back with this message).
            other => Err(EngineError::Unsupported(format!(
                "{what}: {} has no engine kernels yet",
                other.type_name()
            ))),
        }
    }

    fn detect(&mut self, d: &Detect, inputs: &[View]) -> Result<DetectOut, EngineError> {
        if d.cv3.iter().any(|b| b.dw0.is_some() || b.dw1.is_some()) {
            return Err(EngineError::Unsupported(
                "the 8.4 Detect head (depthwise class branches) has no engine kernels yet".into(),
            ));
        }
        let mut maps = Vec::new();
        let ch = 4 * d.reg_max + d.nc;
        for (i, &x) in inputs.iter().enumerate() {
            let (a, b) = (&d.cv2[i], &d.cv3[i]);
            let what = format!("Detect level {i}");
            let (c2, c3) = (a.c0.conv.out_channels(), b.c0.conv.out_channels());
            let t0 = self.buf(c2 + c3);
            if a.c0.bn.is_some() || b.c0.bn.is_some() {
                self.conv(&a.c0, x, View { buf: t0, off: 0 }, None, &what)?;
                self.conv(&b.c0, x, View { buf: t0, off: c2 }, None, &what)?;
            } else {
                // Both branches' first 3x3 convs read the same map: one convolution, outputs stacked.
                let (wa, wb) = (conv_w(&a.c0.conv, &what)?, conv_w(&b.c0.conv, &what)?);
                if wa.groups != 1 || wb.groups != 1 || (wa.k, wa.s, wa.p) != (wb.k, wb.s, wb.p) {
                    return Err(EngineError::Unsupported(format!(
                        "{what}: unequal first convolutions"
                    )));
                }
                let stacked = ConvW {
                    w: wa.w.iter().chain(&wb.w).copied().collect(),
                    b: wa.b.iter().chain(&wb.b).copied().collect(),
                    cout: c2 + c3,
                    ..wa
                };
                self.dense(&stacked, x, View { buf: t0, off: 0 }, Act::Silu, None);
            }
            let t1 = self.buf(c2 + c3);
            self.conv(
                &a.c1,
                View { buf: t0, off: 0 },
                View { buf: t1, off: 0 },
                None,
                &what,
            )?;
            self.conv(
                &b.c1,
                View { buf: t0, off: c2 },
                View { buf: t1, off: c2 },
                None,
                &what,
            )?;
            let m = self.buf(ch);
            let box_act = Act::None;
            self.conv2d(
                &a.out,
                box_act,
                View { buf: t1, off: 0 },
                View { buf: m, off: 0 },
                None,
                &what,
            )?;
            self.conv2d(
                &b.out,
                Act::None,
                View { buf: t1, off: c2 },
                View {
                    buf: m,
                    off: 4 * d.reg_max,
                },
                None,
                &what,
            )?;
            maps.push(m);
        }
        Ok(DetectOut {
            maps,
            strides: d.strides.clone(),
            reg_max: d.reg_max,
            nc: d.nc,
        })
    }
}

pub(super) fn lower(model: &YoloModel, level: Level) -> Result<Lowered, EngineError> {
    let spec = &model.spec;
    let n = model.layers.len();
    let mut lw = Lower {
        level,
        ops: Vec::new(),
        channels: Vec::new(),
        max_cin: 3,
    };
    let input = lw.buf(3);
    let src_of = |f: &Option<usize>, i: usize| f.unwrap_or(i.wrapping_sub(1));
    // Layers read by exactly one Concat, once, write straight into that Concat's buffer.
    let mut uses = vec![0usize; n];
    for (i, l) in spec.layers.iter().enumerate() {
        if matches!(l.module, ModuleSpec::Concat) {
            for f in &l.from {
                let j = src_of(f, i);
                if j < n {
                    uses[j] += 1;
                }
            }
        }
    }
    let mut out: Vec<Option<View>> = vec![None; n];
    let mut concat_buf: Vec<Option<usize>> = vec![None; n];
    for (i, l) in spec.layers.iter().enumerate() {
        if matches!(l.module, ModuleSpec::Concat) {
            let b = lw.buf(l.c_out);
            concat_buf[i] = Some(b);
            let mut off = 0;
            for f in &l.from {
                let j = src_of(f, i);
                let c = if j < n { spec.layers[j].c_out } else { 3 };
                let aliasable = j < n
                    && uses[j] == 1
                    && !matches!(
                        spec.layers[j].module,
                        ModuleSpec::Concat | ModuleSpec::Detect { .. }
                    );
                if aliasable {
                    out[j] = Some(View { buf: b, off });
                }
                off += c;
            }
        }
    }
    let mut detect = None;
    for (i, (layer, l)) in model.layers.iter().zip(&spec.layers).enumerate() {
        let what = format!("layer {i} ({})", l.module.type_name());
        let view_of = |out: &[Option<View>], f: &Option<usize>| -> View {
            let j = src_of(f, i);
            if j < n {
                out[j].expect("layers are lowered in order")
            } else {
                View { buf: input, off: 0 }
            }
        };
        let x = view_of(&out, &l.from[0]);
        match layer {
            Layer::Detect(d) => {
                let xs: Vec<View> = l.from.iter().map(|f| view_of(&out, f)).collect();
                detect = Some(lw.detect(d, &xs)?);
            }
            Layer::Concat(_) => {
                let b = concat_buf[i].expect("made above");
                let mut off = 0;
                for f in &l.from {
                    let j = src_of(f, i);
                    let c = if j < n { spec.layers[j].c_out } else { 3 };
                    let v = view_of(&out, f);
                    if v.buf != b || v.off != off {
                        lw.ops.push(Op::Copy {
                            c,
                            src: v,
                            dst: View { buf: b, off },
                        });
                    }
                    off += c;
                }
                out[i] = Some(View { buf: b, off: 0 });
            }
            Layer::Upsample(s) => {
                let d = out[i].unwrap_or_else(|| View {
                    buf: lw.buf(l.c_out),
                    off: 0,
                });
                lw.ops.push(Op::Upsample {
                    s: *s,
                    c: l.c_out,
                    src: x,
                    dst: d,
                });
                out[i] = Some(d);
            }
            Layer::Single(b) => {
                let d = out[i].unwrap_or_else(|| View {
                    buf: lw.buf(l.c_out),
                    off: 0,
                });
                lw.block(b, x, d, &what)?;
                out[i] = Some(d);
            }
            Layer::Stack(bs) => {
                let d = out[i].unwrap_or_else(|| View {
                    buf: lw.buf(l.c_out),
                    off: 0,
                });
                let mut cur = x;
                for (j, b) in bs.iter().enumerate() {
                    let next = if j + 1 == bs.len() {
                        d
                    } else {
                        View {
                            buf: lw.buf(l.c_out),
                            off: 0,
                        }
                    };
                    lw.block(b, cur, next, &what)?;
                    cur = next;
                }
                out[i] = Some(d);
            }
        }
    }
    let detect = detect.ok_or_else(|| EngineError::Unsupported("a model without Detect".into()))?;
    Ok(Lowered {
        ops: lw.ops,
        channels: lw.channels,
        input,
        detect,
        max_cin: lw.max_cin,
    })
}
