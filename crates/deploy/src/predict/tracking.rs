//! Track mode on top of predict, as Ultralytics' `on_predict_postprocess_end`: each frame's detections go to
//! the tracker of its source, and the frame keeps the tracked boxes (the tracker's box, the matched detection's
//! score and class, clipped to the frame) with their ids. Like the package, one tracker runs per source and is reset when the source
//! changes (every still image is its own source) unless `persist`; a frame whose tracker returns nothing keeps
//! no box while a new track waits for confirmation, and its plain detections otherwise.

use model::postprocess::Detection;
use track::{Tracker, TrackerConfig};

pub(super) struct Tracking {
    cfg: TrackerConfig,
    persist: bool,
    current: Option<(String, Tracker)>,
    /// Ids handed out by the trackers already reset, and by the current one.
    done: u64,
    latest: u64,
}

impl Tracking {
    pub(super) fn new(cfg: TrackerConfig, persist: bool) -> Tracking {
        Tracking {
            cfg,
            persist,
            current: None,
            done: 0,
            latest: 0,
        }
    }

    /// The tracks started over the run.
    pub(super) fn tracks(&self) -> u64 {
        self.done + self.latest
    }

    /// The boxes a `w` x `h` frame of `source` keeps, and their ids when they are tracks.
    pub(super) fn apply(
        &mut self,
        source: &str,
        (w, h): (f32, f32),
        dets: Vec<Detection>,
    ) -> (Vec<Detection>, Option<Vec<u64>>) {
        let fresh = match &self.current {
            Some((s, _)) => s != source && !self.persist,
            None => true,
        };
        if fresh {
            self.current = Some((source.to_string(), Tracker::new(self.cfg.clone())));
            self.done += std::mem::take(&mut self.latest);
        }
        let Some((s, tracker)) = &mut self.current else {
            return (dets, None);
        };
        *s = source.to_string();
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
        let tracks = tracker.update(&input);
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
                cls: dets.get(t.det).map_or(t.cls as usize, |d| d.cls),
            })
            .collect();
        let ids: Vec<u64> = tracks.iter().map(|t| t.id).collect();
        self.latest = self.latest.max(ids.iter().copied().max().unwrap_or(0));
        (boxes, Some(ids))
    }
}
