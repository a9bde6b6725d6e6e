//! `info` against Ultralytics' own summaries: parameter counts exactly, GFLOPs within 1%, unfused and fused.
//! tests/fixtures/info.json (scripts/make_info_fixture.py): every scale of both configs; family_info.json
//! (scripts/make_family_fixtures.py): Ultralytics' own YOLO family YAMLs, unchanged (configs/ultralytics),
//! strides included; cls_info.json (scripts/make_cls_info_fixture.py): classifiers (yolov8-cls at every scale,
//! yolo11-cls, our MobileOneNet YAML) at 640 and 224. The figures come from the built model's lowering (`YoloModel::dry_run`); the spec's
//! own pre-build estimate is checked against them.

use model::burn::tensor::Device;
use model::info::model_info;
use model::{ModelSpec, SpecOptions, YoloModel};
use serde_json::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn parameters_and_gflops_match_ultralytics() {
    check_summaries("info.json", 14);
}

#[test]
fn ultralytics_family_yamls_match_the_package() {
    check_summaries("family_info.json", 40);
}

#[test]
fn classifiers_match_the_package() {
    check_summaries("cls_info.json", 12);
}

fn check_summaries(fixture: &str, min_rows: usize) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fixture),
    )
    .expect("info fixture");
    let fx: Value = serde_json::from_str(&text).expect("json");
    let rows = fx["models"].as_array().expect("models");
    assert!(rows.len() >= min_rows, "{fixture}: {} rows", rows.len());
    let mut worst_gflops = 0f64;
    for r in rows {
        let cfg = root().join(r["config"].as_str().unwrap());
        let scale = r["scale"].as_str().unwrap().to_string();
        // The family YAMLs without `scales` (YOLOv3) use their own multiples.
        let scale_opt = (!scale.is_empty()).then(|| scale.clone());
        let nc = r["nc"].as_u64().unwrap() as usize;
        let spec = ModelSpec::from_file(
            cfg.to_str().unwrap(),
            &SpecOptions {
                scale: scale_opt,
                nc: Some(nc),
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
        let built = YoloModel::new(&spec, &Device::flex());
        let classifier = built.task() == model::Task::Classify;
        assert_eq!(classifier, fixture.starts_with("cls"), "{}", cfg.display());
        // The strides and FLOPs a spec declares before anything is built (imgsz checks, the size guard) must
        // be the ones the built model's lowering gives.
        if !classifier {
            assert_eq!(
                spec.strides(),
                built.detect().strides,
                "{} declared strides",
                cfg.display()
            );
        }
        if let Some(strides) = r.get("strides") {
            let ours: Vec<u64> = built.detect().strides.iter().map(|s| *s as u64).collect();
            let theirs: Vec<u64> = strides
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
                .collect();
            assert_eq!(ours, theirs, "{} strides", cfg.display());
        }
        let info = model_info(&built, 640, 640).unwrap();
        for (fused, ours) in [(false, info.gflops), (true, info.fused_gflops)] {
            let declared = model::shapes::gflops(&spec, 640, 640, fused);
            assert!(
                (declared - ours).abs() <= 1e-9 * ours,
                "{} fused {fused}: declared {declared} vs lowering {ours} GFLOPs",
                cfg.display()
            );
        }
        if let Some(theirs) = r.get("gflops_224") {
            let at224 = model_info(&built, 224, 224).unwrap();
            for (ours, theirs) in [
                (at224.gflops, theirs.as_f64().unwrap()),
                (at224.fused_gflops, r["fused_gflops_224"].as_f64().unwrap()),
            ] {
                let rel = (ours - theirs).abs() / theirs;
                worst_gflops = worst_gflops.max(rel);
                assert!(
                    rel < 0.01,
                    "{} at 224: ours {ours:.5} vs Ultralytics {theirs:.5}",
                    cfg.display()
                );
            }
        }
        let what = format!("{} scale {scale} nc {nc}", r["config"]);
        for (ours, key) in [
            (info.layers.len(), "layers"),
            (info.parameters, "parameters"),
            (info.gradients, "gradients"),
            (info.fused_parameters, "fused_parameters"),
        ] {
            assert_eq!(ours as u64, r[key].as_u64().unwrap(), "{what} {key}");
        }
        for (ours, key) in [(info.gflops, "gflops"), (info.fused_gflops, "fused_gflops")] {
            let theirs = r[key].as_f64().unwrap();
            let rel = (ours - theirs).abs() / theirs;
            worst_gflops = worst_gflops.max(rel);
            assert!(
                rel < 0.01,
                "{what} {key}: ours {ours:.4} vs Ultralytics {theirs:.4}"
            );
        }
    }
    eprintln!("worst GFLOPs relative difference: {worst_gflops:.2e}");
}

#[test]
fn scaled_file_name_resolves_to_the_unified_yaml() {
    let p = root().join("configs/yolov8n-mobileone.yaml");
    let spec = ModelSpec::from_file(p.to_str().unwrap(), &SpecOptions::default()).expect("spec");
    assert_eq!(spec.scale, "n");
    let p = root().join("configs/yolov8-mobileone.yaml");
    let spec = ModelSpec::from_file(p.to_str().unwrap(), &SpecOptions::default()).expect("spec");
    assert_eq!(spec.scale, "n", "no letter: the first scale");
    let p = root().join("configs/yolov8s.yaml");
    let spec = ModelSpec::from_file(p.to_str().unwrap(), &SpecOptions::default()).expect("spec");
    assert_eq!(spec.scale, "s");
}
