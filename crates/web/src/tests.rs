//! The in-memory path against what the real Ultralytics package found with the same trained weights
//! (deploy's `trained_mobileone` fixture, `scripts/make_trained_fixture.py`), and its bad-input messages.

use super::*;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn weights() -> Vec<u8> {
    std::fs::read(root().join("crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors"))
        .unwrap()
}

fn rgba(path: &Path) -> (Vec<u8>, u32, u32) {
    let img = data::image_ops::read_rgb(path).unwrap();
    let (w, h) = img.dimensions();
    let px = img.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    (px, w, h)
}

/// Every Ultralytics box has one of ours with the same class, confidence within 0.01 and IoU >= 0.9, and we
/// find no more boxes than it does (deploy's trained_model test's rule), over every run of the fixture.
#[test]
fn finds_what_ultralytics_finds_on_its_trained_weights() {
    let model = Model::from_bytes(&weights(), "weights.safetensors").unwrap();
    assert!(model.backend().starts_with("engine"), "{}", model.backend());
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root().join("crates/deploy/tests/fixtures/trained_mobileone/predictions.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let val = root().join("datasets/trees/images/val");
    let mut images: Vec<PathBuf> = std::fs::read_dir(&val)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    let mut runs = 0;
    for run in fixture["runs"].as_array().unwrap() {
        let o = Options {
            imgsz: run["imgsz"].as_u64().unwrap() as usize,
            conf: run["conf"].as_f64().unwrap() as f32,
            ..Options::default()
        };
        let theirs = run["detections"].as_array().unwrap();
        let (mut ours_n, mut matched) = (0, 0);
        for path in &images {
            let name = path.file_name().unwrap().to_str().unwrap();
            let (px, w, h) = rgba(path);
            let ours = model.detect_rgba(&px, w, h, &o).unwrap();
            ours_n += ours.len();
            let mut used = vec![false; ours.len()];
            for t in theirs.iter().filter(|t| t["file_name"] == name) {
                let tb = testkit::floats(&t["xyxy"]);
                let tb = [tb[0], tb[1], tb[2], tb[3]];
                let best = ours
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| {
                        !used[*i]
                            && d.cls as u64 == t["cls"].as_u64().unwrap()
                            && (d.conf as f64 - t["conf"].as_f64().unwrap()).abs() <= 0.01
                    })
                    .map(|(i, d)| {
                        let b = [d.x1 as f64, d.y1 as f64, d.x2 as f64, d.y2 as f64];
                        (testkit::iou(&tb, &b), i)
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                if let Some((_, i)) = best.filter(|(v, _)| *v >= 0.9) {
                    used[i] = true;
                    matched += 1;
                }
            }
        }
        let n = ours_n.max(theirs.len());
        let rate = if n == 0 {
            1.0
        } else {
            matched as f64 / n as f64
        };
        assert!(
            rate >= 0.99,
            "imgsz {} conf {}: ours {ours_n}, theirs {}, matched {matched}",
            o.imgsz,
            o.conf,
            theirs.len()
        );
        runs += 1;
    }
    assert!(runs >= 2, "the fixture has {runs} runs");
}

#[test]
fn bad_input_is_a_message() {
    let err = |r: Result<Model>| r.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(err(Model::from_bytes(b"", "empty.safetensors"))
        .contains("empty.safetensors: an empty file"));
    let not_ours = err(Model::from_bytes(b"\x89PNG\r\n\x1a\nnot weights", "x.png"));
    assert!(
        not_ours.contains("x.png") && not_ours.contains("safetensors"),
        "{not_ours}"
    );

    let model = Model::from_bytes(&weights(), "w.safetensors").unwrap();
    let e = model
        .detect_rgba(&[0; 10], 2, 2, &Options::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs 16 bytes, not 10"), "{e}");
    let e = model
        .detect_rgba(
            &[0; 16],
            2,
            2,
            &Options {
                imgsz: 100,
                ..Options::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple of 32"), "{e}");
    for (conf, iou) in [(f32::NAN, 0.7), (1.5, 0.7), (0.25, -0.1)] {
        let o = Options {
            conf,
            iou,
            ..Options::default()
        };
        let e = model
            .detect_rgba(&[0; 16], 2, 2, &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("numbers in 0..1"), "{e}");
    }
}

#[test]
fn json_names_each_box() {
    let d = Detection {
        x1: 1.0,
        y1: 2.0,
        x2: 3.0,
        y2: 4.5,
        conf: 0.5,
        cls: 1,
    };
    let v: serde_json::Value =
        serde_json::from_str(&to_json(&[d], &["a".into(), "b".into()])).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"cls": 1, "name": "b", "conf": 0.5, "box": [1.0, 2.0, 3.0, 4.5]}])
    );
}
