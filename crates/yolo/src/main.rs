//! `yolo`: the workspace's commands under one binary with Ultralytics' verbs, and its `key=value` argument
//! style (`yolo predict model=best.pt source=clip.mp4 imgsz=320 save_txt=True`) next to `--flags`. Each verb
//! takes the same arguments as the binary it comes from (`train`, `val`, `deploy`, `data`, `model`).

mod args;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "yolo",
    about = "YOLO detectors in Rust: train, validate, predict, export",
    after_help = "Ultralytics' key=value style works too, e.g. `yolo predict model=best.pt source=clip.mp4 \
                  imgsz=320 save_txt=True`; --model takes a YAML or a weights file in every command (as --config or --weights)."
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// Train a detector or a classifier (Ultralytics' loss and recipe); with no flags, yolov8-mobileone n on
    /// datasets/trees.
    Train(Box<train::cli::TrainCli>),
    /// P, R, mAP50 and mAP50-95 of detector weights on a dataset split; top-1 and top-5 of a classifier's.
    Val(train::cli::ValCli),
    /// Detect objects in images, videos and streams.
    Predict(deploy::cli::PredictArgs),
    /// Follow objects through videos and streams (ByteTrack, BoT-SORT): predict's outputs with track ids.
    Track(deploy::cli::PredictArgs),
    /// Reparameterize and fuse, check, and write safetensors, ONNX and burn records.
    Export(deploy::cli::ExportArgs),
    /// Per-layer table, parameters and GFLOPs of a model, unfused and fused.
    Info(model::cli::InfoArgs),
    /// Validate a dataset split and print its summary.
    Check(data::cli::CheckArgs),
    /// Latency of the unfused and the fused model.
    Bench(deploy::cli::BenchArgs),
    /// Convert COCO JSON or Pascal VOC annotations to a YOLO dataset.
    Convert(data::cli::ConvertArgs),
    /// Check a model against a parity fixture made by the Ultralytics package.
    Verify(deploy::cli::VerifyArgs),
}

fn main() -> ExitCode {
    startup::init();
    let cli = Cli::parse_from(args::translate(std::env::args()));
    startup::exit(match cli.verb {
        Verb::Train(a) => train::cli::train(*a),
        Verb::Val(a) => train::cli::val_with(a, Some(&engine_forward)),
        Verb::Predict(a) => deploy::cli::run(deploy::cli::Cmd::Predict(a)),
        Verb::Track(a) => deploy::cli::run(deploy::cli::Cmd::Track(a)),
        Verb::Export(a) => deploy::cli::run(deploy::cli::Cmd::Export(a)),
        Verb::Info(a) => model::cli::run(model::cli::Cmd::Info(a)),
        Verb::Check(a) => data::cli::run(data::cli::Cmd::Check(a)),
        Verb::Bench(a) => deploy::cli::run(deploy::cli::Cmd::Bench(a)),
        Verb::Convert(a) => data::cli::run(data::cli::Cmd::Convert(a)),
        Verb::Verify(a) => deploy::cli::run(deploy::cli::Cmd::Verify(a)),
    })
}

/// `val` of an INT8 model: the batch through the CPU inference engine, which runs its quantized convolutions in
/// INT8 (burn would run the dequantized weights in float).
fn engine_forward(m: &model::YoloModel) -> Result<train::val::Forward, String> {
    let e = std::sync::Arc::new(deploy::engine::Engine::new(m).map_err(|e| e.to_string())?);
    eprintln!(
        "forward: inference engine, {} convolutions in INT8",
        e.int8_ops()
    );
    Ok(train::val::Forward(std::sync::Arc::new(
        move |x: &[f32], b: usize, h: usize, w: usize| e.run(x, b, h, w).map_err(|e| e.to_string()),
    )))
}
