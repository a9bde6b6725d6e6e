//! The primitives the blocks are made of (`nn.Conv2d`, `nn.BatchNorm2d`, pooling, upsampling) and the
//! [`Named`] walk that gives every tensor its Ultralytics `state_dict` name. The blocks themselves live in
//! [`crate::modules`], one file each; they are re-exported here.

use burn::module::{
    Content, Devices, Flag, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper,
    ModuleVisitor, Param, ParamId,
};
use burn::tensor::module::{conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::{Device, Distribution, Tensor};
use std::any::Any;
use std::sync::{Arc, Mutex};

pub use crate::modules::bottleneck::Bottleneck;
pub use crate::modules::c2f::C2f;
pub use crate::modules::c3::C3;
pub use crate::modules::conv::Conv;
pub use crate::modules::detect::{
    anchor_grid, flatten_levels, map_sizes, Detect, HeadBranch, Stage,
};
pub use crate::modules::mobileone::{Branch, ConvBn, MobileOneBlock, Se};
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

/// Ultralytics sets every BatchNorm of a detector to these in `initialize_weights`.
pub const BN_EPS: f64 = 1e-3;
pub const BN_MOMENTUM: f64 = 0.03;
/// PyTorch's BatchNorm defaults, which a classifier keeps: `ClassificationModel` never calls
/// `initialize_weights`.
pub const TORCH_BN_EPS: f64 = 1e-5;
pub const TORCH_BN_MOMENTUM: f64 = 0.1;

thread_local! {
    /// `(eps, momentum)` of the BatchNorms built on this thread ([`with_bn_defaults`]).
    static BN_DEFAULTS: std::cell::Cell<(f64, f64)> = const { std::cell::Cell::new((BN_EPS, BN_MOMENTUM)) };
}

/// Builds with `(eps, momentum)` for every [`Bn::new`] inside `build` (the blocks' constructors take no such
/// argument; a model is built on one thread), then restores the detector's values.
pub fn with_bn_defaults<T>(eps: f64, momentum: f64, build: impl FnOnce() -> T) -> T {
    let prev = BN_DEFAULTS.with(|c| c.replace((eps, momentum)));
    let out = build();
    BN_DEFAULTS.with(|c| c.set(prev));
    out
}

/// A mutable reference to one named tensor of a module, tagged with its kind, which the type that holds it
/// decides (a `Conv2d`'s weight, a `Bn`'s weight or running statistics, a `FixedConv`'s filter). The kind decides
/// Ultralytics' optimizer group (weights with decay, norm weights, biases without), whether a model is fused (no
/// norm layers left) and what is trained.
pub enum Slot<'a> {
    /// A conv filter: trained with weight decay.
    W4(&'a mut Param<Tensor<4>>),
    /// A bias (of a conv or a norm layer): trained without decay.
    W1(&'a mut Param<Tensor<1>>),
    /// A norm layer's weight: trained without decay.
    Norm(&'a mut Param<Tensor<1>>),
    /// A `Linear` layer's weight, held as a 1x1 conv filter `(out, in, 1, 1)` and saved and loaded as PyTorch's
    /// `(out, in)`: trained with weight decay, as a conv filter.
    Linear(&'a mut Param<Tensor<4>>),
    /// A fixed tensor saved with the weights but never trained (the DFL projection).
    Frozen(&'a mut Param<Tensor<4>>),
    /// BatchNorm running statistics: saved and loaded, not trained, not counted as parameters. What is written
    /// here becomes the [`RunningStat`]'s value (its id kept).
    Stat(&'a mut Param<Tensor<1>>),
}

/// Visits every tensor of a module under its Ultralytics state_dict key.
///
/// The key is the path of burn's derived field names (`Module::map` reports each field as it enters it), so a
/// block's tensors are named where its struct is declared, as PyTorch names a module's attributes: fields join
/// with `.`, a `Vec` or tuple adds the item's index (`nn.Sequential`, `nn.ModuleList`), an enum variant and an
/// `Option` add nothing, and a [`Numbered`] list joins its index with `_` (the seed's `setattr(self,
/// f"dw_3x3_{i}", ...)`). No block spells a key.
pub trait Named {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>));
}

/// `module` mapped through the name walk (burn's `map` takes the module by value).
fn walk_named<M: Module>(module: M, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) -> M {
    module.map(&mut NameWalk {
        prefix,
        path: Vec::new(),
        f,
    })
}

impl<M: Module> Named for M {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        *self = walk_named(self.clone(), prefix, f);
    }
}

/// The read-only walk: the same names and kinds from `&self`. It walks a clone, which shares the tensors, so
/// it sees them all; what the callback writes through a slot is dropped with the clone.
pub trait NamedRef {
    fn for_each_named(&self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>));
}

impl<M: Module> NamedRef for M {
    fn for_each_named(&self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        walk_named(self.clone(), prefix, f);
    }
}

impl Slot<'_> {
    /// The number of values.
    pub fn numel(&self) -> usize {
        match self {
            Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => p.shape().num_elements(),
            Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => p.shape().num_elements(),
        }
    }

    /// The tensor's id (a running statistic's is its `RunningStat`'s).
    pub fn id(&self) -> ParamId {
        match self {
            Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => p.id,
            Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => p.id,
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

/// A list whose items Ultralytics' modules name `{field}_{i}` rather than `{field}.{i}` (attributes set in a
/// loop, as the seed's MobileOneBlock does).
#[derive(Module, Debug)]
pub struct Numbered<T: Module> {
    pub items: Vec<T>,
}

impl<T: Module> Numbered<T> {
    pub fn new(items: Vec<T>) -> Self {
        Numbered { items }
    }
}

impl<T: Module> std::ops::Deref for Numbered<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.items
    }
}

/// The container types burn's derive reports (`Struct:{name}`) for the types whose tensors have their own kind.
const BN: &str = "Struct:Bn";
const FIXED_CONV: &str = "Struct:FixedConv";
const LINEAR: &str = "Struct:Linear";
const NUMBERED: &str = "Struct:Numbered";

/// One step of the path: the field (or index) entered and the container that holds it.
struct Step {
    name: String,
    container: String,
}

struct NameWalk<'p, 'f> {
    prefix: &'p str,
    path: Vec<Step>,
    f: &'f mut dyn FnMut(String, Slot<'_>),
}

impl NameWalk<'_, '_> {
    fn key(&self) -> String {
        let mut k = self.prefix.to_string();
        for (i, s) in self.path.iter().enumerate() {
            if s.container.starts_with("Enum:") || s.container == NUMBERED {
                continue;
            }
            let numbered = i > 0 && self.path[i - 1].container == NUMBERED;
            if numbered {
                k.push('_');
            } else if !k.is_empty() {
                k.push('.');
            }
            k.push_str(&s.name);
        }
        k
    }
}

impl ModuleMapper for NameWalk<'_, '_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.push(Step {
            name: name.to_string(),
            container: container_type.to_string(),
        });
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = self.key();
        let (owner, field) = self
            .path
            .last()
            .map_or(("", ""), |s| (s.container.as_str(), s.name.as_str()));
        let any: &mut dyn Any = &mut param;
        let slot = if let Some(p) = any.downcast_mut::<Param<Tensor<4>>>() {
            if owner == FIXED_CONV {
                Slot::Frozen(p)
            } else if owner == LINEAR {
                Slot::Linear(p)
            } else {
                Slot::W4(p)
            }
        } else if let Some(p) = any.downcast_mut::<Param<Tensor<1>>>() {
            match (owner, field) {
                (BN, Bn::WEIGHT) => Slot::Norm(p),
                (BN, Bn::RUNNING_MEAN | Bn::RUNNING_VAR) => Slot::Stat(p),
                _ => Slot::W1(p),
            }
        } else {
            // Every module of the model crate holds 1-d and 4-d tensors only (checked by the named test).
            panic!("{key}: a {D}-d tensor has no kind")
        };
        (self.f)(key, slot);
        param
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

/// A conv filter saved with the weights but never trained: the DFL projection (`Detect.dfl.conv`, a
/// bias-free `nn.Conv2d` with `requires_grad_(False)`).
#[derive(Module, Debug)]
pub struct FixedConv {
    pub weight: Param<Tensor<4>>,
}

impl Conv2d {
    /// The state_dict names of `nn.Conv2d`'s tensors.
    pub const WEIGHT: &'static str = "weight";
    pub const BIAS: &'static str = "bias";
}

/// `nn.BatchNorm2d` with Ultralytics' eps and momentum. Inference uses the running statistics.
#[derive(Module, Debug)]
pub struct Bn {
    pub weight: Param<Tensor<1>>,
    pub bias: Param<Tensor<1>>,
    pub running_mean: RunningStat,
    pub running_var: RunningStat,
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
            running_mean: RunningStat::new(Tensor::zeros([c], device)),
            running_var: RunningStat::new(Tensor::ones([c], device)),
            training: Param::from_bool(true),
            eps: BN_DEFAULTS.with(|c| c.get().0),
            momentum: BN_DEFAULTS.with(|c| c.get().1),
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
            self.running_mean.value(),
            self.running_var.value(),
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
        let mean = self.running_mean.value().detach() * (1.0 - m) + out.mean.detach() * m;
        let var = self.running_var.value().detach() * (1.0 - m) + unbiased * m;
        self.running_mean.update(mean);
        self.running_var.update(var);
        out.output
    }
}

impl Bn {
    /// The state_dict names of `nn.BatchNorm2d`'s tensors.
    pub const WEIGHT: &'static str = "weight";
    pub const RUNNING_MEAN: &'static str = "running_mean";
    pub const RUNNING_VAR: &'static str = "running_var";
}

/// A BatchNorm running statistic: a tensor `forward` updates through `&self`, saved with the weights, never
/// trained. Written instead of burn's `RunningState`, which writes what a walk (`Module::map`) or a device move
/// gives it into the storage its clones share, so that loading a float64 twin or an EMA copy would change the
/// model it was cloned from; here both give the module storage of its own (the id kept). One model is updated
/// by one thread (data-parallel replicas are separate models), so burn's per-thread averaging is not needed.
#[derive(Clone, Debug)]
pub struct RunningStat {
    id: ParamId,
    value: Arc<Mutex<Tensor<1>>>,
}

impl RunningStat {
    pub fn new(value: Tensor<1>) -> Self {
        Self::with_id(ParamId::new(), value)
    }

    fn with_id(id: ParamId, value: Tensor<1>) -> Self {
        RunningStat {
            id,
            value: Arc::new(Mutex::new(value)),
        }
    }

    pub fn value(&self) -> Tensor<1> {
        self.lock().clone()
    }

    pub fn update(&self, value: Tensor<1>) {
        *self.lock() = value;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tensor<1>> {
        // A panic while the lock was held left a whole tensor behind (assignments are not torn).
        self.value.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Module for RunningStat {
    fn collect_devices(&self, mut devices: Devices) -> Devices {
        let device = self.value().device();
        if !devices.contains(&device) {
            devices.push(device);
        }
        devices
    }

    fn fork(self, device: &Device) -> Self {
        self.to_device(device)
    }

    fn to_device(self, device: &Device) -> Self {
        Self::with_id(self.id, self.value().to_device(device))
    }

    fn train(self) -> Self {
        Self::with_id(self.id, Tensor::from_inner(self.value()))
    }

    fn valid(&self) -> Self {
        Self::with_id(self.id, self.value().without_autodiff())
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        visitor.visit_float(&Param::initialized(self.id, self.value()));
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let param = mapper.map_float(Param::initialized(self.id, self.value()));
        let (id, value, _) = param.consume();
        Self::with_id(id, value.set_require_grad(false))
    }
}

impl ModuleDisplayDefault for RunningStat {
    fn content(&self, content: Content) -> Option<Content> {
        content.add_formatted(&"RunningStat".to_string()).optional()
    }
}

impl ModuleDisplay for RunningStat {}

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
