//! `deploy`: verify parity fixtures, export fused models, predict, benchmark fused vs unfused.

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "deploy",
    about = "Verify, fuse, export, predict with and benchmark YOLO models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: deploy::cli::Cmd,
}

fn main() -> Result<()> {
    model::alloc::keep_freed_memory();
    deploy::cli::run(Cli::parse().cmd)
}
