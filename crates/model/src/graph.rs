//! A YOLO model built from a [`ModelSpec`]: the layer list, its forward pass and its named tensors.

use crate::dry_run::DryRun;
use crate::error::Result;
use crate::lowering::Lowering;
use crate::modules::classify::Classify;
pub use crate::modules::Block;
use crate::nn::{upsample_nearest, Detect, Named, NamedRef, Slot};
use crate::spec::{ModelSpec, ModuleSpec, Task};
use burn::module::{Module, Param};
use burn::tensor::{Device, FloatDType, Tensor};

/// One row of the graph.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Layer {
    /// A block, or (Ultralytics' `nn.Sequential`, keys `model.i.j.*`) a stack of blocks.
    Single(Block),
    Stack(Vec<Block>),
    Upsample(usize),
    Concat(usize),
    Detect(Detect),
    Classify(Classify),
}

/// A YOLOv8 detection model, or a classifier (a `Classify` head). `spec` keeps the YAML it was built from.
#[derive(Module, Debug)]
pub struct YoloModel {
    /// Named as Ultralytics' `DetectionModel.model`, which puts every key under `model.`.
    pub model: Vec<Layer>,
    #[module(skip)]
    pub spec: ModelSpec,
    /// Set for a model read from an INT8 file: the CPU engine runs its quantized convolutions in INT8.
    #[module(skip)]
    pub int8: Option<crate::int8::Int8Info>,
}

impl YoloModel {
    /// Builds the model with Ultralytics' initialisation (PyTorch default conv init, BN 1/0, Detect bias init;
    /// a detector's BatchNorms at eps 1e-3 / momentum 0.03, a classifier's at PyTorch's 1e-5 / 0.1).
    pub fn new(spec: &ModelSpec, device: &Device) -> YoloModel {
        match spec.task() {
            Task::Detect => Self::build(spec, device),
            Task::Classify => crate::nn::with_bn_defaults(
                crate::nn::TORCH_BN_EPS,
                crate::nn::TORCH_BN_MOMENTUM,
                || Self::build(spec, device),
            ),
        }
    }

    fn build(spec: &ModelSpec, device: &Device) -> YoloModel {
        let mut layers = Vec::with_capacity(spec.layers.len());
        for l in &spec.layers {
            let layer = match &l.module {
                ModuleSpec::Upsample { scale } => Layer::Upsample(*scale),
                ModuleSpec::Concat => Layer::Concat(1),
                ModuleSpec::Detect {
                    nc,
                    reg_max,
                    ch,
                    legacy,
                } => {
                    // A validated spec lowers without error; its declared shapes are the fallback.
                    let strides = strides_of(&layers, spec).unwrap_or_else(|_| spec.strides());
                    Layer::Detect(Detect::new(
                        *nc, *reg_max, ch, strides, *legacy, spec.act, device,
                    ))
                }
                ModuleSpec::Classify(h) => Layer::Classify(h.build(device)),
                ModuleSpec::Block(m) => {
                    let mk = || m.build(device);
                    if l.repeats > 1 {
                        Layer::Stack((0..l.repeats).map(|_| mk()).collect())
                    } else {
                        Layer::Single(mk())
                    }
                }
            };
            layers.push(layer);
        }
        YoloModel {
            model: layers,
            spec: spec.clone(),
            int8: None,
        }
    }

    /// Every MobileOne block of the model, in order.
    pub fn mobileone_blocks(&self) -> Vec<&crate::modules::mobileone::MobileOneBlock> {
        let mut v = Vec::new();
        for l in &self.model {
            let blocks: &[Block] = match l {
                Layer::Single(b) => std::slice::from_ref(b),
                Layer::Stack(bs) => bs,
                _ => &[],
            };
            for b in blocks {
                if let Block::MobileOne(m) = b {
                    v.push(m);
                }
            }
        }
        v
    }

    /// The RepVGG recipe's regulariser ([`crate::modules::mobileone::MobileOneBlock::custom_l2`]) summed over
    /// the MobileOne blocks that still have branches; `None` when none has.
    pub fn rep_l2(&self) -> Option<Tensor<1>> {
        self.mobileone_blocks()
            .into_iter()
            .filter_map(|b| b.custom_l2())
            .reduce(|a, b| a + b)
    }

    /// The parameters of the MobileOne blocks' branch kernels: what the regulariser takes over from plain
    /// weight decay.
    pub fn rep_l2_params(&self) -> Vec<burn::module::ParamId> {
        use crate::nn::{NamedRef, Slot};
        let mut ids = Vec::new();
        for b in self.mobileone_blocks() {
            if b.custom_l2().is_none() {
                continue;
            }
            b.for_each_named("", &mut |_, slot| {
                if let Slot::W4(p) = slot {
                    ids.push(p.id);
                }
            });
        }
        ids
    }

    /// The Detect head. Detection code paths only: they refuse a classifier first ([`Self::task`]).
    pub fn detect(&self) -> &Detect {
        match self.model.last() {
            Some(Layer::Detect(d)) => d,
            _ => panic!("{}: a classifier has no Detect head", self.spec.source),
        }
    }

    /// The Classify head, `None` for a detector.
    pub fn classify_head(&self) -> Option<&Classify> {
        match self.model.last() {
            Some(Layer::Classify(c)) => Some(c),
            _ => None,
        }
    }

    pub fn task(&self) -> Task {
        self.spec.task()
    }

    pub fn nc(&self) -> usize {
        match self.model.last() {
            Some(Layer::Classify(c)) => c.nc(),
            _ => self.detect().nc,
        }
    }

    /// The raw head maps per level (training output).
    pub fn forward_raw(&self, x: Tensor<4>) -> Vec<Tensor<4>> {
        self.forward_raw_observed(x, &mut |_, _| {})
    }

    /// [`Self::forward_raw`], calling `observe(layer index, output)` after each non-Detect layer (profiling).
    pub fn forward_raw_observed(
        &self,
        x: Tensor<4>,
        observe: &mut dyn FnMut(usize, &Tensor<4>),
    ) -> Vec<Tensor<4>> {
        let heads = walk_to_head(&self.model, &self.spec, x, &mut |i, layer, xs| {
            let y = forward_row(layer, xs);
            observe(i, &y);
            Ok(y)
        });
        let heads = heads.unwrap_or_else(|e| unreachable!("burn's forward has no error: {e}"));
        self.detect().forward_raw(heads)
    }

    /// A classifier's logits `(N, nc)` (its training output), with `dropout` before the head's linear layer
    /// (0 for inference).
    pub fn forward_logits(&self, x: Tensor<4>, dropout: f64) -> Tensor<2> {
        let head = self
            .classify_head()
            .unwrap_or_else(|| panic!("{}: a detector has no class logits", self.spec.source));
        let inputs = walk_to_head(&self.model, &self.spec, x, &mut |_, layer, xs| {
            Ok(forward_row(layer, xs))
        });
        let inputs = inputs.unwrap_or_else(|e| unreachable!("burn's forward has no error: {e}"));
        head.forward_logits(first(inputs), dropout)
    }

    /// A classifier's class probabilities `(N, nc)` (softmax of the logits), as Ultralytics' eval output.
    pub fn classify(&self, x: Tensor<4>) -> Tensor<2> {
        burn::tensor::activation::softmax(self.forward_logits(x, 0.0), 1)
    }

    /// The model as primitive operations from `input`: the raw head map of each level, as [`Self::forward_raw`],
    /// or a classifier's logits as one `(N, nc, 1, 1)` map (an exporter or engine adds the decode or the
    /// softmax). The same walk over `from` indices as the forward pass.
    pub fn lower<L: Lowering>(&self, l: &mut L, input: &L::V) -> Result<Vec<L::V>> {
        let heads = lower_to_head(&self.model, &self.spec, l, input)?;
        match self.classify_head() {
            Some(c) => Ok(vec![c.lower(l, &heads[0])?]),
            None => self.detect().lower(l, &heads),
        }
    }

    /// The dry run of the model on an `h x w` input: multiply-accumulates as Ultralytics counts them, from the
    /// blocks' own lowering (a fused model counts no BatchNorm).
    pub fn dry_run(&self, h: usize, w: usize) -> Result<DryRun> {
        let mut d = DryRun::default();
        self.lower(&mut d, &(3, h, w))?;
        Ok(d)
    }

    /// `(height, width)` of each map the Detect head reads, in level order, for an `h x w` input.
    pub fn head_sizes(&self, h: usize, w: usize) -> Result<Vec<(usize, usize)>> {
        let heads = lower_to_head(&self.model, &self.spec, &mut DryRun::default(), &(3, h, w))?;
        Ok(heads.iter().map(|&(_, h, w)| (h, w)).collect())
    }

    /// GFLOPs for an `h x w` input, as Ultralytics reports them.
    pub fn gflops(&self, h: usize, w: usize) -> Result<f64> {
        Ok(self.dry_run(h, w)?.gflops())
    }

    /// Eval output `(B, 4 + nc, A)`: xywh boxes in input pixels, then sigmoid class scores.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<3> {
        let raw = self.forward_raw(x);
        self.detect().decode(&raw)
    }

    /// Both the raw maps and the decoded output from one pass.
    pub fn forward_both(&self, x: Tensor<4>) -> (Vec<Tensor<4>>, Tensor<3>) {
        let raw = self.forward_raw(x);
        let out = self.detect().decode(&raw);
        (raw, out)
    }

    /// Learnable parameter count (BN running statistics excluded), as Ultralytics counts it.
    pub fn parameter_count(&self) -> usize {
        let mut n = 0;
        self.for_each_named("", &mut |_, slot| {
            if slot.is_parameter() {
                n += slot.numel();
            }
        });
        n
    }

    /// A copy with every tensor cast to `dtype` on `device`: a float64 twin is the reference that measures the
    /// float32 rounding of this model (the fused-vs-unfused check at export).
    pub fn cast_to(&self, dtype: FloatDType, device: &Device) -> YoloModel {
        let mut m = self.clone().to_device(device);
        m.visit_named("", &mut |_, slot| match slot {
            Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::W1(p) | Slot::Norm(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::Stat(p) => *p = Param::initialized(p.id, p.val().cast(dtype)),
        });
        m
    }

    /// Whether no norm layer is left (every BatchNorm folded, every MobileOne branch reparameterized).
    pub fn is_fused(&self) -> bool {
        let mut norms = 0;
        self.for_each_named("", &mut |_, slot| {
            if slot.is_norm() {
                norms += 1;
            }
        });
        norms == 0
    }
}

fn first<V>(xs: Vec<V>) -> V {
    xs.into_iter()
        .next()
        .expect("every row reads at least one input")
}

/// A row before the head on tensors.
fn forward_row(layer: &Layer, xs: Vec<Tensor<4>>) -> Tensor<4> {
    match layer {
        Layer::Concat(_) => Tensor::cat(xs, 1),
        Layer::Upsample(s) => upsample_nearest(first(xs), *s),
        Layer::Single(b) => b.forward(first(xs)),
        Layer::Stack(bs) => bs.iter().fold(first(xs), |y, b| b.forward(y)),
        Layer::Detect(_) | Layer::Classify(_) => unreachable!("the walk stops at the head row"),
    }
}

/// One row's work in [`walk_to_head`]: `(row index, its layer, its inputs) -> its output`.
type RowStep<'a, V> = dyn FnMut(usize, &Layer, Vec<V>) -> Result<V> + 'a;

/// The one walk over the rows' `from` indices: `step(row, layer, inputs)` for every row before the head row
/// (Detect or Classify), whose inputs it returns. `layers` may stop before the head row (a model being built).
fn walk_to_head<V: Clone>(
    layers: &[Layer],
    spec: &ModelSpec,
    input: V,
    step: &mut RowStep<'_, V>,
) -> Result<Vec<V>> {
    let mut saved: Vec<Option<V>> = vec![None; spec.layers.len()];
    let mut x = input;
    for (i, ls) in spec.layers.iter().enumerate() {
        let inputs: Vec<V> = ls
            .from
            .iter()
            .map(|j| match j {
                None => x.clone(),
                Some(j) => saved[*j]
                    .clone()
                    .expect("save list covers every from index"),
            })
            .collect();
        if ls.module.is_head() {
            return Ok(inputs);
        }
        x = step(i, &layers[i], inputs)?;
        if spec.save.binary_search(&i).is_ok() {
            saved[i] = Some(x.clone());
        }
    }
    unreachable!("the spec guarantees a final head row")
}

/// The rows before the Detect row as primitive operations; the Detect row's inputs.
fn lower_to_head<L: Lowering>(
    layers: &[Layer],
    spec: &ModelSpec,
    l: &mut L,
    input: &L::V,
) -> Result<Vec<L::V>> {
    walk_to_head(
        layers,
        spec,
        input.clone(),
        &mut |_, layer, xs| match layer {
            Layer::Concat(_) => Ok(l.concat(&xs)),
            Layer::Upsample(s) => Ok(l.upsample(&xs[0], *s)),
            Layer::Single(b) => b.lower(l, &xs[0]),
            Layer::Stack(bs) => bs.iter().try_fold(xs[0].clone(), |y, b| b.lower(l, &y)),
            Layer::Detect(_) | Layer::Classify(_) => unreachable!("the walk stops at the head row"),
        },
    )
}

/// The Detect strides from a 256x256 dry run of the built rows, as Ultralytics' `DetectionModel` finds them.
fn strides_of(layers: &[Layer], spec: &ModelSpec) -> Result<Vec<f32>> {
    let heads = lower_to_head(layers, spec, &mut DryRun::default(), &(3, 256, 256))?;
    Ok(heads.iter().map(|&(_, h, _)| 256.0 / h as f32).collect())
}
