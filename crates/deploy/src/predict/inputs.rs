//! The reader threads: images decoded and letterboxed by a pool, videos and streams decoded frame by frame by
//! one thread each, all ahead of the forward pass behind bounded queues.

use super::{whole_view, PredictOptions, Prepared, Source};
use data::image_ops::read_rgb;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What a reader hands the forward pass.
#[cfg_attr(not(feature = "video"), allow(dead_code))]
pub(super) enum Item {
    /// The input with this index (in the source's order), or why it was skipped.
    Ready(usize, Box<anyhow::Result<Prepared>>),
    /// A video or stream opened; `frames` is how many it will give, where known.
    Opened { frames: Option<usize> },
    /// Stream frames dropped because the model was busy (sent once, at the stream's end).
    Dropped(usize),
}

/// Decodes `images` on `o.workers` threads; tiles (`--tile`) are cut when they run, a batch at a time.
pub(super) fn spawn_image_readers(
    images: Vec<(PathBuf, String)>,
    o: &PredictOptions,
) -> Receiver<Item> {
    let (tx, rx) = sync_channel(8);
    let next = Arc::new(Mutex::new(0usize));
    let images = Arc::new(images);
    let (shape, tile) = (o.input, o.tile.is_some());
    for _ in 0..o.workers.max(1) {
        let (tx, images, next) = (tx.clone(), images.clone(), next.clone());
        std::thread::spawn(move || loop {
            let i = {
                let Ok(mut n) = next.lock() else { return };
                let i = *n;
                *n += 1;
                i
            };
            let Some((path, name)) = images.get(i) else {
                return;
            };
            let t = Instant::now();
            let r = read_rgb(path).map(|image| Prepared {
                path: path.clone(),
                name: name.clone(),
                view: (!tile).then(|| whole_view(&image, shape)),
                image,
                decode_s: t.elapsed().as_secs_f64(),
                frame: None,
            });
            if tx.send(Item::Ready(i, Box::new(r))).is_err() {
                return;
            }
        });
    }
    rx
}

/// Decodes one video, stream or camera on its own thread, keeping every `o.vid_stride`-th frame. A stream
/// (not a file) drops frames that arrive while the queue is full unless `o.stream_buffer`, so what is
/// predicted stays close to live.
#[cfg(feature = "video")]
pub(super) fn spawn_video_reader(
    source: Source,
    base: String,
    o: &PredictOptions,
) -> Receiver<Item> {
    use super::{FrameOf, VideoOut};
    use crate::video::{Location, VideoReader};
    use std::sync::mpsc::TrySendError;
    use track::gmc::{Frame, Motion};

    let is_file = matches!(source, Source::Video(_));
    let live = !is_file && !o.stream_buffer;
    let (tx, rx) = sync_channel(if live { o.batch.max(1) } else { 8 });
    let (shape, tile, stride) = (o.input, o.tile.is_some(), o.vid_stride.max(1));
    let timeout = o.stream_timeout;
    let gmc = o
        .tracker
        .as_ref()
        .is_some_and(|(cfg, _)| cfg.compensates_motion());
    std::thread::spawn(move || {
        let (location, path) = match &source {
            Source::Video(p) => (Location::File(p.clone()), p.clone()),
            Source::Stream(u) => (Location::Url(u.clone()), PathBuf::from(u)),
            Source::Camera(i) => (
                Location::Camera(*i),
                PathBuf::from(format!("/dev/video{i}")),
            ),
            Source::Image(p) => (Location::File(p.clone()), p.clone()),
        };
        let mut reader = match VideoReader::open_with_timeout(&location, stride, timeout) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Item::Ready(0, Box::new(Err(e.into()))));
                return;
            }
        };
        // Ultralytics saves a stream at 30 fps; either way skipped frames must not shorten the video.
        let fps = if is_file { reader.fps() } else { 30.0 };
        let video = Arc::new(VideoOut {
            base: base.clone(),
            fps: (fps / stride as f64).max(1.0),
        });
        let frames = if is_file { reader.frames() } else { None };
        if tx.send(Item::Opened { frames }).is_err() {
            return;
        }
        let (mut index, mut dropped) = (0usize, 0usize);
        let mut prev = None;
        loop {
            let t = Instant::now();
            let image = match reader.next_frame() {
                Ok(Some(image)) => image,
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Item::Ready(index, Box::new(Err(e.into()))));
                    break;
                }
            };
            // The camera motion is analysed here, overlapping the forward pass of earlier frames.
            let motion = gmc.then(|| {
                let m = Motion::new(
                    Frame {
                        width: image.width() as usize,
                        height: image.height() as usize,
                        rgb: image.as_raw(),
                    },
                    prev.as_ref(),
                );
                prev = Some(m.analysis.clone());
                m
            });
            let p = Prepared {
                path: path.clone(),
                name: format!("{base}_{}", index + 1),
                view: (!tile).then(|| whole_view(&image, shape)),
                image,
                decode_s: t.elapsed().as_secs_f64(),
                frame: Some(FrameOf {
                    video: video.clone(),
                    index: index + 1,
                    motion,
                }),
            };
            let item = Item::Ready(index, Box::new(Ok(p)));
            if live {
                match tx.try_send(item) {
                    Ok(()) => index += 1,
                    Err(TrySendError::Full(_)) => dropped += 1,
                    Err(TrySendError::Disconnected(_)) => return,
                }
            } else if tx.send(item).is_err() {
                return;
            } else {
                // Time spent waiting for our own model is not the stream stalling.
                reader.progressed();
                index += 1;
            }
        }
        if dropped > 0 && tx.send(Item::Dropped(dropped)).is_err() {
            return;
        }
        if reader.bad_packets > 0 {
            eprintln!(
                "{}: {} damaged packet(s) skipped",
                location.display(),
                reader.bad_packets
            );
        }
    });
    rx
}

/// Without the `video` feature a video is skipped with a message saying how to get one that reads it.
#[cfg(not(feature = "video"))]
pub(super) fn spawn_video_reader(
    source: Source,
    _base: String,
    _o: &PredictOptions,
) -> Receiver<Item> {
    let (tx, rx) = sync_channel(1);
    let what = match &source {
        Source::Video(p) | Source::Image(p) => p.display().to_string(),
        Source::Stream(u) => u.clone(),
        Source::Camera(i) => format!("camera {i}"),
    };
    let _ = tx.send(Item::Ready(
        0,
        Box::new(Err(anyhow::anyhow!(
            "{what}: this build reads no video (rebuild deploy with its default feature `video`)"
        ))),
    ));
    rx
}
