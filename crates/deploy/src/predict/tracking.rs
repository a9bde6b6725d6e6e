//! Track mode on top of predict, as Ultralytics' `on_predict_postprocess_end`: each frame's detections go to
//! the tracker of its source, and the frame keeps the tracked boxes (the tracker's box clipped to the frame,
//! the matched detection's score and class) with their ids. Like the package, one tracker runs per source and
//! is replaced when the source changes (every still image is its own source) unless `persist`; a frame whose
//! tracker returns nothing keeps no box while a new track waits for confirmation, and its plain detections
//! otherwise.

use image::RgbImage;
use model::postprocess::Detection;
use track::gmc::Motion;
use track::{Frame, Tracker, TrackerConfig};

pub(super) struct Tracking {
    cfg: TrackerConfig,
    persist: bool,
    current: Option<(String, Tracker)>,
    /// Tracks started by the trackers already replaced.
    done: u64,
}

impl Tracking {
    pub(super) fn new(cfg: TrackerConfig, persist: bool) -> Tracking {
        Tracking {
            cfg,
            persist,
            current: None,
            done: 0,
        }
    }

    /// The tracks started over the run.
    pub(super) fn tracks(&self) -> u64 {
        self.done + self.current.as_ref().map_or(0, |(_, t)| t.tracks_started())
    }

    /// The boxes a frame of `source` keeps, and their ids when they are tracks. `motion`: the frame's camera
    /// motion if its reader analysed it; otherwise the tracker analyses the image when it needs to.
    pub(super) fn apply(
        &mut self,
        source: &str,
        image: &RgbImage,
        motion: Option<Motion>,
        dets: Vec<Detection>,
    ) -> (Vec<Detection>, Option<Vec<u64>>) {
        let (w, h) = (image.width() as f32, image.height() as f32);
        let tracker = match &mut self.current {
            Some((s, t)) if s == source || self.persist => t,
            _ => {
                self.done = self.tracks();
                let fresh = (source.to_string(), Tracker::new(self.cfg.clone()));
                &mut self.current.insert(fresh).1
            }
        };
        // Ultralytics hands the tracker `Boxes.xywh`, computed from the corners in float32.
        let input: Vec<track::Detection> = dets
            .iter()
            .map(|d| track::Detection {
                xywh: [
                    (d.x1 + d.x2) / 2.0,
                    (d.y1 + d.y2) / 2.0,
                    d.x2 - d.x1,
                    d.y2 - d.y1,
                ],
                score: d.conf,
                cls: d.cls as f32,
            })
            .collect();
        let frame = Frame {
            width: image.width() as usize,
            height: image.height() as usize,
            rgb: image.as_raw(),
        };
        let tracks = match motion {
            Some(m) => tracker.update_with_motion(&input, Some(m)),
            None => tracker.update(&input, Some(frame)),
        };
        if tracks.is_empty() {
            return if tracker.has_unconfirmed() {
                (Vec::new(), None)
            } else {
                (dets, None)
            };
        }
        // The predicted box may leave the frame; Ultralytics' `Results.update` clips it.
        let boxes = tracks
            .iter()
            .map(|t| Detection {
                x1: t.xyxy[0].clamp(0.0, w),
                y1: t.xyxy[1].clamp(0.0, h),
                x2: t.xyxy[2].clamp(0.0, w),
                y2: t.xyxy[3].clamp(0.0, h),
                conf: t.score,
                cls: t.cls as usize,
            })
            .collect();
        (boxes, Some(tracks.iter().map(|t| t.id).collect()))
    }
}
