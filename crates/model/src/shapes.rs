//! Feature-map shapes and FLOPs of a spec, computed without tensors.
//!
//! FLOPs follow what Ultralytics reports through thop: multiply-accumulates of every Conv2d
//! (`out_elements * c_in/groups * kh * kw`, bias not counted) plus 4 per element for each affine BatchNorm,
//! SE average pooling 1 per input element, attention's two matrix products, the Classify head's adaptive pool 1 per input and output and its Linear `in * out`, other pooling/upsampling/activations free; GFLOPs = 2 * MACs / 1e9.

use crate::spec::{ModelSpec, ModuleSpec};

pub(crate) fn conv_out(h: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
    (h + 2 * p).saturating_sub(d * (k - 1) + 1) / s + 1
}

/// `(channels, height, width)` of each layer's output for an input of `h x w` (Detect reports its P3 input).
pub fn layer_shapes(spec: &ModelSpec, h: usize, w: usize) -> Vec<(usize, usize, usize)> {
    let mut out: Vec<(usize, usize, usize)> = Vec::new();
    for l in &spec.layers {
        let src = |f: &Option<usize>| match f {
            None => *out.last().unwrap_or(&(3, h, w)),
            Some(j) => out[*j],
        };
        let (c, ih, iw) = src(&l.from[0]);
        let mut shape = match &l.module {
            ModuleSpec::Block(b) => {
                let (oh, ow) = b.out_hw(ih, iw);
                (b.c_out(), oh, ow)
            }
            ModuleSpec::Upsample { scale } => (c, ih * scale, iw * scale),
            ModuleSpec::Concat => (l.c_out, ih, iw),
            ModuleSpec::Detect { .. } => (c, ih, iw),
            ModuleSpec::Classify(h) => (h.nc, 1, 1),
        };
        // Stacked copies repeat the spatial change (validated to be none for repeated rows).
        if l.repeats > 1 {
            shape.0 = l.c_out;
        }
        out.push(shape);
    }
    out
}

/// Where the inputs of a Concat row disagree in size for this input, a message saying so.
pub fn check_input_size(spec: &ModelSpec, h: usize, w: usize) -> Result<(), String> {
    let shapes = layer_shapes(spec, h, w);
    for l in &spec.layers {
        if matches!(l.module, ModuleSpec::Concat) {
            let sizes: Vec<(usize, usize)> = l
                .from
                .iter()
                .map(|f| {
                    let j = f.unwrap_or(l.index - 1);
                    (shapes[j].1, shapes[j].2)
                })
                .collect();
            if sizes.windows(2).any(|p| p[0] != p[1]) {
                return Err(format!(
                    "input {h}x{w}: Concat at row {} joins maps of sizes {sizes:?}; use a multiple of the max stride (32)",
                    l.index
                ));
            }
        }
    }
    Ok(())
}

/// A running count of multiply-accumulates (or weights) that blocks add their layers to.
pub struct Macs {
    /// Count the fused model: BatchNorms are free.
    pub fused: bool,
    pub total: f64,
    /// Count weights (per conv `cout * cin/g * k * k`, per BN 4 per channel) instead of MACs.
    pub weights: bool,
}

impl Macs {
    /// A `cin -> cout` conv with a `k x k` kernel and `g` groups producing a `ho x wo` map.
    pub fn conv(&mut self, cin: usize, cout: usize, k: usize, g: usize, ho: usize, wo: usize) {
        let pixels = if self.weights { 1.0 } else { (ho * wo) as f64 };
        self.total += cout as f64 * pixels * (cin / g.max(1)) as f64 * (k * k) as f64;
    }
    /// An affine BatchNorm over `c x h x w` (nothing once fused).
    pub fn bn(&mut self, c: usize, h: usize, w: usize) {
        if !self.fused {
            let pixels = if self.weights { 1.0 } else { (h * w) as f64 };
            self.total += 4.0 * c as f64 * pixels;
        }
    }
    /// `nn.AdaptiveAvgPool2d(1)` over `c x h x w`: thop's add per input and divide per output.
    pub fn adaptive_avg_pool(&mut self, c: usize, h: usize, w: usize) {
        if !self.weights {
            self.total += (c * h * w + c) as f64;
        }
    }
    /// The two matrix products of attention over `n` pixels (thop counts `matmul`s): `q^T k` and `v attn^T`.
    pub fn attention(&mut self, heads: usize, key_dim: usize, head_dim: usize, n: usize) {
        if !self.weights {
            self.total += (heads * n * n * (key_dim + head_dim)) as f64;
        }
    }
    /// Ultralytics `Conv`: conv + BN (BN gone when fused).
    pub fn conv_bn(&mut self, cin: usize, cout: usize, k: usize, g: usize, ho: usize, wo: usize) {
        self.conv(cin, cout, k, g, ho, wo);
        self.bn(cout, ho, wo);
    }
}

/// GFLOPs of the model (unfused or fused) for an `h x w` input.
pub fn gflops(spec: &ModelSpec, h: usize, w: usize, fused: bool) -> f64 {
    macs(spec, h, w, fused, false) * 2.0 / 1e9
}

/// About how many numbers the unfused model holds (conv weights and BatchNorm tensors; biases left out):
/// what building it would allocate, known before allocating.
pub fn weight_count(spec: &ModelSpec) -> f64 {
    macs(spec, 256, 256, false, true)
}

fn macs(spec: &ModelSpec, h: usize, w: usize, fused: bool, weights: bool) -> f64 {
    let shapes = layer_shapes(spec, h, w);
    let mut acc = Macs {
        fused,
        total: 0.0,
        weights,
    };
    for l in &spec.layers {
        let src = |f: &Option<usize>| match f {
            None => {
                if l.index == 0 {
                    (3, h, w)
                } else {
                    shapes[l.index - 1]
                }
            }
            Some(j) => shapes[*j],
        };
        match &l.module {
            ModuleSpec::Detect {
                nc,
                reg_max,
                ch,
                legacy,
            } => {
                let sizes: Vec<(usize, usize)> = l
                    .from
                    .iter()
                    .map(|f| {
                        let (_, fh, fw) = src(f);
                        (fh, fw)
                    })
                    .collect();
                crate::modules::detect::macs(*nc, *reg_max, ch, *legacy, &sizes, &mut acc);
            }
            ModuleSpec::Block(m) => {
                let (c, ih, iw) = src(&l.from[0]);
                m.macs(c, ih, iw, &mut acc);
                for _ in 1..l.repeats {
                    let (c, oh, ow) = shapes[l.index];
                    m.macs(c, oh, ow, &mut acc);
                }
            }
            ModuleSpec::Classify(h) => {
                let (_, ih, iw) = src(&l.from[0]);
                h.macs(ih, iw, &mut acc);
            }
            ModuleSpec::Upsample { .. } | ModuleSpec::Concat => {}
        }
    }
    acc.total
}
