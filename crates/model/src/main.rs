//! `model info`: the per-layer table and totals of a model YAML at a scale.

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(name = "model", about = "Inspect YOLO model YAML files")]
struct Cli {
    #[command(subcommand)]
    cmd: model::cli::Cmd,
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    model::cli::run(Cli::parse().cmd)
}
