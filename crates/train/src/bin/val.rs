//! `val`: P, R, mAP50, mAP50-95 of a weights file on a dataset split, computed like Ultralytics.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "val",
    about = "Validate YOLO weights on a dataset split (Ultralytics' metrics)"
)]
struct Cli {
    #[command(flatten)]
    args: train::cli::ValCli,
}

fn main() -> ExitCode {
    startup::init();
    startup::exit(train::cli::val(Cli::parse().args))
}
