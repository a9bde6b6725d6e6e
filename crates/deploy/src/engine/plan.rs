//! From the optimized graph to the operation list: where each value lives and which kernel computes it.
//!
//! Every value is a channel slice ([`View`]) of a map buffer. A Concat's inputs are written straight into
//! their place in its buffer when nothing else claims them (nested Concats and a value whose channel slices
//! are joined in order, as a split's halves, included); the rest are copied there. Slices are views of their
//! parent. Convolutions get their kernel here: dense (direct or Winograd), depthwise, grouped (a dense kernel
//! per group on channel slices) or burn for what has no kernel (dilation).

use super::conv::PackedConv;
use super::depthwise::PackedDepthwise;
use super::graph::{ConvWeights, Graph, Id, NodeOp};
use super::op::{EwKind, Op, View};
use super::qconv::{PackedQConv, QuantIn};
use super::{Act, Level};
use model::burn::module::ParamId;
use std::collections::HashMap;

pub(super) struct Plan {
    pub ops: Vec<Op>,
    /// Channels of each buffer.
    pub channels: Vec<usize>,
    pub input: usize,
    /// The buffer of each graph output, each its own, exactly its channels.
    pub outputs: Vec<usize>,
    /// Zeros a convolution's padding taps read: its widest input.
    pub max_cin: usize,
}

struct Planner<'a> {
    g: &'a Graph,
    level: Level,
    quant: Option<&'a QuantTable>,
    keep_weights: bool,
    loc: Vec<Option<View>>,
    channels: Vec<usize>,
    ops: Vec<Op>,
    max_cin: usize,
}

/// INT8 quantization of convolution inputs, by the parameter of the convolution's weights.
pub type QuantTable = HashMap<ParamId, QuantIn>;

/// How convolutions are planned: in INT8 where `quant` has their parameters, and with their float weights
/// kept when `keep_weights` (calibration); `u8_maps`: maps only INT8 operations read are stored as u8
/// ([`super::qmaps`], after planning).
#[derive(Clone, Copy, Default)]
pub(super) struct Options<'a> {
    pub quant: Option<&'a QuantTable>,
    pub keep_weights: bool,
    pub u8_maps: bool,
}

pub(super) fn plan(g: &Graph, level: Level, opts: Options<'_>) -> Plan {
    let mut p = Planner {
        g,
        level,
        quant: opts.quant,
        keep_weights: opts.keep_weights,
        loc: vec![None; g.nodes.len()],
        channels: Vec::new(),
        ops: Vec::new(),
        max_cin: 3,
    };
    let input = p.buffer(3);
    p.loc[g.input] = Some(View { buf: input, off: 0 });
    // Consumers before producers, so an outer Concat places an inner one before the inner one places its
    // own inputs.
    for &id in g.order.iter().rev() {
        if let NodeOp::Concat(xs) = &g.nodes[id].op {
            p.place_concat(id, xs);
        }
    }
    for &id in &g.order {
        p.emit(id);
    }
    let mut outputs = Vec::new();
    for &o in &g.outputs {
        let v = p.view(o);
        let c = g.nodes[o].c;
        let own =
            v.off == 0 && p.channels[v.buf] == c && v.buf != input && !outputs.contains(&v.buf);
        if own {
            outputs.push(v.buf);
        } else {
            let b = p.buffer(c);
            p.ops.push(Op::Copy {
                c,
                src: v,
                dst: View { buf: b, off: 0 },
                u8: false,
            });
            outputs.push(b);
        }
    }
    Plan {
        ops: p.ops,
        channels: p.channels,
        input,
        outputs,
        max_cin: p.max_cin,
    }
}

impl Planner<'_> {
    fn buffer(&mut self, c: usize) -> usize {
        self.channels.push(c);
        self.channels.len() - 1
    }

    /// The node and channel offset a value is a slice of (itself at 0 for a non-slice).
    fn root(&self, mut id: Id) -> (Id, usize) {
        let mut off = 0;
        while let NodeOp::Slice { x, off: o } = self.g.nodes[id].op {
            off += o;
            id = x;
        }
        (id, off)
    }

    /// Decides which inputs of Concat `id` are computed in place in its buffer.
    fn place_concat(&mut self, id: Id, xs: &[Id]) {
        let base = match self.loc[id] {
            Some(v) => v,
            None => {
                let v = View {
                    buf: self.buffer(self.g.nodes[id].c),
                    off: 0,
                };
                self.loc[id] = Some(v);
                v
            }
        };
        let total = self.g.nodes[id].c;
        let mut offsets = Vec::with_capacity(xs.len());
        let mut o = 0;
        for &x in xs {
            offsets.push(o);
            o += self.g.nodes[x].c;
        }
        let roots: Vec<(Id, usize)> = xs.iter().map(|&x| self.root(x)).collect();
        for (j, &(r, so)) in roots.iter().enumerate() {
            let Some(d) = offsets[j].checked_sub(so) else {
                continue;
            };
            let c = self.g.nodes[r].c;
            let free = self.loc[r].is_none()
                && !matches!(self.g.nodes[r].op, NodeOp::Input)
                && !self.g.outputs.contains(&r);
            // Every input that overlaps where `r` would lie must be a slice of `r` at that same place.
            let consistent = d + c <= total
                && roots
                    .iter()
                    .zip(&offsets)
                    .zip(xs)
                    .all(|((&(rk, sk), &ok), &xk)| {
                        let ck = self.g.nodes[xk].c;
                        let overlaps = ok < d + c && d < ok + ck;
                        !overlaps || (rk == r && ok.checked_sub(sk) == Some(d))
                    });
            if free && consistent {
                self.loc[r] = Some(View {
                    buf: base.buf,
                    off: base.off + d,
                });
            }
        }
    }

    /// Where a value lives (slices follow their parent).
    fn view(&self, id: Id) -> View {
        self.loc[id].expect("every value is placed before it is read")
    }

    /// The node's destination, made now if no Concat placed it.
    fn dest(&mut self, id: Id) -> View {
        if let Some(v) = self.loc[id] {
            return v;
        }
        let v = match self.g.nodes[id].op {
            NodeOp::Slice { x, off } => {
                let p = self.view(x);
                View {
                    buf: p.buf,
                    off: p.off + off,
                }
            }
            _ => View {
                buf: self.buffer(self.g.nodes[id].c),
                off: 0,
            },
        };
        self.loc[id] = Some(v);
        v
    }

    fn emit(&mut self, id: Id) {
        let dst = self.dest(id);
        let c = self.g.nodes[id].c;
        let op = match &self.g.nodes[id].op {
            NodeOp::Input | NodeOp::Slice { .. } | NodeOp::Alias(_) => return,
            NodeOp::Conv { x, w, act, add } => {
                let (src, add) = (self.view(*x), add.map(|a| self.view(a)));
                return self.conv(w, src, dst, *act, add);
            }
            NodeOp::Col2Im { x, k, s, p, bias } => Op::Col2Im {
                k: *k,
                s: *s,
                p: *p,
                bias: bias.clone(),
                src: self.view(*x),
                dst,
            },
            NodeOp::Affine { x, a, act, add } => Op::Affine {
                a: a.clone(),
                src: self.view(*x),
                dst,
                act: *act,
                add: add.map(|a| self.view(a)),
            },
            NodeOp::Act { x, f } => {
                self.elementwise(EwKind::Unary(*f), c, Act::None, *x, None, dst)
            }
            NodeOp::Add { a, b, act } => self.elementwise(EwKind::Add, c, *act, *a, Some(*b), dst),
            NodeOp::Mul { x, gate, act } => {
                self.elementwise(EwKind::Mul, c, *act, *x, Some(*gate), dst)
            }
            NodeOp::Concat(xs) => {
                let mut off = 0;
                for &x in xs {
                    let cx = self.g.nodes[x].c;
                    let at = View {
                        buf: dst.buf,
                        off: dst.off + off,
                    };
                    let v = self.view(x);
                    if v != at {
                        self.ops.push(Op::Copy {
                            c: cx,
                            src: v,
                            dst: at,
                            u8: false,
                        });
                    }
                    off += cx;
                }
                return;
            }
            NodeOp::MaxPool { x, k, s, p } => Op::MaxPool {
                k: *k,
                s: *s,
                p: *p,
                c,
                src: self.view(*x),
                dst,
                u8: false,
            },
            NodeOp::ZeroPad { x, pad } => Op::ZeroPad {
                pad: *pad,
                c,
                src: self.view(*x),
                dst,
            },
            NodeOp::Upsample { x, s } => Op::Upsample {
                s: *s,
                c,
                src: self.view(*x),
                dst,
                u8: false,
            },
            NodeOp::GlobalAvgPool { x } => Op::GlobalAvgPool {
                c,
                src: self.view(*x),
                dst,
            },
            NodeOp::Attention {
                x,
                heads,
                key_dim,
                head_dim,
            } => Op::Attention {
                shape: super::attention::AttentionShape {
                    heads: *heads,
                    key_dim: *key_dim,
                    head_dim: *head_dim,
                },
                src: self.view(*x),
                dst,
            },
        };
        self.ops.push(op);
    }

    fn elementwise(&self, kind: EwKind, c: usize, act: Act, a: Id, b: Option<Id>, dst: View) -> Op {
        Op::Elementwise {
            kind,
            c,
            act,
            a: self.view(a),
            b: b.map(|b| self.view(b)),
            dst,
        }
    }

    /// The input quantization of a dense convolution that runs in INT8: every parameter it computes is in
    /// the table, with the same input parameters (stacked convs read one map).
    fn int8(&self, w: &ConvWeights) -> Option<QuantIn> {
        if w.groups != 1 || w.dilated.is_some() {
            return None;
        }
        self.int8_of(&w.ids)
    }

    /// The input quantization every one of `ids` has in the table (none if one is missing or differs).
    fn int8_of(&self, ids: &[ParamId]) -> Option<QuantIn> {
        let table = self.quant?;
        let first = *table.get(ids.first()?)?;
        ids.iter()
            .all(|id| table.get(id) == Some(&first))
            .then_some(first)
    }

    /// A convolution with the kernel for its shape.
    fn conv(&mut self, w: &ConvWeights, src: View, dst: View, act: Act, add: Option<View>) {
        if let Some(conv) = &w.dilated {
            self.ops.push(Op::Fallback {
                conv: conv.clone(),
                act,
                src,
                dst,
            });
            return;
        }
        if w.depthwise() && add.is_none() {
            let pd = match self.int8_of(&w.ids) {
                Some(x) => {
                    PackedDepthwise::new_int8(self.level, &w.w, &w.b, w.cout, w.k, w.s, w.p, x)
                }
                None => PackedDepthwise::new(self.level, &w.w, &w.b, w.cout, w.k, w.s, w.p),
            };
            self.ops.push(Op::Depthwise {
                pd,
                src,
                dst,
                act,
                ids: w.ids.clone(),
                raw: self.keep_weights.then(|| Box::new(w.clone())),
                src_u8: false,
                out: None,
            });
            return;
        }
        if let Some(x) = self.int8(w) {
            self.ops.push(Op::QConv {
                pq: PackedQConv::new(self.level, &w.w, &w.b, w.cout, w.cin_g, w.k, w.s, w.p, x),
                src,
                dst,
                act,
                add,
                ids: w.ids.clone(),
                src_u8: false,
                out: None,
            });
            return;
        }
        // Dense, or one dense convolution per group on its channel slices.
        let cout_g = w.cout / w.groups;
        let per = cout_g * w.cin_g * w.k * w.k;
        self.max_cin = self.max_cin.max(w.cin_g);
        for g in 0..w.groups {
            let at = |v: View, c: usize| View {
                buf: v.buf,
                off: v.off + g * c,
            };
            let pc = PackedConv::new(
                self.level,
                &w.w[g * per..(g + 1) * per],
                &w.b[g * cout_g..(g + 1) * cout_g],
                cout_g,
                w.cin_g,
                w.k,
                w.s,
                w.p,
            );
            self.ops.push(Op::Conv {
                pc,
                src: at(src, w.cin_g),
                dst: at(dst, cout_g),
                act,
                add: add.map(|a| at(a, cout_g)),
                ids: if w.groups == 1 {
                    w.ids.clone()
                } else {
                    Vec::new()
                },
                raw: (self.keep_weights && w.groups == 1).then(|| Box::new(w.clone())),
                out: None,
            });
        }
    }
}
