//! Parity with the real Ultralytics package on the committed fixtures (made by scripts/make_fixture.py):
//! unfused forward, raw head maps, our MobileOne/Conv+BN fusion, and Ultralytics' fused weights; for the
//! classifiers (yolov8-cls, our MobileOneNet YAML) probabilities and logits.

use deploy::verify::Fixture;
use model::burn::tensor::Device;
use model::weights::{load_model, save_model, LoadOptions, WeightsFile};
use model::YoloModel;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    v
}

fn fixture(name: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Fixture::load(&dir, None).expect("fixture loads")
}

/// The checks of a report that ran through the engine.
fn engine_checks(report: &deploy::verify::Report) -> usize {
    report
        .checks
        .iter()
        .filter(|c| c.name.contains("(engine"))
        .count()
}

#[test]
fn every_fixture_matches_ultralytics() {
    let all = fixtures();
    assert!(
        all.len() >= 4,
        "fixtures for both configs, nc 3 and 80, square and not"
    );
    let mut classifiers = 0;
    for dir in all {
        let fx = Fixture::load(&dir, None).expect("fixture loads");
        let report = fx.verify(&Device::flex()).expect("verify runs");
        eprintln!("{}\n{}", dir.display(), report.render());
        assert!(
            report.ok(),
            "{} out of tolerance:\n{}",
            dir.display(),
            report.render()
        );
        if fx.spec.task() == model::Task::Classify {
            classifiers += 1;
            // Logits, probabilities unfused and fused (ours, Ultralytics' weights), the fused weights.
            assert!(report.checks.len() >= 5, "{}", dir.display());
            if deploy::engine::Level::detect().is_some() {
                assert_eq!(
                    engine_checks(&report),
                    2,
                    "{}: fused and unfused probabilities",
                    dir.display()
                );
            }
            continue;
        }
        // Two levels (YOLOv3-tiny): 9 checks of the burn model, and the engine's on every family model.
        assert!(report.checks.len() >= 9, "{}", dir.display());
        if deploy::engine::Level::detect().is_some() {
            assert_eq!(
                engine_checks(&report),
                4,
                "{}: fused and unfused boxes and scores through the engine",
                dir.display()
            );
        }
    }
    assert!(
        classifiers >= 2,
        "the classifier fixtures (yolov8-cls, MobileOneNet)"
    );
}

#[test]
fn a_wrong_weight_is_caught() {
    let mut fx = fixture("mobileone_nc3_96x128");
    let key = "model.2.dw_3x3_0.conv.bn.running_var";
    let t = fx
        .weights
        .tensors
        .get_mut(key)
        .expect("a MobileOne branch BN");
    t.data[0] *= 4.0;
    let report = fx.verify(&Device::flex()).expect("verify runs");
    assert!(
        !report.ok(),
        "a perturbed branch BN must break parity:\n{}",
        report.render()
    );
}

#[test]
fn fused_weights_key_names_are_ultralytics_ones() {
    let fx = fixture("mobileone_nc3_96x128");
    let keys: Vec<&String> = fx.fused_weights.tensors.keys().collect();
    for k in [
        "model.1.dw_reparam.weight",
        "model.1.pw_reparam.bias",
        "model.0.conv.bias",
    ] {
        assert!(
            keys.iter().any(|x| x.as_str() == k),
            "{k} in Ultralytics' fused state_dict"
        );
    }
    let unfused: Vec<&String> = fx.weights.tensors.keys().collect();
    for k in [
        "model.1.dw_3x3_3.conv.conv.weight",
        "model.1.dw_1x1.conv.bn.running_mean",
        "model.4.0.dw_bn_layer.weight",
        "model.4.1.pw_1x1_0.conv.conv.weight",
        "model.22.dfl.conv.weight",
    ] {
        assert!(
            unfused.iter().any(|x| x.as_str() == k),
            "{k} in the unfused state_dict"
        );
    }
    // The seed's branch convs are bias-free (`conv_an`, bias=False), in Ultralytics' state_dict and ours.
    assert!(!unfused.iter().any(|k| k.ends_with(".conv.conv.bias")));
    let ours = YoloModel::new(&fx.spec, &Device::flex());
    let our_keys: Vec<String> = model::weights::state_dict(&ours).into_keys().collect();
    assert_eq!(
        our_keys,
        unfused.iter().map(|k| k.to_string()).collect::<Vec<_>>()
    );
}

#[test]
fn save_then_load_round_trips_with_metadata_only() {
    let fx = fixture("v8_nc80_64x96");
    let device = Device::flex();
    let mut m = YoloModel::new(&fx.spec, &device);
    model::weights::load_state_dict(&mut m, &fx.weights.tensors, "fixture").expect("load");
    let dir = std::env::temp_dir().join(format!("yolo-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names: Vec<String> = (0..80).map(|i| format!("c{i}")).collect();
    for fused in [false, true] {
        let mut mm = if fused { m.clone().fuse() } else { m.clone() };
        let path = dir.join(format!("w{fused}.safetensors"));
        save_model(&mut mm, &path, &names, &[]).expect("save");
        let loaded = load_model(path.to_str().unwrap(), &LoadOptions::default(), &device)
            .expect("load back");
        assert_eq!(loaded.names, names);
        let lm = loaded.model;
        assert_eq!(lm.is_fused(), fused);
        let x = model::burn::tensor::Tensor::<4>::ones([1, 3, 64, 96], &device) * 0.5;
        let a = mm.forward(x.clone()).into_data();
        let b = lm.forward(x).into_data();
        a.assert_approx_eq::<f32>(&b, model::burn::tensor::Tolerance::absolute(1e-6));
        let no_tmp = std::fs::read_dir(&dir)
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp"));
        assert!(no_tmp, "atomic save leaves no temp file");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_weights_list_every_problem_in_one_error() {
    let fx = fixture("mobileone_nc3_96x128");
    let device = Device::flex();
    let mut sd = fx.weights.tensors.clone();
    sd.remove("model.0.conv.weight");
    sd.insert("model.99.bogus".into(), sd["model.0.bn.weight"].clone());
    sd.get_mut("model.0.bn.bias").unwrap().shape = vec![3];
    let mut m = YoloModel::new(&fx.spec, &device);
    let e = model::weights::load_state_dict(&mut m, &sd, "bad.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad.safetensors"), "{e}");
    assert!(e.contains("missing: model.0.conv.weight"), "{e}");
    assert!(e.contains("unexpected: model.99.bogus"), "{e}");
    assert!(e.contains("wrong shape: model.0.bn.bias"), "{e}");

    // Unfused weights into a fused model: the BN keys are unexpected, the fused biases missing.
    let mut fused = YoloModel::new(&fx.spec, &device).fuse();
    let e = model::weights::load_state_dict(&mut fused, &fx.weights.tensors, "w.safetensors")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing: model.1.dw_reparam.weight"), "{e}");
}

#[test]
fn truncated_file_is_a_clear_error() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v8_nc80_64x96/weights.safetensors");
    let bytes = std::fs::read(&src).unwrap();
    let e = WeightsFile::from_bytes(&bytes[..bytes.len() / 2], "half.safetensors")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("half.safetensors") && e.contains("truncated"),
        "{e}"
    );
    let e = load_model(
        src.to_str().unwrap(),
        &LoadOptions::default(),
        &Device::flex(),
    )
    .err()
    .expect("no YAML in a foreign file")
    .to_string();
    assert!(e.contains("--config"), "{e}");
}

#[test]
fn a_file_without_our_metadata_is_read_in_the_structure_its_tensors_fill() {
    // The package's own state_dicts (no metadata): unfused and fused, for every family fixture.
    for dir in fixtures() {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
        let opts = LoadOptions {
            config: Some(dir.join("model.yaml").to_string_lossy().into_owned()),
            spec: model::SpecOptions {
                scale: meta["scale"]
                    .as_str()
                    .map(String::from)
                    .filter(|s| !s.is_empty()),
                nc: meta["nc"].as_u64().map(|n| n as usize),
            },
        };
        for (file, fused) in [
            ("weights.safetensors", false),
            ("fused_weights.safetensors", true),
        ] {
            let path = dir.join(file);
            let w = WeightsFile::read(&path.to_string_lossy()).unwrap();
            assert!(!w.metadata.contains_key(model::weights::meta::FUSED));
            let loaded = load_model(&path.to_string_lossy(), &opts, &Device::flex())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(loaded.model.is_fused(), fused, "{}", path.display());
        }
    }
}
