//! Batch prediction over images, videos and streams, like Ultralytics' predict: letterbox (auto, stride 32,
//! pad 114), batched forward, NMS, boxes back to original pixels; outputs annotated images and videos,
//! `labels/*.txt` and `predictions.json`. Decoding runs on reader threads and drawing/saving on a writer
//! thread, both behind bounded queues, so the forward pass stays busy and memory stays flat.

mod detector;
mod inputs;
mod outputs;
mod tracking;
mod trails;

pub use crate::sources::{collect_sources, Source};
pub use detector::{input_stride, Detector};
pub use outputs::output_names;

use crate::clock::Instant;
use crate::engine::Engine;
use crate::tiles::{merge, tile_rects, TileOptions};
use anyhow::{bail, Result};
use data::image_ops::{letterbox_auto, to_chw, Letterbox};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use inputs::Item;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::postprocess::{non_max_suppression, scale_to_original, Detection, NmsOptions};
use model::YoloModel;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;

/// The network input: images letterboxed into `imgsz`, the padding only what makes each side a multiple of
/// the model's largest `stride` (Ultralytics' LetterBox with auto); for a classifier (`crop`), Ultralytics'
/// `classify_transforms`: the shorter side resized to `imgsz`, then the centre square.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputShape {
    pub imgsz: data::args::ImgSize,
    pub stride: usize,
    pub crop: bool,
}

#[derive(Debug, Clone)]
pub struct PredictOptions {
    pub input: InputShape,
    pub nms: NmsOptions,
    pub batch: usize,
    pub out: PathBuf,
    pub save_img: bool,
    pub save_txt: bool,
    pub save_conf: bool,
    pub save_json: bool,
    pub workers: usize,
    /// Set (by Ctrl-C) to stop after the batch in flight; what is done so far is still written out.
    pub stop: Option<Arc<AtomicBool>>,
    /// On the CPU, run a fused model through [`crate::engine::Engine`] (burn where it cannot).
    pub engine: bool,
    /// Sliced inference for large images (`--tile`).
    pub tile: Option<TileOptions>,
    /// Keep every n-th video frame (Ultralytics' `vid_stride`).
    pub vid_stride: usize,
    /// Process every frame of a stream; without it, frames that arrive while the model is busy are dropped
    /// so the output stays live (Ultralytics' `stream_buffer`).
    pub stream_buffer: bool,
    /// A stream is given up after this long without a frame.
    pub stream_timeout: std::time::Duration,
    /// Track mode: the tracker, and whether one tracker carries on across sources (Ultralytics' `persist`).
    pub tracker: Option<(track::TrackerConfig, bool)>,
    /// Track mode: draw each track's recent path on the annotated frames.
    pub trails: bool,
}

impl PredictOptions {
    fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }
}

/// One network input made from an image: the whole image letterboxed, or one tile of it.
struct View {
    chw: Vec<f32>,
    lb: Letterbox,
    /// Where the view's pixel (0, 0) lies in the image.
    offset: (f32, f32),
}

/// Where a video frame belongs: its video's outputs and its number there.
#[derive(Clone)]
#[cfg_attr(not(feature = "video"), allow(dead_code))]
struct FrameOf {
    video: Arc<VideoOut>,
    /// 1-based, counting kept frames (Ultralytics' `frame`; a stream's processed-frame count).
    index: usize,
    /// The camera motion the tracker compensates, analysed by the reader (track mode with BoT-SORT's GMC).
    motion: Option<track::gmc::Motion>,
}

/// The outputs of one video or stream.
#[cfg_attr(not(feature = "video"), allow(dead_code))]
struct VideoOut {
    /// `NAME.avi`, and `labels/NAME_<frame>.txt`.
    base: String,
    /// Frame rate of the annotated video: the source's divided by the stride (30 for a stream, as Ultralytics).
    fps: f64,
}

struct Prepared {
    path: PathBuf,
    /// Output name: labels/NAME.txt and NAME.jpg; a frame's is `<video>_<frame>`.
    name: String,
    image: RgbImage,
    /// The letterboxed image; none in tiled mode, where tiles are cut as they run.
    view: Option<View>,
    decode_s: f64,
    frame: Option<FrameOf>,
}

/// The whole image letterboxed to the network size (a classifier's: resized and centre-cropped).
fn whole_view(image: &RgbImage, shape: InputShape) -> View {
    if shape.crop {
        let s = shape.imgsz.h.max(shape.imgsz.w);
        // Only `lb.size` is read for a classifier (batches group views of one size); no box maps back.
        return View {
            chw: data::classify::eval_input(image, s as u32),
            lb: Letterbox {
                gain: 1.0,
                pad: (0.0, 0.0),
                orig: (image.height() as usize, image.width() as usize),
                size: (s, s),
            },
            offset: (0.0, 0.0),
        };
    }
    let (boxed, lb) = letterbox_auto(image, shape.imgsz.h, shape.imgsz.w, shape.stride);
    View {
        chw: to_chw(&boxed),
        lb,
        offset: (0.0, 0.0),
    }
}

/// The tile `[x0, y0, x1, y1]` of an image, letterboxed to the network size.
fn tile_view(image: &RgbImage, r: [usize; 4], shape: InputShape) -> View {
    let [x0, y0, x1, y1] = r;
    let crop = image::imageops::crop_imm(
        image,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image();
    let (boxed, lb) = letterbox_auto(&crop, shape.imgsz.h, shape.imgsz.w, shape.stride);
    View {
        chw: to_chw(&boxed),
        lb,
        offset: (x0 as f32, y0 as f32),
    }
}

struct Finished {
    path: PathBuf,
    name: String,
    image: RgbImage,
    dets: Vec<Detection>,
    /// A classifier's class probabilities.
    probs: Option<Vec<f32>>,
    /// Track mode: each box's track id.
    ids: Option<Vec<u64>>,
    frame: Option<FrameOf>,
}

/// Totals of one run, for the closing line.
#[derive(Debug, Default, Clone)]
pub struct PredictStats {
    /// Still images done.
    pub images: usize,
    /// Video and stream frames done.
    pub frames: usize,
    /// Videos and streams opened.
    pub videos: usize,
    /// Stream frames dropped to stay live (without `stream_buffer`).
    pub dropped: usize,
    pub skipped: usize,
    pub detections: usize,
    pub wall_s: f64,
    pub decode_s: f64,
    pub forward_s: f64,
    pub nms_s: f64,
    pub save_s: f64,
    /// Stopped early through `PredictOptions::stop`.
    pub interrupted: bool,
    /// The model produced NaN or infinite outputs (warned once; those boxes were dropped).
    pub non_finite: bool,
    /// Track mode: the tracks started.
    pub tracks: Option<u64>,
    /// A classifier ran: images are classified, not searched for boxes.
    pub classified: bool,
}

impl PredictStats {
    pub fn line(&self) -> String {
        let done = self.images + self.frames;
        let n = done.max(1) as f64;
        let videos = if self.videos > 0 {
            let dropped = if self.dropped > 0 {
                format!(", {} dropped to stay live", self.dropped)
            } else {
                String::new()
            };
            format!(
                ", {} frames of {} video(s){dropped}",
                self.frames, self.videos
            )
        } else {
            String::new()
        };
        let tracks = self
            .tracks
            .map(|n| format!(" ({n} tracks)"))
            .unwrap_or_default();
        let unit = match (self.images > 0, self.frames > 0) {
            (true, true) => "image or frame",
            (false, true) => "frame",
            _ => "image",
        };
        let found = if self.classified {
            "classified".to_string()
        } else {
            format!("{} detections{tracks}", self.detections)
        };
        format!(
            "{} images ({} skipped){videos}, {found} in {:.2} s: {:.1} {unit}s/s; per {unit} {:.1} ms \
             decode+letterbox, {:.1} ms forward, {:.1} ms NMS, {:.1} ms draw+save (decode and saving overlap the \
             forward pass)",
            self.images,
            self.skipped,
            self.wall_s,
            done as f64 / self.wall_s.max(1e-9),
            self.decode_s * 1e3 / n,
            self.forward_s * 1e3 / n,
            self.nms_s * 1e3 / n,
            self.save_s * 1e3 / n
        )
    }
}

/// What the forward pass needs, shared by every batch.
struct Net<'a> {
    model: &'a YoloModel,
    engine: Option<&'a Engine>,
    nms: &'a NmsOptions,
    device: &'a Device,
    nc: usize,
}

impl Net<'_> {
    /// The network's output for views of one shape, on the host: a detector's decoded `(B, 4 + nc, A)`, a
    /// classifier's probabilities `(B, nc)`; NaN or infinite values are warned about once.
    fn run(
        &self,
        views: &[&View],
        what: &dyn Fn() -> String,
        stats: &mut PredictStats,
    ) -> Result<Vec<f32>> {
        let (h, w) = views[0].lb.size;
        let t = Instant::now();
        let flat: Vec<f32> = views.iter().flat_map(|v| v.chw.iter().copied()).collect();
        let host = match &self.engine {
            Some(e) => e.run(&flat, views.len(), h, w)?,
            None => {
                let x = Tensor::<4>::from_data(
                    TensorData::new(flat, [views.len(), 3, h, w]),
                    self.device,
                );
                let data = if self.model.task() == model::Task::Classify {
                    self.model.classify(x).into_data()
                } else {
                    self.model.forward(x).into_data()
                };
                data.convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
            }
        };
        stats.forward_s += t.elapsed().as_secs_f64();
        if !stats.non_finite && host.iter().any(|v| !v.is_finite()) {
            stats.non_finite = true;
            let dropped = if self.model.task() == model::Task::Classify {
                ""
            } else {
                " such boxes are dropped."
            };
            eprintln!(
                "warning: the model's output has NaN or infinite values ({});{dropped} Check the weights (a \
                 diverged training run?)",
                what()
            );
        }
        Ok(host)
    }

    /// A classifier's forward over views of one shape: per view, the class probabilities.
    fn classify(
        &self,
        views: &[&View],
        what: &dyn Fn() -> String,
        stats: &mut PredictStats,
    ) -> Result<Vec<Vec<f32>>> {
        let host = self.run(views, what, stats)?;
        Ok(host.chunks(self.nc).map(<[f32]>::to_vec).collect())
    }

    /// One forward over views of one shape; per view, its detections in image pixels.
    fn forward(
        &self,
        views: &[&View],
        what: &dyn Fn() -> String,
        stats: &mut PredictStats,
    ) -> Result<Vec<Vec<Detection>>> {
        let nc = self.nc;
        let host = self.run(views, what, stats)?;
        let a = host.len() / views.len() / (4 + nc);
        let t = Instant::now();
        let dets = views
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                non_max_suppression(
                    &host[vi * (4 + nc) * a..(vi + 1) * (4 + nc) * a],
                    nc,
                    a,
                    self.nms,
                )
                .iter()
                .map(|d| {
                    let d = scale_to_original(d, v.lb.gain, v.lb.pad, v.lb.orig);
                    Detection {
                        x1: d.x1 + v.offset.0,
                        y1: d.y1 + v.offset.1,
                        x2: d.x2 + v.offset.0,
                        y2: d.y2 + v.offset.1,
                        ..d
                    }
                })
                .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        stats.nms_s += t.elapsed().as_secs_f64();
        Ok(dets)
    }
}

/// Batches prepared images in input order, runs them and hands the results to the writer.
/// The most tiles one image is cut into (a 16k x 16k scene in tiles of 640 with 0.2 overlap is about 1000).
const MAX_TILES: usize = 10_000;

struct Runner<'a> {
    net: Net<'a>,
    o: &'a PredictOptions,
    wtx: SyncSender<Finished>,
    stats: PredictStats,
    batch: Vec<Prepared>,
    bar: ProgressBar,
    tracking: Option<tracking::Tracking>,
}

impl Runner<'_> {
    fn finish(&mut self, p: Prepared, dets: Vec<Detection>) -> Result<()> {
        self.finish_with(p, dets, None)
    }

    fn finish_with(
        &mut self,
        mut p: Prepared,
        dets: Vec<Detection>,
        probs: Option<Vec<f32>>,
    ) -> Result<()> {
        let (dets, ids) = match &mut self.tracking {
            Some(t) => {
                let (source, motion) = match &mut p.frame {
                    Some(f) => (f.video.base.clone(), f.motion.take()),
                    None => (p.path.display().to_string(), None),
                };
                t.apply(&source, &p.image, motion, dets)
            }
            None => (dets, None),
        };
        self.stats.decode_s += p.decode_s;
        self.stats.detections += dets.len();
        if p.frame.is_some() {
            self.stats.frames += 1;
        } else {
            self.stats.images += 1;
        }
        self.bar.inc(1);
        let f = Finished {
            path: p.path,
            name: p.name,
            image: p.image,
            dets,
            probs,
            ids,
            frame: p.frame,
        };
        if self.wtx.send(f).is_err() {
            bail!("the output writer stopped");
        }
        Ok(())
    }

    fn run_batch(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let views: Vec<&View> = self.batch.iter().filter_map(|p| p.view.as_ref()).collect();
        let names = || {
            let n: Vec<String> = self
                .batch
                .iter()
                .map(|p| p.path.display().to_string())
                .collect();
            format!("batch of {}", n.join(", "))
        };
        if self.net.model.task() == model::Task::Classify {
            let probs = self.net.classify(&views, &names, &mut self.stats)?;
            for (p, pr) in std::mem::take(&mut self.batch).into_iter().zip(probs) {
                self.finish_with(p, Vec::new(), Some(pr))?;
            }
            return Ok(());
        }
        let dets = self.net.forward(&views, &names, &mut self.stats)?;
        for (p, d) in std::mem::take(&mut self.batch).into_iter().zip(dets) {
            self.finish(p, d)?;
        }
        Ok(())
    }

    /// A tiled image: its views in batches of one shape, then the boxes of all tiles merged.
    fn run_tiled(&mut self, p: Prepared, t: &TileOptions) -> Result<()> {
        let what = || format!("tiles of {}", p.path.display());
        let (w, h) = (p.image.width() as usize, p.image.height() as usize);
        let (shape, batch) = (self.o.input, self.o.batch.max(1));
        let mut all = Vec::new();
        let rects = tile_rects(w, h, t.size, t.overlap);
        if rects.len() > MAX_TILES {
            self.bar.suspend(|| {
                eprintln!(
                    "skipped: {}: {w}x{h} in tiles of {} with overlap {} is {} tiles, more than {MAX_TILES}: \
                     use a larger --tile or a smaller --overlap",
                    p.path.display(),
                    t.size,
                    t.overlap,
                    rects.len()
                )
            });
            self.stats.skipped += 1;
            return Ok(());
        }
        // Tiles are all t.size square (smaller only for an image smaller than a tile): one shape per batch.
        for rects in rects.chunks(batch) {
            if self.o.stopped() {
                // The image's boxes would be partial: none are written for it.
                self.stats.interrupted = true;
                return Ok(());
            }
            let t0 = Instant::now();
            let views: Vec<View> = rects
                .iter()
                .map(|r| tile_view(&p.image, *r, shape))
                .collect();
            self.stats.decode_s += t0.elapsed().as_secs_f64();
            let refs: Vec<&View> = views.iter().collect();
            all.extend(
                self.net
                    .forward(&refs, &what, &mut self.stats)?
                    .into_iter()
                    .flatten(),
            );
        }
        if t.full_pass {
            let v = whole_view(&p.image, shape);
            all.extend(
                self.net
                    .forward(&[&v], &what, &mut self.stats)?
                    .into_iter()
                    .flatten(),
            );
        }
        let t0 = Instant::now();
        // --max-det holds per tile (as SAHI): a scene can hold far more objects than one network input.
        let dets = merge(all, t.merge, t.match_thr);
        self.stats.nms_s += t0.elapsed().as_secs_f64();
        self.finish(p, dets)
    }

    fn push(&mut self, p: Prepared) -> Result<()> {
        let o = self.o;
        if let Some(t) = &o.tile {
            return self.run_tiled(p, t);
        }
        // Ultralytics letterboxes each image to its own minimal rectangle; a batch holds one shape.
        let size = |p: &Prepared| p.view.as_ref().map(|v| v.lb.size);
        if self.batch.first().is_some_and(|b| size(b) != size(&p))
            || self.batch.len() >= self.o.batch
        {
            self.run_batch()?;
        }
        self.batch.push(p);
        Ok(())
    }

    /// Takes everything `rx` gives, in index order (several readers finish out of order), then runs what is
    /// left: a batch never spans two sources of different kinds or two videos.
    fn consume(&mut self, rx: Receiver<Item>) -> Result<()> {
        let mut pending: std::collections::BTreeMap<usize, Result<Prepared>> = Default::default();
        let mut next = 0usize;
        loop {
            if self.o.stopped() {
                self.stats.interrupted = true;
                return Ok(());
            }
            let Some(r) = pending.remove(&next) else {
                match rx.recv() {
                    Ok(Item::Ready(i, r)) => {
                        pending.insert(i, *r);
                        continue;
                    }
                    Ok(Item::Opened { frames }) => {
                        self.stats.videos += 1;
                        self.bar.set_length(frames.unwrap_or(0) as u64);
                        self.bar.set_position(0);
                        continue;
                    }
                    Ok(Item::Dropped(n)) => {
                        self.stats.dropped += n;
                        continue;
                    }
                    Err(_) => break,
                }
            };
            next += 1;
            match r {
                Err(e) => {
                    self.bar.suspend(|| eprintln!("skipped: {e:#}"));
                    self.stats.skipped += 1;
                }
                Ok(p) => self.push(p)?,
            }
        }
        self.run_batch()
    }
}

pub(crate) fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} {wide_bar} {pos}/{len} [{elapsed_precise}<{eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs prediction over `sources`, writing outputs under `o.out`.
pub fn predict(
    model: &YoloModel,
    names: &[String],
    sources: Vec<Source>,
    o: &PredictOptions,
    device: &Device,
) -> Result<PredictStats> {
    let start = Instant::now();
    outputs::create_dirs(o)?;
    let engine = if o.engine && *device == Device::flex() {
        match Engine::new(model) {
            Ok(e) => {
                let int8 = match e.int8_ops() {
                    0 => String::new(),
                    n => format!(", {n} convolutions in INT8"),
                };
                eprintln!("forward: inference engine ({:?} kernels{int8})", e.level());
                Some(e)
            }
            Err(e) => {
                eprintln!("forward: burn ({e})");
                None
            }
        }
    } else {
        None
    };
    if model.int8.is_some() && engine.is_none() {
        anyhow::bail!(
            "an INT8 model runs on the CPU inference engine only (drop --engine false, use --device cpu)"
        );
    }
    let out_names = outputs::source_names(&sources);
    let (wtx, writer) = outputs::spawn_writer(o, names.to_vec());
    let mut images = Vec::new();
    let mut streams = Vec::new();
    for (s, name) in sources.into_iter().zip(out_names) {
        match s {
            Source::Image(p) => images.push((p, name)),
            other => streams.push((other, name)),
        }
    }
    let mut run = Runner {
        net: Net {
            model,
            engine: engine.as_ref(),
            nms: &o.nms,
            device,
            nc: model.nc(),
        },
        o,
        wtx,
        stats: PredictStats::default(),
        batch: Vec::new(),
        bar: ProgressBar::hidden(),
        tracking: o
            .tracker
            .as_ref()
            .map(|(cfg, persist)| tracking::Tracking::new(cfg.clone(), *persist)),
    };
    let mut result = Ok(());
    if !images.is_empty() {
        run.bar = progress_bar(images.len() as u64, "images");
        result = run.consume(inputs::spawn_image_readers(images, o));
        run.bar.finish_and_clear();
    }
    for (s, name) in streams {
        if result.is_err() || run.stats.interrupted {
            break;
        }
        run.bar = progress_bar(0, &name);
        result = run.consume(inputs::spawn_video_reader(s, name, o));
        run.bar.finish_and_clear();
    }
    let Runner {
        wtx,
        mut stats,
        tracking,
        ..
    } = run;
    stats.tracks = tracking.map(|t| t.tracks());
    stats.classified = model.task() == ::model::Task::Classify;
    drop(wtx);
    let written = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output writer panicked"))?;
    // The writer's error first: a run that fails stops the writer cleanly, while a writer that fails (a
    // full disk) makes the run fail with only "the output writer stopped".
    let written = written?;
    result?;
    stats.save_s = written.save_s;
    for v in &written.videos {
        eprintln!("{v}");
    }
    stats.wall_s = start.elapsed().as_secs_f64();
    Ok(stats)
}
