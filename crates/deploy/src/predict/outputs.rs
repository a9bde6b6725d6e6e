//! What a prediction run writes: annotated images and videos, `labels/*.txt` (Ultralytics' format, `%g`
//! numbers), `predictions.json`, all on one writer thread off the forward pass.

use super::{Finished, FrameOf, PredictOptions, Source};
use anyhow::{Context, Result};
use data::labels::fmt_g;
use model::postprocess::Detection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;
use std::time::Instant;

/// `cls cx cy w h [conf] [id]` per box, as Ultralytics' `save_txt` (the id last, in track mode).
pub(super) fn label_lines(
    dets: &[Detection],
    ids: Option<&[u64]>,
    w: f32,
    h: f32,
    save_conf: bool,
) -> String {
    dets.iter()
        .enumerate()
        .map(|(i, d)| {
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
            if let Some(id) = ids.and_then(|v| v.get(i)) {
                s += &format!(" {id}");
            }
            s + "\n"
        })
        .collect()
}

/// The five most probable classes, most probable first: `(class, probability)`.
pub(super) fn top5(probs: &[f32]) -> Vec<(usize, f32)> {
    model::postprocess::top_k(probs, 5)
        .into_iter()
        .map(|i| (i, probs[i]))
        .collect()
}

/// A classifier's label file, as Ultralytics' `save_txt`: `prob name` for the five most probable classes.
pub(super) fn classify_lines(probs: &[f32], names: &[String]) -> String {
    top5(probs)
        .into_iter()
        .map(|(c, p)| format!("{p:.2} {}\n", class_name(names, c)))
        .collect()
}

fn class_name(names: &[String], c: usize) -> String {
    names.get(c).cloned().unwrap_or_else(|| c.to_string())
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

/// Output names for every source: files by [`output_names`], streams and cameras by their URL's stem or index,
/// with `-2`, `-3`... where two streams would share one.
pub(super) fn source_names(sources: &[Source]) -> Vec<String> {
    let files: Vec<PathBuf> = sources
        .iter()
        .filter_map(|s| s.path().map(Path::to_path_buf))
        .collect();
    let mut file_names = output_names(&files).into_iter();
    let mut taken = std::collections::HashSet::new();
    let names: Vec<String> = sources
        .iter()
        .map(|s| {
            let name = match s.path() {
                Some(_) => file_names.next().unwrap_or_default(),
                None => {
                    let base = s.stream_base();
                    let mut name = base.clone();
                    let mut k = 1;
                    while taken.contains(&name) {
                        k += 1;
                        name = format!("{base}-{k}");
                    }
                    name
                }
            };
            taken.insert(name.clone());
            name
        })
        .collect();
    // A video's frames are named `<name>_<frame>`: an image named like one (`b_1.jpg` next to `b.mp4`) would
    // have its labels overwritten, so such a video takes a longer name (`b_mp4`).
    let image_names: std::collections::HashSet<String> = sources
        .iter()
        .zip(&names)
        .filter(|(s, _)| s.is_image())
        .map(|(_, n)| n.clone())
        .collect();
    let clashes = |base: &str| {
        image_names.iter().any(|n| {
            n.strip_prefix(base)
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
        })
    };
    let mut names = names;
    for (s, name) in sources.iter().zip(names.iter_mut()) {
        if s.is_image() || !clashes(name) {
            continue;
        }
        let ext = s
            .path()
            .and_then(|p| p.extension())
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "video".into());
        let mut longer = format!("{name}_{ext}");
        while clashes(&longer) || taken.contains(&longer) {
            longer.push('_');
        }
        eprintln!(
            "{name}: an image is named like one of its frames; its frames are named {longer}_<frame>"
        );
        taken.insert(longer.clone());
        *name = longer;
    }
    let renamed: Vec<&String> = sources
        .iter()
        .zip(&names)
        .filter(|(s, n)| {
            s.path().is_some_and(|p| {
                p.file_stem()
                    .is_none_or(|st| st.to_string_lossy() != n.as_str())
            })
        })
        .map(|(_, n)| n)
        .collect();
    if let Some(example) = renamed.first() {
        eprintln!(
            "{} inputs share a file name with another: their outputs are named by their path (e.g. {example})",
            renamed.len()
        );
    }
    names
}

pub(super) fn create_dirs(o: &PredictOptions) -> Result<()> {
    let dir = if o.save_txt {
        o.out.join("labels")
    } else {
        o.out.clone()
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))
}

/// What the writer thread did.
pub(super) struct Written {
    pub save_s: f64,
    /// One line per annotated video written.
    pub videos: Vec<String>,
}

/// predictions.json written as the detections come (a long video would otherwise hold them all in memory),
/// into a temp file renamed into place at the end, as [`data::write_atomic`] does.
struct JsonOut {
    path: PathBuf,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    count: usize,
}

impl JsonOut {
    fn create(out: &Path) -> Result<Self> {
        let path = out.join("predictions.json");
        let tmp = out.join(format!(".predictions.json.tmp{}", std::process::id()));
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("{}: cannot create", tmp.display()))?;
        data::forced_exit::close_json_on_exit(&tmp, &path);
        Ok(JsonOut {
            path,
            tmp,
            file: std::io::BufWriter::new(file),
            count: 0,
        })
    }

    /// Appends one element of the pretty-printed array (the layout `serde_json::to_vec_pretty` gives).
    fn push(&mut self, v: &serde_json::Value) -> Result<()> {
        use std::io::Write;
        let text = serde_json::to_string_pretty(v)?;
        let sep = if self.count == 0 { "[\n" } else { ",\n" };
        let indented: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        // Flushed per element: a run stopped at once keeps every element written so far.
        write!(self.file, "{sep}{}", indented.join("\n"))
            .and_then(|_| self.file.flush())
            .with_context(|| format!("{}: cannot write", self.tmp.display()))?;
        self.count += 1;
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        use std::io::Write;
        let end = if self.count == 0 { "[]" } else { "\n]" };
        let done = self
            .file
            .write_all(end.as_bytes())
            .and_then(|_| self.file.flush())
            .and_then(|_| self.file.get_ref().sync_all())
            .and_then(|_| std::fs::rename(&self.tmp, &self.path));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        data::forced_exit::done(&self.tmp);
        done.with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

impl Drop for JsonOut {
    fn drop(&mut self) {
        // Unfinished (the writer failed): no temp file stays behind. After `finish` it is already renamed.
        let _ = std::fs::remove_file(&self.tmp);
        data::forced_exit::done(&self.tmp);
    }
}

/// A classifier's annotation, as Ultralytics' plot: the top five `name prob` lines at the top left.
fn draw_probs(img: &mut image::RgbImage, probs: &[f32], names: &[String]) {
    let text: Vec<String> = top5(probs)
        .into_iter()
        .map(|(c, p)| format!("{} {p:.2}", class_name(names, c)))
        .collect();
    let x = (img.height() as f32 * 0.03).round();
    data::draw::draw_text_block(img, x, x, &text);
}

fn draw(img: &mut image::RgbImage, dets: &[Detection], ids: Option<&[u64]>, names: &[String]) {
    for (i, d) in dets.iter().enumerate().rev() {
        let name = names
            .get(d.cls)
            .cloned()
            .unwrap_or_else(|| d.cls.to_string());
        // Ultralytics' label: `id:3 tree 0.45` for a track.
        let id = ids
            .and_then(|v| v.get(i))
            .map(|id| format!("id:{id} "))
            .unwrap_or_default();
        data::draw::draw_labeled_box(
            img,
            [d.x1, d.y1, d.x2, d.y2],
            &format!("{id}{name} {:.2}", d.conf),
            data::draw::class_color(d.cls),
        );
    }
}

/// The annotated video being written (frames arrive in order, one video after another).
#[cfg(feature = "video")]
type OpenVideo = Option<(String, PathBuf, crate::video::VideoWriter)>;
#[cfg(not(feature = "video"))]
type OpenVideo = Option<(String, PathBuf, ())>;

#[cfg(feature = "video")]
fn close_video(open: &mut OpenVideo, done: &mut Vec<String>) -> Result<()> {
    if let Some((_, path, w)) = open.take() {
        let n = w.finish()?;
        done.push(format!("video: {} ({n} frames)", path.display()));
    }
    Ok(())
}

#[cfg(not(feature = "video"))]
fn close_video(_open: &mut OpenVideo, _done: &mut Vec<String>) -> Result<()> {
    Ok(())
}

/// Appends an annotated frame to its video, starting the file at the video's first frame.
#[cfg(feature = "video")]
fn write_frame(
    open: &mut OpenVideo,
    done: &mut Vec<String>,
    out: &Path,
    frame: &FrameOf,
    img: &image::RgbImage,
) -> Result<()> {
    if open
        .as_ref()
        .is_none_or(|(base, _, _)| *base != frame.video.base)
    {
        close_video(open, done)?;
        let path = out.join(format!("{}.avi", frame.video.base));
        let w =
            crate::video::VideoWriter::create(&path, img.width(), img.height(), frame.video.fps)?;
        *open = Some((frame.video.base.clone(), path, w));
    }
    if let Some((_, _, w)) = open {
        w.write(img)?;
    }
    Ok(())
}

#[cfg(not(feature = "video"))]
fn write_frame(
    _open: &mut OpenVideo,
    _done: &mut Vec<String>,
    _out: &Path,
    _frame: &FrameOf,
    _img: &image::RgbImage,
) -> Result<()> {
    Ok(())
}

/// Starts the writer: drawing, encoding and file output off the forward thread.
pub(super) fn spawn_writer(
    o: &PredictOptions,
    names: Vec<String>,
) -> (SyncSender<Finished>, JoinHandle<Result<Written>>) {
    let (wtx, wrx) = sync_channel::<Finished>(8);
    let (out, save_img, save_txt, save_conf, save_json) = (
        o.out.clone(),
        o.save_img,
        o.save_txt,
        o.save_conf,
        o.save_json,
    );
    // One history across sources when one tracker carries on across them.
    let persist = o.tracker.as_ref().is_some_and(|(_, p)| *p);
    let mut trails = (o.trails && o.tracker.is_some()).then(super::trails::Trails::default);
    let writer = std::thread::spawn(move || -> Result<Written> {
        let mut w = Written {
            save_s: 0.0,
            videos: Vec::new(),
        };
        let mut json = save_json.then(|| JsonOut::create(&out)).transpose()?;
        let mut open: OpenVideo = None;
        for f in wrx {
            let t = Instant::now();
            let stem = f.name.clone();
            let (iw, ih) = (f.image.width() as f32, f.image.height() as f32);
            let ids = f.ids.as_deref();
            if let (Some(json), Some(probs)) = (&mut json, &f.probs) {
                let top: Vec<serde_json::Value> = top5(probs)
                    .into_iter()
                    .map(|(c, p)| {
                        serde_json::json!({
                            "category_id": c,
                            "category_name": names.get(c),
                            "score": (p * 1e5).round() / 1e5,
                        })
                    })
                    .collect();
                json.push(&serde_json::json!({
                    "image_id": stem.parse::<u64>().map(serde_json::Value::from).unwrap_or_else(|_| stem.clone().into()),
                    "file_name": f.path.file_name().map(|s| s.to_string_lossy().into_owned()),
                    "top5": top,
                }))?;
            }
            for (i, d) in f.dets.iter().enumerate() {
                let Some(json) = &mut json else { break };
                let bbox =
                    [d.x1, d.y1, d.x2 - d.x1, d.y2 - d.y1].map(|v| (v * 1000.0).round() / 1000.0);
                let mut j = serde_json::json!({
                    "image_id": stem.parse::<u64>().map(serde_json::Value::from).unwrap_or_else(|_| stem.clone().into()),
                    "file_name": f.path.file_name().map(|s| s.to_string_lossy().into_owned()),
                    "category_id": d.cls,
                    "category_name": names.get(d.cls),
                    "bbox": bbox,
                    "score": (d.conf * 1e5).round() / 1e5,
                });
                if let Some(frame) = &f.frame {
                    j["frame"] = frame.index.into();
                }
                if let Some(id) = ids.and_then(|v| v.get(i)) {
                    j["track_id"] = (*id).into();
                }
                json.push(&j)?;
            }
            // A frame without detections gets no label file (as Ultralytics); an image gets an empty one, the
            // record that it was looked at.
            if save_txt && (f.probs.is_some() || !(f.frame.is_some() && f.dets.is_empty())) {
                let p = out.join("labels").join(format!("{stem}.txt"));
                let text = match &f.probs {
                    Some(probs) => classify_lines(probs, &names),
                    None => label_lines(&f.dets, ids, iw, ih, save_conf),
                };
                std::fs::write(&p, text)
                    .with_context(|| format!("{}: cannot write", p.display()))?;
            }
            if save_img {
                let mut img = f.image;
                if let Some(t) = &mut trails {
                    let source = match (&f.frame, persist) {
                        (_, true) => String::new(),
                        (Some(frame), false) => frame.video.base.clone(),
                        (None, false) => f.path.display().to_string(),
                    };
                    t.add(&source, &f.dets, ids);
                    t.draw(&mut img, ids);
                }
                draw(&mut img, &f.dets, ids, &names);
                if let Some(probs) = &f.probs {
                    draw_probs(&mut img, probs, &names);
                }
                match &f.frame {
                    Some(frame) => write_frame(&mut open, &mut w.videos, &out, frame, &img)?,
                    None => {
                        data::image_ops::save_rgb(&img, &out.join(format!("{stem}.jpg")))?;
                    }
                }
            }
            w.save_s += t.elapsed().as_secs_f64();
        }
        close_video(&mut open, &mut w.videos)?;
        if let Some(json) = json {
            json.finish()?;
        }
        Ok(w)
    });
    (wtx, writer)
}

#[cfg(test)]
mod tests {
    use super::source_names;
    use crate::sources::Source;
    use std::path::PathBuf;

    #[test]
    fn frames_never_take_an_image_s_name() {
        let p = |s: &str| PathBuf::from(s);
        let names = source_names(&[
            Source::Image(p("in/b_1.jpg")),
            Source::Video(p("in/b.mp4")),
            Source::Video(p("in/c.mp4")),
            Source::Image(p("in/c_x.jpg")),
            Source::Stream("rtsp://cam/live".into()),
            Source::Image(p("in/live_12.png")),
        ]);
        // b.mp4's frames would be b_1, b_2...: one of them is an image's. c's frames (c_1...) clash with no
        // image; the stream's (live_12) would.
        assert_eq!(names, ["b_1", "b_mp4", "c", "c_x", "live_video", "live_12"]);
    }
}
