//! Sliced inference for images much larger than the network input (SAHI's method): the image is cut into
//! overlapping tiles, each tile is predicted on its own, the boxes are shifted back into the image and the
//! duplicates where tiles overlap are merged, optionally with a pass over the whole image as well.

use model::postprocess::Detection;

/// How boxes from different tiles that cover the same object are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Merge {
    /// Non-maximum suppression: the lower-scored matches are dropped (our default).
    Nms,
    /// Non-maximum merging (SAHI's default, GREEDYNMM): a box absorbs the lower-scored boxes of its class
    /// that it matches, growing to their union; the score stays the highest.
    Nmm,
}

/// Tiling settings (`predict --tile N`).
#[derive(Debug, Clone)]
pub struct TileOptions {
    /// Tile side in pixels of the original image.
    pub size: usize,
    /// Fraction of a tile shared with its neighbour (0 <= overlap < 1).
    pub overlap: f32,
    pub merge: Merge,
    /// Matching threshold on intersection over the smaller box (SAHI's IOS, 0.5).
    pub match_thr: f32,
    /// Also predict the whole image, letterboxed to the network size, and merge its boxes in.
    pub full_pass: bool,
}

/// Tile rectangles `[x0, y0, x1, y1]` covering a `w x h` image row by row: steps of `size - overlap`, the last
/// tile of a row or column moved back so it ends at the image edge (SAHI's `get_slice_bboxes`).
pub fn tile_rects(w: usize, h: usize, size: usize, overlap: f32) -> Vec<[usize; 4]> {
    let size = size.max(1);
    let step_back = ((overlap.clamp(0.0, 0.95) * size as f32) as usize).min(size - 1);
    let starts = |len: usize| {
        let mut v = Vec::new();
        let mut lo = 0usize;
        loop {
            let hi = lo + size;
            if hi >= len {
                v.push(len.saturating_sub(size));
                break;
            }
            v.push(lo);
            lo = hi - step_back;
        }
        v
    };
    let xs = starts(w);
    let mut out = Vec::new();
    for y in starts(h) {
        for &x in &xs {
            out.push([x, y, (x + size).min(w), (y + size).min(h)]);
        }
    }
    out
}

/// Intersection over the smaller box's area.
fn ios(a: [f32; 4], b: [f32; 4]) -> f32 {
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let small = area(a).min(area(b));
    if small <= 0.0 {
        0.0
    } else {
        iw * ih / small
    }
}

fn rect(d: &Detection) -> [f32; 4] {
    [d.x1, d.y1, d.x2, d.y2]
}

/// Combines the boxes of all tiles (per class), as `merge` says, matching by intersection over the smaller box.
pub fn merge(mut dets: Vec<Detection>, how: Merge, thr: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.conf.total_cmp(&a.conf));
    let mut out: Vec<Detection> = Vec::new();
    let mut used = vec![false; dets.len()];
    for i in 0..dets.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let mut keep = dets[i];
        let anchor = rect(&dets[i]);
        for j in i + 1..dets.len() {
            if used[j] || dets[j].cls != keep.cls || ios(anchor, rect(&dets[j])) <= thr {
                continue;
            }
            used[j] = true;
            if how == Merge::Nmm {
                let d = dets[j];
                keep.x1 = keep.x1.min(d.x1);
                keep.y1 = keep.y1.min(d.y1);
                keep.x2 = keep.x2.max(d.x2);
                keep.y2 = keep.y2.max(d.y2);
            }
        }
        out.push(keep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_the_image_and_end_at_its_edges() {
        let r = tile_rects(1000, 700, 640, 0.2);
        // x: 0, 360 (the second moved back to end at 1000); y: 0, 60.
        assert_eq!(
            r,
            vec![
                [0, 0, 640, 640],
                [360, 0, 1000, 640],
                [0, 60, 640, 700],
                [360, 60, 1000, 700]
            ]
        );
        let r = tile_rects(2000, 640, 640, 0.2);
        let xs: Vec<usize> = r.iter().map(|t| t[0]).collect();
        assert_eq!(xs, [0, 512, 1024, 1360]);
        assert_eq!(tile_rects(300, 200, 640, 0.2), vec![[0, 0, 300, 200]]);
    }

    fn det(x1: f32, y1: f32, x2: f32, y2: f32, conf: f32, cls: usize) -> Detection {
        Detection {
            x1,
            y1,
            x2,
            y2,
            conf,
            cls,
        }
    }

    #[test]
    fn halves_of_one_object_merge_and_other_classes_stay() {
        let a = det(100.0, 100.0, 160.0, 150.0, 0.9, 0);
        let b = det(140.0, 100.0, 200.0, 150.0, 0.6, 0);
        let c = det(140.0, 100.0, 200.0, 150.0, 0.5, 1);
        let far = det(400.0, 400.0, 420.0, 420.0, 0.3, 0);
        // b is cut by a tile edge: 20 of its 60 px width lie in a, IOS 1/3 -> kept apart at 0.5.
        assert_eq!(merge(vec![a, b, c, far], Merge::Nmm, 0.5).len(), 4);
        let b = det(110.0, 100.0, 170.0, 150.0, 0.6, 0);
        let m = merge(vec![b, a, c, far], Merge::Nmm, 0.5);
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].x1, m[0].x2, m[0].conf), (100.0, 170.0, 0.9));
        let m = merge(vec![b, a, c, far], Merge::Nms, 0.5);
        assert_eq!((m[0].x1, m[0].x2, m[0].conf), (100.0, 160.0, 0.9));
    }
}
