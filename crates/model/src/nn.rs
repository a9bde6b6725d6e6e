//! The primitives the blocks are made of (`nn.Conv2d`, `nn.BatchNorm2d`, pooling, upsampling) and the
//! [`Named`] walk that gives every tensor its Ultralytics `state_dict` name. The blocks themselves live in
//! [`crate::modules`], one file each; they are re-exported here.

use burn::module::{Flag, Module, Param, RunningState};
use burn::tensor::module::{conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};

pub use crate::modules::bottleneck::Bottleneck;
pub use crate::modules::c2f::C2f;
pub use crate::modules::c3::C3;
pub use crate::modules::conv::Conv;
pub use crate::modules::detect::{anchor_grid, flatten_levels, map_sizes, Detect, HeadBranch};
pub use crate::modules::mobileone::{
    ConvBn, MobileOneBlock, MobileOneBranches, MobileOneFused, Se,
};
pub use crate::modules::spp::Spp;
pub use crate::modules::sppf::Sppf;
pub use crate::modules::BlockModule;

/// A `Conv`'s activation: Ultralytics' `Conv.default_act` (SiLU, or the model YAML's `activation:`) for
/// `act=True`, none for `act=False`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    Silu,
    Relu,
    Identity,
}

impl Act {
    pub fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Act::Silu => burn::tensor::activation::silu(x),
            Act::Relu => burn::tensor::activation::relu(x),
            Act::Identity => x,
        }
    }

    /// `self` where a constructor's `act` flag is true, else no activation.
    pub fn or_none(self, on: bool) -> Act {
        if on {
            self
        } else {
            Act::Identity
        }
    }

    /// The YAML's `activation:` (`nn.SiLU()`, `torch.nn.ReLU()`, ...).
    pub fn from_yaml(s: &str) -> Option<Act> {
        let s = s.trim();
        let s = s.strip_prefix("torch.").unwrap_or(s);
        let name = s.strip_prefix("nn.")?;
        let (name, args) = name.split_once('(')?;
        let args = args.strip_suffix(')')?.replace(' ', "");
        if !(args.is_empty() || args == "inplace=True" || args == "True") {
            return None;
        }
        match name {
            "SiLU" => Some(Act::Silu),
            "ReLU" => Some(Act::Relu),
            _ => None,
        }
    }
}

/// Ultralytics sets every BatchNorm to these in `initialize_weights`.
pub const BN_EPS: f64 = 1e-3;
pub const BN_MOMENTUM: f64 = 0.03;

/// A mutable reference to one named tensor of a module, tagged with its kind where the module makes it.
/// The kind decides Ultralytics' optimizer group (weights with decay, norm weights, biases without), whether a
/// model is fused (no norm layers left) and what is trained.
pub enum Slot<'a> {
    /// A conv filter: trained with weight decay.
    W4(&'a mut Param<Tensor<4>>),
    /// A bias (of a conv or a norm layer): trained without decay.
    W1(&'a mut Param<Tensor<1>>),
    /// A norm layer's weight: trained without decay.
    Norm(&'a mut Param<Tensor<1>>),
    /// A fixed tensor saved with the weights but never trained (the DFL projection).
    Frozen(&'a mut Param<Tensor<4>>),
    /// BatchNorm running statistics: saved and loaded, not trained, not counted as parameters. Read them with
    /// `value_sync()`: burn's `value()` does not yet see the latest `update()`.
    Stat(&'a mut RunningState<Tensor<1>>),
}

/// Visits every tensor of a module under its Ultralytics state_dict key.
pub trait Named {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>));
}

/// The read-only walk: the same names and kinds from `&self`. It walks a clone, which shares the tensors, so
/// it sees them all; what the callback writes through a slot is dropped with the clone.
pub trait NamedRef: Named + Clone {
    fn for_each_named(&self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        self.clone().visit_named(prefix, f)
    }
}

impl<T: Named + Clone> NamedRef for T {}

impl Slot<'_> {
    /// The number of values.
    pub fn numel(&self) -> usize {
        match self {
            Slot::W4(p) | Slot::Frozen(p) => p.shape().num_elements(),
            Slot::W1(p) | Slot::Norm(p) => p.shape().num_elements(),
            Slot::Stat(s) => s.value().shape().num_elements(),
        }
    }

    /// Whether this belongs to a norm layer (its weight or running statistics): only an unfused model has one.
    pub fn is_norm(&self) -> bool {
        matches!(self, Slot::Norm(_) | Slot::Stat(_))
    }

    /// Whether this is a learnable parameter as Ultralytics counts them (running statistics are not).
    pub fn is_parameter(&self) -> bool {
        !matches!(self, Slot::Stat(_))
    }
}

pub(crate) fn key(prefix: &str, name: &str) -> String {
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

impl Conv2d {
    /// The state_dict names of `nn.Conv2d`'s tensors.
    pub const WEIGHT: &'static str = "weight";
    pub const BIAS: &'static str = "bias";
}

impl Named for Conv2d {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        f(key(prefix, Self::WEIGHT), Slot::W4(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f(key(prefix, Self::BIAS), Slot::W1(b));
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

impl Bn {
    /// The state_dict names of `nn.BatchNorm2d`'s tensors.
    pub const WEIGHT: &'static str = "weight";
    pub const RUNNING_MEAN: &'static str = "running_mean";
}

impl Named for Bn {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        f(key(prefix, Self::WEIGHT), Slot::Norm(&mut self.weight));
        f(key(prefix, "bias"), Slot::W1(&mut self.bias));
        f(
            key(prefix, Self::RUNNING_MEAN),
            Slot::Stat(&mut self.running_mean),
        );
        f(
            key(prefix, "running_var"),
            Slot::Stat(&mut self.running_var),
        );
    }
}

pub(crate) fn visit_list<T: Named>(
    items: &mut [T],
    prefix: &str,
    f: &mut dyn FnMut(String, Slot<'_>),
) {
    for (i, m) in items.iter_mut().enumerate() {
        m.visit_named(&key(prefix, &i.to_string()), f);
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

/// Nearest-neighbour upsampling by an integer factor (`nn.Upsample(None, s, "nearest")`).
pub fn upsample_nearest(x: Tensor<4>, scale: usize) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    interpolate(
        x,
        InterpolateOptions::new(InterpolateMode::Nearest).with_output_size([h * scale, w * scale]),
    )
}
