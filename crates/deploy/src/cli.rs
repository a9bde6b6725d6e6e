//! The `deploy` commands (verify, export, predict, bench) as a library, so the `deploy` and `yolo` binaries
//! share their arguments and code.

use crate::bench::Variant;
use crate::export::{export, ExportOptions, Format};
use crate::verify::Fixture;
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use data::args::ImgSize;
use model::cli::{DeviceArgs, ForeignModelArgs};
use model::weights::load_model;
use model::{ModelSpec, YoloModel};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Check the burn forward (unfused and fused) against a fixture made by scripts/make_fixture.py.
    Verify(VerifyArgs),
    /// Reparameterize + fuse, check fused == unfused, then write the requested formats.
    Export(ExportArgs),
    /// Detect objects in images, videos and streams: annotated images and videos, labels/*.txt,
    /// predictions.json.
    Predict(PredictArgs),
    /// Follow objects through videos and streams (ByteTrack, BoT-SORT): predict's outputs with track ids.
    Track(PredictArgs),
    /// Latency of unfused vs fused on the same backend, as a table.
    Bench(BenchArgs),
}

/// Check the burn forward (unfused and fused) against a fixture made by scripts/make_fixture.py.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[arg(long)]
    fixture: PathBuf,
    /// Model YAML to use instead of the one the fixture names.
    #[arg(long)]
    config: Option<String>,
    /// Where the burn checks run (the engine checks run on the CPU).
    #[command(flatten)]
    device: DeviceArgs,
}

/// Reparameterize + fuse, check fused == unfused, then write the requested formats.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    weights: model::cli::WeightsArg,
    #[command(flatten)]
    foreign: ForeignModelArgs,
    #[arg(long)]
    out: PathBuf,
    /// Comma-separated: safetensors, onnx, burn (default all three; with --int8 the INT8 safetensors).
    #[arg(long)]
    format: Option<String>,
    /// Post-training INT8 quantization for the CPU engine: writes `<name>_int8.safetensors`, calibrated on
    /// the train images of --data.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    int8: bool,
    /// Data set YAML whose train images calibrate --int8.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Share of the train images that calibrate --int8 (at most 300 are used).
    #[arg(long, default_value_t = 1.0)]
    fraction: f64,
    /// How each input range is taken: minmax, or percentile[:N] (N=99.99 clips 0.01% at each end).
    #[arg(long, default_value = "minmax")]
    int8_calibration: crate::quantize::Calibration,
    /// Layers whose INT8 output error (RMS error over RMS output, measured alone) is above this stay float32.
    #[arg(long, default_value_t = 0.1)]
    int8_keep: f64,
    /// Export (and ONNX input) size: N or H,W.
    #[arg(long, default_value = "640")]
    imgsz: ImgSize,
    /// Fuse before writing; `--fuse false` writes the unfused model (safetensors/burn only).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    fuse: bool,
    /// Image for the pre-export check (default: a built-in aerial photo).
    #[arg(long)]
    image: Option<PathBuf>,
    /// Where to fuse and check.
    #[command(flatten)]
    device: DeviceArgs,
}

/// Detect objects in images, videos and streams: annotated images and videos, labels/*.txt,
/// predictions.json.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    weights: model::cli::WeightsArg,
    /// An image or video file, a folder (recursive), a glob, a .txt list of files, a stream URL (rtsp://,
    /// rtmp://, http://, tcp://, file://...), a .streams list of URLs, or a camera index (0: /dev/video0;
    /// needs the `camera` feature).
    #[arg(long)]
    source: String,
    /// Keep every n-th frame of a video or stream.
    #[arg(long, default_value_t = 1, value_parser = data::args::at_least_one)]
    vid_stride: usize,
    /// Predict every frame of a stream; by default frames that arrive while the model is busy are dropped
    /// so the results stay live.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    stream_buffer: bool,
    /// Seconds a stream may go without a frame (opening included) before it is given up; Ctrl-C stops a
    /// waiting read at once.
    #[arg(long, default_value_t = 10, value_parser = data::args::at_least_one)]
    stream_timeout: usize,
    /// Output folder (default runs/predict/predict, predict2, ... as Ultralytics numbers them).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Network input: N or H,W (each side a multiple of the model's largest stride) [default: 640; 224 for a
    /// classifier, which takes the centre square of each image resized to N, the larger side of H,W].
    #[arg(long)]
    imgsz: Option<ImgSize>,
    /// Keep boxes scoring at least this (0..1) [default: 0.25; 0.1 in track mode, as Ultralytics].
    #[arg(long, value_parser = data::args::unit_interval)]
    conf: Option<f32>,
    /// NMS overlap threshold (0..1).
    #[arg(long, default_value_t = 0.7, value_parser = data::args::unit_interval)]
    iou: f32,
    #[arg(long, default_value_t = 300, value_parser = data::args::at_least_one)]
    max_det: usize,
    /// Keep only these class ids, e.g. 0,2.
    #[arg(long)]
    classes: Option<String>,
    /// NMS across classes.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    agnostic_nms: bool,
    /// Images per forward pass [default: 8; 1 in track mode, as Ultralytics].
    #[arg(long, value_parser = data::args::at_least_one)]
    batch: Option<usize>,
    #[command(flatten)]
    device: DeviceArgs,
    /// Track mode: the tracker YAML (Ultralytics' keys), a path or a name in configs/trackers/ [default:
    /// botsort.yaml].
    #[arg(long)]
    tracker: Option<String>,
    /// Track mode: one tracker carries on across sources instead of starting afresh for each video or image.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    persist: bool,
    /// Track mode: draw each track's path (its last 30 box centres) on the annotated frames.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    trails: bool,
    /// Write labels/NAME.txt (`cls cx cy w h`, normalized; `[conf] [id]` appended with --save-conf and in
    /// track mode).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    save_txt: bool,
    /// Add the confidence to each label row.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    save_conf: bool,
    /// Write predictions.json (COCO-style).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    save_json: bool,
    /// Write the annotated images and videos (`--save false`: labels and JSON only).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    save: bool,
    /// Decoding threads.
    #[arg(long, default_value_t = 2, value_parser = data::args::at_least_one)]
    workers: usize,
    #[command(flatten)]
    foreign: ForeignModelArgs,
    /// Fuse Conv+BN and MobileOne branches before running (same outputs, faster).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    fuse: bool,
    /// On the CPU, run the model through the inference engine (AVX-512/AVX2 kernels); false: burn.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    engine: bool,
    /// Sliced inference for large images: tiles of N original pixels, each predicted alone, boxes merged.
    #[arg(long, value_parser = data::args::tile_size)]
    tile: Option<usize>,
    /// Fraction of a tile shared with its neighbour.
    #[arg(long, default_value_t = 0.2, value_parser = |s: &str| fraction(s, 0.9))]
    overlap: f32,
    /// How boxes of neighbouring tiles are combined: nms (keep the best) or nmm (SAHI's default: merge into
    /// their union; poor on dense scenes, where it joins neighbours).
    #[arg(long, value_enum, default_value_t = crate::tiles::Merge::Nms)]
    tile_merge: crate::tiles::Merge,
    /// Boxes of one class match when their intersection covers more than this of the smaller one (1: never).
    #[arg(long, default_value_t = 0.5, value_parser = |s: &str| fraction(s, 1.0))]
    tile_match: f32,
    /// With --tile, also predict the whole image and merge its boxes in.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    tile_full: bool,
}

/// Latency of unfused vs fused on the same backend, as a table.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Model YAML to time (random weights: latency only).
    #[arg(long, required_unless_present_any = ["model", "weights"])]
    config: Option<String>,
    /// The model YAML, Ultralytics' name for it (as --config).
    #[arg(long, conflicts_with = "config")]
    model: Option<model::cli::ModelSource>,
    /// A weights file to time instead (fused on burn and the engine; an INT8 file also in INT8).
    #[arg(long, conflicts_with_all = ["config", "model"])]
    weights: Option<String>,
    #[command(flatten)]
    variant: model::cli::VariantArgs,
    /// Comma-separated batch sizes.
    #[arg(long, default_value = "1,8")]
    batch: String,
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10, value_parser = data::args::at_least_one)]
    iters: usize,
    /// Also print per-layer times (batch = the first of --batch).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    layers: bool,
    /// Time burn too (`--burn false`: only the inference engine, unfused and fused).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    burn: bool,
    /// Print the rows as JSON (for scripts/bench_peers.py).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    json: bool,
}

/// Runs one `deploy` command.
pub fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Verify(a) => verify(a),
        Cmd::Export(a) => export_cmd(a),
        Cmd::Predict(a) => predict_cmd(a, false),
        Cmd::Track(a) => predict_cmd(a, true),
        Cmd::Bench(a) => bench_cmd(a),
    }
}

/// Checks a model against a parity fixture.
fn verify(a: VerifyArgs) -> Result<()> {
    let VerifyArgs {
        fixture,
        config,
        device,
    } = a;
    let fx = Fixture::load(&fixture, config.as_deref())?;
    let report = fx.verify(&device.select()?)?;
    print!("{}", report.render());
    if !report.ok() {
        eprintln!("{}: out of tolerance", fixture.display());
        std::process::exit(1);
    }
    println!("{}: all checks pass", fixture.display());
    Ok(())
}

/// Fuses (unless told not to) and writes the formats asked for.
fn export_cmd(a: ExportArgs) -> Result<()> {
    let ExportArgs {
        weights,
        foreign,
        out,
        format,
        int8,
        data,
        fraction,
        int8_calibration,
        int8_keep,
        imgsz,
        fuse,
        image,
        device,
    } = a;
    let weights = weights.path("export")?;
    if int8 {
        let Some(data) = data else {
            bail!("--int8 needs --data D.yaml: the data set whose train images calibrate the quantization");
        };
        let formats = format
            .as_deref()
            .unwrap_or("safetensors")
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Format>>>()?;
        if formats.contains(&Format::Burn) {
            bail!("--int8 --format burn: INT8 is written as safetensors (always) and a QDQ ONNX (--format onnx)");
        }
        if !fuse {
            bail!("--int8 quantizes the fused model: drop --fuse false");
        }
        let o = crate::quantize::Int8Options {
            data,
            fraction,
            max_images: 300,
            imgsz: (imgsz.h, imgsz.w),
            method: int8_calibration,
            keep_above: int8_keep,
            error_images: 8,
        };
        return int8_export(
            &weights,
            &foreign,
            &out,
            &o,
            formats.contains(&Format::Onnx),
        );
    }
    if data.is_some() {
        bail!("--data is for --int8 (the calibration images); export without --int8 needs no data");
    }
    let dev = device.select()?;
    let formats = format
        .as_deref()
        .unwrap_or("safetensors,onnx,burn")
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<Format>>>()?;
    let loaded = load_model(&weights, &foreign.load_options(), &dev)?;
    let stem = Path::new(&weights)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let opts = ExportOptions {
        formats,
        imgsz: (imgsz.h, imgsz.w),
        fuse,
        out,
        stem,
        image,
    };
    let s = export(loaded.model, &loaded.names, &opts, &dev)?;
    for f in &s.files {
        println!("wrote {}", f.display());
    }
    Ok(())
}

/// `export --int8`: the fused model calibrated and written as `<stem>_int8.safetensors` in `out`.
fn int8_export(
    weights: &str,
    foreign: &ForeignModelArgs,
    out: &Path,
    o: &crate::quantize::Int8Options,
    onnx: bool,
) -> Result<()> {
    let dev = model::burn::tensor::Device::flex();
    let loaded = load_model(weights, &foreign.load_options(), &dev)?;
    if let Err(e) = model::shapes::check_input_size(&loaded.model.spec, o.imgsz.0, o.imgsz.1) {
        bail!("--imgsz: {e}");
    }
    let fused = if loaded.model.is_fused() {
        loaded.model
    } else {
        loaded.model.fuse()
    };
    let stem = Path::new(weights)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    let path = out.join(format!("{stem}_int8.safetensors"));
    let s = crate::quantize::export_int8(&fused, &loaded.names, o, &path)?;
    eprintln!("layer                                          INT8 error (RMS / RMS)");
    for (k, e) in &s.errors {
        let mark = if s.float_layers.contains(k) {
            "  kept float32"
        } else {
            ""
        };
        eprintln!("  {k:<44} {e:.4}{mark}");
    }
    eprintln!(
        "calibrated on {} images{}; {} convolutions in INT8, {} kept float32; {:.2} MB",
        s.images,
        if s.skipped > 0 {
            format!(" ({} unreadable, skipped)", s.skipped)
        } else {
            String::new()
        },
        s.int8_layers,
        s.float_layers.len(),
        s.bytes as f64 / 1e6
    );
    println!("wrote {}", s.path.display());
    if onnx {
        // From the file just written, so the ONNX holds exactly its numbers.
        let path_s = s.path.to_string_lossy().into_owned();
        let q = load_model(&path_s, &model::weights::LoadOptions::default(), &dev)?;
        let bytes = crate::onnx::export_onnx(&q.model, o.imgsz.0, o.imgsz.1)?;
        let onnx_path = out.join(format!("{stem}_int8.onnx"));
        model::weights::write_atomic(&onnx_path, &bytes)?;
        println!("wrote {}", onnx_path.display());
    }
    Ok(())
}

/// Detects objects in every input `--source` names; exit status 130 when stopped by Ctrl-C.
fn predict_cmd(a: PredictArgs, track: bool) -> Result<()> {
    let PredictArgs {
        weights,
        source,
        vid_stride,
        stream_buffer,
        stream_timeout,
        out,
        imgsz,
        conf,
        iou,
        max_det,
        classes,
        agnostic_nms,
        batch,
        device: dev,
        tracker,
        persist,
        trails,
        save_txt,
        save_conf,
        save_json,
        save,
        workers,
        foreign,
        fuse,
        engine,
        tile,
        overlap,
        tile_merge,
        tile_match,
        tile_full,
    } = a;
    let weights = weights.path(if track { "track" } else { "predict" })?;
    let dev = dev.select()?;
    let tracker = if track {
        let path = track_config(tracker.as_deref().unwrap_or("botsort.yaml"));
        let cfg = track::TrackerConfig::from_file(&path)?;
        Some((cfg, persist))
    } else {
        if persist || trails || tracker.is_some() {
            bail!(
                "--tracker, --persist and --trails are for track mode: run `track` instead of `predict`"
            );
        }
        None
    };
    let conf = conf.unwrap_or(if track { 0.1 } else { 0.25 });
    let batch = batch.unwrap_or(if track { 1 } else { 8 });

    let classes = classes
        .map(|c| {
            c.split(',')
                .map(|x| x.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>()
                .with_context(|| format!("--classes {c}: expected ids like 0,2"))
        })
        .transpose()?;
    let loaded = load_model(&weights, &foreign.load_options(), &dev)?;
    let classifier = loaded.model.task() == model::Task::Classify;
    if track || tile.is_some() {
        let command = if track { "track" } else { "predict --tile" };
        loaded
            .model
            .spec
            .require_detector(command)
            .map_err(anyhow::Error::msg)?;
    }
    let imgsz = match imgsz {
        Some(s) if classifier => {
            let n = s.h.max(s.w);
            ImgSize { h: n, w: n }
        }
        Some(s) => s,
        None if classifier => ImgSize { h: 224, w: 224 },
        None => ImgSize { h: 640, w: 640 },
    };
    loaded
        .model
        .spec
        .check_input(imgsz.h, imgsz.w)
        .map_err(|e| anyhow::anyhow!("{weights}: {e}"))?;
    // Letterboxed images are padded to a multiple of the model's largest stride (64 for P6 models).
    let stride = crate::predict::input_stride(&loaded.model);
    let model = if fuse {
        loaded.model.fuse()
    } else {
        loaded.model
    };
    let sources = crate::sources::collect_sources(&source)?;
    let out = out.unwrap_or_else(|| model::cli::next_run_dir(Path::new("runs/predict"), "predict"));
    let opts = crate::predict::PredictOptions {
        input: crate::predict::InputShape {
            imgsz,
            stride,
            crop: classifier,
        },
        nms: model::postprocess::NmsOptions {
            conf,
            iou,
            max_det,
            classes,
            agnostic: agnostic_nms,
            ..model::postprocess::NmsOptions::predict()
        },
        batch: batch.max(1),
        out: out.clone(),
        save_img: save,
        save_txt,
        save_conf,
        save_json,
        workers,
        stop: Some(model::cli::ctrl_c_flag(
            "finishing the batch, then writing what is done",
        )),
        engine,
        tile: tile.map(|size| crate::tiles::TileOptions {
            size,
            overlap,
            merge: tile_merge,
            match_thr: tile_match,
            full_pass: tile_full,
        }),
        vid_stride,
        stream_buffer,
        stream_timeout: std::time::Duration::from_secs(stream_timeout as u64),
        tracker,
        trails,
    };
    let stats = crate::predict::predict(&model, &loaded.names, sources, &opts, &dev)?;
    println!("results in {}", out.display());
    println!("{}", stats.line());
    if stats.interrupted {
        eprintln!("interrupted: the outputs above cover the images and frames done before Ctrl-C");
        std::process::exit(130);
    }
    if stats.images + stats.frames == 0 && stats.skipped > 0 {
        anyhow::bail!(
            "nothing was predicted: every input failed ({} skipped, reasons above)",
            stats.skipped
        );
    }
    Ok(())
}

/// Latency of the unfused and fused model on burn and on the engine, and per layer with `--layers`.
fn bench_cmd(a: BenchArgs) -> Result<()> {
    let BenchArgs {
        config,
        model,
        weights,
        variant,
        batch,
        device: dev,
        warmup,
        iters,
        layers,
        burn,
        json,
    } = a;
    if let Some(wf) = weights {
        return bench_weights(
            &wf, &variant, &batch, dev, warmup, iters, burn, json, layers,
        );
    }
    let config = match model::cli::ModelSource::resolve(model, None, config)? {
        (None, Some(c)) => c,
        (Some(w), _) => {
            anyhow::bail!("--model {w}: bench times a model YAML (random weights), not weights")
        }
        (None, None) => anyhow::bail!("bench needs --config (or --model) MODEL.yaml"),
    };
    let dev = dev.select()?;
    let (h, w) = variant.hw();
    let batches = batch_sizes(&batch)?;
    let spec = ModelSpec::from_file(&config, &variant.spec_options())?;
    spec.require_detector("bench").map_err(anyhow::Error::msg)?;
    spec.check_input(h, w)
        .map_err(|e| anyhow::anyhow!("{config}: {e}"))?;
    let unfused = YoloModel::new(&spec, &dev);
    let fused = unfused.clone().fuse();
    eprintln!(
        "{} scale {} at {h}x{w}, backend {dev:?}, {iters} timed runs each (alternating)",
        spec.source, spec.scale
    );
    let cfg = crate::bench::BenchConfig {
        h,
        w,
        batches: batches.clone(),
        warmup,
        iters,
    };
    let lower = |m: &YoloModel| match crate::engine::Engine::new(m) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("engine: {e}");
            None
        }
    };
    let (engine, engine_unfused) = (lower(&fused), lower(&unfused));
    let mut variants = Vec::new();
    if burn {
        variants.push(Variant::burn("burn unfused", &unfused, &dev));
        variants.push(Variant::burn("burn fused", &fused, &dev));
    }
    if let Some(e) = &engine_unfused {
        variants.push(Variant::engine("engine unfused", e));
    }
    if let Some(e) = &engine {
        variants.push(Variant::engine("engine fused", e));
    }
    print_rows(&crate::bench::bench(&variants, &cfg, &dev), json)?;
    if layers {
        if let Some(e) = &engine {
            print_profile("engine", e, h, w, iters)?;
        }
        if !burn {
            return Ok(());
        }
        let x = model::burn::tensor::Tensor::<4>::random(
            [batches[0], 3, h, w],
            model::burn::tensor::Distribution::Uniform(0.0, 1.0),
            &dev,
        );
        let tu = crate::bench::layer_times(&unfused, &x, iters);
        let tf = crate::bench::layer_times(&fused, &x, iters);
        print!("{}", crate::bench::render_layers(&unfused, &tu, &tf));
    }
    Ok(())
}

/// `bench --weights`: the file's fused model on burn and the engine, and in INT8 where the file is INT8.
#[allow(clippy::too_many_arguments)]
fn bench_weights(
    weights: &str,
    variant: &model::cli::VariantArgs,
    batch: &str,
    dev: DeviceArgs,
    warmup: usize,
    iters: usize,
    burn: bool,
    json: bool,
    layers: bool,
) -> Result<()> {
    let dev = dev.select()?;
    let (h, w) = variant.hw();
    let batches = batch_sizes(batch)?;
    let loaded = load_model(weights, &model::weights::LoadOptions::default(), &dev)?;
    let spec = loaded.model.spec.clone();
    spec.require_detector("bench").map_err(anyhow::Error::msg)?;
    spec.check_input(h, w)
        .map_err(|e| anyhow::anyhow!("{weights}: {e}"))?;
    let quantized = loaded.model;
    let mut fused = if quantized.is_fused() {
        quantized.clone()
    } else {
        quantized.clone().fuse()
    };
    fused.int8 = None;
    eprintln!("{weights} at {h}x{w}, backend {dev:?}, {iters} timed runs each (alternating)");
    let cfg = crate::bench::BenchConfig {
        h,
        w,
        batches,
        warmup,
        iters,
    };
    let float = crate::engine::Engine::new(&fused);
    let int8 = quantized
        .int8
        .is_some()
        .then(|| crate::engine::Engine::new(&quantized));
    // The same INT8 convolutions on float32 maps: what the u8 maps gain, in the same run.
    let int8_float_maps = quantized
        .int8
        .is_some()
        .then(|| crate::engine::Engine::with_float_maps(&quantized));
    let mut variants = Vec::new();
    if burn {
        variants.push(Variant::burn("burn fused", &fused, &dev));
    }
    match &float {
        Ok(e) => variants.push(Variant::engine("engine fused", e)),
        Err(e) => eprintln!("engine: {e}"),
    }
    match &int8 {
        Some(Ok(e)) => variants.push(Variant::engine("engine int8", e)),
        Some(Err(e)) => eprintln!("engine int8: {e}"),
        None => {}
    }
    if let Some(Ok(e)) = &int8_float_maps {
        variants.push(Variant::engine("int8 f32 maps", e));
    }
    print_rows(&crate::bench::bench(&variants, &cfg, &dev), json)?;
    if layers {
        for (name, e) in [
            ("float", float.as_ref().ok()),
            ("int8", int8.as_ref().and_then(|r| r.as_ref().ok())),
        ] {
            if let Some(e) = e {
                print_profile(&format!("engine {name}"), e, h, w, iters)?;
            }
        }
    }
    Ok(())
}

/// Bench rows as a table, or as JSON for scripts.
fn print_rows(rows: &[crate::bench::BenchRow], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(rows)?);
    } else {
        print!("{}", crate::bench::render(rows));
    }
    Ok(())
}

/// `--batch 1,8`: sizes of at least one.
fn batch_sizes(batch: &str) -> Result<Vec<usize>> {
    batch
        .split(',')
        .map(data::args::at_least_one)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--batch {batch}: {e} (expected sizes like 1,8)"))
}

/// The engine's median time per operation on one image.
fn print_profile(
    title: &str,
    e: &crate::engine::Engine,
    h: usize,
    w: usize,
    iters: usize,
) -> Result<()> {
    let x = vec![0.5f32; 3 * h * w];
    let prof = e.profile(&x, h, w, iters)?;
    let total: f64 = prof.iter().map(|p| p.1).sum();
    println!("{title}, one image, per operation:");
    for (i, (what, ms)) in prof.iter().enumerate() {
        println!(
            "{i:>4}  {what:<48}{ms:>9.2} ms {:>5.1}%",
            100.0 * ms / total
        );
    }
    println!("      {:<48}{total:>9.2} ms", "total");
    Ok(())
}

/// `--overlap` (up to 0.9) and `--tile-match` (up to 1): a fraction in [0, max].
fn fraction(s: &str, max: f32) -> std::result::Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=max).contains(&v) => Ok(v),
        _ => Err(format!("expected a fraction between 0 and {max}")),
    }
}

/// A tracker YAML: the path as given, else a bare name from `configs/trackers/` where model YAMLs are found.
fn track_config(name: &str) -> PathBuf {
    let p = PathBuf::from(name);
    if p.exists() || p.components().count() > 1 {
        return p;
    }
    model::spec::config_dirs()
        .into_iter()
        .map(|d| d.join("trackers").join(name))
        .find(|c| c.exists())
        .unwrap_or(p)
}
