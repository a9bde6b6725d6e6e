//! Feature-map shapes and FLOPs of a spec, computed without tensors.
//!
//! FLOPs follow what Ultralytics reports through thop: multiply-accumulates of every Conv2d
//! (`out_elements * c_in/groups * kh * kw`, bias not counted) plus 4 per element for each affine BatchNorm,
//! SE average pooling 1 per input element, pooling/upsampling/activations free; GFLOPs = 2 * MACs / 1e9.

use crate::spec::{ModelSpec, ModuleSpec};

fn conv_out(h: usize, k: usize, s: usize, p: usize, d: usize) -> usize {
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
            ModuleSpec::Conv { c2, k, s, p, d, .. } => (
                *c2,
                conv_out(ih, *k, *s, *p, *d),
                conv_out(iw, *k, *s, *p, *d),
            ),
            ModuleSpec::MobileOne { c2, stride, .. } => (
                *c2,
                conv_out(ih, 3, *stride, 1, 1),
                conv_out(iw, 3, *stride, 1, 1),
            ),
            ModuleSpec::Upsample { scale } => (c, ih * scale, iw * scale),
            ModuleSpec::Concat => (l.c_out, ih, iw),
            ModuleSpec::Detect { .. } => (c, ih, iw),
            m => (m.out_channels(c), ih, iw),
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

struct Macs {
    fused: bool,
    total: f64,
    /// Count weights (per conv `cout * cin/g * k * k`, per BN 4 per channel) instead of MACs.
    weights: bool,
}

impl Macs {
    fn conv(&mut self, cin: usize, cout: usize, k: usize, g: usize, ho: usize, wo: usize) {
        let pixels = if self.weights { 1.0 } else { (ho * wo) as f64 };
        self.total += cout as f64 * pixels * (cin / g.max(1)) as f64 * (k * k) as f64;
    }
    fn bn(&mut self, c: usize, h: usize, w: usize) {
        if !self.fused {
            let pixels = if self.weights { 1.0 } else { (h * w) as f64 };
            self.total += 4.0 * c as f64 * pixels;
        }
    }
    /// Ultralytics `Conv`: conv + BN (BN gone when fused).
    fn conv_bn(&mut self, cin: usize, cout: usize, k: usize, g: usize, ho: usize, wo: usize) {
        self.conv(cin, cout, k, g, ho, wo);
        self.bn(cout, ho, wo);
    }
}

fn block_macs(m: &ModuleSpec, ci: usize, h: usize, w: usize, acc: &mut Macs) {
    match m {
        ModuleSpec::Conv {
            c1,
            c2,
            k,
            s,
            p,
            g,
            d,
            ..
        } => {
            let (ho, wo) = (conv_out(h, *k, *s, *p, *d), conv_out(w, *k, *s, *p, *d));
            acc.conv_bn(*c1, *c2, *k, *g, ho, wo);
        }
        ModuleSpec::Bottleneck {
            c1, c2, g, k, e, ..
        } => {
            let c_ = (*c2 as f64 * e) as usize;
            acc.conv_bn(*c1, c_, k.0, 1, h, w);
            acc.conv_bn(c_, *c2, k.1, *g, h, w);
        }
        ModuleSpec::C2f {
            c1, c2, n, g, e, ..
        } => {
            let c = (*c2 as f64 * e) as usize;
            acc.conv_bn(*c1, 2 * c, 1, 1, h, w);
            for _ in 0..*n {
                acc.conv_bn(c, c, 3, 1, h, w);
                acc.conv_bn(c, c, 3, *g, h, w);
            }
            acc.conv_bn((2 + n) * c, *c2, 1, 1, h, w);
        }
        ModuleSpec::C3 {
            c1, c2, n, g, e, ..
        } => {
            let c_ = (*c2 as f64 * e) as usize;
            acc.conv_bn(*c1, c_, 1, 1, h, w);
            acc.conv_bn(*c1, c_, 1, 1, h, w);
            for _ in 0..*n {
                acc.conv_bn(c_, c_, 1, 1, h, w);
                acc.conv_bn(c_, c_, 3, *g, h, w);
            }
            acc.conv_bn(2 * c_, *c2, 1, 1, h, w);
        }
        ModuleSpec::Sppf { c1, c2, n, .. } => {
            let c_ = c1 / 2;
            acc.conv_bn(*c1, c_, 1, 1, h, w);
            acc.conv_bn(c_ * (n + 1), *c2, 1, 1, h, w);
        }
        ModuleSpec::Spp { c1, c2, k } => {
            let c_ = c1 / 2;
            acc.conv_bn(*c1, c_, 1, 1, h, w);
            acc.conv_bn(c_ * (k.len() + 1), *c2, 1, 1, h, w);
        }
        ModuleSpec::MobileOne {
            c1,
            c2,
            k,
            stride,
            use_se,
        } => {
            let (ho, wo) = (conv_out(h, 3, *stride, 1, 1), conv_out(w, 3, *stride, 1, 1));
            let identity = c1 == c2 && *stride == 1;
            if acc.fused {
                acc.conv(*c1, *c1, 3, *c1, ho, wo);
                acc.conv(*c1, *c2, 1, 1, ho, wo);
            } else {
                for _ in 0..*k {
                    acc.conv_bn(*c1, *c1, 3, *c1, ho, wo);
                    acc.conv_bn(*c1, *c2, 1, 1, ho, wo);
                }
                acc.conv_bn(*c1, *c1, 1, *c1, ho, wo);
                if identity {
                    acc.bn(*c1, ho, wo);
                    acc.bn(*c1, ho, wo);
                }
            }
            if *use_se {
                let rd = crate::nn::Se::hidden(*c1);
                if !acc.weights {
                    acc.total += (c1 * ho * wo) as f64;
                }
                acc.conv(*c1, rd, 1, 1, 1, 1);
                acc.conv(rd, *c1, 1, 1, 1, 1);
            }
        }
        ModuleSpec::Upsample { .. } | ModuleSpec::Concat | ModuleSpec::Detect { .. } => {
            let _ = ci;
        }
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
            ModuleSpec::Detect { nc, reg_max, ch } => {
                let c2 = 16.max(ch[0] / 4).max(reg_max * 4);
                let c3 = ch[0].max(*nc.min(&100));
                for (f, &c) in l.from.iter().zip(ch) {
                    let (_, fh, fw) = src(f);
                    acc.conv_bn(c, c2, 3, 1, fh, fw);
                    acc.conv_bn(c2, c2, 3, 1, fh, fw);
                    acc.conv(c2, 4 * reg_max, 1, 1, fh, fw);
                    acc.conv_bn(c, c3, 3, 1, fh, fw);
                    acc.conv_bn(c3, c3, 3, 1, fh, fw);
                    acc.conv(c3, *nc, 1, 1, fh, fw);
                }
            }
            m => {
                let (c, ih, iw) = src(&l.from[0]);
                block_macs(m, c, ih, iw, &mut acc);
                for _ in 1..l.repeats {
                    let (c, oh, ow) = shapes[l.index];
                    block_macs(m, c, oh, ow, &mut acc);
                }
            }
        }
    }
    acc.total
}
