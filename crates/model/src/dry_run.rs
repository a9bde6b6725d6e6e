//! The model's shapes and FLOPs read from its own lowering: a [`Lowering`] whose values are `(c, h, w)` shapes
//! and which counts what Ultralytics' thop counts (every conv's multiply-accumulates, 4 per element for each
//! BatchNorm, the SE average pool's 1 per input element, attention's matrix products). A block added to the registry gets its strides and
//! FLOPs from the same description the engine and the ONNX writer run, never from a second formula.

use crate::lowering::Lowering;
use crate::modules::convtranspose::ConvTranspose;
use crate::nn::{Bn, Conv2d};
use crate::shapes::conv_out;

/// A `(channels, height, width)` value of the dry run (the batch plays no part).
pub type Shape = (usize, usize, usize);

/// Shapes through the graph, multiply-accumulates on the way.
#[derive(Debug, Default, Clone)]
pub struct DryRun {
    pub macs: f64,
}

impl DryRun {
    /// GFLOPs as Ultralytics prints them: `2 * MACs / 1e9`.
    pub fn gflops(&self) -> f64 {
        self.macs * 2.0 / 1e9
    }
}

impl Lowering for DryRun {
    type V = Shape;

    fn conv2d(&mut self, x: &Shape, c: &Conv2d) -> Shape {
        let [co, ci_per_group, kh, kw] = c.weight.dims();
        let o = |v: usize, k: usize| conv_out(v, k, c.stride, c.padding, c.dilation);
        let (ho, wo) = (o(x.1, kh), o(x.2, kw));
        self.macs += (co * ho * wo * ci_per_group * kh * kw) as f64;
        (co, ho, wo)
    }

    fn conv_transpose2d(&mut self, x: &Shape, c: &ConvTranspose) -> Shape {
        let [c1, c2, k, _] = c.weight.dims();
        // thop walks a transposed conv's input: c1 * h * w * c2 * k * k.
        self.macs += (c1 * x.1 * x.2 * c2 * k * k) as f64;
        let o = |v: usize| ((v.max(1) - 1) * c.stride + k).saturating_sub(2 * c.padding);
        (c2, o(x.1), o(x.2))
    }

    fn batch_norm(&mut self, x: &Shape, _bn: &Bn) -> Shape {
        self.macs += 4.0 * (x.0 * x.1 * x.2) as f64;
        *x
    }

    fn silu(&mut self, x: &Shape) -> Shape {
        *x
    }

    fn relu(&mut self, x: &Shape) -> Shape {
        *x
    }

    fn sigmoid(&mut self, x: &Shape) -> Shape {
        *x
    }

    fn add(&mut self, a: &Shape, _b: &Shape) -> Shape {
        *a
    }

    fn mul(&mut self, a: &Shape, b: &Shape) -> Shape {
        // A gate broadcasts: the product has the larger map.
        if a.1 * a.2 >= b.1 * b.2 {
            *a
        } else {
            *b
        }
    }

    fn concat(&mut self, xs: &[Shape]) -> Shape {
        let (h, w) = xs.first().map_or((0, 0), |x| (x.1, x.2));
        (xs.iter().map(|x| x.0).sum(), h, w)
    }

    fn split(&mut self, x: &Shape, sizes: &[usize]) -> Vec<Shape> {
        sizes.iter().map(|&c| (c, x.1, x.2)).collect()
    }

    fn max_pool(&mut self, x: &Shape, k: usize, s: usize, p: usize) -> Shape {
        (x.0, conv_out(x.1, k, s, p, 1), conv_out(x.2, k, s, p, 1))
    }

    fn upsample(&mut self, x: &Shape, scale: usize) -> Shape {
        (x.0, x.1 * scale, x.2 * scale)
    }

    fn zero_pad(&mut self, x: &Shape, (l, r, t, b): (usize, usize, usize, usize)) -> Shape {
        (x.0, x.1 + t + b, x.2 + l + r)
    }

    fn global_avg_pool(&mut self, x: &Shape) -> Shape {
        self.macs += (x.0 * x.1 * x.2) as f64;
        (x.0, 1, 1)
    }

    fn adaptive_avg_pool(&mut self, x: &Shape) -> Shape {
        self.macs += (x.0 * x.1 * x.2 + x.0) as f64;
        (x.0, 1, 1)
    }

    fn attention(
        &mut self,
        _qkv: &Shape,
        like: &Shape,
        heads: usize,
        key_dim: usize,
        head_dim: usize,
    ) -> (Shape, Shape) {
        // thop counts the matrix products: `q^T k` and `v attn^T`, each over every pair of pixels.
        let n = like.1 * like.2;
        self.macs += (heads * n * n * (key_dim + head_dim)) as f64;
        (*like, *like)
    }
}
