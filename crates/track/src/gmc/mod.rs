//! Camera-motion compensation as Ultralytics' `GMC(method="sparseOptFlow")`: the frame in grey at half size,
//! up to 400 Shi-Tomasi corners, tracked into the next frame by pyramidal Lucas-Kanade, and the similarity
//! between the two point sets fitted with RANSAC; its translation is scaled back to the full frame.
//!
//! Each step re-implements the OpenCV function the package calls, to its arithmetic (see the submodules); no
//! Rust crate offers OpenCV's corner detector, its pyramidal LK and its RANSAC, and binding OpenCV itself would
//! put a C++ library into the one binary we ship.

pub mod affine;
pub mod corners;
pub mod flow;
pub mod image;

pub use flow::Pyramid;
pub use image::{Frame, Gray};
use std::sync::Arc;

/// A 2x3 affine warp from the previous frame to this one.
pub type Warp = [[f64; 3]; 2];

pub const IDENTITY: Warp = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

const MAX_CORNERS: usize = 400;
const QUALITY: f64 = 0.01;
const DOWNSCALE: usize = 2;

/// What the motion estimate keeps of one frame: the pyramid of its half-size grey image and its corners.
/// Computing it needs the frame only, so a video's reader can do it ahead of the tracker.
pub struct Analysis {
    pyramid: Pyramid,
    corners: Vec<[f32; 2]>,
}

impl Analysis {
    /// A frame whose bytes are short counts as one without corners.
    pub fn new(frame: Frame<'_>) -> Analysis {
        let small = if frame.is_whole() {
            image::half_gray(frame)
        } else {
            Gray {
                w: 1,
                h: 1,
                px: vec![0],
            }
        };
        Analysis {
            corners: corners::good_features(&small, MAX_CORNERS, QUALITY),
            pyramid: Pyramid::new(&small),
        }
    }
}

/// A frame's analysis and, when its reader saw the frame before it, the warp from that one, both computed off
/// the tracker's thread. The tracker uses the warp when that earlier frame is also its own previous one.
#[derive(Clone)]
pub struct Motion {
    pub analysis: Arc<Analysis>,
    pub from_prev: Option<(Arc<Analysis>, Warp)>,
}

impl Motion {
    /// The motion of `frame` after `prev` (the same video's frame before it, if any).
    pub fn new(frame: Frame<'_>, prev: Option<&Arc<Analysis>>) -> Motion {
        let analysis = Arc::new(Analysis::new(frame));
        let from_prev = prev.and_then(|p| Some((p.clone(), between(p, &analysis)?)));
        Motion {
            analysis,
            from_prev,
        }
    }
}

/// The warp from `prev` to `next`; None where OpenCV would not run the flow (no corners before) or would fail
/// (frames of different sizes).
fn between(prev: &Analysis, next: &Analysis) -> Option<Warp> {
    if prev.corners.is_empty() || prev.pyramid.size() != next.pyramid.size() {
        return None;
    }
    Some(follow(&prev.pyramid, &next.pyramid, &prev.corners))
}

/// The previous frame's analysis.
#[derive(Default)]
pub struct Gmc {
    prev: Option<Arc<Analysis>>,
}

impl Gmc {
    pub fn reset(&mut self) {
        self.prev = None;
    }

    /// The warp from the previous frame to `frame`; the identity on the first frame, after a frame without
    /// corners, or when too few points were followed.
    pub fn apply(&mut self, frame: Frame<'_>) -> Warp {
        self.apply_motion(Motion {
            analysis: Arc::new(Analysis::new(frame)),
            from_prev: None,
        })
    }

    /// `apply` on a frame analysed ahead, using its warp when it was computed from this tracker's previous frame.
    pub fn apply_motion(&mut self, m: Motion) -> Warp {
        let Some(prev) = &self.prev else {
            self.prev = Some(m.analysis);
            return IDENTITY;
        };
        if prev.corners.is_empty() {
            self.prev = Some(m.analysis);
            return IDENTITY;
        }
        let known = m
            .from_prev
            .filter(|(p, _)| Arc::ptr_eq(p, prev))
            .map(|(_, w)| w);
        match known.or_else(|| between(prev, &m.analysis)) {
            Some(warp) => {
                self.prev = Some(m.analysis);
                warp
            }
            // OpenCV raises on frames of different sizes; the package then warps by the identity and keeps
            // its previous frame.
            None => IDENTITY,
        }
    }
}

/// The warp taking `corners` of `prev` to where the flow finds them in `next`, translation at full size.
fn follow(prev: &Pyramid, next: &Pyramid, corners: &[[f32; 2]]) -> Warp {
    let (moved, found) = flow::track(prev, next, corners);
    let (from, to): (Vec<[f32; 2]>, Vec<[f32; 2]>) = corners
        .iter()
        .zip(&moved)
        .zip(&found)
        .filter(|(_, &ok)| ok)
        .map(|((a, b), _)| (*a, *b))
        .unzip();
    if from.len() <= 4 {
        return IDENTITY;
    }
    match affine::estimate(&from, &to) {
        Some(mut h) => {
            h[0][2] *= DOWNSCALE as f64;
            h[1][2] *= DOWNSCALE as f64;
            h
        }
        None => IDENTITY,
    }
}
