//! The primitive operations a block's inference dataflow is written as, once: each block's file lowers itself
//! ([`crate::modules::BlockModule::lower`]) onto any [`Lowering`], and [`crate::YoloModel::lower`] walks the
//! graph. The ONNX writer and the CPU engine both consume it, so a new block needs no change in either.
//! Fused blocks lower to convolutions with bias; unfused ones keep their BatchNorms ([`Lowering::batch_norm`])
//! and MobileOne's branches as a sum.

use crate::modules::convtranspose::ConvTranspose;
use crate::nn::{Act, Bn, Conv2d};

/// A graph under construction; `V` names a value (a tensor of shape `(N, C, H, W)`).
pub trait Lowering {
    type V: Clone;
    /// A `Conv2d` with its stored weights, bias, stride, padding, dilation and groups.
    fn conv2d(&mut self, x: &Self::V, c: &Conv2d) -> Self::V;
    /// A transposed conv (learned upsampling) with its stored weights and bias.
    fn conv_transpose2d(&mut self, x: &Self::V, c: &ConvTranspose) -> Self::V;
    /// Inference BatchNorm with the running statistics (an unfused model).
    fn batch_norm(&mut self, x: &Self::V, bn: &Bn) -> Self::V;
    fn silu(&mut self, x: &Self::V) -> Self::V;
    fn relu(&mut self, x: &Self::V) -> Self::V;
    fn sigmoid(&mut self, x: &Self::V) -> Self::V;
    fn add(&mut self, a: &Self::V, b: &Self::V) -> Self::V;
    /// Elementwise product (broadcasting a `(N, C, 1, 1)` gate).
    fn mul(&mut self, a: &Self::V, b: &Self::V) -> Self::V;
    /// Joined along channels.
    fn concat(&mut self, xs: &[Self::V]) -> Self::V;
    /// Cut along channels into pieces of `sizes`.
    fn split(&mut self, x: &Self::V, sizes: &[usize]) -> Vec<Self::V>;
    /// Max pooling, `k x k` window, stride `s`, padding `p` (padding never wins the max).
    fn max_pool(&mut self, x: &Self::V, k: usize, s: usize, p: usize) -> Self::V;
    /// Nearest-neighbour upsampling by an integer factor.
    fn upsample(&mut self, x: &Self::V, scale: usize) -> Self::V;
    /// Zero padding `(left, right, top, bottom)`.
    fn zero_pad(&mut self, x: &Self::V, pad: (usize, usize, usize, usize)) -> Self::V;
    /// Mean over each channel's map: `(N, C, 1, 1)`.
    fn global_avg_pool(&mut self, x: &Self::V) -> Self::V;
    /// The same mean as an `nn.AdaptiveAvgPool2d(1)` module (the Classify head), which thop also counts a
    /// divide per output for.
    fn adaptive_avg_pool(&mut self, x: &Self::V) -> Self::V {
        self.global_avg_pool(x)
    }
    /// Ultralytics `Attention`'s core on `qkv` (the qkv conv's output, `heads * (2 * key_dim + head_dim)`
    /// channels): per head `softmax(q^T k * key_dim^-0.5)` over pixels applied to `v`. Returns the attended
    /// values and `v` itself, both shaped like `like` (the block's input).
    fn attention(
        &mut self,
        qkv: &Self::V,
        like: &Self::V,
        heads: usize,
        key_dim: usize,
        head_dim: usize,
    ) -> (Self::V, Self::V);
}

/// `act` applied to `y` (nothing for [`Act::Identity`]).
pub fn activate<L: Lowering>(l: &mut L, act: Act, y: L::V) -> L::V {
    match act {
        Act::Silu => l.silu(&y),
        Act::Relu => l.relu(&y),
        Act::Identity => y,
    }
}
