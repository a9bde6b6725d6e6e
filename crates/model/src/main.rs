//! `model info`: the per-layer table and totals of a model YAML at a scale.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "model", about = "Inspect YOLO model YAML files")]
struct Cli {
    #[command(subcommand)]
    cmd: model::cli::Cmd,
}

fn main() -> ExitCode {
    startup::init();
    startup::exit(model::cli::run(Cli::parse().cmd))
}
