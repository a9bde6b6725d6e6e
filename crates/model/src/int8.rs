//! INT8 weights files (`yolo export --int8`): a fused model's safetensors where each quantized convolution's
//! weight is stored as int8 (symmetric per output channel) beside its float32 scales (`<key>_scale`), and the
//! metadata key `int8` holds, per quantized weight, the per-tensor u8 quantization of that convolution's
//! input, with how it was calibrated. Reading dequantizes the weights (so every tool can build the model);
//! the CPU engine re-quantizes them, to the same integers, and runs those convolutions in INT8.

use crate::error::{ModelError, Result};
use crate::weights::StateDict;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metadata key of [`Int8Info`].
pub const META_KEY: &str = "int8";
/// Appended to a quantized weight's key for its per-channel scales.
pub const SCALE_SUFFIX: &str = "_scale";

/// Per-tensor asymmetric u8 quantization of a convolution's input.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InputQuant {
    pub scale: f32,
    pub zero: u8,
}

/// What makes a model INT8: the input quantization of each quantized convolution, by its weight's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Int8Info {
    pub inputs: BTreeMap<String, InputQuant>,
    /// How the file was made (method, images, size, layers kept in float and why), for people.
    #[serde(default)]
    pub calibration: serde_json::Value,
}

impl Int8Info {
    pub fn from_metadata(text: &str, path: &str) -> Result<Int8Info> {
        let info: Int8Info = serde_json::from_str(text).map_err(|e| ModelError::Io {
            path: path.to_string(),
            msg: format!("metadata '{META_KEY}' is not our INT8 description: {e}"),
        })?;
        for (k, q) in &info.inputs {
            if !(q.scale.is_finite() && q.scale > 0.0) {
                return Err(ModelError::Io {
                    path: path.to_string(),
                    msg: format!(
                        "INT8 input of {k}: scale {} (must be a positive number)",
                        q.scale
                    ),
                });
            }
        }
        Ok(info)
    }
}

/// An int8 tensor read from a file: its shape and values.
#[derive(Debug, Clone)]
pub struct Int8Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<i8>,
}

/// Replaces each int8 tensor by its float values (`q * scale[channel]`, the channel the first dimension),
/// taking its `<key>_scale` out of `tensors`.
pub fn dequantize_into(
    tensors: &mut StateDict,
    int8: BTreeMap<String, Int8Tensor>,
    path: &str,
) -> Result<()> {
    let bad = |msg: String| ModelError::Io {
        path: path.to_string(),
        msg,
    };
    for (k, t) in int8 {
        let sk = format!("{k}{SCALE_SUFFIX}");
        let scales = tensors.remove(&sk).ok_or_else(|| {
            bad(format!(
                "tensor {k} is int8 but its scales ({sk}) are missing"
            ))
        })?;
        let cout = t.shape.first().copied().unwrap_or(0);
        if cout == 0 || scales.data.len() != cout || t.data.len() % cout != 0 {
            return Err(bad(format!(
                "tensor {k}: {} scales for shape {:?} (one per output channel expected)",
                scales.data.len(),
                t.shape
            )));
        }
        if let Some(s) = scales.data.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(bad(format!(
                "tensor {sk}: scale {s} (must be a positive number)"
            )));
        }
        let per = t.data.len() / cout;
        let data = t
            .data
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * scales.data[i / per])
            .collect();
        tensors.insert(
            k,
            crate::weights::HostTensor {
                shape: t.shape,
                data,
            },
        );
    }
    Ok(())
}
