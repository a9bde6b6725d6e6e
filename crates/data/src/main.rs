//! `data`: check a dataset, dump augmented samples, measure the pipeline, generate the synthetic dataset.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use data::augment::{AugmentConfig, Augmenter};
use data::{DataConfig, Dataset};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "data",
    about = "YOLO datasets: check, dump augmented samples, benchmark the pipeline"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a split and print its summary (images, backgrounds, corrupt, boxes per class, warnings).
    Check {
        #[arg(long, default_value = "datasets/trees/data.yaml")]
        data: PathBuf,
        #[arg(long, default_value = "train")]
        split: String,
    },
    /// Write N augmented training samples with their boxes drawn.
    Dump {
        #[arg(long, default_value = "datasets/trees/data.yaml")]
        data: PathBuf,
        #[arg(long, default_value_t = 8, value_parser = data::args::at_least_one)]
        n: usize,
        #[arg(long, default_value = "runs/dump")]
        out: PathBuf,
        #[arg(long, default_value_t = 640, value_parser = data::args::image_size)]
        imgsz: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Samples as in the close_mosaic epochs.
        #[arg(long)]
        no_mosaic: bool,
        /// Validation (letterboxed) samples instead.
        #[arg(long)]
        val: bool,
    },
    /// Images/s of the augmentation pipeline alone.
    Bench {
        #[arg(long, default_value = "datasets/trees/data.yaml")]
        data: PathBuf,
        #[arg(long, default_value_t = 640, value_parser = data::args::image_size)]
        imgsz: usize,
        #[arg(long, default_value_t = 8, value_parser = data::args::at_least_one)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 3, value_parser = data::args::at_least_one)]
        epochs: usize,
        /// Keep decoded images in memory.
        #[arg(long)]
        cache: bool,
    },
    /// Convert COCO JSON or Pascal VOC annotations to a YOLO dataset (labels, images, data.yaml).
    Convert {
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
    },
    /// Generate the synthetic 3-class dataset.
    Synth {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value_t = 64, value_parser = data::args::at_least_one)]
        train: usize,
        #[arg(long, default_value_t = 16, value_parser = data::args::at_least_one)]
        val: usize,
        /// Image side in pixels (32..=4096).
        #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(32..=4096))]
        size: u32,
    },
}

fn load(data: &std::path::Path, split: &str) -> Result<Dataset> {
    let cfg = DataConfig::from_file(data)?;
    let ds = Dataset::load(&cfg, split)?;
    eprint!("{}", ds.report());
    Ok(ds)
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Check { data, split } => {
            load(&data, &split)?;
        }
        Cmd::Dump {
            data,
            n,
            out,
            imgsz,
            seed,
            no_mosaic,
            val,
        } => {
            let ds = Arc::new(load(&data, if val { "val" } else { "train" })?);
            std::fs::create_dir_all(&out)
                .with_context(|| format!("{}: cannot create", out.display()))?;
            let aug = Augmenter::new(ds.clone(), AugmentConfig::default(), imgsz, seed, false);
            for i in 0..n {
                let idx = i % ds.len();
                let (mut img, labels) = if val {
                    let s = aug.val_sample(idx);
                    (s.image, s.labels)
                } else {
                    let s = aug.train_sample(idx, 0, !no_mosaic);
                    (s.image, s.labels)
                };
                data::draw::draw_labels(&mut img, &labels);
                let p = out.join(format!("{}_{i:03}.jpg", if val { "val" } else { "train" }));
                img.save(&p)
                    .with_context(|| format!("{}: cannot write", p.display()))?;
                println!("{} ({} boxes)", p.display(), labels.len());
            }
        }
        Cmd::Bench {
            data,
            imgsz,
            batch,
            workers,
            epochs,
            cache,
        } => {
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
                for b in data::loader::train_batches(aug.clone(), e, batch, workers, true) {
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
        Cmd::Convert {
            from,
            input,
            images,
            out,
            split,
        } => {
            let r = if from == "coco" {
                let Some(images) = images else {
                    anyhow::bail!(
                        "--from coco needs --images DIR (where the JSON's file_name entries are)"
                    );
                };
                data::convert::coco(&input, &images, &out, &split)?
            } else {
                data::convert::voc(&input, &out, &split)?
            };
            print!("{}", r.render());
        }
        Cmd::Synth {
            out,
            seed,
            train,
            val,
            size,
        } => {
            data::synth::write_dataset(&out, seed, train, val, size)
                .with_context(|| format!("{}: cannot write the dataset", out.display()))?;
            println!(
                "wrote {} ({train} train, {val} val images)",
                out.join("data.yaml").display()
            );
        }
    }
    Ok(())
}
