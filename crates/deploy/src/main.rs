//! `deploy verify --fixture DIR`: check our forward and fusion against an Ultralytics parity fixture.

use anyhow::Result;
use clap::{Parser, Subcommand};
use deploy::verify::Fixture;
use model::burn::tensor::Device;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "deploy", about = "Verify, fuse and export YOLO models")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the burn forward (unfused and fused) against a fixture made by scripts/make_fixture.py.
    Verify {
        #[arg(long)]
        fixture: PathBuf,
        /// Model YAML to use instead of the one the fixture names.
        #[arg(long)]
        config: Option<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Verify { fixture, config } => {
            let fx = Fixture::load(&fixture, config.as_deref())?;
            let report = fx.verify(&Device::flex())?;
            print!("{}", report.render());
            if !report.ok() {
                eprintln!("{}: out of tolerance", fixture.display());
                std::process::exit(1);
            }
            println!("{}: all checks pass", fixture.display());
        }
    }
    Ok(())
}
