//! `val` on a classifier against Ultralytics' `ClassificationValidator` (tests/fixtures/classify_val, made by
//! scripts/make_classify_val_fixture.py: a MobileOne classifier the package trained on datasets/trees_cls).
//! Through the binary: the same images in the same order, top-1 and top-5 within one image, every image's top
//! classes; in the library: every probability. And the bad inputs a classify run meets.

use data::image_folder::{ClassifyData, ImageFolder};
use model::burn::tensor::Device;
use model::weights::{load_model, LoadOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const VAL: &str = env!("CARGO_BIN_EXE_val");

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify_val")
}

fn dataset() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees_cls")
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn val(data: &Path, extra: &[&str]) -> std::process::Output {
    let fx = fixture();
    Command::new(VAL)
        .arg("--weights")
        .arg(fx.join("weights.safetensors"))
        .arg("--config")
        .arg(fx.join("model.yaml"))
        .args([
            "--scale", "t", "--nc", "2", "--imgsz", "64", "--batch", "16",
        ])
        .arg("--data")
        .arg(data)
        .args(extra)
        .output()
        .expect("the val binary runs")
}

#[test]
fn top1_top5_and_every_prediction_match_ultralytics() {
    let meta = json(&fixture().join("meta.json"));
    let theirs = json(&fixture().join("predictions.json"));
    let theirs = theirs.as_array().unwrap();
    let o = val(&dataset(), &["--json"]);
    let said = testkit::said(&o);
    assert!(o.status.success(), "{said}");
    let ours: Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    let preds = ours["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), theirs.len(), "the same images");
    let n = theirs.len() as f64;
    let mut differ = 0;
    for (a, b) in preds.iter().zip(theirs) {
        assert_eq!(a["file"], b["file"], "the validator's order");
        assert_eq!(a["cls"], b["cls"], "{}", a["file"]);
        if a["top5"] != b["top5"] {
            differ += 1;
        }
    }
    assert!(differ <= 1, "{differ} images ranked differently");
    for key in ["top1", "top5"] {
        let (o, t) = (ours[key].as_f64().unwrap(), meta[key].as_f64().unwrap());
        assert!(
            (o - t).abs() <= 1.0 / n + 1e-9,
            "{key}: ours {o} vs Ultralytics {t}"
        );
    }
    // A model that learned something: the fixture is not a constant answer.
    assert!(meta["top1"].as_f64().unwrap() > 0.6, "{meta}");
}

#[test]
fn every_probability_matches_ultralytics() {
    let fx = fixture();
    let theirs = json(&fx.join("predictions.json"));
    let opts = LoadOptions {
        config: Some(fx.join("model.yaml").to_string_lossy().into_owned()),
        spec: model::SpecOptions::scaled("t", 2),
    };
    let device = Device::flex();
    let loaded = load_model(
        &fx.join("weights.safetensors").to_string_lossy(),
        &opts,
        &device,
    )
    .expect("weights load");
    let data = ClassifyData::open(&dataset()).unwrap();
    assert_eq!(data.names, ["background", "tree"]);
    let ds = data.split("val").unwrap();
    assert!(ds.warnings.is_empty(), "{:?}", ds.warnings);
    let r = train::classify::validate_classifier(&loaded.model, &ds, 64, 16, 2, &device).unwrap();
    let mut worst = 0f32;
    for (p, t) in r.predictions.iter().zip(theirs.as_array().unwrap()) {
        for (a, b) in p.probs.iter().zip(t["probs"].as_array().unwrap()) {
            worst = worst.max((a - b.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("worst probability difference: {worst:e}");
    assert!(worst < 1e-4, "{worst}");
    let counted: u64 = r.confusion.iter().flatten().sum();
    assert_eq!(
        counted as usize,
        ds.len(),
        "each image once in the confusion matrix"
    );
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-cls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

#[test]
fn bad_layouts_are_named() {
    // A copy of the dataset with: an empty class folder, an image in the split's own folder, a corrupt image.
    let d = tmp("bad");
    copy_dir(&dataset(), &d);
    std::fs::create_dir_all(d.join("val/empty")).unwrap();
    let some = std::fs::read_dir(d.join("val/tree"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&some, d.join("val/stray.jpg")).unwrap();
    std::fs::write(d.join("val/tree/broken.jpg"), b"not a jpeg").unwrap();
    let o = val(&d, &["--json"]);
    let said = testkit::said(&o);
    // The model has two classes; the third folder is past them and skipped by name, as Ultralytics does.
    assert!(o.status.success(), "{said}");
    for want in ["stray.jpg", "broken.jpg", "empty"] {
        assert!(said.contains(want), "names {want}: {said}");
    }
    let ours: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ours["images"], 200, "the good images only");
    // A class of the dataset (a train/ folder) without images: named, and the run goes on.
    std::fs::create_dir_all(d.join("train/empty")).unwrap();
    let scan = ImageFolder::scan(
        &d.join("train"),
        &["background".into(), "tree".into(), "empty".into()],
    )
    .unwrap();
    assert!(
        scan.warnings
            .iter()
            .any(|w| w.contains("class 'empty' has no images")),
        "{:?}",
        scan.warnings
    );

    // Detection data given to a classifier, and a classification folder given to a detector.
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees");
    for (data, want) in [
        (trees.clone(), "detection dataset"),
        (trees.join("data.yaml"), "looks like a detection dataset"),
        (trees.join("images"), "no class folders"),
    ] {
        let o = val(&data, &[]);
        let said = testkit::said(&o);
        assert_eq!(o.status.code(), Some(1), "{}: {said}", data.display());
        assert!(
            said.contains(want),
            "{}: wanted '{want}': {said}",
            data.display()
        );
        assert!(!said.contains("panicked"), "{said}");
    }
    // A YAML naming the split folders reads the same images.
    let yaml = d.join("cls.yaml");
    std::fs::write(
        &yaml,
        format!("path: {}\ntrain: train\nval: val\n", dataset().display()),
    )
    .unwrap();
    let o = val(&yaml, &["--json"]);
    let said = testkit::said(&o);
    assert!(o.status.success(), "{said}");
    let ours: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(ours["images"], 200, "{said}");
    let detector = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/tests/fixtures/trained_mobileone/weights.safetensors");
    let o = Command::new(VAL)
        .arg("--weights")
        .arg(&detector)
        .arg("--data")
        .arg(dataset())
        .output()
        .unwrap();
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(said.contains("classification dataset"), "{said}");
    std::fs::remove_dir_all(&d).ok();
}
