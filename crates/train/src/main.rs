//! `train`: YOLOv8 detection training with Ultralytics' recipe. With no flags it trains yolov8-mobileone (n)
//! on datasets/trees on the CPU backend and ends with validation metrics and a run folder.

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "train",
    about = "Train a YOLO detector (Ultralytics' loss and recipe) on burn"
)]
struct Cli {
    #[command(flatten)]
    args: train::cli::TrainCli,
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    train::cli::train(Cli::parse().args)
}
