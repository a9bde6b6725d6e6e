//! Our trackers against Ultralytics' on the detections the package's own track mode gave them
//! (tests/fixtures/tracks.json, scripts/make_track_fixture.py: a 72-frame pan over a trees tile, the trees
//! detector, bytetrack.yaml, botsort.yaml as shipped (camera motion by sparse optical flow, so the tracker also
//! gets the frames) and with `gmc_method: none`, at their defaults and with low thresholds).
//! Frame by frame: the same tracks in the same order, the same ids, scores, classes and detection indices, boxes
//! equal to float32 rounding.

mod common;

use common::{pan_frames, H, W};
use serde_json::Value;
use std::path::Path;
use track::{Detection, Frame, GmcMethod, Tracker, TrackerConfig};

fn fixture() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tracks.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn run(name: &str, run: &Value, frames: &[Vec<u8>]) -> usize {
    let cfg = TrackerConfig::from_str(run["tracker"].as_str().expect("yaml"), name)
        .unwrap_or_else(|e| panic!("{e}"));
    let warped = cfg.gmc_method == GmcMethod::SparseOptFlow;
    assert_eq!(
        warped,
        name.starts_with("botsort") && !name.contains("gmc_none")
    );
    let mut tracker = Tracker::new(cfg);
    let mut rows = 0;
    for (frame, call) in run["calls"].as_array().expect("calls").iter().enumerate() {
        let dets: Vec<Detection> = call["dets"]
            .as_array()
            .expect("dets")
            .iter()
            .map(|d| Detection {
                xywh: [
                    f(&d[0]) as f32,
                    f(&d[1]) as f32,
                    f(&d[2]) as f32,
                    f(&d[3]) as f32,
                ],
                score: f(&d[4]) as f32,
                cls: f(&d[5]) as f32,
            })
            .collect();
        let image = Frame {
            width: W,
            height: H,
            rgb: &frames[frame],
        };
        let ours = tracker.update(&dets, Some(image));
        let theirs = call["tracks"].as_array().expect("tracks");
        let ids = |v: Vec<u64>| format!("{v:?}");
        assert_eq!(
            ours.len(),
            theirs.len(),
            "{name} frame {}: ours {} theirs {}",
            frame + 1,
            ids(ours.iter().map(|t| t.id).collect()),
            ids(theirs.iter().map(|t| f(&t[4]) as u64).collect())
        );
        for (o, t) in ours.iter().zip(theirs) {
            let at = format!("{name} frame {} id {}", frame + 1, o.id);
            assert_eq!(o.id, f(&t[4]) as u64, "{at}: id");
            assert_eq!(o.det, f(&t[7]) as usize, "{at}: detection index");
            assert_eq!(o.score, f(&t[5]) as f32, "{at}: score");
            assert_eq!(o.cls, f(&t[6]) as f32, "{at}: class");
            for k in 0..4 {
                let (a, b) = (o.xyxy[k] as f64, f(&t[k]));
                assert!(
                    (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                    "{at}: corner {k}: ours {a} theirs {b}"
                );
            }
            rows += 1;
        }
    }
    rows
}

#[test]
fn bytetrack_and_botsort_give_the_packages_tracks() {
    let fx = fixture();
    let runs = fx["runs"].as_object().expect("runs");
    assert_eq!(runs.len(), 6);
    // Compensating the camera's motion changes what the package tracks on this clip.
    assert_ne!(
        runs["botsort_low"]["calls"],
        runs["botsort_gmc_none_low"]["calls"]
    );
    let frames = pan_frames(&fx["window"]);
    for (name, r) in runs {
        assert_eq!(r["calls"].as_array().map(Vec::len), Some(frames.len()));
        let rows = run(name, r, &frames);
        // The low-threshold runs exercise association: many tracks, lost and found again.
        if name.ends_with("_low") {
            assert!(rows > 50, "{name}: only {rows} tracked boxes");
            eprintln!("{name}: {rows} tracked boxes equal");
        }
    }
}
