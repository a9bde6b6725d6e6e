//! `deploy export` as a user runs it: on weights with strong BatchNorm statistics (the parity fixtures) at
//! 640 the calibrated fusion check passes and the files are written; an all-NaN model is refused with
//! nothing written; a deliberately broken fold fails the same check that passes the real one.

use deploy::export::check_fusion;
use deploy::verify::Fixture;
use model::burn::tensor::{Device, Distribution, Tensor};
use model::weights::{load_state_dict, to_safetensors_bytes, WeightsFile};
use model::YoloModel;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-export-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn export(weights: &Path, fixture: &Path, nc: usize, out: &Path, imgsz: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deploy"))
        .arg("export")
        .arg("--weights")
        .arg(weights)
        .arg("--config")
        .arg(fixture.join("model.yaml"))
        .args(["--scale", "t", "--nc", &nc.to_string(), "--imgsz", imgsz])
        .args(["--format", "safetensors,onnx"])
        .arg("--out")
        .arg(out)
        .output()
        .expect("the deploy binary runs")
}

#[test]
fn strong_batchnorm_weights_export_at_640() {
    for (name, nc) in [("mobileone_nc3_96x128", 3), ("v8_nc80_64x96", 80)] {
        let fx = fixture_dir(name);
        let out = tmpdir(name);
        let o = export(&fx.join("weights.safetensors"), &fx, nc, &out, "640");
        eprintln!("{name}:\n{}", testkit::said(&o));
        assert!(o.status.success(), "{}", testkit::said(&o));
        for f in ["weights_fused.safetensors", "weights_fused.onnx"] {
            assert!(out.join(f).exists(), "{f}");
        }
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn an_all_nan_model_is_refused_and_nothing_is_written() {
    let fx = fixture_dir("mobileone_nc3_96x128");
    let dir = tmpdir("nan");
    let mut w = WeightsFile::read(&fx.join("weights.safetensors").to_string_lossy()).unwrap();
    for t in w.tensors.values_mut() {
        t.data.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let nan = dir.join("nan.safetensors");
    std::fs::write(&nan, to_safetensors_bytes(&w.tensors, &w.metadata).unwrap()).unwrap();
    let out = dir.join("out");
    let o = export(&nan, &fx, 3, &out, "96,128");
    assert!(!o.status.success(), "{}", testkit::said(&o));
    assert!(
        testkit::said(&o).contains("non-finite outputs"),
        "{}",
        testkit::said(&o)
    );
    assert!(
        !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
        "nothing written"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_broken_fold_fails_the_check_the_real_one_passes() {
    let fx = Fixture::load(&fixture_dir("mobileone_nc3_96x128"), None).unwrap();
    let device = Device::flex();
    let mut m = YoloModel::new(&fx.spec, &device);
    load_state_dict(&mut m, &fx.weights.tensors, "fixture").unwrap();
    device.seed(3);
    let inputs = vec![(
        "random".to_string(),
        Tensor::<4>::random([1, 3, 256, 256], Distribution::Uniform(0.0, 1.0), &device),
    )];
    let fused = m.clone().fuse();
    let good = check_fusion(&m, &fused, &inputs).unwrap();
    eprintln!("correct fold:\n{}", good.render());
    assert!(good.ok(), "{}", good.render());

    // Every reparameterized kernel 0.05% too large: what folding with BatchNorm eps 1e-5 instead of
    // Ultralytics' 1e-3 does on these statistics (running_var 0.5-2: sqrt((v + 1e-3) / (v + 1e-5)) - 1 is
    // 2.5e-4 to 1e-3).
    let mut sd = model::weights::state_dict(&fused.clone());
    let mut changed = 0;
    for (k, t) in sd.iter_mut() {
        if k.ends_with("_reparam.weight") {
            t.data.iter_mut().for_each(|v| *v *= 1.0005);
            changed += 1;
        }
    }
    assert!(
        changed >= 16,
        "dw and pw of every MobileOne block: {changed}"
    );
    let mut broken = YoloModel::new(&fx.spec, &device).fuse();
    load_state_dict(&mut broken, &sd, "broken").unwrap();
    let bad = check_fusion(&m, &broken, &inputs).unwrap();
    eprintln!("broken fold:\n{}", bad.render());
    assert!(!bad.ok(), "{}", bad.render());
}

/// A classifier exports through the binary (ONNX with its softmax output) and predicts: `labels/NAME.txt` with
/// Ultralytics' `prob name` lines for the five most probable classes (here the two), the annotated image, the
/// same probabilities as the library's. Track, tiles and bench, which need boxes, refuse it naming the file.
#[test]
fn a_classifier_exports_and_predicts_and_the_box_commands_refuse_it() {
    let fx = fixture_dir("v8cls_nc5_64");
    let out = tmpdir("cls");
    let o = export(&fx.join("weights.safetensors"), &fx, 5, &out, "64");
    let said = testkit::said(&o);
    assert!(o.status.success(), "{said}");
    for f in ["weights_fused.safetensors", "weights_fused.onnx"] {
        assert!(out.join(f).exists(), "{f}: {said}");
    }
    let fused = out.join("weights_fused.safetensors");
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees_cls/val/tree");
    let run = |cmd: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .arg(cmd)
            .arg("--weights")
            .arg(&fused)
            .arg("--source")
            .arg(&images)
            .arg("--out")
            .arg(out.join(cmd))
            .args(extra)
            .output()
            .expect("the deploy binary runs")
    };
    let o = run("predict", &["--imgsz", "64", "--save-txt", "--save-json"]);
    let said = testkit::said(&o);
    assert!(o.status.success(), "{said}");
    let n = std::fs::read_dir(&images).unwrap().count();
    assert!(n >= 50, "{n} images in {}", images.display());
    assert!(
        said.contains(&format!("{n} images (0 skipped), classified")),
        "{said}"
    );
    let first = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let stem = first.file_stem().unwrap().to_string_lossy().into_owned();
    let txt =
        std::fs::read_to_string(out.join("predict/labels").join(format!("{stem}.txt"))).unwrap();
    let lines: Vec<&str> = txt.lines().collect();
    assert_eq!(lines.len(), 5, "nc 5: five lines: {txt}");
    // The library on the same image: the same classes in the same order, probabilities to 2 decimals.
    let loaded = model::weights::load_model(
        &fused.to_string_lossy(),
        &Default::default(),
        &Device::flex(),
    )
    .unwrap();
    let img = data::image_ops::read_rgb(&first).unwrap();
    let x = Tensor::<4>::from_data(
        model::burn::tensor::TensorData::new(data::classify::eval_input(&img, 64), [1, 3, 64, 64]),
        &Device::flex(),
    );
    let probs: Vec<f32> = loaded
        .model
        .classify(x)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    for (line, &c) in lines.iter().zip(&order) {
        let (p, name) = line.split_once(' ').unwrap();
        assert_eq!(name, loaded.names[c], "{txt}");
        assert!(
            (p.parse::<f32>().unwrap() - probs[c]).abs() <= 0.005 + 1e-6,
            "{line} vs {}",
            probs[c]
        );
    }
    assert!(out.join("predict").join(format!("{stem}.jpg")).exists());
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("predict/predictions.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json.as_array().unwrap().len(), n);

    for (cmd, extra) in [("track", &[][..]), ("predict", &["--tile", "64"][..])] {
        let o = run(cmd, extra);
        let said = testkit::said(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {said}");
        assert!(
            said.contains("weights_fused.safetensors") && said.contains("a classification model"),
            "{cmd}: {said}"
        );
        assert!(!said.contains("panicked"), "{cmd}: {said}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["bench", "--config"])
        .arg(fx.join("model.yaml"))
        .args(["--scale", "t", "--nc", "5", "--imgsz", "64"])
        .output()
        .expect("the deploy binary runs");
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(1), "bench: {said}");
    assert!(said.contains("a classification model"), "bench: {said}");
    std::fs::remove_dir_all(&out).ok();
}
