//! The engine's view of a model: the dataflow each block describes once ([`model::lowering::Lowering`]),
//! recorded as a list of nodes on whole NHWC maps with host weights. Nothing here knows a block: the
//! optimizations are passes over these nodes ([`super::passes`]) and [`super::plan`] turns them into kernels.

use super::ops::Affine;
use super::{Act, Unary};
use model::burn::module::ParamId;
use model::burn::tensor::Tensor;
use model::lowering::Lowering;
use model::modules::convtranspose::ConvTranspose;
use model::nn::{Bn, Conv2d};

/// A node's index in [`Graph::nodes`]; each node is one value (a map of [`Node::c`] channels).
pub type Id = usize;

/// A convolution's host weights and geometry (PyTorch's `(cout, cin / groups, k, k)` layout).
#[derive(Debug, Clone)]
pub struct ConvWeights {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub cout: usize,
    pub cin_g: usize,
    pub k: usize,
    pub s: usize,
    pub p: usize,
    pub groups: usize,
    /// A dilated convolution keeps its module: it runs through burn (no engine kernel).
    pub dilated: Option<Conv2d>,
    /// The model parameters the weights came from (several for stacked convs; none for a transposed conv's
    /// columns): what INT8 quantization parameters are keyed by.
    pub ids: Vec<ParamId>,
}

impl ConvWeights {
    /// One input and one output channel per group.
    pub fn depthwise(&self) -> bool {
        self.groups > 1 && self.cin_g == 1 && self.cout == self.groups
    }
}

#[derive(Debug, Clone)]
pub enum NodeOp {
    Input,
    /// `act(conv(x)) (+ add)`: activation and residual add in the epilogue (set by passes).
    Conv {
        x: Id,
        w: Box<ConvWeights>,
        act: Act,
        add: Option<Id>,
    },
    /// A transposed conv as a 1x1 conv into every tap's outputs followed by [`NodeOp::Col2Im`].
    Col2Im {
        x: Id,
        k: usize,
        s: usize,
        p: usize,
        bias: Vec<f32>,
    },
    /// An unfused model's BatchNorm: `act(x * scale + shift) (+ add)`.
    Affine {
        x: Id,
        a: Affine,
        act: Act,
        add: Option<Id>,
    },
    /// A standalone activation (passes move it into its producer's epilogue where they can).
    Act {
        x: Id,
        f: Unary,
    },
    Add {
        a: Id,
        b: Id,
        act: Act,
    },
    /// `act(x * gate)`, the gate either the same size or `1 x 1` (broadcast).
    Mul {
        x: Id,
        gate: Id,
        act: Act,
    },
    Concat(Vec<Id>),
    /// Channels `off..off + c` of `x`: a view, no work.
    Slice {
        x: Id,
        off: usize,
    },
    MaxPool {
        x: Id,
        k: usize,
        s: usize,
        p: usize,
    },
    ZeroPad {
        x: Id,
        pad: (usize, usize, usize, usize),
    },
    Upsample {
        x: Id,
        s: usize,
    },
    GlobalAvgPool {
        x: Id,
    },
    /// Ultralytics' attention core on the qkv map: the attended values (`heads * head_dim` channels), then
    /// `v` itself (as many).
    Attention {
        x: Id,
        heads: usize,
        key_dim: usize,
        head_dim: usize,
    },
    /// Replaced by a pass: reads as the node it names.
    Alias(Id),
}

#[derive(Debug, Clone)]
pub struct Node {
    pub op: NodeOp,
    /// Channels of the value.
    pub c: usize,
}

/// Runs `$body` with `$x` bound to each input id of `$op` in order (a reference, shared or mutable as `$op`
/// is), so the list of each operation's inputs is written once for reading and rewriting.
macro_rules! each_input {
    ($op:expr, $x:ident => $body:expr) => {
        match $op {
            NodeOp::Input => {}
            NodeOp::Conv { x, add, .. } | NodeOp::Affine { x, add, .. } => {
                let $x = x;
                $body;
                if let Some($x) = add {
                    $body;
                }
            }
            NodeOp::Add { a, b, .. } => {
                for $x in [a, b] {
                    $body;
                }
            }
            NodeOp::Mul { x, gate, .. } => {
                for $x in [x, gate] {
                    $body;
                }
            }
            NodeOp::Concat(xs) => {
                for $x in xs {
                    $body;
                }
            }
            NodeOp::Col2Im { x, .. }
            | NodeOp::Act { x, .. }
            | NodeOp::Slice { x, .. }
            | NodeOp::MaxPool { x, .. }
            | NodeOp::ZeroPad { x, .. }
            | NodeOp::Upsample { x, .. }
            | NodeOp::GlobalAvgPool { x }
            | NodeOp::Attention { x, .. }
            | NodeOp::Alias(x) => {
                let $x = x;
                $body;
            }
        }
    };
}

impl NodeOp {
    /// The values this node reads, first the one its output size follows.
    pub fn inputs(&self) -> Vec<Id> {
        let mut v = Vec::new();
        each_input!(self, x => v.push(*x));
        v
    }

    /// Every input id rewritten by `f`.
    pub fn map_inputs(&mut self, f: impl Fn(Id) -> Id) {
        each_input!(self, x => *x = f(*x));
    }
}

/// The recorded dataflow: nodes in `order` (every node after its inputs), the input and the head's raw maps.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// The order the nodes run in; passes insert nodes into it.
    pub order: Vec<Id>,
    pub input: Id,
    pub outputs: Vec<Id>,
}

impl Graph {
    /// Records a fused or unfused model's dataflow through its own lowering.
    pub fn record(model: &model::YoloModel) -> model::error::Result<Graph> {
        let mut g = Graph::default();
        let input = g.push(NodeOp::Input, 3);
        g.input = input;
        g.outputs = model.lower(&mut g, &input)?;
        Ok(g)
    }

    /// Appends a node at the end of the order.
    pub fn push(&mut self, op: NodeOp, c: usize) -> Id {
        let id = self.insert(op, c);
        self.order.push(id);
        id
    }

    /// Adds a node without placing it in the order.
    pub fn insert(&mut self, op: NodeOp, c: usize) -> Id {
        self.nodes.push(Node { op, c });
        self.nodes.len() - 1
    }

    /// Follows aliases to the node that computes the value.
    pub fn resolve(&self, mut id: Id) -> Id {
        while let NodeOp::Alias(x) = self.nodes[id].op {
            id = x;
        }
        id
    }

    /// How many times each node is read (by live nodes, and once more per output).
    pub fn uses(&self) -> Vec<usize> {
        let mut n = vec![0; self.nodes.len()];
        for &id in &self.order {
            if matches!(self.nodes[id].op, NodeOp::Alias(_)) {
                continue;
            }
            for i in self.nodes[id].op.inputs() {
                n[self.resolve(i)] += 1;
            }
        }
        for &o in &self.outputs {
            n[self.resolve(o)] += 1;
        }
        n
    }

    fn unary(&mut self, x: Id, f: Unary) -> Id {
        let c = self.nodes[x].c;
        self.push(NodeOp::Act { x, f }, c)
    }
}

/// A transposed conv's weights `(cin, cout, k, k)` as a 1x1 conv whose output channel `tap * cout + co` holds that
/// tap's products (`(taps * cout, cin)`, row-major): the first half of the engine's transposed conv.
pub(super) fn taps_as_channels(wt: &[f32], cin: usize, cout: usize, k: usize) -> Vec<f32> {
    let taps = k * k;
    let mut w = vec![0.0f32; taps * cout * cin];
    for ci in 0..cin {
        for co in 0..cout {
            for t in 0..taps {
                w[(t * cout + co) * cin + ci] = wt[(ci * cout + co) * taps + t];
            }
        }
    }
    w
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    model::weights::host(t).data
}

/// A `Conv2d`'s weights for the engine.
fn conv_weights(c: &Conv2d) -> ConvWeights {
    let [cout, cin_g, k, _] = c.weight.shape().dims::<4>();
    ConvWeights {
        w: host(c.weight.val()),
        b: match &c.bias {
            Some(b) => host(b.val()),
            None => vec![0.0; cout],
        },
        cout,
        cin_g,
        k,
        s: c.stride,
        p: c.padding,
        groups: c.groups,
        dilated: (c.dilation != 1).then(|| c.clone()),
        ids: vec![c.weight.id],
    }
}

impl Lowering for Graph {
    type V = Id;

    fn conv2d(&mut self, x: &Id, c: &Conv2d) -> Id {
        let w = Box::new(conv_weights(c));
        let cout = w.cout;
        self.push(
            NodeOp::Conv {
                x: *x,
                w,
                act: Act::None,
                add: None,
            },
            cout,
        )
    }

    fn conv_transpose2d(&mut self, x: &Id, c: &ConvTranspose) -> Id {
        let [cin, cout, k, _] = c.weight.shape().dims::<4>();
        let taps = k * k;
        let w = taps_as_channels(&host(c.weight.val()), cin, cout, k);
        let cols = Box::new(ConvWeights {
            w,
            b: vec![0.0; taps * cout],
            cout: taps * cout,
            cin_g: cin,
            k: 1,
            s: 1,
            p: 0,
            groups: 1,
            dilated: None,
            ids: Vec::new(),
        });
        let y = self.push(
            NodeOp::Conv {
                x: *x,
                w: cols,
                act: Act::None,
                add: None,
            },
            taps * cout,
        );
        self.push(
            NodeOp::Col2Im {
                x: y,
                k,
                s: c.stride,
                p: c.padding,
                bias: host(c.bias.val()),
            },
            cout,
        )
    }

    fn batch_norm(&mut self, x: &Id, bn: &Bn) -> Id {
        let a = Affine::from_bn(
            &host(bn.weight.val()),
            &host(bn.bias.val()),
            &host(bn.running_mean.value()),
            &host(bn.running_var.value()),
            bn.eps,
        );
        let c = a.c;
        self.push(
            NodeOp::Affine {
                x: *x,
                a,
                act: Act::None,
                add: None,
            },
            c,
        )
    }

    fn silu(&mut self, x: &Id) -> Id {
        self.unary(*x, Unary::Silu)
    }

    fn relu(&mut self, x: &Id) -> Id {
        self.unary(*x, Unary::Relu)
    }

    fn sigmoid(&mut self, x: &Id) -> Id {
        self.unary(*x, Unary::Sigmoid)
    }

    fn add(&mut self, a: &Id, b: &Id) -> Id {
        let c = self.nodes[*a].c;
        self.push(
            NodeOp::Add {
                a: *a,
                b: *b,
                act: Act::None,
            },
            c,
        )
    }

    fn mul(&mut self, a: &Id, b: &Id) -> Id {
        let c = self.nodes[*a].c;
        self.push(
            NodeOp::Mul {
                x: *a,
                gate: *b,
                act: Act::None,
            },
            c,
        )
    }

    fn concat(&mut self, xs: &[Id]) -> Id {
        let c = xs.iter().map(|&x| self.nodes[x].c).sum();
        self.push(NodeOp::Concat(xs.to_vec()), c)
    }

    fn split(&mut self, x: &Id, sizes: &[usize]) -> Vec<Id> {
        let mut off = 0;
        sizes
            .iter()
            .map(|&c| {
                let id = self.push(NodeOp::Slice { x: *x, off }, c);
                off += c;
                id
            })
            .collect()
    }

    fn max_pool(&mut self, x: &Id, k: usize, s: usize, p: usize) -> Id {
        let c = self.nodes[*x].c;
        self.push(NodeOp::MaxPool { x: *x, k, s, p }, c)
    }

    fn upsample(&mut self, x: &Id, scale: usize) -> Id {
        let c = self.nodes[*x].c;
        self.push(NodeOp::Upsample { x: *x, s: scale }, c)
    }

    fn zero_pad(&mut self, x: &Id, pad: (usize, usize, usize, usize)) -> Id {
        let c = self.nodes[*x].c;
        self.push(NodeOp::ZeroPad { x: *x, pad }, c)
    }

    fn global_avg_pool(&mut self, x: &Id) -> Id {
        let c = self.nodes[*x].c;
        self.push(NodeOp::GlobalAvgPool { x: *x }, c)
    }

    fn attention(
        &mut self,
        qkv: &Id,
        _like: &Id,
        heads: usize,
        key_dim: usize,
        head_dim: usize,
    ) -> (Id, Id) {
        let c = heads * head_dim;
        let both = self.push(
            NodeOp::Attention {
                x: *qkv,
                heads,
                key_dim,
                head_dim,
            },
            2 * c,
        );
        let y = self.push(NodeOp::Slice { x: both, off: 0 }, c);
        let v = self.push(NodeOp::Slice { x: both, off: c }, c);
        (y, v)
    }
}
