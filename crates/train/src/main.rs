//! `train`: YOLOv8 detection training with Ultralytics' recipe. With no flags it trains yolov8-mobileone (n)
//! on datasets/trees on the CPU backend and ends with validation metrics and a run folder.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "train",
    about = "Train a YOLO detector (Ultralytics' loss and recipe) on burn"
)]
struct Cli {
    #[command(flatten)]
    args: train::cli::TrainCli,
}

fn main() -> ExitCode {
    startup::init();
    startup::exit(train::cli::train(Cli::parse().args))
}
