//! Training and validation of YOLO models built by the `model` crate on data from the `data` crate:
//! Ultralytics' detection loss (`loss`), detection metrics (`metrics`), the validation loop (`val`) and a
//! classifier's (`classify`), results.csv
//! (`results`) and its plots (`plots`), the optimizer/EMA recipe (`optim`), data-parallel replicas
//! (`parallel`), one training step (`step`, shared by the trainer and `bench_step`), one step compared across
//! devices (`parity`), a run's data by task (`run_data`), the training loop (`trainer`, detectors and
//! classifiers) and the `train`/`val` commands (`cli`).

pub mod classify;
pub mod cli;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod parallel;
pub mod parity;
pub mod plots;
pub mod results;
pub mod run_data;
pub mod step;
pub mod trainer;
pub mod val;
