//! Track trails on annotated frames (`--trails`): each track's last 30 box centres joined by a line in the
//! track's colour, as Ultralytics' solutions keep and draw a track's history (`store_tracking_history`: 30
//! points). The history starts afresh with each source (unless one tracker carries on across sources), and a
//! track unseen for 30 frames is forgotten.

use image::RgbImage;
use model::postprocess::Detection;
use std::collections::{HashMap, VecDeque};

const POINTS: usize = 30;

#[derive(Default)]
pub(super) struct Trails {
    source: Option<String>,
    frame: u64,
    /// Per track id: the frame it was last seen in, its last centres.
    paths: HashMap<u64, (u64, VecDeque<(f32, f32)>)>,
}

impl Trails {
    /// Adds one frame of `source`: its boxes and their track ids (none when the frame shows plain detections).
    pub(super) fn add(&mut self, source: &str, dets: &[Detection], ids: Option<&[u64]>) {
        if self.source.as_deref() != Some(source) {
            self.paths.clear();
            self.source = Some(source.to_string());
        }
        self.frame += 1;
        for (d, &id) in dets.iter().zip(ids.unwrap_or_default()) {
            let (seen, path) = self.paths.entry(id).or_default();
            *seen = self.frame;
            path.push_back(((d.x1 + d.x2) / 2.0, (d.y1 + d.y2) / 2.0));
            if path.len() > POINTS {
                path.pop_front();
            }
        }
        let now = self.frame;
        self.paths
            .retain(|_, (seen, _)| now - *seen <= POINTS as u64);
    }

    /// Draws the trails of the tracks in this frame (`ids`).
    pub(super) fn draw(&self, img: &mut RgbImage, ids: Option<&[u64]>) {
        for id in ids.unwrap_or_default() {
            if let Some((_, path)) = self.paths.get(id) {
                let points: Vec<(f32, f32)> = path.iter().copied().collect();
                data::draw::draw_polyline(img, &points, data::draw::class_color(*id as usize));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(cx: f32, cy: f32) -> Detection {
        Detection {
            x1: cx - 2.0,
            y1: cy - 2.0,
            x2: cx + 2.0,
            y2: cy + 2.0,
            conf: 0.5,
            cls: 0,
        }
    }

    #[test]
    fn a_track_s_last_centres_are_drawn_in_its_colour() {
        let mut t = Trails::default();
        // Track 3 moves right along y = 10 for 40 frames; track 5 appears once.
        for i in 0..40 {
            t.add("a.mp4", &[det(10.0 + i as f32, 10.0)], Some(&[3]));
        }
        t.add("a.mp4", &[det(60.0, 10.0), det(30.0, 40.0)], Some(&[3, 5]));
        let mut img = RgbImage::new(80, 50);
        t.draw(&mut img, Some(&[3, 5]));
        let c3 = data::draw::class_color(3);
        // The last 30 centres: x from 20 (frame 11) to 49, then the jump to 60.
        assert_eq!(*img.get_pixel(25, 10), c3);
        assert_eq!(*img.get_pixel(55, 10), c3);
        assert_ne!(*img.get_pixel(15, 10), c3, "older than 30 centres");
        // One point is no line.
        assert!(img.pixels().all(|p| *p != data::draw::class_color(5)));
        // A new source starts afresh; a track unseen for 30 frames is dropped.
        t.add("b.mp4", &[det(5.0, 5.0)], Some(&[3]));
        assert_eq!(t.paths[&3].1.len(), 1);
        for _ in 0..31 {
            t.add("b.mp4", &[], None);
        }
        assert!(t.paths.is_empty());
    }
}
