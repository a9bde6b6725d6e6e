//! The `yolo` binary, driven the way an Ultralytics user drives `yolo`: verbs with key=value arguments,
//! checked against numbers made by the Ultralytics package.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `yolo ARGS` from the checkout: whether it succeeded, its stdout, and everything it said.
fn run(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_yolo"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success(), out, testkit::said(&o))
}

fn yolo(args: &[&str]) -> String {
    let (ok, out, said) = run(args);
    assert!(ok, "yolo {args:?}:\n{said}");
    out
}

/// `yolo info model=... json=True` reports Ultralytics' own parameter counts (crates/model/tests/fixtures).
#[test]
fn info_with_key_value_arguments_matches_ultralytics() {
    let fixture: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root().join("crates/model/tests/fixtures/info.json")).unwrap(),
    )
    .unwrap();
    let want = fixture["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["config"] == "configs/yolov8.yaml" && m["scale"] == "n" && m["nc"] == 80)
        .unwrap();
    let got: serde_json::Value =
        serde_json::from_str(&yolo(&["info", "model=configs/yolov8.yaml", "json=True"])).unwrap();
    assert_eq!(got["parameters"], want["parameters"]);
    assert_eq!(got["fused_parameters"], want["fused_parameters"]);
    // The same verb with --flags.
    let flags: serde_json::Value = serde_json::from_str(&yolo(&[
        "info",
        "--config",
        "configs/yolov8.yaml",
        "--json",
    ]))
    .unwrap();
    assert_eq!(got, flags);
}

/// `yolo detect predict model=W source=DIR ...` finds what Ultralytics' predict found with the same weights
/// (crates/deploy/tests/fixtures/trained_mobileone: its detections on the val tiles at imgsz 320, conf 0.01).
#[test]
fn predict_with_key_value_arguments_matches_ultralytics() {
    let fx = root().join("crates/deploy/tests/fixtures/trained_mobileone");
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.join("predictions.json")).unwrap()).unwrap();
    let run = want["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["imgsz"] == 320 && r["conf"] == 0.01)
        .unwrap();
    let out = std::env::temp_dir().join(format!("yolo-cli-predict-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let weights = format!("model={}", fx.join("weights.safetensors").display());
    let out_arg = format!("out={}", out.display());
    yolo(&[
        "detect",
        "predict",
        &weights,
        "source=datasets/trees/images/val",
        "imgsz=320",
        "conf=0.01",
        "save_json=True",
        "save_txt=True",
        "device=cpu",
        &out_arg,
    ]);
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap()).unwrap();
    let ours = ours.as_array().unwrap();
    let theirs = run["detections"].as_array().unwrap();
    assert!(
        theirs.len() > 1000,
        "{} detections in the fixture",
        theirs.len()
    );
    let iou = |a: [f64; 4], b: [f64; 4]| {
        let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
        let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
        let i = iw * ih;
        i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
    };
    let matched = theirs
        .iter()
        .filter(|t| {
            let tb: Vec<f64> = t["xyxy"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            ours.iter().any(|o| {
                let b: Vec<f64> = o["bbox"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap())
                    .collect();
                o["file_name"] == t["file_name"]
                    && o["category_id"] == t["cls"]
                    && iou(
                        [b[0], b[1], b[0] + b[2], b[1] + b[3]],
                        [tb[0], tb[1], tb[2], tb[3]],
                    ) >= 0.9
                    && (o["score"].as_f64().unwrap() - t["conf"].as_f64().unwrap()).abs() <= 0.01
            })
        })
        .count();
    let rate = matched as f64 / theirs.len() as f64;
    eprintln!("matched {matched} of {}", theirs.len());
    assert!(rate >= 0.95, "matched {matched} of {}", theirs.len());
    assert!(out.join("labels").read_dir().unwrap().count() == 14);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn check_reports_the_dataset() {
    let (ok, _, said) = run(&["check", "data=datasets/trees/data.yaml", "split=val"]);
    assert!(ok, "{said}");
    assert!(said.contains("val: 14 images found"), "{said}");
    assert!(said.contains("520 boxes"), "{said}");
}

/// Ultralytics' own family YAMLs (the forward fixtures' models, width 1/16) train for an epoch and export to
/// ONNX through the binary, as a user runs them.
#[test]
fn family_models_train_and_export() {
    let tmp = std::env::temp_dir().join(format!("yolo-family-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    data::synth::write_dataset(&data, 2, 8, 4, 128).unwrap();
    let fixtures = root().join("crates/deploy/tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("family_"))
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 12);
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let imgsz = if name.contains("p6") { "128" } else { "64" };
        let run = tmp.join(&name);
        let config = dir.join("model.yaml");
        let data_yaml = data.join("data.yaml");
        let flags = "--scale t --epochs 1 --batch 4 --nbs 4 --workers 1 --device cpu";
        let mut args = vec![
            "train",
            "--imgsz",
            imgsz,
            "--config",
            config.to_str().unwrap(),
        ];
        args.extend([
            "--data",
            data_yaml.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
        ]);
        args.extend(flags.split(' '));
        yolo(&args);
        let results = std::fs::read_to_string(run.join("results.csv")).unwrap();
        let last = results.lines().last().unwrap();
        assert_eq!(results.lines().count(), 2, "{name}: one epoch\n{results}");
        assert!(
            last.split(',')
                .skip(1)
                .all(|v| v.trim().parse::<f64>().is_ok_and(f64::is_finite)),
            "{name}: {last}"
        );
        let out = run.join("export");
        yolo(&[
            "export",
            "--weights",
            run.join("weights/last.safetensors").to_str().unwrap(),
            "--format",
            "onnx,safetensors",
            "--imgsz",
            imgsz,
            "--out",
            out.to_str().unwrap(),
        ]);
        let onnx = std::fs::read_dir(&out)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.path().extension().is_some_and(|x| x == "onnx"));
        assert!(
            onnx.is_some_and(|e| e.metadata().unwrap().len() > 10_000),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// The same run in both argument styles gives the same result: every boolean is `--name [true|false]`
/// (`save=False` turns a default-on output off), `--imgsz` takes `H,W` in every verb, `--device` defaults to
/// auto everywhere; a bad value is refused the same way in both.
#[test]
fn flags_and_key_value_arguments_are_one_argument_set() {
    let tmp = std::env::temp_dir().join(format!("yolo-styles-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let fx = root().join("crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors");
    let weights = fx.to_str().unwrap();
    let (a, b) = (tmp.join("flags"), tmp.join("keys"));
    yolo(&[
        "predict",
        "--weights",
        weights,
        "--source",
        "datasets/trees/images/val",
        "--imgsz",
        "256,320",
        "--conf",
        "0.05",
        "--save-txt",
        "--save-conf",
        "false",
        "--save",
        "false",
        "--fuse",
        "false",
        "--device",
        "cpu",
        "--out",
        a.to_str().unwrap(),
    ]);
    let (wk, ok) = (format!("model={weights}"), format!("out={}", b.display()));
    yolo(&[
        "predict",
        &wk,
        "source=datasets/trees/images/val",
        "imgsz=[256, 320]",
        "conf=0.05",
        "save_txt=True",
        "save_conf=False",
        "save=False",
        "fuse=False",
        "device=cpu",
        &ok,
    ]);
    let files = |d: &Path| {
        let mut v: Vec<(String, String)> = std::fs::read_dir(d.join("labels"))
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let (fa, fb) = (files(&a), files(&b));
    assert_eq!(fa.len(), 14, "a label file per tile");
    assert_eq!(fa, fb, "the same labels in both styles");
    // save_conf false: five columns; save false: no annotated images.
    assert!(fa
        .iter()
        .flat_map(|f| f.1.lines())
        .all(|l| l.split(' ').count() == 5));
    for d in [&a, &b] {
        let images = std::fs::read_dir(d).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "jpg")
        });
        assert_eq!(
            images.count(),
            0,
            "{}: --save false writes no images",
            d.display()
        );
    }

    // info at H,W: the same table in both styles, and FLOPs that follow the area.
    let info = |args: &[&str]| -> serde_json::Value { serde_json::from_str(&yolo(args)).unwrap() };
    let square = info(&[
        "info",
        "model=configs/yolov8.yaml",
        "imgsz=640",
        "json=True",
    ]);
    let rect = info(&[
        "info",
        "model=configs/yolov8.yaml",
        "imgsz=320,640",
        "json=True",
    ]);
    let flags = info(&[
        "info",
        "--config",
        "configs/yolov8.yaml",
        "--imgsz",
        "320x640",
        "--json",
    ]);
    assert_eq!(rect, flags);
    let (g1, g2) = (
        square["gflops"].as_f64().unwrap(),
        rect["gflops"].as_f64().unwrap(),
    );
    assert!(
        (g2 / g1 - 0.5).abs() < 0.01,
        "half the pixels, half the FLOPs: {g1} {g2}"
    );

    // A size that is not a multiple of the stride is refused in both styles, before anything loads.
    let bad: [&[&str]; 2] = [
        &["info", "model=configs/yolov8.yaml", "imgsz=320,100"],
        &[
            "info",
            "--imgsz",
            "320,100",
            "--config",
            "configs/yolov8.yaml",
        ],
    ];
    for args in bad {
        let (ok, _, said) = run(args);
        assert!(!ok && said.contains("multiple of 32"), "{args:?}: {said}");
    }
    std::fs::remove_dir_all(&tmp).ok();
}

/// `--model` takes a YAML or a weights file in every command, as `--config` / `--weights` do; a YAML where
/// trained weights are needed, an unknown extension, or the same thing named twice is an error saying so.
#[test]
fn model_argument_takes_a_yaml_or_weights_everywhere() {
    let pt = "crates/model/tests/fixtures/pt/tiny.pt";
    let yaml = "configs/yolov8-mobileone.yaml";
    assert_eq!(
        yolo(&["info", "--model", yaml, "--imgsz", "320"]),
        yolo(&["info", "--config", yaml, "--imgsz", "320"])
    );
    assert_eq!(
        yolo(&["info", &format!("model={pt}"), "--json"]),
        yolo(&["info", "--weights", pt, "--json"])
    );
    let refused = [
        (
            vec![
                "predict",
                "--model",
                yaml,
                "--source",
                "datasets/trees/images/val",
            ],
            "not a model YAML",
        ),
        (vec!["val", "--model", yaml], "not a model YAML"),
        (vec!["info", "--model", "notes.txt"], "a model is a YAML"),
        (
            vec!["info", "--model", yaml, "--config", yaml],
            "give the YAML once",
        ),
        (
            vec![
                "export",
                "--model",
                pt,
                "--weights",
                pt,
                "--out",
                "/nonexistent",
            ],
            "cannot be used with",
        ),
    ];
    for (args, says) in refused {
        let (ok, _, said) = run(&args);
        assert!(!ok && said.contains(says), "yolo {args:?}:\n{said}");
    }
}

/// `conf=-0.5` reaches the range check (a value starting with `-` is passed as `--conf=-0.5`, not as a flag).
#[test]
fn a_negative_value_in_key_value_form_reaches_the_check() {
    let w = "crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors";
    let (ok, _, said) = run(&[
        "predict",
        "conf=-0.5",
        "source=x.jpg",
        &format!("model={w}"),
    ]);
    assert!(!ok && said.contains("-0.5 is outside [0, 1]"), "{said}");
}

/// A bare model name resolves from any working folder (the shipped configs/ and configs/ultralytics/).
#[test]
fn a_bare_model_name_resolves_from_any_folder() {
    let elsewhere = std::env::temp_dir();
    for name in ["yolov8n-mobileone.yaml", "yolo11.yaml"] {
        let o = Command::new(env!("CARGO_BIN_EXE_yolo"))
            .args(["info", &format!("model={name}"), "imgsz=320"])
            .current_dir(&elsewhere)
            .output()
            .unwrap();
        let said = testkit::said(&o);
        assert!(
            o.status.success() && said.contains("parameters"),
            "{name}:\n{said}"
        );
    }
}

/// `yolo track` on still images: each image is its own source (Ultralytics resets the tracker when the path
/// changes), so every detection that may start a track is confirmed at once, ids 1.. in detection order; an
/// image with none keeps its plain detections, without ids. The fixture's detector scores low, so the tracker
/// YAML here starts tracks from 0.03. A bare tracker name resolves from any folder.
#[test]
fn track_on_images_numbers_each_images_tracks_from_one() {
    let fx = root().join("crates/deploy/tests/fixtures/trained_mobileone");
    let out = std::env::temp_dir().join(format!("yolo-cli-track-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let low = out.join("low.yaml");
    std::fs::write(
        &low,
        std::fs::read_to_string(root().join("configs/trackers/bytetrack.yaml"))
            .unwrap()
            .replace("track_high_thresh: 0.25", "track_high_thresh: 0.03")
            .replace("new_track_thresh: 0.25", "new_track_thresh: 0.03")
            .replace("track_low_thresh: 0.1", "track_low_thresh: 0.005"),
    )
    .unwrap();
    let weights = format!("model={}", fx.join("weights.safetensors").display());
    let out_arg = format!("out={}", out.join("run").display());
    let tracker = format!("tracker={}", low.display());
    let said = yolo(&[
        "track",
        &weights,
        "source=datasets/trees/images/val",
        &tracker,
        "imgsz=320",
        "conf=0.005",
        "save_txt=True",
        "save_conf=True",
        "save_json=True",
        "save=False",
        "device=cpu",
        &out_arg,
    ]);
    assert!(said.contains(" tracks)"), "{said}");
    let (mut tracked, mut plain) = (0, 0);
    for e in std::fs::read_dir(out.join("run/labels")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let rows: Vec<Vec<f64>> = text
            .lines()
            .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
            .collect();
        if rows.iter().all(|r| r.len() == 7) && !rows.is_empty() {
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(r[6], (i + 1) as f64, "{text}");
                assert!(r[5] >= 0.03, "a track starts from 0.03: {text}");
            }
            tracked += 1;
        } else {
            assert!(rows.iter().all(|r| r.len() == 6 && r[5] < 0.03), "{text}");
            plain += 1;
        }
    }
    assert!(tracked > 0, "{tracked} tracked, {plain} plain");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run/predictions.json")).unwrap()).unwrap();
    let with_id = json
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["track_id"].is_u64())
        .count();
    assert!(with_id > 0, "no track_id in predictions.json");

    // The shipped botsort.yaml by its bare name, from a folder outside the checkout.
    let image = root().join("datasets/trees/images/val");
    let image = std::fs::read_dir(image)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let o = Command::new(env!("CARGO_BIN_EXE_yolo"))
        .arg("track")
        .arg(&weights)
        .arg(format!("source={}", image.display()))
        .args([
            "tracker=botsort.yaml",
            "imgsz=320",
            "device=cpu",
            "save=False",
        ])
        .arg(format!("out={}", out.join("bare").display()))
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", testkit::said(&o));
    std::fs::remove_dir_all(&out).ok();
}

/// The shipped MobileOneNet classifier through the verbs an Ultralytics user runs: `yolo classify train
/// model=...-cls.yaml data=FOLDER`, then val, export and predict on what it trained.
#[test]
fn the_mobileone_classifier_trains_validates_exports_and_predicts() {
    let tmp = std::env::temp_dir().join(format!("yolo-cls-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    let trees_cls = root().join("datasets/trees_cls");
    testkit::copy_class_images(&trees_cls, &data, "train", 16);
    testkit::copy_class_images(&trees_cls, &data, "val", 8);
    let run_dir = tmp.join("run");
    let (data_s, run_s) = (data.to_str().unwrap(), run_dir.to_str().unwrap());
    let out = yolo(&[
        "classify",
        "train",
        "model=configs/yolov8-mobileone-cls.yaml",
        &format!("data={data_s}"),
        "epochs=2",
        "imgsz=32",
        "batch=16",
        "workers=1",
        "device=cpu",
        &format!("out={run_s}"),
    ]);
    assert!(out.contains("final (epoch 2): top1"), "{out}");
    let csv = std::fs::read_to_string(run_dir.join("results.csv")).unwrap();
    assert!(
        csv.starts_with("epoch,time,train/loss,metrics/accuracy_top1"),
        "{csv}"
    );
    let best = run_dir.join("weights/best.safetensors");
    let best_s = best.to_str().unwrap();

    let val = yolo(&[
        "classify",
        "val",
        &format!("model={best_s}"),
        &format!("data={data_s}"),
        "imgsz=32",
        "json=True",
        "device=cpu",
    ]);
    let v: serde_json::Value = serde_json::from_str(&val).unwrap();
    assert_eq!(v["images"], 16, "{val}");
    assert_eq!(v["names"], serde_json::json!(["background", "tree"]));

    let exported = tmp.join("export");
    yolo(&[
        "export",
        &format!("model={best_s}"),
        "format=onnx,safetensors",
        "imgsz=32",
        &format!("out={}", exported.to_str().unwrap()),
    ]);
    let fused = exported.join("best_fused.safetensors");
    assert!(
        fused.exists(),
        "{:?}",
        std::fs::read_dir(&exported).unwrap().collect::<Vec<_>>()
    );
    let predicted = tmp.join("predict");
    yolo(&[
        "predict",
        &format!("model={}", fused.to_str().unwrap()),
        &format!("source={data_s}/val/tree"),
        "imgsz=32",
        "save_txt=True",
        &format!("out={}", predicted.to_str().unwrap()),
    ]);
    let labels: Vec<PathBuf> = std::fs::read_dir(predicted.join("labels"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(labels.len(), 8);
    let text = std::fs::read_to_string(&labels[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "both classes, most probable first: {text}");
    let probs: Vec<f64> = lines
        .iter()
        .map(|l| l.split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        (probs[0] + probs[1] - 1.0).abs() < 1e-3 && probs[0] >= probs[1],
        "{text}"
    );
    std::fs::remove_dir_all(&tmp).ok();
}

/// `yolo val` of an INT8 file (crates/deploy/tests/fixtures/int8_trained, `export --int8` of the trained
/// fixture) runs it on the engine in INT8 and scores as the float weights it came from, within 0.005; `yolo
/// train` refuses it as initial weights.
#[test]
fn int8_file_validates_on_the_engine_and_is_not_trained() {
    let val = |w: &str| -> (serde_json::Value, String) {
        let (ok, out, said) = run(&[
            "val",
            &format!("weights={w}"),
            "data=datasets/trees/data.yaml",
            "imgsz=320",
            "json=True",
        ]);
        assert!(ok, "{said}");
        (serde_json::from_str(&out).unwrap(), said)
    };
    let (float, _) = val("crates/deploy/tests/fixtures/trained_mobileone/weights.safetensors");
    let (int8, said) = val("crates/deploy/tests/fixtures/int8_trained/weights_int8.safetensors");
    assert!(said.contains("convolutions in INT8"), "{said}");
    for k in ["mAP50", "mAP50-95"] {
        let (a, b) = (float[k].as_f64().unwrap(), int8[k].as_f64().unwrap());
        eprintln!("{k}: float {a:.4}, INT8 {b:.4}");
        assert!((a - b).abs() <= 0.005, "{k}: float {a}, INT8 {b}");
    }
    let (ok, _, said) = run(&[
        "train",
        "--config",
        "configs/yolov8-mobileone.yaml",
        "--weights",
        "crates/deploy/tests/fixtures/int8_trained/weights_int8.safetensors",
        "--epochs",
        "1",
        "--out",
        &std::env::temp_dir()
            .join(format!("yolo-int8-train-{}", std::process::id()))
            .to_string_lossy(),
    ]);
    assert!(!ok);
    assert!(said.contains("an INT8 file"), "{said}");
}
