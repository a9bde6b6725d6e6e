//! YOLOv8 models from Ultralytics YAML on burn: parsing (`spec`), the blocks a row can name, one file each
//! (`modules`), the layer graph (`graph`, `nn`), deploy-time fusion and MobileOne reparameterization (`fuse`), shapes and FLOPs before building (`shapes`) and from the built model's lowering (`dry_run`), summaries (`info`), NMS and
//! box scaling (`postprocess`) and safetensors weights under Ultralytics' `state_dict` names (`weights`), also
//! read from Ultralytics' `.pt` checkpoints (`checkpoint`).

pub mod checkpoint;
pub mod cli;
pub mod device;
pub mod dry_run;
pub mod error;
pub mod fuse;
pub mod graph;
pub mod info;
pub mod int8;
pub mod lowering;
pub mod modules;
pub mod nn;
pub mod pickle;
pub mod postprocess;
pub mod shapes;
pub mod spec;
pub mod structure;
pub mod weights;
pub mod yaml_args;

pub use burn;
pub use error::{ModelError, Result};
pub use graph::YoloModel;
pub use spec::{ModelSpec, SpecOptions, Task};
