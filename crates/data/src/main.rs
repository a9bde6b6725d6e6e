//! `data`: check a dataset, dump augmented samples, measure the pipeline, convert COCO/VOC, generate the
//! synthetic dataset.

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "data",
    about = "YOLO datasets: check, dump augmented samples, benchmark the pipeline, convert COCO/VOC"
)]
struct Cli {
    #[command(subcommand)]
    cmd: data::cli::Cmd,
}

fn main() -> Result<()> {
    data::cli::run(Cli::parse().cmd)
}
