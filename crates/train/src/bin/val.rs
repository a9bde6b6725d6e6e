//! `val`: P, R, mAP50, mAP50-95 of a weights file on a dataset split, computed like Ultralytics.

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "val",
    about = "Validate YOLO weights on a dataset split (Ultralytics' metrics)"
)]
struct Cli {
    #[command(flatten)]
    args: train::cli::ValCli,
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    train::cli::val(Cli::parse().args)
}
