//! Training and validation of YOLO models built by the `model` crate on data from the `data` crate:
//! Ultralytics' detection loss (`loss`), detection metrics (`metrics`), the validation loop (`val`) and its plots (`plots`).

pub mod loss;
pub mod metrics;
pub mod plots;
pub mod val;
