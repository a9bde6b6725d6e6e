//! ByteTrack and BoT-SORT (without ReID) as Ultralytics 8.4 runs them (`byte_tracker.py`, `bot_sort.py`,
//! `utils/stracks.py`): the same lists (tracked, lost, removed), the same two association stages, the same
//! order of every step, so that given the same detections the ids and boxes are the package's frame by frame.
//! Tracks are shared between the lists as the package shares its objects.

use crate::config::{TrackerConfig, TrackerType};
use crate::gmc::{Analysis, Frame, Gmc, Motion};
use crate::kalman::{self, BoxForm, Cov, Mean};
use crate::matching::{fuse_score, iou_distance, linear_assignment};
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

/// One detection given to the tracker: centre, size (pixels), score and class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub xywh: [f32; 4],
    pub score: f32,
    pub cls: f32,
}

/// One tracked box: `x1, y1, x2, y2`, its id, and the score, class and index of the detection it was last
/// matched to (Ultralytics' result row).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackedBox {
    pub xyxy: [f32; 4],
    pub id: u64,
    pub score: f32,
    pub cls: f32,
    pub det: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    New,
    Tracked,
    Lost,
    Removed,
}

#[derive(Debug)]
struct Track {
    /// The detection's box (`tlwh`, float32) while no state is estimated.
    tlwh0: [f32; 4],
    kalman: Option<(Mean, Cov)>,
    state: State,
    is_activated: bool,
    score: f32,
    cls: f32,
    idx: usize,
    id: u64,
    frame_id: u64,
    start_frame: u64,
}

type T = Rc<RefCell<Track>>;

impl Track {
    fn new(d: &Detection, idx: usize) -> Track {
        let [cx, cy, w, h] = d.xywh.map(f64::from);
        Track {
            tlwh0: [
                (cx - w / 2.0) as f32,
                (cy - h / 2.0) as f32,
                w as f32,
                h as f32,
            ],
            kalman: None,
            state: State::New,
            is_activated: false,
            score: d.score,
            cls: d.cls,
            idx,
            id: 0,
            frame_id: 0,
            start_frame: 0,
        }
    }

    fn xyxy(&self, form: BoxForm) -> [f32; 4] {
        match &self.kalman {
            None => {
                let [x, y, w, h] = self.tlwh0;
                [x, y, x + w, y + h]
            }
            Some((mean, _)) => {
                let [x, y, w, h] = form.tlwh(mean);
                [x as f32, y as f32, (x + w) as f32, (y + h) as f32]
            }
        }
    }

    /// `update` and `re_activate`'s shared part: the filter corrected by the detection.
    fn correct(&mut self, det: &Track, form: BoxForm, frame_id: u64) {
        if let Some((mean, cov)) = &self.kalman {
            self.kalman = Some(form.update(mean, cov, form.measure(det.tlwh0)));
        }
        self.state = State::Tracked;
        self.is_activated = true;
        self.frame_id = frame_id;
        self.score = det.score;
        self.cls = det.cls;
        self.idx = det.idx;
    }
}

/// One tracker state: one per video or stream (Ultralytics keeps one per source).
pub struct Tracker {
    cfg: TrackerConfig,
    form: BoxForm,
    tracked: Vec<T>,
    lost: Vec<T>,
    removed: Vec<T>,
    frame_id: u64,
    next_id: u64,
    /// BoT-SORT's camera-motion compensation, when its YAML asks for one.
    gmc: Option<Gmc>,
}

fn ids(list: &[T]) -> HashSet<u64> {
    list.iter().map(|t| t.borrow().id).collect()
}

fn joint(a: &[T], b: &[T]) -> Vec<T> {
    let have = ids(a);
    let mut out = a.to_vec();
    out.extend(b.iter().filter(|t| !have.contains(&t.borrow().id)).cloned());
    out
}

fn sub(a: &[T], b: &[T]) -> Vec<T> {
    let drop = ids(b);
    a.iter()
        .filter(|t| !drop.contains(&t.borrow().id))
        .cloned()
        .collect()
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Tracker {
        let form = match cfg.tracker_type {
            TrackerType::ByteTrack => BoxForm::Xyah,
            TrackerType::BotSort => BoxForm::Xywh,
        };
        let gmc = cfg.compensates_motion().then(Gmc::default);
        Tracker {
            cfg,
            form,
            gmc,
            tracked: Vec::new(),
            lost: Vec::new(),
            removed: Vec::new(),
            frame_id: 0,
            next_id: 1,
        }
    }

    /// Forgets every track and restarts the ids at 1 (a new video).
    pub fn reset(&mut self) {
        *self = Tracker::new(self.cfg.clone());
    }

    /// How many tracks this tracker has started (its ids are 1..=n).
    pub fn tracks_started(&self) -> u64 {
        self.next_id - 1
    }

    /// Whether a track was started but not yet confirmed (Ultralytics then shows no box for the frame).
    pub fn has_unconfirmed(&self) -> bool {
        self.tracked.iter().any(|t| !t.borrow().is_activated)
    }

    fn xyxys(&self, list: &[T]) -> Vec<[f32; 4]> {
        list.iter().map(|t| t.borrow().xyxy(self.form)).collect()
    }

    fn dists(&self, tracks: &[T], dets: &[T]) -> crate::matching::Costs {
        let c = iou_distance(&self.xyxys(tracks), &self.xyxys(dets));
        if self.cfg.fuse_score {
            let scores: Vec<f32> = dets.iter().map(|d| d.borrow().score).collect();
            fuse_score(c, &scores)
        } else {
            c
        }
    }

    fn apply_match(&self, track: &T, det: &T, activated: &mut Vec<T>, refind: &mut Vec<T>) {
        let tracked = track.borrow().state == State::Tracked;
        track
            .borrow_mut()
            .correct(&det.borrow(), self.form, self.frame_id);
        if tracked {
            activated.push(track.clone());
        } else {
            refind.push(track.clone());
        }
    }

    /// One frame's detections in, the confirmed tracks out (Ultralytics' `update`). The frame feeds the camera
    /// motion compensation; without one (or with `gmc_method: none`) tracks are not warped.
    pub fn update(
        &mut self,
        detections: &[Detection],
        image: Option<Frame<'_>>,
    ) -> Vec<TrackedBox> {
        let motion = match (&self.gmc, image) {
            (Some(_), Some(f)) => Some(Motion {
                analysis: Arc::new(Analysis::new(f)),
                from_prev: None,
            }),
            _ => None,
        };
        self.update_with_motion(detections, motion)
    }

    /// `update` with the frame's motion analysed ahead (`Motion::new`, on the video's reader thread).
    pub fn update_with_motion(
        &mut self,
        detections: &[Detection],
        motion: Option<Motion>,
    ) -> Vec<TrackedBox> {
        self.frame_id += 1;
        let frame = self.frame_id;
        let (high, low) = (
            self.cfg.track_high_thresh as f32,
            self.cfg.track_low_thresh as f32,
        );
        let mut dets: Vec<T> = Vec::new();
        let mut dets_second: Vec<T> = Vec::new();
        for (i, d) in detections.iter().enumerate() {
            if !(d.xywh[2] > 0.0 && d.xywh[3] > 0.0) {
                continue;
            }
            if d.score >= high {
                dets.push(Rc::new(RefCell::new(Track::new(d, i))));
            } else if d.score > low && d.score < high {
                dets_second.push(Rc::new(RefCell::new(Track::new(d, i))));
            }
        }
        let (mut activated, mut refind, mut lost, mut removed) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (unconfirmed, confirmed): (Vec<T>, Vec<T>) = self
            .tracked
            .iter()
            .cloned()
            .partition(|t| !t.borrow().is_activated);
        let pool = joint(&confirmed, &self.lost);
        for t in &pool {
            let mut t = t.borrow_mut();
            let tracked = t.state == State::Tracked;
            if let Some((mean, cov)) = &t.kalman {
                let mut m = *mean;
                if !tracked {
                    self.form.stop(&mut m);
                }
                t.kalman = Some(self.form.predict(&m, cov));
            }
        }
        if let (Some(gmc), Some(motion)) = (&mut self.gmc, motion) {
            let h = gmc.apply_motion(motion);
            for t in pool.iter().chain(&unconfirmed) {
                let mut t = t.borrow_mut();
                if let Some((mean, cov)) = &t.kalman {
                    t.kalman = Some(kalman::warp(mean, cov, &h));
                }
            }
        }

        let (matches, u_track, u_det) =
            linear_assignment(&self.dists(&pool, &dets), self.cfg.match_thresh);
        for (it, id) in matches {
            self.apply_match(&pool[it], &dets[id], &mut activated, &mut refind);
        }

        let r_tracked: Vec<T> = u_track
            .iter()
            .map(|&i| pool[i].clone())
            .filter(|t| t.borrow().state == State::Tracked)
            .collect();
        let still: Vec<usize> = if !r_tracked.is_empty() && !dets_second.is_empty() {
            let c = iou_distance(&self.xyxys(&r_tracked), &self.xyxys(&dets_second));
            let (m, u, _) = linear_assignment(&c, 0.5);
            for (it, id) in m {
                self.apply_match(
                    &r_tracked[it],
                    &dets_second[id],
                    &mut activated,
                    &mut refind,
                );
            }
            u
        } else {
            (0..r_tracked.len()).collect()
        };
        for i in still {
            r_tracked[i].borrow_mut().state = State::Lost;
            lost.push(r_tracked[i].clone());
        }

        let dets: Vec<T> = u_det.iter().map(|&i| dets[i].clone()).collect();
        let u_det: Vec<usize> = if unconfirmed.is_empty() {
            (0..dets.len()).collect()
        } else {
            let (m, u_unconfirmed, u_det) =
                linear_assignment(&self.dists(&unconfirmed, &dets), 0.7);
            // Unconfirmed tracks are in the Tracked state: a match joins `activated`, as the package's `update`.
            for (it, id) in m {
                self.apply_match(&unconfirmed[it], &dets[id], &mut activated, &mut refind);
            }
            for i in u_unconfirmed {
                unconfirmed[i].borrow_mut().state = State::Removed;
                removed.push(unconfirmed[i].clone());
            }
            u_det
        };

        for i in u_det {
            let t = &dets[i];
            if t.borrow().score < self.cfg.new_track_thresh as f32 {
                continue;
            }
            {
                let mut t = t.borrow_mut();
                t.id = self.next_id;
                self.next_id += 1;
                t.kalman = Some(self.form.initiate(self.form.measure(t.tlwh0)));
                t.state = State::Tracked;
                t.is_activated = frame == 1;
                t.frame_id = frame;
                t.start_frame = frame;
            }
            activated.push(t.clone());
        }
        for t in &self.lost {
            let stale = frame - t.borrow().frame_id > self.cfg.track_buffer as u64;
            if stale {
                t.borrow_mut().state = State::Removed;
                removed.push(t.clone());
            }
        }

        self.merge(activated, refind, lost, removed);
        self.tracked
            .iter()
            .filter(|t| t.borrow().is_activated)
            .map(|t| {
                let t = t.borrow();
                TrackedBox {
                    xyxy: t.xyxy(self.form),
                    id: t.id,
                    score: t.score,
                    cls: t.cls,
                    det: t.idx,
                }
            })
            .collect()
    }

    /// `merge_track_pools`, in its order (the lost list is cleaned of removed tracks before this frame's
    /// removals join them).
    fn merge(&mut self, activated: Vec<T>, refind: Vec<T>, lost: Vec<T>, removed: Vec<T>) {
        let tracked: Vec<T> = self
            .tracked
            .iter()
            .filter(|t| t.borrow().state == State::Tracked)
            .cloned()
            .collect();
        let tracked = joint(&tracked, &activated);
        let tracked = joint(&tracked, &refind);
        let mut lost_all = sub(&self.lost, &tracked);
        lost_all.extend(lost);
        let lost_all = sub(&lost_all, &self.removed);
        let (tracked, lost_all) = self.remove_duplicates(tracked, lost_all);
        self.tracked = tracked;
        self.lost = lost_all;
        self.removed.extend(removed);
        if self.removed.len() > 1000 {
            self.removed.drain(..self.removed.len() - 1000);
        }
    }

    fn remove_duplicates(&self, a: Vec<T>, b: Vec<T>) -> (Vec<T>, Vec<T>) {
        let d = iou_distance(&self.xyxys(&a), &self.xyxys(&b));
        let (mut dup_a, mut dup_b) = (HashSet::new(), HashSet::new());
        for (p, ta) in a.iter().enumerate() {
            for (q, tb) in b.iter().enumerate() {
                if d.at(p, q) < 0.15 {
                    let (tp, tq) = (ta.borrow(), tb.borrow());
                    let age_p = tp.frame_id as i64 - tp.start_frame as i64;
                    let age_q = tq.frame_id as i64 - tq.start_frame as i64;
                    if age_p > age_q {
                        dup_b.insert(q);
                    } else {
                        dup_a.insert(p);
                    }
                }
            }
        }
        let keep = |v: Vec<T>, drop: &HashSet<usize>| -> Vec<T> {
            v.into_iter()
                .enumerate()
                .filter(|(i, _)| !drop.contains(i))
                .map(|(_, t)| t)
                .collect()
        };
        (keep(a, &dup_a), keep(b, &dup_b))
    }
}
