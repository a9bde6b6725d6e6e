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
