//! A YOLO model built from a [`ModelSpec`]: the layer list, its forward pass and its named tensors.

use crate::nn::{
    upsample_nearest, Bottleneck, C2f, Conv, Detect, MobileOneBlock, Named, Slot, Spp, Sppf, C3,
};
use crate::spec::{ModelSpec, ModuleSpec};
use burn::module::{Module, Param, RunningState};
use burn::tensor::{Device, FloatDType, Tensor};

/// A block that can be stacked (`nn.Sequential` of n copies when a row repeats it).
// Built once per layer, so the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Block {
    Conv(Conv),
    Bottleneck(Bottleneck),
    C2f(C2f),
    C3(C3),
    Sppf(Sppf),
    Spp(Spp),
    MobileOne(MobileOneBlock),
}

impl Block {
    fn new(spec: &ModuleSpec, device: &Device) -> Option<Block> {
        Some(match spec.clone() {
            ModuleSpec::Conv {
                c1,
                c2,
                k,
                s,
                p,
                g,
                d,
                act,
            } => Block::Conv(Conv::new(c1, c2, k, s, p, g, d, act, device)),
            ModuleSpec::Bottleneck {
                c1,
                c2,
                shortcut,
                g,
                k,
                e,
            } => Block::Bottleneck(Bottleneck::new(c1, c2, shortcut, g, k, e, device)),
            ModuleSpec::C2f {
                c1,
                c2,
                n,
                shortcut,
                g,
                e,
            } => Block::C2f(C2f::new(c1, c2, n, shortcut, g, e, device)),
            ModuleSpec::C3 {
                c1,
                c2,
                n,
                shortcut,
                g,
                e,
            } => Block::C3(C3::new(c1, c2, n, shortcut, g, e, device)),
            ModuleSpec::Sppf {
                c1,
                c2,
                k,
                n,
                shortcut,
                cv1_act,
            } => Block::Sppf(Sppf::new(c1, c2, k, n, shortcut, cv1_act, device)),
            ModuleSpec::Spp { c1, c2, k } => Block::Spp(Spp::new(c1, c2, k, device)),
            ModuleSpec::MobileOne {
                c1,
                c2,
                k,
                stride,
                use_se,
            } => Block::MobileOne(MobileOneBlock::new(c1, c2, k, stride, use_se, device)),
            _ => return None,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Conv(m) => m.forward(x),
            Block::Bottleneck(m) => m.forward(x),
            Block::C2f(m) => m.forward(x),
            Block::C3(m) => m.forward(x),
            Block::Sppf(m) => m.forward(x),
            Block::Spp(m) => m.forward(x),
            Block::MobileOne(m) => m.forward(x),
        }
    }
}

impl Named for Block {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        match self {
            Block::Conv(m) => m.visit_named(prefix, f),
            Block::Bottleneck(m) => m.visit_named(prefix, f),
            Block::C2f(m) => m.visit_named(prefix, f),
            Block::C3(m) => m.visit_named(prefix, f),
            Block::Sppf(m) => m.visit_named(prefix, f),
            Block::Spp(m) => m.visit_named(prefix, f),
            Block::MobileOne(m) => m.visit_named(prefix, f),
        }
    }
}

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
                ModuleSpec::Detect { nc, reg_max, ch } => {
                    Layer::Detect(Detect::new(*nc, *reg_max, ch, strides.clone(), device))
                }
                m => {
                    let mk = || Block::new(m, device).expect("every other spec is a block");
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
    pub fn parameter_count(&mut self) -> usize {
        let mut n = 0;
        self.visit_named("model", &mut |_, slot| match slot {
            Slot::W4(p) => n += p.shape().num_elements(),
            Slot::W1(p) => n += p.shape().num_elements(),
            Slot::Stat(_) => {}
        });
        n
    }

    /// A copy with every tensor cast to `dtype` on `device`: a float64 twin is the reference that measures the
    /// float32 rounding of this model (the fused-vs-unfused check at export).
    pub fn cast_to(&self, dtype: FloatDType, device: &Device) -> YoloModel {
        let mut m = self.clone().to_device(device);
        m.visit_named("model", &mut |_, slot| match slot {
            Slot::W4(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::W1(p) => {
                let t = p.val().cast(dtype);
                *p = Param::from_tensor(t).set_require_grad(false);
            }
            Slot::Stat(s) => *s = RunningState::new(s.value_sync().cast(dtype)),
        });
        m
    }

    pub fn is_fused(&mut self) -> bool {
        let mut names = Vec::new();
        self.visit_named("model", &mut |k, _| names.push(k));
        crate::weights::fused_by_names(names.iter().map(String::as_str))
    }
}

impl Named for YoloModel {
    fn visit_named(&mut self, prefix: &str, f: &mut dyn FnMut(String, Slot<'_>)) {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let p = format!("{prefix}.{i}");
            match layer {
                Layer::Single(b) => b.visit_named(&p, f),
                Layer::Stack(bs) => {
                    for (j, b) in bs.iter_mut().enumerate() {
                        b.visit_named(&format!("{p}.{j}"), f);
                    }
                }
                Layer::Detect(d) => d.visit_named(&p, f),
                Layer::Upsample(_) | Layer::Concat(_) => {}
            }
        }
    }
}
