//! Batch prediction over images, folders, globs and .txt lists, like Ultralytics' predict: letterbox (auto,
//! stride 32, pad 114), batched forward, NMS, boxes back to original pixels; outputs annotated images,
//! `labels/*.txt` and `predictions.json`. Decoding runs on reader threads and drawing/saving on a writer
//! thread, both behind bounded queues, so the forward pass stays busy and memory stays flat.

use crate::engine::Engine;
use crate::tiles::{merge, tile_rects, TileOptions};
use anyhow::{bail, Context, Result};
use data::config::IMAGE_EXTS;
use data::image_ops::{letterbox_auto, read_rgb, to_chw, Letterbox};
use data::labels::fmt_g;
use image::RgbImage;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::postprocess::{non_max_suppression, scale_to_original, Detection, NmsOptions};
use model::YoloModel;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct PredictOptions {
    pub imgsz: usize,
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
}

/// Images named by `source`: an image, a folder (recursive, sorted), a glob, or a .txt list of paths.
pub fn collect_sources(source: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(source);
    let is_image = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
    };
    let is_list = p.is_file() && p.extension().and_then(|e| e.to_str()) == Some("txt");
    let mut out: Vec<PathBuf> = if p.is_dir() || is_list {
        data::config::image_files(&[p.to_path_buf()])?
    } else if p.is_file() {
        vec![p.to_path_buf()]
    } else if source.contains(['*', '?', '[']) {
        glob::glob(source)
            .with_context(|| format!("--source {source}: not a valid glob"))?
            .filter_map(|e| e.ok())
            .filter(|p| p.is_file() && is_image(p))
            .collect()
    } else {
        bail!("--source {source}: no such image, folder, glob or .txt list");
    };
    out.sort();
    if out.is_empty() {
        bail!("--source {source}: no images found");
    }
    Ok(out)
}

/// One network input made from an image: the whole image letterboxed, or one tile of it.
struct View {
    chw: Vec<f32>,
    lb: Letterbox,
    /// Where the view's pixel (0, 0) lies in the image.
    offset: (f32, f32),
}

struct Prepared {
    path: PathBuf,
    name: String,
    image: RgbImage,
    /// The letterboxed image; none in tiled mode, where tiles are cut as they run.
    view: Option<View>,
    decode_s: f64,
}

/// The whole image letterboxed to the network size.
fn whole_view(image: &RgbImage, imgsz: usize) -> View {
    let (boxed, lb) = letterbox_auto(image, imgsz, 32);
    View {
        chw: to_chw(&boxed),
        lb,
        offset: (0.0, 0.0),
    }
}

/// The tile `[x0, y0, x1, y1]` of an image, letterboxed to the network size.
fn tile_view(image: &RgbImage, r: [usize; 4], imgsz: usize) -> View {
    let [x0, y0, x1, y1] = r;
    let crop = image::imageops::crop_imm(
        image,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image();
    let (boxed, lb) = letterbox_auto(&crop, imgsz, 32);
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
}

/// Totals of one run, for the closing line.
#[derive(Debug, Default, Clone)]
pub struct PredictStats {
    pub images: usize,
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
}

impl PredictStats {
    pub fn line(&self) -> String {
        let n = self.images.max(1) as f64;
        format!(
            "{} images ({} skipped), {} detections in {:.2} s: {:.1} images/s; per image {:.1} ms decode+letterbox, \
             {:.1} ms forward, {:.1} ms NMS, {:.1} ms draw+save (decode and saving overlap the forward pass)",
            self.images,
            self.skipped,
            self.detections,
            self.wall_s,
            self.images as f64 / self.wall_s.max(1e-9),
            self.decode_s * 1e3 / n,
            self.forward_s * 1e3 / n,
            self.nms_s * 1e3 / n,
            self.save_s * 1e3 / n
        )
    }
}

fn label_lines(dets: &[Detection], w: f32, h: f32, save_conf: bool) -> String {
    dets.iter()
        .map(|d| {
            let (cx, cy) = ((d.x1 + d.x2) / 2.0 / w, (d.y1 + d.y2) / 2.0 / h);
            let (bw, bh) = ((d.x2 - d.x1) / w, (d.y2 - d.y1) / h);
            let mut s = format!(
                "{} {} {} {} {}",
                d.cls,
                fmt_g(cx as f64),
                fmt_g(cy as f64),
                fmt_g(bw as f64),
                fmt_g(bh as f64)
            );
            if save_conf {
                s += &format!(" {}", fmt_g(d.conf as f64));
            }
            s + "\n"
        })
        .collect()
}

/// The name each image's outputs get (`labels/NAME.txt`, `NAME.jpg`): its stem, as Ultralytics names them;
/// where stems repeat (`a/x.jpg`, `b/x.jpg`, `x.png`), the path below the sources' common folder with `_`
/// for separators and the extension kept, so no output overwrites another.
pub fn output_names(paths: &[PathBuf]) -> Vec<String> {
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut count: std::collections::HashMap<String, usize> = Default::default();
    for p in paths {
        *count.entry(stem(p)).or_default() += 1;
    }
    let common: PathBuf = paths
        .iter()
        .filter_map(|p| p.parent())
        .map(Path::to_path_buf)
        .reduce(|a, b| {
            a.components()
                .zip(b.components())
                .take_while(|(x, y)| x == y)
                .map(|(x, _)| x)
                .collect()
        })
        .unwrap_or_default();
    paths
        .iter()
        .map(|p| {
            let s = stem(p);
            if count[&s] < 2 {
                return s;
            }
            let rel = p.strip_prefix(&common).unwrap_or(p);
            rel.to_string_lossy()
                .chars()
                .map(|c| {
                    if c == '/' || c == '\\' || c == '.' {
                        '_'
                    } else {
                        c
                    }
                })
                .collect()
        })
        .collect()
}

fn spawn_readers(
    paths: Arc<Vec<PathBuf>>,
    names: Arc<Vec<String>>,
    imgsz: usize,
    workers: usize,
    tile: bool,
) -> Receiver<(usize, Result<Prepared>)> {
    let (tx, rx) = sync_channel(8);
    let next = Arc::new(Mutex::new(0usize));
    for _ in 0..workers.max(1) {
        let (tx, paths, names, next) = (tx.clone(), paths.clone(), names.clone(), next.clone());
        std::thread::spawn(move || loop {
            let i = {
                let Ok(mut n) = next.lock() else { return };
                let i = *n;
                *n += 1;
                i
            };
            if i >= paths.len() {
                return;
            }
            let t = Instant::now();
            // Tiles are cut when they run, a batch at a time: a large scene holds hundreds.
            let r = read_rgb(&paths[i]).map(|image| Prepared {
                path: paths[i].clone(),
                name: names[i].clone(),
                view: (!tile).then(|| whole_view(&image, imgsz)),
                image,
                decode_s: t.elapsed().as_secs_f64(),
            });
            if tx.send((i, r)).is_err() {
                return;
            }
        });
    }
    rx
}

/// Runs prediction over `paths`, writing outputs under `o.out`.
pub fn predict(
    model: &YoloModel,
    names: &[String],
    paths: Vec<PathBuf>,
    o: &PredictOptions,
    device: &Device,
) -> Result<PredictStats> {
    let start = Instant::now();
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("{}: cannot create", o.out.display()))?;
    if o.save_txt {
        std::fs::create_dir_all(o.out.join("labels"))
            .with_context(|| format!("{}: cannot create", o.out.display()))?;
    }
    let nc = model.nc();
    let total = paths.len();
    let engine = if o.engine && *device == Device::flex() {
        match Engine::new(model) {
            Ok(e) => {
                eprintln!("forward: inference engine ({:?} kernels)", e.level());
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
    let names_out = output_names(&paths);
    let renamed: Vec<&String> = paths
        .iter()
        .zip(&names_out)
        .filter(|(p, n)| {
            p.file_stem()
                .is_none_or(|s| s.to_string_lossy() != n.as_str())
        })
        .map(|(_, n)| n)
        .collect();
    if let Some(example) = renamed.first() {
        eprintln!(
            "{} images share a file name with another: their outputs are named by their path (e.g. {example})",
            renamed.len()
        );
    }
    let rx = spawn_readers(
        Arc::new(paths),
        Arc::new(names_out),
        o.imgsz,
        o.workers,
        o.tile.is_some(),
    );

    // Writer: drawing, encoding and file output off the forward thread.
    let (wtx, wrx) = sync_channel::<Finished>(8);
    let (out, names_w, save_img, save_txt, save_conf) = (
        o.out.clone(),
        names.to_vec(),
        o.save_img,
        o.save_txt,
        o.save_conf,
    );
    let writer = std::thread::spawn(move || -> Result<(f64, Vec<serde_json::Value>)> {
        let mut save_s = 0.0;
        let mut json = Vec::new();
        for f in wrx {
            let t = Instant::now();
            let stem = f.name.clone();
            let (w, h) = (f.image.width() as f32, f.image.height() as f32);
            for d in &f.dets {
                let bbox =
                    [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1].map(|v| (v * 1000.0).round() / 1000.0);
                json.push(serde_json::json!({
                    "image_id": stem.parse::<u64>().map(serde_json::Value::from).unwrap_or_else(|_| stem.clone().into()),
                    "file_name": f.path.file_name().map(|s| s.to_string_lossy().into_owned()),
                    "category_id": d.cls,
                    "category_name": names_w.get(d.cls),
                    "bbox": bbox,
                    "score": (d.conf * 1e5).round() / 1e5,
                }));
            }
            if save_txt {
                let p = out.join("labels").join(format!("{stem}.txt"));
                std::fs::write(&p, label_lines(&f.dets, w, h, save_conf))
                    .with_context(|| format!("{}: cannot write", p.display()))?;
            }
            if save_img {
                let mut img = f.image;
                for d in f.dets.iter().rev() {
                    let name = names_w
                        .get(d.cls)
                        .cloned()
                        .unwrap_or_else(|| d.cls.to_string());
                    data::draw::draw_labeled_box(
                        &mut img,
                        [d.x1, d.y1, d.x2, d.y2],
                        &format!("{name} {:.2}", d.conf),
                        data::draw::class_color(d.cls),
                    );
                }
                let p = out.join(format!("{stem}.jpg"));
                img.save(&p)
                    .with_context(|| format!("{}: cannot write", p.display()))?;
            }
            save_s += t.elapsed().as_secs_f64();
        }
        Ok((save_s, json))
    });

    let mut stats = PredictStats::default();
    // Results arrive out of order from several readers; keep the input order.
    let mut pending: std::collections::BTreeMap<usize, Result<Prepared>> = Default::default();
    let mut next = 0usize;
    let mut batch: Vec<Prepared> = Vec::new();
    // One forward over views of one shape; per view, its detections in image pixels.
    let forward = |views: &[&View], what: &dyn Fn() -> String, stats: &mut PredictStats| {
        let (h, w) = views[0].lb.size;
        let t = Instant::now();
        let flat: Vec<f32> = views.iter().flat_map(|v| v.chw.iter().copied()).collect();
        let host = match &engine {
            Some(e) => e.run(&flat, views.len(), h, w)?,
            None => {
                let x =
                    Tensor::<4>::from_data(TensorData::new(flat, [views.len(), 3, h, w]), device);
                model
                    .forward(x)
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?
            }
        };
        let a = host.len() / views.len() / (4 + nc);
        stats.forward_s += t.elapsed().as_secs_f64();
        if !stats.non_finite && host.iter().any(|v| !v.is_finite()) {
            stats.non_finite = true;
            eprintln!(
                "warning: the model's output has NaN or infinite values ({}); such boxes are dropped. \
                 Check the weights (a diverged training run?)",
                what()
            );
        }
        let t = Instant::now();
        let dets = views
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                non_max_suppression(
                    &host[vi * (4 + nc) * a..(vi + 1) * (4 + nc) * a],
                    nc,
                    a,
                    &o.nms,
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
        Ok::<_, anyhow::Error>(dets)
    };
    let finish = |p: Prepared, dets: Vec<Detection>, stats: &mut PredictStats| {
        stats.decode_s += p.decode_s;
        stats.detections += dets.len();
        stats.images += 1;
        let f = Finished {
            path: p.path,
            name: p.name,
            image: p.image,
            dets,
        };
        if wtx.send(f).is_err() {
            bail!("the output writer stopped");
        }
        Ok(())
    };
    let run_batch = |batch: &mut Vec<Prepared>, stats: &mut PredictStats| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let views: Vec<&View> = batch.iter().filter_map(|p| p.view.as_ref()).collect();
        let names = || {
            let n: Vec<String> = batch.iter().map(|p| p.path.display().to_string()).collect();
            format!("batch of {}", n.join(", "))
        };
        let dets = forward(&views, &names, stats)?;
        for (p, d) in batch.drain(..).zip(dets) {
            finish(p, d, stats)?;
        }
        Ok(())
    };
    // A tiled image: its views in batches of one shape, then the boxes of all tiles merged.
    let run_tiled = |p: Prepared, t: &TileOptions, stats: &mut PredictStats| -> Result<()> {
        let what = || format!("tiles of {}", p.path.display());
        let (w, h) = (p.image.width() as usize, p.image.height() as usize);
        let mut all = Vec::new();
        // Tiles are all t.size square (smaller only for an image smaller than a tile): one shape per batch.
        for rects in tile_rects(w, h, t.size, t.overlap).chunks(o.batch.max(1)) {
            let t0 = Instant::now();
            let views: Vec<View> = rects
                .iter()
                .map(|r| tile_view(&p.image, *r, o.imgsz))
                .collect();
            stats.decode_s += t0.elapsed().as_secs_f64();
            let refs: Vec<&View> = views.iter().collect();
            all.extend(forward(&refs, &what, stats)?.into_iter().flatten());
        }
        if t.full_pass {
            let v = whole_view(&p.image, o.imgsz);
            all.extend(forward(&[&v], &what, stats)?.into_iter().flatten());
        }
        let t0 = Instant::now();
        // --max-det holds per tile (as SAHI): a scene can hold far more objects than one network input.
        let dets = merge(all, t.merge, t.match_thr);
        stats.nms_s += t0.elapsed().as_secs_f64();
        finish(p, dets, stats)
    };
    while next < total {
        if o.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            stats.interrupted = true;
            break;
        }
        if !pending.contains_key(&next) {
            match rx.recv() {
                Ok((i, r)) => {
                    pending.insert(i, r);
                    continue;
                }
                Err(_) => break,
            }
        }
        let r = pending.remove(&next).expect("present");
        next += 1;
        match r {
            Err(e) => {
                eprintln!("skipped: {e:#}");
                stats.skipped += 1;
            }
            Ok(p) => {
                if let Some(t) = &o.tile {
                    run_tiled(p, t, &mut stats)?;
                    continue;
                }
                // Ultralytics letterboxes each image to its own minimal rectangle; a batch holds one shape.
                let size = |p: &Prepared| p.view.as_ref().map(|v| v.lb.size);
                if batch.first().is_some_and(|b| size(b) != size(&p)) || batch.len() >= o.batch {
                    run_batch(&mut batch, &mut stats)?;
                }
                batch.push(p);
            }
        }
    }
    if !stats.interrupted {
        run_batch(&mut batch, &mut stats)?;
    }
    // The readers may still be decoding; dropping the receiver ends them.
    drop(rx);
    drop(wtx);
    let (save_s, json) = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the output writer panicked"))??;
    stats.save_s = save_s;
    if o.save_json {
        let p = o.out.join("predictions.json");
        let bytes = serde_json::to_vec_pretty(&json)?;
        data::write_atomic(&p, &bytes).with_context(|| format!("{}: cannot write", p.display()))?;
    }
    stats.wall_s = start.elapsed().as_secs_f64();
    Ok(stats)
}
