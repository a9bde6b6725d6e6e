//! The `train` and `val` commands as a library, so the `train`, `val` and `yolo` binaries share their
//! arguments and code.

use crate::trainer::{TrainArgs, Trainer};
use crate::val::{render, to_json, validate, ValOptions};
use anyhow::{bail, Context, Result};
use data::{DataConfig, Dataset};
use model::weights::load_model;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Train a YOLO detector or classifier (Ultralytics' loss and recipe). With no flags: yolov8-mobileone n on
/// datasets/trees; a classifier YAML (e.g. configs/yolov8-mobileone-cls.yaml) trains on datasets/trees_cls at 224.
#[derive(clap::Args, Debug)]
pub struct TrainCli {
    /// Model YAML; a bare name resolves from configs/ (yolov8n-mobileone.yaml = scale n).
    #[arg(long)]
    config: Option<String>,
    /// A detection data.yaml, or a classification image folder (train/<class>/*, val/<class>/*) or its YAML.
    #[arg(long)]
    data: Option<String>,
    #[arg(long)]
    scale: Option<String>,
    /// detect or classify: checked against the model's head (which decides).
    #[arg(long)]
    task: Option<String>,
    #[arg(long, value_parser = data::args::at_least_one)]
    epochs: Option<usize>,
    /// One size, or H,W (the larger side is used, as Ultralytics' train); 320 for a detector, 224 for a
    /// classifier.
    #[arg(long)]
    imgsz: Option<data::args::ImgSize>,
    #[arg(long, value_parser = data::args::at_least_one)]
    batch: Option<usize>,
    /// Nominal batch size for gradient accumulation and weight-decay scaling (Ultralytics default 64;
    /// ours defaults to the batch so the 42 tiles of datasets/trees give enough optimizer steps).
    #[arg(long, value_parser = data::args::at_least_one)]
    nbs: Option<usize>,
    /// auto (the first hardware GPU through wgpu, else the CPU), cpu, wgpu, wgpu:N (or N), wgpu:cpu,
    /// cuda:N (`cuda` feature). A comma list (0,1 or cuda:0,1) trains data-parallel on those devices.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, value_parser = data::args::at_least_one)]
    workers: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Run folder (default runs/train/train, train2, ...).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue a run: its folder (or its weights/last.safetensors).
    #[arg(long, num_args = 0..=1, default_missing_value = "")]
    resume: Option<String>,
    /// Initial weights (our safetensors). Tensors whose name and shape match are loaded (weights trained
    /// for another class count: all but the class branch), as Ultralytics transfers them.
    #[arg(long)]
    weights: Option<String>,
    /// The model, Ultralytics' name for it: a YAML (as --config) or initial weights (as --weights).
    #[arg(long)]
    model: Option<model::cli::ModelSource>,
    /// auto (Ultralytics 8.4: MuSGD for runs over 10k iterations, else AdamW), SGD, AdamW or MuSGD.
    #[arg(long)]
    optimizer: Option<String>,
    #[arg(long)]
    lr0: Option<f64>,
    #[arg(long)]
    lrf: Option<f64>,
    #[arg(long)]
    momentum: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    warmup_epochs: Option<f64>,
    #[arg(long)]
    close_mosaic: Option<usize>,
    /// Cosine learning-rate decay instead of linear.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    cos_lr: Option<bool>,
    /// MobileOne's custom L2 (the RepVGG recipe, for INT8): no plain weight decay on the blocks' branch
    /// kernels, `0.5 * weight_decay * ||equivalent kernel||^2` per block added to the loss instead.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    rep_l2: Option<bool>,
    /// Hyperparameters in a YAML file with Ultralytics' key names (lr0, momentum, mosaic, hsv_h, ...).
    #[arg(long)]
    hyp: Option<PathBuf>,
    /// Validate after each epoch (`--val false` skips it).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    val: Option<bool>,
    /// Augmented samples with their boxes drawn, written to the run folder at start (train_batchN.jpg).
    #[arg(long)]
    dump: Option<usize>,
    /// Freeze the first N layers (their weights are not trained), as Ultralytics' `freeze=N`.
    #[arg(long)]
    freeze: Option<usize>,
    /// A classifier's dropout before its linear layer (0 to 1).
    #[arg(long)]
    dropout: Option<f64>,
    /// A classifier's random-erasing probability (0.4).
    #[arg(long)]
    erasing: Option<f64>,
    /// A classifier's augmentation policy: randaugment.
    #[arg(long)]
    auto_augment: Option<String>,
}

/// Whether the `--hyp` file sets `key` (so a task's default does not override it).
fn hyp_sets(hyp: Option<&Path>, key: &str) -> bool {
    hyp.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| serde_yaml::from_str::<serde_yaml::Value>(&t).ok())
        .is_some_and(|v| v.get(key).is_some())
}

impl TrainCli {
    /// The arguments of a fresh run: the defaults, then a `--hyp` file, then these flags (`bench_step` times
    /// a step of exactly this recipe).
    pub fn fresh_args(&self) -> Result<TrainArgs> {
        let c = self;
        let (weights, config) =
            model::cli::ModelSource::resolve(c.model.clone(), c.weights.clone(), c.config.clone())?;
        let mut a = match &c.hyp {
            Some(p) => TrainArgs::from_hyp_file(p)?,
            None => TrainArgs::default(),
        };
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = c.$f.clone() { a.$f = v; })* };
        }
        if let Some(v) = config {
            a.config = v;
        }
        set!(
            data,
            epochs,
            batch,
            workers,
            seed,
            optimizer,
            lr0,
            lrf,
            momentum,
            weight_decay,
            warmup_epochs,
            close_mosaic,
            dump,
            freeze,
            cos_lr,
            rep_l2,
            val,
            dropout,
            erasing,
            auto_augment
        );
        if let Some(s) = c.imgsz {
            a.imgsz = s.side("train");
        }
        if let Some(n) = c.nbs {
            a.nbs = n;
        } else if c.batch.is_some() && c.hyp.is_none() {
            a.nbs = a.batch;
        }
        a.scale = c.scale.clone().or(a.scale);
        a.weights = weights;
        a.config = model::spec::find_config(&a.config);
        // A classifier's defaults differ (Ultralytics' 224 px; our image-folder dataset). A YAML that does not
        // parse is left to the trainer, which says where.
        let task = model::ModelSpec::from_file(&a.config, &model::SpecOptions::default())
            .ok()
            .map(|s| s.task());
        if let (Some(want), Some(task)) = (&c.task, task) {
            if !want.eq_ignore_ascii_case(task.name()) {
                bail!(
                    "--task {want}: {} is a {} model (its head decides; a classifier YAML ends in a Classify row)",
                    a.config,
                    task.name()
                );
            }
        } else if let Some(want) = &c.task {
            if !matches!(want.to_ascii_lowercase().as_str(), "detect" | "classify") {
                bail!("--task {want}: expected detect or classify");
            }
        }
        if task == Some(model::Task::Classify) {
            let hyp = c.hyp.as_deref();
            if c.imgsz.is_none() && !hyp_sets(hyp, "imgsz") {
                a.imgsz = 224;
            }
            if c.data.is_none() && !hyp_sets(hyp, "data") {
                a.data = "datasets/trees_cls".into();
            }
        }
        Ok(a)
    }

    /// `--device`: one device or a list for data-parallel training.
    pub fn devices(&self) -> Result<Vec<model::burn::tensor::Device>> {
        Ok(model::device::select_all(&self.device)?)
    }

    /// Whether `--resume` was given (a fresh-run-only tool refuses it).
    pub fn resumes(&self) -> bool {
        self.resume.is_some()
    }
}

pub fn train(c: TrainCli) -> Result<()> {
    let mut devices = c.devices()?;
    let device = devices.remove(0);
    let (mut args, run_dir) = match &c.resume {
        Some(r) => {
            let dir = if r.is_empty() {
                let latest = std::fs::read_dir("runs/train")
                    .context("--resume: no runs/train folder")?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("weights/last.state.safetensors").exists())
                    .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
                latest
                    .map(|e| e.path())
                    .context("--resume: no resumable run in runs/train")?
            } else {
                let p = PathBuf::from(r);
                if p.is_file() {
                    p.parent()
                        .and_then(Path::parent)
                        .map(Path::to_path_buf)
                        .unwrap_or(p)
                } else {
                    p
                }
            };
            let st = model::weights::WeightsFile::read(
                &dir.join("weights/last.state.safetensors").to_string_lossy(),
            )
            .with_context(|| {
                format!(
                    "--resume {}: not a run folder with a checkpoint",
                    dir.display()
                )
            })?;
            let args: TrainArgs =
                serde_json::from_str(st.metadata.get("args").context("checkpoint without args")?)?;
            (args, dir)
        }
        None => {
            let mut a = c.fresh_args()?;
            let dir = c
                .out
                .clone()
                .unwrap_or_else(|| model::cli::next_run_dir(Path::new("runs/train"), "train"));
            a.out = dir.display().to_string();
            (a, dir)
        }
    };
    args.check()
        .map_err(|e| anyhow::anyhow!("training arguments: {e}"))?;
    args.out = run_dir.display().to_string();
    eprintln!("run folder {}", run_dir.display());
    let stop = model::cli::ctrl_c_flag(
        "finishing the batch, then saving; the last completed epoch stays resumable",
    );
    let t = Trainer {
        args,
        resume: c.resume.is_some(),
        run_dir: run_dir.clone(),
        device,
        extra_devices: devices,
        stop,
        max_steps: None,
    };
    let outcome = match t.run() {
        Err(e) if matches!(e.downcast_ref(), Some(data::DataError::Interrupted { .. })) => {
            eprintln!("{e}");
            std::process::exit(130);
        }
        r => r?,
    };
    if outcome.interrupted {
        eprintln!(
            "interrupted; continue with: train --resume {0}   (from a checkout: cargo run --release -p train -- --resume {0})",
            run_dir.display()
        );
        std::process::exit(130);
    }
    if let Some(r) = outcome.results.last() {
        if outcome.task == model::Task::Classify {
            println!(
                "final (epoch {}): top1 {:.4} top5 {:.4} val loss {:.4}",
                r.epoch + 1,
                r.top1,
                r.top5,
                r.val[0]
            );
        } else {
            println!(
                "final (epoch {}): P {:.4} R {:.4} mAP50 {:.4} mAP50-95 {:.4}",
                r.epoch + 1,
                r.p,
                r.r,
                r.map50,
                r.map
            );
        }
    }
    Ok(())
}

/// Validate YOLO weights on a dataset split (Ultralytics' metrics).
#[derive(clap::Args, Debug)]
pub struct ValCli {
    #[command(flatten)]
    weights: model::cli::WeightsArg,
    #[arg(long, default_value = "datasets/trees/data.yaml")]
    data: PathBuf,
    #[arg(long, default_value = "val")]
    split: String,
    /// One size, or H,W (the larger side is used, as Ultralytics' val); 640 for a detector, 224 for a
    /// classifier.
    #[arg(long)]
    imgsz: Option<data::args::ImgSize>,
    #[arg(long, default_value_t = 16, value_parser = data::args::at_least_one)]
    batch: usize,
    #[arg(long, default_value_t = 0.001, value_parser = data::args::unit_interval)]
    conf: f32,
    #[arg(long, default_value_t = 0.7, value_parser = data::args::unit_interval)]
    iou: f32,
    #[arg(long, default_value_t = 300, value_parser = data::args::at_least_one)]
    max_det: usize,
    #[arg(long, default_value_t = 2, value_parser = data::args::at_least_one)]
    workers: usize,
    /// Rectangular batches as Ultralytics' `yolo val` (sorted by aspect ratio, each letterboxed to its own
    /// stride-multiple shape with half a stride of padding); `--rect false` letterboxes every image to a square.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    rect: bool,
    /// Print one JSON object instead of the table.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    json: bool,
    /// Write PR_curve.png and confusion_matrix.png into --out (a classifier: confusion_matrix.png).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    plots: bool,
    #[arg(long, default_value = "runs/val")]
    out: PathBuf,
    #[command(flatten)]
    foreign: model::cli::ForeignModelArgs,
    #[command(flatten)]
    device: model::cli::DeviceArgs,
}

/// `val` of a classifier: top-1 and top-5 accuracy on an image-folder split, as Ultralytics' validator.
fn val_classifier(
    a: &ValCli,
    weights: &str,
    loaded: &model::weights::Loaded,
    device: &model::burn::tensor::Device,
) -> Result<()> {
    use data::image_folder::{ClassifyData, ImageFolder};
    let imgsz = a.imgsz.as_ref().map_or(224, |s| s.side("val"));
    loaded
        .model
        .spec
        .check_input(imgsz, imgsz)
        .map_err(|e| anyhow::anyhow!("{weights}: {e}"))?;
    let data = ClassifyData::open(&a.data)?;
    let dir = data.split_dir(&a.split)?;
    let nc = loaded.model.nc();
    // Weights without class names (a bare state_dict) take the dataset's, which its train/ folders define.
    let names = match loaded.file.names().filter(|n| n.len() == nc) {
        Some(_) => loaded.names.clone(),
        None if data.names.len() == nc => {
            eprintln!(
                "note: {weights} carries no class names; the dataset's train/ folders name them ({})",
                data.names.join(", ")
            );
            data.names.clone()
        }
        None => loaded.names.clone(),
    };
    let ds = ImageFolder::scan(dir, &names)?;
    for w in &ds.warnings {
        eprintln!("warning: {w}");
    }
    if ds.is_empty() {
        bail!(
            "{}: no images of the model's classes ({})",
            dir.display(),
            names.join(", ")
        );
    }
    eprintln!(
        "{}: {} images in {} classes",
        dir.display(),
        ds.len(),
        ds.classes.len()
    );
    let r = crate::classify::validate_classifier(
        &loaded.model,
        &ds,
        imgsz,
        a.batch,
        a.workers,
        device,
    )?;
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["names"] = serde_json::json!(names);
        v["predictions"] = r
            .predictions
            .iter()
            .map(|p| {
                serde_json::json!({
                    "file": p.file.strip_prefix(&data.root).unwrap_or(&p.file),
                    "cls": p.class,
                    "top5": p.top,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", crate::classify::render(&r));
    }
    if a.plots {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("{}: cannot create", a.out.display()))?;
        crate::plots::classify_confusion(
            &a.out.join("confusion_matrix.png"),
            &r.confusion,
            &names,
        )?;
        eprintln!("plots in {}", a.out.display());
    }
    Ok(())
}

pub fn val(a: ValCli) -> Result<()> {
    val_with(a, None)
}

/// Makes the forward an INT8 model runs on (the CPU engine, which the `yolo` binary links).
pub type MakeForward<'a> =
    &'a dyn Fn(&model::YoloModel) -> std::result::Result<crate::val::Forward, String>;

/// [`val`] where an INT8 model runs through `engine` (without one, an INT8 file is refused).
pub fn val_with(a: ValCli, engine: Option<MakeForward<'_>>) -> Result<()> {
    let device = a.device.select()?;
    let weights = a.weights.path("val")?;
    let loaded = load_model(&weights, &a.foreign.load_options(), &device)?;
    let forward = match (&loaded.model.int8, engine) {
        (None, _) => None,
        (Some(_), Some(make)) => Some(make(&loaded.model).map_err(|e| anyhow::anyhow!("{weights}: {e}"))?),
        (Some(_), None) => bail!(
            "{weights} is an INT8 file: it runs on the CPU inference engine, which `yolo val` has (this `val` \
             binary validates float models)"
        ),
    };
    if loaded.model.task() == model::Task::Classify {
        return val_classifier(&a, &weights, &loaded, &device);
    }
    let imgsz = a.imgsz.as_ref().map_or(640, |s| s.side("val"));
    let spec = &loaded.model.spec;
    spec.require_detector("val").map_err(anyhow::Error::msg)?;
    spec.check_input(imgsz, imgsz)
        .map_err(|e| anyhow::anyhow!("{weights}: {e}"))?;
    let cfg = DataConfig::from_file(&a.data)?;
    if cfg.nc() != loaded.model.nc() {
        bail!(
            "{}: the model has {} classes but {} names {}",
            weights,
            loaded.model.nc(),
            a.data.display(),
            cfg.nc()
        );
    }
    let ds = Arc::new(Dataset::load(&cfg, &a.split)?);
    eprint!("{}", ds.report());
    let opts = ValOptions {
        imgsz,
        batch: a.batch,
        conf: a.conf,
        iou: a.iou,
        max_det: a.max_det,
        workers: a.workers,
        rect: a.rect,
        with_loss: None,
        forward,
    };
    let r = validate(&loaded.model, ds, &opts, &device)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&r, &cfg.names))?
        );
    } else {
        print!("{}", render(&r, &cfg.names));
    }
    if a.plots {
        std::fs::create_dir_all(&a.out)
            .with_context(|| format!("{}: cannot create", a.out.display()))?;
        crate::plots::pr_curve(&a.out.join("PR_curve.png"), &r.metrics, &cfg.names)?;
        let mut labels = cfg.names.clone();
        labels.push("background".into());
        crate::plots::confusion(
            &a.out.join("confusion_matrix.png"),
            &r.confusion.matrix,
            &labels,
        )?;
        eprintln!("plots in {}", a.out.display());
    }
    Ok(())
}
