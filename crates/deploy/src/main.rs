//! `deploy`: verify parity fixtures, export fused models, predict, benchmark fused vs unfused.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "deploy",
    about = "Verify, fuse, export, predict with and benchmark YOLO models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: deploy::cli::Cmd,
}

fn main() -> ExitCode {
    startup::init();
    startup::exit(deploy::cli::run(Cli::parse().cmd))
}
