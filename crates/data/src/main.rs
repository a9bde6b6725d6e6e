//! `data`: check a dataset, dump augmented samples, measure the pipeline, convert COCO/VOC, generate the
//! synthetic dataset.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "data",
    about = "YOLO datasets: check, dump augmented samples, benchmark the pipeline, convert COCO/VOC"
)]
struct Cli {
    #[command(subcommand)]
    cmd: data::cli::Cmd,
}

fn main() -> ExitCode {
    startup::init();
    startup::exit(data::cli::run(Cli::parse().cmd))
}
