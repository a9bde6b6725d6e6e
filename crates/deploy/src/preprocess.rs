//! Network input tensors from images (decoding and letterbox live in `data::image_ops`).

pub use data::image_ops::{letterbox, read_rgb, resize_linear, Letterbox};
use model::burn::tensor::{Device, Tensor, TensorData};

/// A batch tensor `(N, 3, h, w)` from CHW buffers.
pub fn batch_tensor(chw: &[Vec<f32>], h: usize, w: usize, device: &Device) -> Tensor<4> {
    let n = chw.len();
    let flat: Vec<f32> = chw.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [n, 3, h, w]), device)
}
