//! The `data` commands (check, dump, bench, convert, synth) as a library, so the `data` and `yolo` binaries
//! share their arguments and code.

use crate::augment::{AugmentConfig, Augmenter};
use crate::{DataConfig, Dataset};
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Validate a split and print its summary (images, backgrounds, corrupt, boxes per class, warnings).
    Check(CheckArgs),
    /// Write N augmented training samples with their boxes drawn.
    Dump(DumpArgs),
    /// Images/s of the augmentation pipeline alone.
    Bench(BenchArgs),
    /// Convert COCO JSON or Pascal VOC annotations to a YOLO dataset (labels, images, data.yaml).
    Convert(ConvertArgs),
    /// Generate the synthetic 3-class dataset.
    Synth(SynthArgs),
}

/// Validate a split and print its summary (images, backgrounds, corrupt, boxes per class, warnings).
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: PathBuf,
    #[arg(long, default_value = "train")]
    split: String,
}

/// Write N augmented training samples with their boxes drawn.
#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: PathBuf,
    #[arg(long, default_value_t = 8, value_parser = crate::args::at_least_one)]
    n: usize,
    #[arg(long, default_value = "runs/dump")]
    out: PathBuf,
    /// One size, or H,W (the larger side is used: augmentation works on squares).
    #[arg(long, default_value = "640")]
    imgsz: crate::args::ImgSize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mosaic augmentation; false: samples as in the close_mosaic epochs.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    mosaic: bool,
    /// Validation (letterboxed) samples instead.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    val: bool,
}

/// Images/s of the augmentation pipeline alone.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: PathBuf,
    /// One size, or H,W (the larger side is used: augmentation works on squares).
    #[arg(long, default_value = "640")]
    imgsz: crate::args::ImgSize,
    #[arg(long, default_value_t = 8, value_parser = crate::args::at_least_one)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    workers: usize,
    #[arg(long, default_value_t = 3, value_parser = crate::args::at_least_one)]
    epochs: usize,
    /// Keep decoded images in memory.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    cache: bool,
}

/// Convert COCO JSON or Pascal VOC annotations to a YOLO dataset (labels, images, data.yaml).
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// coco or voc.
    #[arg(long, value_parser = ["coco", "voc"])]
    from: String,
    /// The COCO annotation JSON, or the VOC folder (Annotations/ and JPEGImages/).
    input: PathBuf,
    /// COCO: the folder the JSON's file_name entries are relative to.
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// The split folder name under images/ and labels/.
    #[arg(long, default_value = "train")]
    split: String,
}

/// Generate the synthetic 3-class dataset.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 64, value_parser = crate::args::at_least_one)]
    train: usize,
    #[arg(long, default_value_t = 16, value_parser = crate::args::at_least_one)]
    val: usize,
    /// Image side in pixels (32..=4096).
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(32..=4096))]
    size: u32,
}

fn load(data: &std::path::Path, split: &str) -> Result<Dataset> {
    let cfg = DataConfig::from_file(data)?;
    let ds = Dataset::load(&cfg, split)?;
    eprint!("{}", ds.report());
    Ok(ds)
}

/// Runs one `data` command.
pub fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Check(a) => {
            let CheckArgs { data, split } = a;
            load(&data, &split)?;
        }
        Cmd::Dump(a) => {
            let DumpArgs {
                data,
                n,
                out,
                imgsz,
                seed,
                mosaic,
                val,
            } = a;
            let imgsz = imgsz.side("dump");
            let ds = Arc::new(load(&data, if val { "val" } else { "train" })?);
            std::fs::create_dir_all(&out)
                .with_context(|| format!("{}: cannot create", out.display()))?;
            let aug = Augmenter::new(ds.clone(), AugmentConfig::default(), imgsz, seed, false);
            for i in 0..n {
                let idx = i % ds.len();
                let (mut img, labels) = if val {
                    let s = aug.val_sample(idx, imgsz, imgsz);
                    (s.image, s.labels)
                } else {
                    let s = aug.train_sample(idx, 0, mosaic);
                    (s.image, s.labels)
                };
                crate::draw::draw_labels(&mut img, &labels);
                let p = out.join(format!("{}_{i:03}.jpg", if val { "val" } else { "train" }));
                crate::image_ops::save_rgb(&img, &p)?;
                println!("{} ({} boxes)", p.display(), labels.len());
            }
        }
        Cmd::Bench(a) => {
            let BenchArgs {
                data,
                imgsz,
                batch,
                workers,
                epochs,
                cache,
            } = a;
            let imgsz = imgsz.side("bench");
            let ds = Arc::new(load(&data, "train")?);
            let aug = Arc::new(Augmenter::new(
                ds.clone(),
                AugmentConfig::default(),
                imgsz,
                0,
                cache,
            ));
            let t = Instant::now();
            let mut images = 0;
            for e in 0..epochs {
                for b in crate::loader::train_batches(aug.clone(), e, batch, workers, true) {
                    images += b?.shape[0];
                }
            }
            let s = t.elapsed().as_secs_f64();
            println!(
                "{images} augmented images (mosaic, imgsz {imgsz}, batch {batch}, {workers} workers{}) in {s:.2} s: {:.1} images/s",
                if cache { ", RAM cache" } else { "" },
                images as f64 / s
            );
        }
        Cmd::Convert(a) => {
            let ConvertArgs {
                from,
                input,
                images,
                out,
                split,
            } = a;
            let r = if from == "coco" {
                let Some(images) = images else {
                    anyhow::bail!(
                        "--from coco needs --images DIR (where the JSON's file_name entries are)"
                    );
                };
                crate::convert::coco(&input, &images, &out, &split)?
            } else {
                crate::convert::voc(&input, &out, &split)?
            };
            print!("{}", r.render());
        }
        Cmd::Synth(a) => {
            let SynthArgs {
                out,
                seed,
                train,
                val,
                size,
            } = a;
            crate::synth::write_dataset(&out, seed, train, val, size)
                .with_context(|| format!("{}: cannot write the dataset", out.display()))?;
            println!(
                "wrote {} ({train} train, {val} val images)",
                out.join("data.yaml").display()
            );
        }
    }
    Ok(())
}
