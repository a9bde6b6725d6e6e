//! A model trained by the real Ultralytics package with the seed's MobileOneBlock (`scripts/make_trained_fixture.py`)
//! loads, and `deploy predict` finds what Ultralytics' own predict finds on the val tiles: same class, IoU >= 0.9,
//! confidence within 0.01, at imgsz 320 and 640 and confidences down to 0.01. Weights written by our earlier
//! builds (branch convs with a bias) load too, with the bias folded, and predict the same.

use model::weights::{to_safetensors_bytes, HostTensor, WeightsFile};
use std::path::{Path, PathBuf};
use std::process::Command;

type Det = ([f64; 4], f64, usize);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> PathBuf {
    root().join("tests/fixtures/trained_mobileone")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-trained-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs the binary and returns our detections by file name, and what it printed.
fn predict(weights: &Path, imgsz: u64, conf: f64, out: &Path) -> (Vec<(String, Det)>, String) {
    let said = testkit::succeeds(
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg("predict")
            .arg("--weights")
            .arg(weights)
            .arg("--source")
            .arg(root().join("../../datasets/trees/images/val"))
            .args(["--imgsz", &imgsz.to_string(), "--conf", &conf.to_string()])
            .args(["--device", "cpu", "--save-json", "--save", "false", "--out"])
            .arg(out),
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap()).unwrap();
    let dets = detections(&json, "bbox", "score", "category_id", |b| {
        [b[0], b[1], b[0] + b[2], b[1] + b[3]]
    });
    (dets, said)
}

/// `scripts/compare_predict.py`'s rule: each of theirs takes the unused one of ours with the same class, a
/// confidence within 0.01 and the highest IoU, if >= 0.9. Match rate = matched / max(ours, theirs).
fn match_rate(ours: &[(String, Det)], theirs: &[(String, Det)]) -> (f64, usize) {
    let mut used = vec![false; ours.len()];
    let mut matched = 0;
    for (name, (tb, tc, tk)) in theirs {
        let mut best = (0.0, None);
        for (i, (n, (ob, oc, ok))) in ours.iter().enumerate() {
            if !used[i] && n == name && ok == tk && (oc - tc).abs() <= 0.01 {
                let v = testkit::iou(tb, ob);
                if v > best.0 {
                    best = (v, Some(i));
                }
            }
        }
        if let (v, Some(i)) = best {
            if v >= 0.9 {
                used[i] = true;
                matched += 1;
            }
        }
    }
    let n = ours.len().max(theirs.len());
    (
        if n == 0 {
            1.0
        } else {
            matched as f64 / n as f64
        },
        matched,
    )
}

fn theirs(run: &serde_json::Value) -> Vec<(String, Det)> {
    detections(&run["detections"], "xyxy", "conf", "cls", |b| {
        [b[0], b[1], b[2], b[3]]
    })
}

/// Detections from a JSON list, under the given key names; `corners` turns the box array into x1 y1 x2 y2.
fn detections(
    list: &serde_json::Value,
    bbox: &str,
    conf: &str,
    cls: &str,
    corners: impl Fn(&[f64]) -> [f64; 4],
) -> Vec<(String, Det)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let b: Vec<f64> = d[bbox]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let name = d["file_name"].as_str().unwrap().to_string();
            let det = (
                corners(&b),
                d[conf].as_f64().unwrap(),
                d[cls].as_u64().unwrap() as usize,
            );
            (name, det)
        })
        .collect()
}

#[test]
fn predict_matches_ultralytics_on_weights_it_trained() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("predictions.json")).unwrap())
            .unwrap();
    let dir = tmpdir("predict");
    let mut failed = Vec::new();
    for (i, run) in meta["runs"].as_array().unwrap().iter().enumerate() {
        let (imgsz, conf) = (
            run["imgsz"].as_u64().unwrap(),
            run["conf"].as_f64().unwrap(),
        );
        let t = theirs(run);
        let (ours, _) = predict(
            &fixture().join("weights.safetensors"),
            imgsz,
            conf,
            &dir.join(i.to_string()),
        );
        let (rate, matched) = match_rate(&ours, &t);
        eprintln!(
            "imgsz {imgsz} conf {conf}: ours {} theirs {} matched {matched}: match rate {rate:.4}",
            ours.len(),
            t.len()
        );
        if rate < 0.99 {
            failed.push(format!("imgsz {imgsz} conf {conf}: match rate {rate:.4}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn weights_with_branch_conv_biases_load_folded() {
    let dir = tmpdir("legacy");
    let w = WeightsFile::read(&fixture().join("weights.safetensors").to_string_lossy()).unwrap();
    // What our earlier build wrote: a bias b on every branch conv, and BN statistics that absorb it.
    let mut legacy = w.tensors.clone();
    let mut n = 0;
    for (k, mean) in &w.tensors {
        let Some(conv) = k.strip_suffix(".conv.bn.running_mean") else {
            continue;
        };
        let bias: Vec<f32> = (0..mean.data.len())
            .map(|i| ((i * 37 + n * 11) % 17) as f32 * 0.05 - 0.4)
            .collect();
        let shifted: Vec<f32> = mean.data.iter().zip(&bias).map(|(m, b)| m + b).collect();
        legacy.insert(
            format!("{conv}.conv.conv.bias"),
            HostTensor {
                shape: mean.shape.clone(),
                data: bias,
            },
        );
        legacy.insert(
            k.clone(),
            HostTensor {
                shape: mean.shape.clone(),
                data: shifted,
            },
        );
        n += 1;
    }
    assert!(n > 50, "every MobileOne branch: {n}");
    let legacy_path = dir.join("legacy.safetensors");
    std::fs::write(
        &legacy_path,
        to_safetensors_bytes(&legacy, &w.metadata).unwrap(),
    )
    .unwrap();
    let (a, _) = predict(
        &fixture().join("weights.safetensors"),
        320,
        0.01,
        &dir.join("a"),
    );
    let (b, said) = predict(&legacy_path, 320, 0.01, &dir.join("b"));
    assert!(
        said.contains(&format!("{n} branch-conv biases folded")),
        "{said}"
    );
    assert!(!a.is_empty());
    let (rate, _) = match_rate(&b, &a);
    assert_eq!(rate, 1.0);
    std::fs::remove_dir_all(&dir).ok();
}
