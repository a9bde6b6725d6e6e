//! Deploy-side tools for YOLO models built by the `model` crate: parity verification against fixtures made by
//! the real Ultralytics package (`verify`), verified fusion and export to safetensors, burn records and ONNX
//! (`export`, `onnx`), image preprocessing (`preprocess`) and a fused-vs-unfused benchmark (`bench`).

pub mod bench;
pub mod export;
pub mod onnx;
pub mod preprocess;
pub mod verify;
