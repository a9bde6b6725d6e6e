//! A YOLO model built from a [`ModelSpec`]: the layer list, its forward pass and its named tensors.

use crate::error::Result;
use crate::lowering::Lowering;
pub use crate::modules::Block;
use crate::nn::{upsample_nearest, Detect, Named, NamedRef, Slot};
use crate::spec::{ModelSpec, ModuleSpec};
use burn::module::{Module, Param, RunningState};
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
}

/// A YOLOv8 detection model. `spec` keeps the YAML it was built from.
#[derive(Module, Debug)]
pub struct YoloModel {
    pub layers: Vec<Layer>,
    #[module(skip)]
    pub spec: ModelSpec,
}

impl YoloModel {
    /// Builds the model with Ultralytics' initialisation (PyTorch default conv init, BN 1/0, Detect bias init).
    pub fn new(spec: &ModelSpec, device: &Device) -> YoloModel {
        let strides = spec.strides();
        let layers = spec
            .layers
            .iter()
            .map(|l| match &l.module {
                ModuleSpec::Upsample { scale } => Layer::Upsample(*scale),
                ModuleSpec::Concat => Layer::Concat(1),
                ModuleSpec::Detect {
                    nc,
                    reg_max,
                    ch,
                    legacy,
                } => Layer::Detect(Detect::new(
                    *nc,
                    *reg_max,
                    ch,
                    strides.clone(),
                    *legacy,
                    spec.act,
                    device,
                )),
                ModuleSpec::Block(m) => {
                    let mk = || m.build(device);
                    if l.repeats > 1 {
                        Layer::Stack((0..l.repeats).map(|_| mk()).collect())
                    } else {
                        Layer::Single(mk())
                    }
                }
            })
            .collect();
        YoloModel {
            layers,
            spec: spec.clone(),
        }
    }

    pub fn detect(&self) -> &Detect {
        match self.layers.last() {
            Some(Layer::Detect(d)) => d,
            _ => unreachable!("the spec guarantees a final Detect row"),
        }
    }

    pub fn nc(&self) -> usize {
        self.detect().nc
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
        let mut saved: Vec<Option<Tensor<4>>> = vec![None; self.layers.len()];
        let mut x = x;
        for (i, (layer, ls)) in self.layers.iter().zip(&self.spec.layers).enumerate() {
            let input = |j: &Option<usize>, x: &Tensor<4>| match j {
                None => x.clone(),
                Some(j) => saved[*j]
                    .clone()
                    .expect("save list covers every from index"),
            };
            match layer {
                Layer::Detect(d) => {
                    let xs = ls.from.iter().map(|j| input(j, &x)).collect();
                    return d.forward_raw(xs);
                }
                Layer::Concat(_) => {
                    let xs = ls.from.iter().map(|j| input(j, &x)).collect();
                    x = Tensor::cat(xs, 1);
                }
                Layer::Upsample(s) => x = upsample_nearest(input(&ls.from[0], &x), *s),
                Layer::Single(b) => x = b.forward(input(&ls.from[0], &x)),
                Layer::Stack(bs) => {
                    let mut y = input(&ls.from[0], &x);
                    for b in bs {
                        y = b.forward(y);
                    }
                    x = y;
                }
            }
            observe(i, &x);
            if self.spec.save.binary_search(&i).is_ok() {
                saved[i] = Some(x.clone());
            }
        }
        unreachable!("the spec guarantees a final Detect row")
    }

    /// The model as primitive operations from `input`: the raw head map of each level, as [`Self::forward_raw`]
    /// (an exporter or engine adds the decode). The same walk over `from` indices as the forward pass.
    pub fn lower<L: Lowering>(&self, l: &mut L, input: &L::V) -> Result<Vec<L::V>> {
        let mut saved: Vec<Option<L::V>> = vec![None; self.layers.len()];
        let mut x = input.clone();
        for (i, (layer, ls)) in self.layers.iter().zip(&self.spec.layers).enumerate() {
            let input = |j: &Option<usize>, x: &L::V| match j {
                None => x.clone(),
                Some(j) => saved[*j]
                    .clone()
                    .expect("save list covers every from index"),
            };
            match layer {
                Layer::Detect(d) => {
                    let xs: Vec<L::V> = ls.from.iter().map(|j| input(j, &x)).collect();
                    return d.lower(l, &xs);
                }
                Layer::Concat(_) => {
                    let xs: Vec<L::V> = ls.from.iter().map(|j| input(j, &x)).collect();
                    x = l.concat(&xs);
                }
                Layer::Upsample(s) => x = l.upsample(&input(&ls.from[0], &x), *s),
                Layer::Single(b) => x = b.lower(l, &input(&ls.from[0], &x))?,
                Layer::Stack(bs) => {
                    let mut y = input(&ls.from[0], &x);
                    for b in bs {
                        y = b.lower(l, &y)?;
                    }
                    x = y;
                }
            }
            if self.spec.save.binary_search(&i).is_ok() {
                saved[i] = Some(x.clone());
            }
        }
        unreachable!("the spec guarantees a final Detect row")
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
        self.for_each_named("model", &mut |_, slot| {
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
        m.visit_named("model", &mut |_, slot| match slot {
            Slot::W4(p) | Slot::Frozen(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::W1(p) | Slot::Norm(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::Stat(s) => *s = RunningState::new(s.value_sync().cast(dtype)),
        });
        m
    }

    /// Whether no norm layer is left (every BatchNorm folded, every MobileOne branch reparameterized).
    pub fn is_fused(&self) -> bool {
        let mut norms = 0;
        self.for_each_named("model", &mut |_, slot| {
            if matches!(slot, Slot::Norm(_) | Slot::Stat(_)) {
                norms += 1;
            }
        });
        norms == 0
    }
}

/// One row's tensors under `prefix` (`model.{i}`); a stack's blocks under `prefix.{j}`.
impl Named for Layer {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        match self {
            Layer::Single(b) => b.visit_named(prefix, f),
            Layer::Stack(bs) => {
                for (j, b) in bs.iter_mut().enumerate() {
                    b.visit_named(&format!("{prefix}.{j}"), f);
                }
            }
            Layer::Detect(d) => d.visit_named(prefix, f),
            Layer::Upsample(_) | Layer::Concat(_) => {}
        }
    }
}

impl Named for YoloModel {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            layer.visit_named(&format!("{prefix}.{i}"), f);
        }
    }
}
