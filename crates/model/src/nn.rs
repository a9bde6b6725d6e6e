//! The building blocks of a YOLOv8 graph, each with its Ultralytics `state_dict` names.
//!
//! Every block can run in its training form (conv + BatchNorm branches) or its fused form (BatchNorm folded
//! into a conv bias); [`crate::fuse`] turns one into the other.

use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::activation::{relu, sigmoid, silu, softmax};
use burn::tensor::module::{adaptive_avg_pool2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};

/// Ultralytics sets every BatchNorm to these in `initialize_weights`.
pub const BN_EPS: f64 = 1e-3;
pub const BN_MOMENTUM: f64 = 0.03;

/// A mutable reference to one named tensor of a module.
pub enum Slot<'a> {
    W4(&'a mut Param<Tensor<4>>),
    W1(&'a mut Param<Tensor<1>>),
    /// BatchNorm running statistics: saved and loaded, not trained, not counted as parameters. Read them with
    /// `value_sync()`: burn's `value()` does not yet see the latest `update()`.
    Stat(&'a mut RunningState<Tensor<1>>),
}

/// Visits every tensor of a module under its Ultralytics state_dict key.
pub trait Named {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>));
}

fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn uniform<const D: usize>(shape: [usize; D], bound: f64, device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Uniform(-bound, bound), device)
}

/// A plain `nn.Conv2d` (PyTorch's default init: uniform +-1/sqrt(fan_in) for weight and bias).
#[derive(Module, Debug)]
pub struct Conv2d {
    pub weight: Param<Tensor<4>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        stride: usize,
        padding: usize,
        groups: usize,
        dilation: usize,
        bias: bool,
        device: &Device,
    ) -> Self {
        let fan_in = (c1 / groups * k * k) as f64;
        let bound = 1.0 / fan_in.sqrt();
        Conv2d {
            weight: Param::from_tensor(uniform([c2, c1 / groups, k, k], bound, device)),
            bias: bias.then(|| Param::from_tensor(uniform([c2], bound, device))),
            stride,
            padding,
            dilation,
            groups,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
            ConvOptions::new(
                [self.stride; 2],
                [self.padding; 2],
                [self.dilation; 2],
                self.groups,
            ),
        )
    }

    pub fn out_channels(&self) -> usize {
        self.weight.shape().dims::<4>()[0]
    }
}

impl Named for Conv2d {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        f(key(prefix, "weight"), Slot::W4(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f(key(prefix, "bias"), Slot::W1(b));
        }
    }
}

/// `nn.BatchNorm2d` with Ultralytics' eps and momentum. Inference uses the running statistics.
#[derive(Module, Debug)]
pub struct Bn {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    /// Batch statistics are used (and the running ones updated) on autodiff devices while this is on.
    pub training: Param<Flag>,
    pub eps: f64,
    pub momentum: f64,
}

impl Bn {
    pub fn new(c: usize, device: &Device) -> Self {
        Bn {
            weight: Param::from_tensor(Tensor::ones([c], device)),
            bias: Param::from_tensor(Tensor::zeros([c], device)),
            running_mean: RunningState::new(Tensor::zeros([c], device)),
            running_var: RunningState::new(Tensor::ones([c], device)),
            training: Param::from_bool(true),
            eps: BN_EPS,
            momentum: BN_MOMENTUM,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device().is_autodiff() && self.training.is_enabled() {
            return self.forward_train(x);
        }
        burn::tensor::module::batch_norm(
            x,
            self.weight.val(),
            self.bias.val(),
            self.running_mean.value_sync(),
            self.running_var.value_sync(),
            self.eps,
        )
    }
}

impl Bn {
    /// Normalises with the batch statistics and updates the running ones like PyTorch: momentum 0.03 and the
    /// unbiased batch variance (burn's own BatchNorm keeps the biased one).
    fn forward_train(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, _, h, w] = x.dims();
        let n = (b * h * w) as f64;
        let out =
            burn::tensor::module::batch_norm_train(x, self.weight.val(), self.bias.val(), self.eps);
        let unbiased = out.variance.detach() * (n / (n - 1.0).max(1.0));
        let m = self.momentum;
        let mean = self.running_mean.value_sync().detach() * (1.0 - m) + out.mean.detach() * m;
        let var = self.running_var.value_sync().detach() * (1.0 - m) + unbiased * m;
        self.running_mean.update(mean);
        self.running_var.update(var);
        out.output
    }
}

impl Named for Bn {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        f(key(prefix, "weight"), Slot::W1(&mut self.weight));
        f(key(prefix, "bias"), Slot::W1(&mut self.bias));
        f(
            key(prefix, "running_mean"),
            Slot::Stat(&mut self.running_mean),
        );
        f(
            key(prefix, "running_var"),
            Slot::Stat(&mut self.running_var),
        );
    }
}

/// Ultralytics `Conv`: Conv2d(bias=False) -> BatchNorm2d -> SiLU; fused: Conv2d(bias=True) -> SiLU.
#[derive(Module, Debug)]
pub struct Conv {
    pub conv: Conv2d,
    pub bn: Option<Bn>,
    pub act: bool,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        k: usize,
        s: usize,
        p: usize,
        g: usize,
        d: usize,
        act: bool,
        device: &Device,
    ) -> Self {
        Conv {
            conv: Conv2d::new(c1, c2, k, s, p, g, d, false, device),
            bn: Some(Bn::new(c2, device)),
            act,
        }
    }

    /// `Conv(c1, c2, k, s)` with auto padding, no groups or dilation.
    pub fn simple(c1: usize, c2: usize, k: usize, s: usize, device: &Device) -> Self {
        Self::new(c1, c2, k, s, k / 2, 1, 1, true, device)
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut y = self.conv.forward(x);
        if let Some(bn) = &self.bn {
            y = bn.forward(y);
        }
        if self.act {
            silu(y)
        } else {
            y
        }
    }
}

impl Named for Conv {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.conv.visit_named(&key(prefix, "conv"), f);
        if let Some(bn) = &mut self.bn {
            bn.visit_named(&key(prefix, "bn"), f);
        }
    }
}

#[derive(Module, Debug)]
pub struct Bottleneck {
    pub cv1: Conv,
    pub cv2: Conv,
    pub add: bool,
}

impl Bottleneck {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        shortcut: bool,
        g: usize,
        k: (usize, usize),
        e: f64,
        device: &Device,
    ) -> Self {
        let c_ = (c2 as f64 * e) as usize;
        Bottleneck {
            cv1: Conv::new(c1, c_, k.0, 1, k.0 / 2, 1, 1, true, device),
            cv2: Conv::new(c_, c2, k.1, 1, k.1 / 2, g, 1, true, device),
            add: shortcut && c1 == c2,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv2.forward(self.cv1.forward(x.clone()));
        if self.add {
            x + y
        } else {
            y
        }
    }
}

impl Named for Bottleneck {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
    }
}

fn visit_list<T: Named>(items: &mut [T], prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
    for (i, m) in items.iter_mut().enumerate() {
        m.visit_named(&key(prefix, &i.to_string()), f);
    }
}

/// CSP bottleneck with two convolutions (YOLOv8's C2f).
#[derive(Module, Debug)]
pub struct C2f {
    pub cv1: Conv,
    pub cv2: Conv,
    pub m: Vec<Bottleneck>,
    pub c: usize,
}

impl C2f {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        device: &Device,
    ) -> Self {
        let c = (c2 as f64 * e) as usize;
        C2f {
            cv1: Conv::simple(c1, 2 * c, 1, 1, device),
            cv2: Conv::simple((2 + n) * c, c2, 1, 1, device),
            m: (0..n)
                .map(|_| Bottleneck::new(c, c, shortcut, g, (3, 3), 1.0, device))
                .collect(),
            c,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.cv1.forward(x);
        let mut ys = vec![y.clone().narrow(1, 0, self.c), y.narrow(1, self.c, self.c)];
        for m in &self.m {
            let last = ys.last().expect("two chunks present").clone();
            ys.push(m.forward(last));
        }
        self.cv2.forward(Tensor::cat(ys, 1))
    }
}

impl Named for C2f {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
        visit_list(&mut self.m, &key(prefix, "m"), f);
    }
}

/// CSP bottleneck with three convolutions.
#[derive(Module, Debug)]
pub struct C3 {
    pub cv1: Conv,
    pub cv2: Conv,
    pub cv3: Conv,
    pub m: Vec<Bottleneck>,
}

impl C3 {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        device: &Device,
    ) -> Self {
        let c_ = (c2 as f64 * e) as usize;
        C3 {
            cv1: Conv::simple(c1, c_, 1, 1, device),
            cv2: Conv::simple(c1, c_, 1, 1, device),
            cv3: Conv::simple(2 * c_, c2, 1, 1, device),
            m: (0..n)
                .map(|_| Bottleneck::new(c_, c_, shortcut, g, (1, 3), 1.0, device))
                .collect(),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut a = self.cv1.forward(x.clone());
        for m in &self.m {
            a = m.forward(a);
        }
        self.cv3
            .forward(Tensor::cat(vec![a, self.cv2.forward(x)], 1))
    }
}

impl Named for C3 {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
        self.cv3.visit_named(&key(prefix, "cv3"), f);
        visit_list(&mut self.m, &key(prefix, "m"), f);
    }
}

/// Max pooling with stride 1 and `k // 2` padding (padding never wins the max, as in PyTorch).
pub fn same_max_pool(x: Tensor<4>, k: usize) -> Tensor<4> {
    max_pool2d(
        x,
        MaxPoolOptions::new([k, k])
            .with_stride([1, 1])
            .with_padding([k / 2, k / 2]),
    )
}

/// Spatial pyramid pooling, fast: `n` max pools in series.
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
        cv1_act: bool,
        device: &Device,
    ) -> Self {
        let c_ = c1 / 2;
        Sppf {
            cv1: Conv::new(c1, c_, 1, 1, 0, 1, 1, cv1_act, device),
            cv2: Conv::simple(c_ * (n + 1), c2, 1, 1, device),
            k,
            n,
            add: shortcut && c1 == c2,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
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
}

impl Named for Sppf {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
    }
}

/// Spatial pyramid pooling with parallel max pools.
#[derive(Module, Debug)]
pub struct Spp {
    pub cv1: Conv,
    pub cv2: Conv,
    #[module(skip)]
    pub k: Vec<usize>,
}

impl Spp {
    pub fn new(c1: usize, c2: usize, k: Vec<usize>, device: &Device) -> Self {
        let c_ = c1 / 2;
        Spp {
            cv1: Conv::simple(c1, c_, 1, 1, device),
            cv2: Conv::simple(c_ * (k.len() + 1), c2, 1, 1, device),
            k,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.cv1.forward(x);
        let mut ys = vec![x.clone()];
        for &k in &self.k {
            ys.push(same_max_pool(x.clone(), k));
        }
        self.cv2.forward(Tensor::cat(ys, 1))
    }
}

impl Named for Spp {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.cv1.visit_named(&key(prefix, "cv1"), f);
        self.cv2.visit_named(&key(prefix, "cv2"), f);
    }
}

/// Nearest-neighbour upsampling by an integer factor (`nn.Upsample(None, s, "nearest")`).
pub fn upsample_nearest(x: Tensor<4>, scale: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h * scale, w * scale]),
    )
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

impl Named for ConvBn {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.conv.visit_named(&key(prefix, "conv"), f);
        self.bn.visit_named(&key(prefix, "bn"), f);
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

impl Named for Se {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.reduce.visit_named(&key(prefix, "reduce"), f);
        self.expand.visit_named(&key(prefix, "expand"), f);
    }
}

/// The training-time branches of a MobileOne block.
#[derive(Module, Debug)]
pub struct MobileOneBranches {
    /// `dw_3x3_{j}.conv`: k depthwise 3x3 conv+BN branches.
    pub dw_3x3: Vec<ConvBn>,
    /// `dw_1x1.conv`: the depthwise 1x1 scale branch.
    pub dw_1x1: ConvBn,
    /// Identity BN of the depthwise stage (c1 == c2 and stride 1).
    pub dw_bn_layer: Option<Bn>,
    /// `pw_1x1_{j}.conv`: k pointwise 1x1 conv+BN branches.
    pub pw_1x1: Vec<ConvBn>,
    /// Identity BN of the pointwise stage (same condition as the depthwise one, as in the seed).
    pub pw_bn_layer: Option<Bn>,
}

/// The deploy form: one depthwise 3x3 and one pointwise 1x1 conv, both with bias.
#[derive(Module, Debug)]
pub struct MobileOneFused {
    pub dw_reparam: Conv2d,
    pub pw_reparam: Conv2d,
}

/// The seed's MobileOneBlock: depthwise stage (k 3x3 + 1x1 + identity) -> [SE] -> ReLU, then pointwise
/// stage (k 1x1 + identity) -> ReLU. Exactly one of `branches` / `fused` is present.
#[derive(Module, Debug)]
pub struct MobileOneBlock {
    pub branches: Option<MobileOneBranches>,
    pub fused: Option<MobileOneFused>,
    pub se: Option<Se>,
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
            branches: Some(MobileOneBranches {
                dw_3x3: (0..k)
                    .map(|_| ConvBn::new(c1, c1, 3, stride, c1, device))
                    .collect(),
                dw_1x1: ConvBn::new(c1, c1, 1, stride, c1, device),
                dw_bn_layer: identity.then(|| Bn::new(c1, device)),
                pw_1x1: (0..k)
                    .map(|_| ConvBn::new(c1, c2, 1, 1, 1, device))
                    .collect(),
                pw_bn_layer: identity.then(|| Bn::new(c1, device)),
            }),
            fused: None,
            se: use_se.then(|| Se::new(c1, device)),
            c1,
            c2,
            k,
            stride,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let se = |y: Tensor<4>| match &self.se {
            Some(se) => se.forward(y),
            None => y,
        };
        if let Some(f) = &self.fused {
            let y = relu(se(f.dw_reparam.forward(x)));
            return relu(f.pw_reparam.forward(y));
        }
        let b = self
            .branches
            .as_ref()
            .expect("a MobileOneBlock holds branches or fused convs");
        let mut dw = b.dw_1x1.forward(x.clone());
        for br in &b.dw_3x3 {
            dw = dw + br.forward(x.clone());
        }
        if let Some(bn) = &b.dw_bn_layer {
            dw = dw + bn.forward(x);
        }
        let y = relu(se(dw));
        let mut pw = b.pw_1x1[0].forward(y.clone());
        for br in &b.pw_1x1[1..] {
            pw = pw + br.forward(y.clone());
        }
        if let Some(bn) = &b.pw_bn_layer {
            pw = pw + bn.forward(y);
        }
        relu(pw)
    }
}

impl Named for MobileOneBlock {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        if let Some(b) = &mut self.branches {
            if let Some(bn) = &mut b.dw_bn_layer {
                bn.visit_named(&key(prefix, "dw_bn_layer"), f);
            }
            for (j, br) in b.dw_3x3.iter_mut().enumerate() {
                br.visit_named(&key(prefix, &format!("dw_3x3_{j}.conv")), f);
            }
            b.dw_1x1.visit_named(&key(prefix, "dw_1x1.conv"), f);
            if let Some(bn) = &mut b.pw_bn_layer {
                bn.visit_named(&key(prefix, "pw_bn_layer"), f);
            }
            for (j, br) in b.pw_1x1.iter_mut().enumerate() {
                br.visit_named(&key(prefix, &format!("pw_1x1_{j}.conv")), f);
            }
        }
        if let Some(fz) = &mut self.fused {
            fz.dw_reparam.visit_named(&key(prefix, "dw_reparam"), f);
            fz.pw_reparam.visit_named(&key(prefix, "pw_reparam"), f);
        }
        if let Some(se) = &mut self.se {
            se.visit_named(&key(prefix, "se"), f);
        }
    }
}

/// One detection level's branch: Conv(3x3) -> Conv(3x3) -> Conv2d(1x1, bias).
#[derive(Module, Debug)]
pub struct HeadBranch {
    pub c0: Conv,
    pub c1: Conv,
    pub out: Conv2d,
}

impl HeadBranch {
    pub fn new(cin: usize, c: usize, cout: usize, device: &Device) -> Self {
        HeadBranch {
            c0: Conv::simple(cin, c, 3, 1, device),
            c1: Conv::simple(c, c, 3, 1, device),
            out: Conv2d::new(c, cout, 1, 1, 0, 1, 1, true, device),
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.out.forward(self.c1.forward(self.c0.forward(x)))
    }
}

impl Named for HeadBranch {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.c0.visit_named(&key(prefix, "0"), f);
        self.c1.visit_named(&key(prefix, "1"), f);
        self.out.visit_named(&key(prefix, "2"), f);
    }
}

/// YOLOv8 (legacy) Detect head with DFL box decoding.
#[derive(Module, Debug)]
pub struct Detect {
    pub cv2: Vec<HeadBranch>,
    pub cv3: Vec<HeadBranch>,
    /// The frozen DFL projection (weights 0..reg_max-1), kept as a tensor so it is saved like Ultralytics does.
    pub dfl: Param<Tensor<4>>,
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
        device: &Device,
    ) -> Self {
        let c2 = 16.max(ch[0] / 4).max(reg_max * 4);
        let c3 = ch[0].max(nc.min(100));
        let mut cv2: Vec<HeadBranch> = ch
            .iter()
            .map(|&x| HeadBranch::new(x, c2, 4 * reg_max, device))
            .collect();
        let mut cv3: Vec<HeadBranch> = ch
            .iter()
            .map(|&x| HeadBranch::new(x, c3, nc, device))
            .collect();
        // Ultralytics' bias_init: box logits 2.0, class prior ~5 objects per 640 image.
        for (i, (a, b)) in cv2.iter_mut().zip(cv3.iter_mut()).enumerate() {
            a.out.bias = Some(Param::from_tensor(Tensor::full([4 * reg_max], 2.0, device)));
            let s = strides[i] as f64;
            let prior = (5.0 / nc as f64 / (640.0 / s).powi(2)).ln();
            b.out.bias = Some(Param::from_tensor(Tensor::full([nc], prior, device)));
        }
        let proj: Vec<f32> = (0..reg_max).map(|i| i as f32).collect();
        let dfl = Tensor::<1>::from_floats(proj.as_slice(), device).reshape([1, reg_max, 1, 1]);
        Detect {
            cv2,
            cv3,
            dfl: Param::from_tensor(dfl).set_require_grad(false),
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
                    vec![self.cv2[i].forward(x.clone()), self.cv3[i].forward(x)],
                    1,
                )
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
        let proj = self.dfl.val().reshape([1, 1, self.reg_max, 1]);
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

impl Named for Detect {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        visit_list(&mut self.cv2, &key(prefix, "cv2"), f);
        visit_list(&mut self.cv3, &key(prefix, "cv3"), f);
        f(key(prefix, "dfl.conv.weight"), Slot::W4(&mut self.dfl));
    }
}
