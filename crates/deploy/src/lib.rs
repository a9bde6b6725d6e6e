//! Deploy-side tools for YOLO models built by the `model` crate: parity verification against fixtures made by
//! the real Ultralytics package (`verify`), verified fusion and export to safetensors, burn records and ONNX
//! (`export`, `onnx`), image preprocessing (`preprocess`), a CPU inference engine (`engine`), batch prediction
//! over folders, videos and streams (`predict`, `sources`, `video`) latency benchmarks (`bench`) and the
//! command-line commands (`cli`).

pub mod bench;
pub mod cli;
pub mod clock;
pub mod engine;
pub mod export;
pub mod onnx;
pub mod predict;
pub mod preprocess;
pub mod quantize;
pub mod sources;
pub mod tiles;
pub mod verify;
#[cfg(feature = "video")]
pub mod video;
