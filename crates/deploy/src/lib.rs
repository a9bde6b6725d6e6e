//! Deploy-side tools for YOLO models built by the `model` crate: parity verification against fixtures made by
//! the real Ultralytics package (`verify`), and (as they land) export and batch prediction.

pub mod verify;
