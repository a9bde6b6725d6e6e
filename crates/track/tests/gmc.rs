//! Camera-motion compensation against Ultralytics' `GMC(method="sparseOptFlow")` and the OpenCV calls under it,
//! on the 72-frame pan (tests/fixtures/gmc.json, scripts/make_gmc_fixture.py): the corners of a frame and the
//! optical flow of those corners into the next frame equal OpenCV's to the bit, and every frame's warp equals
//! the package's to the refinement's convergence (OpenCV stops its Levenberg-Marquardt a hair before the
//! least-squares optimum we solve for).

mod common;

use common::{pan_frames, H, W};
use serde_json::Value;
use std::path::Path;
use track::gmc::{corners, flow, image, Frame, Gmc, Motion, Pyramid};

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gmc.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn frame(rgb: &[u8]) -> Frame<'_> {
    Frame {
        width: W,
        height: H,
        rgb,
    }
}

fn points(v: &Value) -> Vec<[f32; 2]> {
    v.as_array()
        .expect("points")
        .iter()
        .map(|p| [p[0].as_f64().unwrap() as f32, p[1].as_f64().unwrap() as f32])
        .collect()
}

#[test]
fn corners_and_flow_are_opencvs() {
    let fx = fixture();
    let frames = pan_frames(&fx["window"]);
    let small: Vec<image::Gray> = frames[..2]
        .iter()
        .map(|f| image::half(&image::gray(frame(f))))
        .collect();
    for (f, s) in frames.iter().zip(&small) {
        assert_eq!(&image::half_gray(frame(f)), s, "one pass and two");
    }
    for (i, s) in small.iter().enumerate() {
        let ours = corners::good_features(s, 400, 0.01);
        assert_eq!(
            ours,
            points(&fx[format!("corners{i}")]),
            "frame {i}: corners"
        );
    }
    let pts = points(&fx["corners0"]);
    let (moved, found) = flow::track(&Pyramid::new(&small[0]), &Pyramid::new(&small[1]), &pts);
    let status: Vec<bool> = fx["flow"]["status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64() == Some(1))
        .collect();
    assert!(status.iter().filter(|&&s| s).count() > 100);
    assert_eq!(found, status, "status");
    assert_eq!(moved, points(&fx["flow"]["points"]), "tracked points");
}

#[test]
fn one_pass_grey_half_equals_grey_then_half() {
    // Colour frames of even and odd sizes, bytes from a fixed LCG.
    let mut state = 12345u32;
    for (w, h) in [(64, 48), (63, 47), (2, 2)] {
        let rgb: Vec<u8> = (0..w * h * 3)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        let f = Frame {
            width: w,
            height: h,
            rgb: &rgb,
        };
        assert_eq!(image::half_gray(f), image::half(&image::gray(f)), "{w}x{h}");
    }
}

#[test]
fn odd_sizes_halve_as_opencv_resizes() {
    let fx = fixture();
    let tile =
        ::image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pan_grey.png"))
            .unwrap()
            .to_luma8();
    let (w, h) = (193usize, 129usize);
    let mut px = Vec::with_capacity(w * h);
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            px.push(tile.get_pixel(x, y)[0]);
        }
    }
    let ours = image::half(&image::Gray { w, h, px });
    let theirs: Vec<u8> = fx["odd_half"]["pixels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    assert_eq!((ours.w, ours.h), (96, 64));
    assert_eq!(ours.px, theirs);
}

#[test]
fn warps_are_the_packages() {
    let fx = fixture();
    let frames = pan_frames(&fx["window"]);
    let rows = fx["frames"].as_array().expect("frames");
    assert_eq!(rows.len(), frames.len());
    let mut gmc = Gmc::default();
    let (mut worst_t, mut worst_r, mut moved) = (0f64, 0f64, 0f64);
    for (i, (rgb, row)) in frames.iter().zip(rows).enumerate() {
        let ours = gmc.apply(frame(rgb));
        for r in 0..2 {
            for c in 0..3 {
                let theirs = row["warp"][r][c].as_f64().expect("warp");
                let d = (ours[r][c] - theirs).abs();
                if c == 2 {
                    worst_t = worst_t.max(d);
                    moved += theirs.abs();
                } else {
                    worst_r = worst_r.max(d);
                }
                assert!(
                    d <= if c == 2 { 1e-5 } else { 1e-7 },
                    "frame {i}: warp[{r}][{c}] ours {} theirs {theirs}",
                    ours[r][c]
                );
            }
        }
    }
    // The pan moves the camera: the warps are far from the identity.
    assert!(moved > 300.0, "total translation {moved}");
    eprintln!("worst difference: translation {worst_t:e} px, linear part {worst_r:e}");
}

#[test]
fn motion_analysed_ahead_gives_the_same_warps_even_when_frames_are_dropped() {
    let fx = fixture();
    let frames = pan_frames(&fx["window"]);
    // The reader analyses every frame after its predecessor; the tracker sees only some (a live stream drops
    // frames while its queue is full), so where the reader's predecessor is not the tracker's, the warp is
    // recomputed from the tracker's own previous frame.
    let (mut ahead, mut inline) = (Gmc::default(), Gmc::default());
    let mut prev = None;
    let mut used = 0;
    for (i, rgb) in frames.iter().enumerate() {
        let m = Motion::new(frame(rgb), prev.as_ref());
        prev = Some(m.analysis.clone());
        if i % 7 == 3 || i % 7 == 5 {
            continue;
        }
        used += usize::from(m.from_prev.is_some());
        assert_eq!(ahead.apply_motion(m), inline.apply(frame(rgb)), "frame {i}");
    }
    assert!(used > 40, "{used} warps computed ahead");
}

#[test]
fn frames_with_missing_bytes_or_no_pixels_are_skipped_as_the_package_skips_a_failed_flow() {
    let fx = fixture();
    let frames = pan_frames(&fx["window"]);
    let mut reference = Gmc::default();
    reference.apply(frame(&frames[0]));
    let want = reference.apply(frame(&frames[1]));
    assert_ne!(want, track::gmc::IDENTITY);
    // Between frames 0 and 1, a frame shorter than its size says and an empty one: the identity, and the
    // previous frame is kept (OpenCV raises on the size change; the package keeps its state).
    let mut gmc = Gmc::default();
    assert_eq!(gmc.apply(frame(&frames[0])), track::gmc::IDENTITY);
    let bad = [
        Frame {
            width: W,
            height: H,
            rgb: &frames[0][..100],
        },
        Frame {
            width: 0,
            height: 0,
            rgb: &[],
        },
    ];
    for f in bad {
        assert_eq!(gmc.apply(f), track::gmc::IDENTITY);
    }
    assert_eq!(gmc.apply(frame(&frames[1])), want);
}
