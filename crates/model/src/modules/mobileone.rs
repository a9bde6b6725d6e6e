//! The seed's `MobileOneBlock` (MobileOne, Apple 2022): training-time branches (k depthwise 3x3 conv+BN, a
//! depthwise 1x1 conv+BN and an identity BN, then k pointwise 1x1 conv+BN and an identity BN) that fold into
//! one depthwise 3x3 and one pointwise 1x1 conv at deploy time.

use super::{BlockModule, BlockSpec, Role, Row};
use crate::error::Result;
use crate::fuse::{conv_from, fold_bn};
use crate::lowering::Lowering;
use crate::nn::{Bn, Conv2d, Numbered};
use crate::shapes::{conv_out, Macs};
use crate::yaml_args::{as_bool, as_usize, check_arity, optional, Arg, Ctx};
use burn::module::Module;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor, TensorData};

/// Limits far past any real model, so a typo fails with a message instead of an allocation abort.
const MAX_BRANCHES: usize = 64;

/// `MobileOneBlock(c1, c2, k, stride=1, dilation=1, padding_mode='zeros', deploy=False, use_se=False)`.
#[derive(Debug, Clone, PartialEq)]
pub struct MobileOneSpec {
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub stride: usize,
    pub use_se: bool,
}

impl BlockSpec for MobileOneSpec {
    type Module = MobileOneBlock;
    const ROLE: Role = Role::C2First;
    const TYPE_PATH: &'static str = "mobileone.MobileOneBlock";

    fn parse(row: &Row) -> Result<Self> {
        let (r, ctx) = (row.args, row.ctx);
        const SIG: &str =
            "[c2, k, stride=1, dilation=1, padding_mode='zeros', deploy=False, use_se=False]";
        check_arity(r, 1, 6, SIG, ctx)?;
        let k = as_usize(&r[0], "k (number of branches)", ctx)?;
        let stride = optional(r, 1, 1, |a| as_usize(a, "stride", ctx))?;
        if let Some(d) = r.get(2) {
            if !matches!(d, Arg::Int(1)) {
                return Err(ctx.err(format!(
                    "dilation: got {d}, only 1 is supported (the seed's training branches ignore it); \
                     use_se is the 7th argument: {SIG}"
                )));
            }
        }
        if let Some(m) = r.get(3) {
            if !matches!(m, Arg::Str(s) if s.trim_matches(['"', '\'']) == "zeros") {
                return Err(ctx.err(format!("padding_mode: got {m}, only 'zeros' is supported")));
            }
        }
        if optional(r, 4, false, |a| as_bool(a, "deploy", ctx))? {
            return Err(ctx.err(
                "deploy=True rows are not supported: build the unfused model and fuse it (export)",
            ));
        }
        let use_se = optional(r, 5, false, |a| as_bool(a, "use_se", ctx))?;
        if k == 0 {
            return Err(ctx.err("k (number of branches) must be at least 1"));
        }
        if stride == 0 {
            return Err(ctx.err("stride must be at least 1"));
        }
        Ok(MobileOneSpec {
            c1: row.c1,
            c2: row.c2,
            k,
            stride,
            use_se,
        })
    }

    fn c_out(&self) -> usize {
        self.c2
    }

    fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let o = |x| conv_out(x, 3, self.stride, 1, 1);
        (o(h), o(w))
    }

    fn macs(&self, _c_in: usize, h: usize, w: usize, acc: &mut Macs) {
        let (c1, c2) = (self.c1, self.c2);
        let (ho, wo) = self.out_hw(h, w);
        let identity = c1 == c2 && self.stride == 1;
        if acc.fused {
            acc.conv(c1, c1, 3, c1, ho, wo);
            acc.conv(c1, c2, 1, 1, ho, wo);
        } else {
            for _ in 0..self.k {
                acc.conv_bn(c1, c1, 3, c1, ho, wo);
                acc.conv_bn(c1, c2, 1, 1, ho, wo);
            }
            acc.conv_bn(c1, c1, 1, c1, ho, wo);
            if identity {
                acc.bn(c1, ho, wo);
                acc.bn(c1, ho, wo);
            }
        }
        if self.use_se {
            let rd = Se::hidden(c1);
            if !acc.weights {
                acc.total += (c1 * ho * wo) as f64;
            }
            acc.conv(c1, rd, 1, 1, 1, 1);
            acc.conv(rd, c1, 1, 1, 1, 1);
        }
    }

    fn check(&self, ctx: &Ctx) -> Result<()> {
        let (k, stride) = (self.k, self.stride);
        if k > MAX_BRANCHES || stride > 2 {
            return Err(ctx.err(format!(
                "k {k}, stride {stride}: at most {MAX_BRANCHES} branches and stride 1 or 2"
            )));
        }
        Ok(())
    }

    fn build(&self, device: &Device) -> MobileOneBlock {
        let s = self;
        MobileOneBlock::new(s.c1, s.c2, s.k, s.stride, s.use_se, device)
    }
}

/// The seed's `conv_an` helper (called as `conv_bn`): `nn.Sequential(conv=Conv2d(bias=False), bn=BatchNorm2d)`.
/// A bias right before BatchNorm would be redundant; the seed and Apple's MobileOne both leave it out.
#[derive(Module, Debug)]
pub struct ConvBn {
    pub conv: Conv2d,
    pub bn: Bn,
}

impl ConvBn {
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        stride: usize,
        groups: usize,
        device: &Device,
    ) -> Self {
        ConvBn {
            conv: Conv2d::new(c1, c2, k, stride, k / 2, groups, 1, false, device),
            bn: Bn::new(c2, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.bn.forward(self.conv.forward(x))
    }
}

/// Squeeze-excite (Apple's MobileOne SE: ratio 1/16, ReLU, sigmoid gate).
#[derive(Module, Debug)]
pub struct Se {
    pub reduce: Conv2d,
    pub expand: Conv2d,
}

impl Se {
    pub fn hidden(c: usize) -> usize {
        ((c as f64 * 0.0625) as usize).max(1)
    }

    pub fn new(c: usize, device: &Device) -> Self {
        let rd = Self::hidden(c);
        Se {
            reduce: Conv2d::new(c, rd, 1, 1, 0, 1, 1, true, device),
            expand: Conv2d::new(rd, c, 1, 1, 0, 1, 1, true, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let s = adaptive_avg_pool2d(x.clone(), [1, 1]);
        let s = sigmoid(self.expand.forward(relu(self.reduce.forward(s))));
        x * s
    }
}

/// The seed's `DepthWiseConv` / `PointWiseConv`: a conv+BN held as its `conv` attribute.
#[derive(Module, Debug)]
pub struct Branch {
    pub conv: ConvBn,
}

impl Branch {
    fn new(c1: usize, c2: usize, k: usize, stride: usize, groups: usize, device: &Device) -> Self {
        Branch {
            conv: ConvBn::new(c1, c2, k, stride, groups, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// The seed's MobileOneBlock: depthwise stage (k 3x3 + 1x1 + identity) -> [SE] -> ReLU, then pointwise
/// stage (k 1x1 + identity) -> ReLU. The fields are the seed's attributes, in its order; the training
/// branches (`dw_*`, `pw_*`) and the deploy convs (`*_reparam`) are never both present.
#[derive(Module, Debug)]
pub struct MobileOneBlock {
    pub se: Option<Se>,
    /// The deploy form: one depthwise 3x3 and one pointwise 1x1 conv, both with bias.
    pub dw_reparam: Option<Conv2d>,
    pub pw_reparam: Option<Conv2d>,
    /// Identity BN of the depthwise stage (c1 == c2 and stride 1).
    pub dw_bn_layer: Option<Bn>,
    /// k depthwise 3x3 conv+BN branches.
    pub dw_3x3: Numbered<Branch>,
    /// The depthwise 1x1 scale branch.
    pub dw_1x1: Option<Branch>,
    /// Identity BN of the pointwise stage (same condition as the depthwise one, as in the seed).
    pub pw_bn_layer: Option<Bn>,
    /// k pointwise 1x1 conv+BN branches.
    pub pw_1x1: Numbered<Branch>,
    pub c1: usize,
    pub c2: usize,
    pub k: usize,
    pub stride: usize,
}

impl MobileOneBlock {
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        stride: usize,
        use_se: bool,
        device: &Device,
    ) -> Self {
        let identity = c1 == c2 && stride == 1;
        MobileOneBlock {
            se: use_se.then(|| Se::new(c1, device)),
            dw_reparam: None,
            pw_reparam: None,
            dw_bn_layer: identity.then(|| Bn::new(c1, device)),
            dw_3x3: Numbered::new(
                (0..k)
                    .map(|_| Branch::new(c1, c1, 3, stride, c1, device))
                    .collect(),
            ),
            dw_1x1: Some(Branch::new(c1, c1, 1, stride, c1, device)),
            pw_bn_layer: identity.then(|| Bn::new(c1, device)),
            pw_1x1: Numbered::new(
                (0..k)
                    .map(|_| Branch::new(c1, c2, 1, 1, 1, device))
                    .collect(),
            ),
            c1,
            c2,
            k,
            stride,
        }
    }

    /// The deploy convs, once reparameterized.
    pub fn fused(&self) -> Option<(&Conv2d, &Conv2d)> {
        self.dw_reparam.as_ref().zip(self.pw_reparam.as_ref())
    }

    /// The training branches, before reparameterization.
    fn stages(&self) -> Option<Stages<'_>> {
        let dw_1x1 = &self.dw_1x1.as_ref()?.conv;
        let pw_1x1: Vec<&ConvBn> = self.pw_1x1.iter().map(|b| &b.conv).collect();
        if pw_1x1.is_empty() {
            return None;
        }
        Some(Stages {
            dw: std::iter::once(dw_1x1)
                .chain(self.dw_3x3.iter().map(|b| &b.conv))
                .collect(),
            dw_identity: self.dw_bn_layer.as_ref(),
            pw: pw_1x1,
            pw_identity: self.pw_bn_layer.as_ref(),
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let se = |y: Tensor<4>| match &self.se {
            Some(se) => se.forward(y),
            None => y,
        };
        if let Some((dw, pw)) = self.fused() {
            let y = relu(se(dw.forward(x)));
            return relu(pw.forward(y));
        }
        let st = self
            .stages()
            .expect("a MobileOneBlock holds branches or fused convs");
        let y = relu(se(sum_branches(&st.dw, st.dw_identity, x)));
        relu(sum_branches(&st.pw, st.pw_identity, y))
    }
}

/// An unfused block's branches in the order of the seed's forward pass: the depthwise 1x1, then the 3x3s, then
/// the identity BN; the pointwise 1x1s, then the identity BN.
struct Stages<'a> {
    dw: Vec<&'a ConvBn>,
    dw_identity: Option<&'a Bn>,
    pw: Vec<&'a ConvBn>,
    pw_identity: Option<&'a Bn>,
}

fn sum_branches(convs: &[&ConvBn], identity: Option<&Bn>, x: Tensor<4>) -> Tensor<4> {
    let mut y = convs[0].forward(x.clone());
    for c in &convs[1..] {
        y = y + c.forward(x.clone());
    }
    match identity {
        Some(bn) => y + bn.forward(x),
        None => y,
    }
}

impl ConvBn {
    fn kernel_bias(&self) -> (Tensor<4>, Tensor<1>) {
        fold_bn(
            self.conv.weight.val(),
            self.conv.bias.as_ref().map(|b| b.val()),
            &self.bn,
        )
    }
}

/// The identity as a conv kernel: depthwise `(c, 1, k, k)` or full `(c, c, 1, 1)`, a 1 at the centre tap.
fn identity_kernel(c: usize, depthwise: bool, ks: usize, like: &Tensor<1>) -> Tensor<4> {
    let in_dim = if depthwise { 1 } else { c };
    let mut v = vec![0f32; c * in_dim * ks * ks];
    for i in 0..c {
        let j = if depthwise { 0 } else { i };
        v[((i * in_dim + j) * ks + ks / 2) * ks + ks / 2] = 1.0;
    }
    Tensor::from_data(TensorData::new(v, [c, in_dim, ks, ks]), &like.device())
}

fn bn_as_kernel(bn: &Bn, depthwise: bool, ks: usize) -> (Tensor<4>, Tensor<1>) {
    let c = bn.weight.dims()[0];
    let k = identity_kernel(c, depthwise, ks, &bn.weight.val());
    fold_bn(k, None, bn)
}

impl MobileOneBlock {
    /// The single-conv equivalent of each stage: `(dw_kernel (c1,1,3,3), dw_bias, pw_kernel (c2,c1,1,1), pw_bias)`.
    /// Built from tensor ops, so gradients flow through it (for the seed's kernel regulariser).
    pub fn equivalent_kernel_bias(&self) -> Option<(Tensor<4>, Tensor<1>, Tensor<4>, Tensor<1>)> {
        let st = self.stages()?;
        let (dw_k, dw_b) = stage_kernel_bias(&st.dw, st.dw_identity, true);
        let (pw_k, pw_b) = stage_kernel_bias(&st.pw, st.pw_identity, false);
        Some((dw_k, dw_b, pw_k, pw_b))
    }

    /// The seed's optional training regulariser (left a stub there): the squared L2 norm of the equivalent
    /// deploy kernels, so weight decay can act on what the fused conv will hold rather than on each branch.
    pub fn custom_l2(&self) -> Option<Tensor<1>> {
        let (dw_k, _, pw_k, _) = self.equivalent_kernel_bias()?;
        Some(dw_k.powf_scalar(2.0).sum() + pw_k.powf_scalar(2.0).sum())
    }

    /// Replaces the branches by `dw_reparam` / `pw_reparam`; the branch parameters are dropped. Idempotent.
    pub fn reparameterize(mut self) -> MobileOneBlock {
        if let Some((dw_k, dw_b, pw_k, pw_b)) = self.equivalent_kernel_bias() {
            let st = self.stages().expect("equivalent_kernel_bias saw branches");
            let dw = Conv2d {
                padding: 1,
                ..conv_from(&st.dw[0].conv, dw_k, dw_b)
            };
            let pw = conv_from(&st.pw[0].conv, pw_k, pw_b);
            self.dw_reparam = Some(dw);
            self.pw_reparam = Some(pw);
            self.dw_bn_layer = None;
            self.dw_3x3 = Numbered::new(Vec::new());
            self.dw_1x1 = None;
            self.pw_bn_layer = None;
            self.pw_1x1 = Numbered::new(Vec::new());
        }
        self
    }
}

/// One stage's branches summed into one kernel and bias: the 1x1 kernels padded to 3x3 in the depthwise stage,
/// the identity BN as a kernel with a 1 at the centre tap.
fn stage_kernel_bias(
    convs: &[&ConvBn],
    identity: Option<&Bn>,
    depthwise: bool,
) -> (Tensor<4>, Tensor<1>) {
    let ks = if depthwise { 3 } else { 1 };
    let pad = |k: Tensor<4>| {
        let p = (ks - k.dims()[3]) / 2;
        if p == 0 {
            k
        } else {
            k.pad([(0, 0), (0, 0), (p, p), (p, p)], 0.0)
        }
    };
    let (k0, mut bias) = convs[0].kernel_bias();
    let mut kernel = pad(k0);
    for c in &convs[1..] {
        let (k, b) = c.kernel_bias();
        kernel = kernel + pad(k);
        bias = bias + b;
    }
    if let Some(bn) = identity {
        let (k, b) = bn_as_kernel(bn, depthwise, ks);
        kernel = kernel + k;
        bias = bias + b;
    }
    (kernel, bias)
}

impl BlockModule for MobileOneBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        MobileOneBlock::forward(self, x)
    }

    fn fuse(self) -> Self {
        self.reparameterize()
    }

    fn lower<L: Lowering>(&self, l: &mut L, x: &L::V) -> Result<L::V> {
        let se = |l: &mut L, y: L::V| match &self.se {
            Some(se) => {
                let s = l.global_avg_pool(&y);
                let s = l.conv2d(&s, &se.reduce);
                let s = l.relu(&s);
                let s = l.conv2d(&s, &se.expand);
                let s = l.sigmoid(&s);
                l.mul(&y, &s)
            }
            None => y,
        };
        if let Some((dw, pw)) = self.fused() {
            let y = l.conv2d(x, dw);
            let y = se(l, y);
            let y = l.relu(&y);
            let y = l.conv2d(&y, pw);
            return Ok(l.relu(&y));
        }
        let st = self
            .stages()
            .expect("a MobileOneBlock holds branches or fused convs");
        let y = branch_sum(l, x, &st.dw, st.dw_identity);
        let y = se(l, y);
        let y = l.relu(&y);
        let y = branch_sum(l, &y, &st.pw, st.pw_identity);
        Ok(l.relu(&y))
    }
}

/// The sum of an unfused stage's conv+BN branches and its identity BN, as the forward pass adds them.
fn branch_sum<L: Lowering>(l: &mut L, x: &L::V, convs: &[&ConvBn], identity: Option<&Bn>) -> L::V {
    let mut sum: Option<L::V> = None;
    let terms = convs
        .iter()
        .map(|c| (Some(&c.conv), &c.bn))
        .chain(identity.map(|bn| (None, bn)));
    for (conv, bn) in terms {
        let y = match conv {
            Some(conv) => l.conv2d(x, conv),
            None => x.clone(),
        };
        let y = l.batch_norm(&y, bn);
        sum = Some(match sum {
            Some(s) => l.add(&s, &y),
            None => y,
        });
    }
    sum.expect("a MobileOne stage has at least one branch")
}
