//! `export` end to end on Ultralytics fixtures: the fused safetensors, burn record and ONNX file each
//! reproduce Ultralytics' fused output; the ONNX graph runs in tract (a pure-Rust ONNX runtime) with a
//! dynamic batch; bad input leaves nothing behind.

use deploy::export::{export, load_burn_record, ExportOptions, Format};
use deploy::verify::{compare_output, Fixture, Report};
use model::burn::tensor::{Device, Tensor, TensorData};
use model::weights::{host, load_model, save_model, HostTensor, LoadOptions};
use model::YoloModel;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

fn fixture(name: &str) -> Fixture {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Fixture::load(&dir, None).expect("fixture loads")
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-export-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The fixture's unfused weights saved as our own file (YAML and names in the metadata).
fn own_weights(fx: &Fixture, dir: &Path) -> PathBuf {
    let mut m = YoloModel::new(&fx.spec, &Device::flex());
    model::weights::load_state_dict(&mut m, &fx.weights.tensors, "fixture").unwrap();
    let p = dir.join("best.safetensors");
    let names: Vec<String> = (0..fx.meta.nc).map(|i| format!("k{i}")).collect();
    save_model(&mut m, &p, &names, &[]).unwrap();
    p
}

fn run_tract(onnx: &Path, x: &HostTensor) -> HostTensor {
    let s = &x.shape;
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .expect("tract reads the ONNX file")
        .with_input_fact(0, f32::fact([s[0], s[1], s[2], s[3]]).into())
        .unwrap()
        .into_optimized()
        .expect("tract optimises the graph")
        .into_runnable()
        .unwrap();
    let input =
        tract_ndarray::Array4::from_shape_vec((s[0], s[1], s[2], s[3]), x.data.clone()).unwrap();
    let out = model
        .run(tvec!(tract_onnx::prelude::Tensor::from(input).into()))
        .expect("tract runs");
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    HostTensor {
        shape: view.shape().to_vec(),
        data: view.iter().copied().collect(),
    }
}

fn export_fixture(name: &str) {
    let fx = fixture(name);
    let dir = tmpdir(name);
    let weights = own_weights(&fx, &dir);
    let device = Device::flex();
    let loaded = load_model(weights.to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
    let [h, w] = fx.meta.imgsz;
    let out = dir.join("out");
    let opts = ExportOptions {
        formats: vec![Format::Safetensors, Format::Onnx, Format::Burn],
        imgsz: (h, w),
        fuse: true,
        out: out.clone(),
        stem: "best".into(),
        image: None,
    };
    let s = export(loaded.model, &loaded.names, &opts, &device).expect("export");
    assert!(
        s.report.ok() && s.report.checks.len() == 4,
        "{}",
        s.report.render()
    );
    assert!(s.params.1 < s.params.0 && s.gflops.1 < s.gflops.0);
    assert_eq!(s.files.len(), 3);
    let expected = fx.expected.tensors.get("fused_output").unwrap();

    // safetensors: loads by itself (metadata), is fused, and reproduces Ultralytics' fused output.
    let st = out.join("best_fused.safetensors");
    let lm = load_model(st.to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
    assert!(lm.model.is_fused());
    assert_eq!(
        lm.file
            .metadata
            .get(model::weights::meta::FUSED)
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(lm.names[0], "k0");
    let x = Tensor::<4>::from_data(
        TensorData::new(fx.input.data.clone(), fx.input.shape.clone()),
        &device,
    );
    let mut r = Report::default();
    compare_output(
        "safetensors",
        &host(lm.model.forward(x.clone())),
        expected,
        &mut r,
    );
    // Same keys as Ultralytics' fused state_dict.
    let keys: Vec<String> = model::weights::state_dict(&lm.model).into_keys().collect();
    let theirs: Vec<String> = fx.fused_weights.tensors.keys().cloned().collect();
    assert_eq!(keys, theirs);

    // burn record: loads into the fused structure.
    let skeleton = YoloModel::new(&fx.spec, &device).fuse();
    let bm = load_burn_record(&out.join("best_fused.bpk"), skeleton).expect("burn record loads");
    compare_output(
        "burn record",
        &host(bm.forward(x.clone())),
        expected,
        &mut r,
    );

    // ONNX in tract: batch 1 against Ultralytics, batch 2 against burn (dynamic batch).
    let onnx = out.join("best_fused.onnx");
    compare_output(
        "onnx (tract)",
        &run_tract(&onnx, &fx.input),
        expected,
        &mut r,
    );
    let x2 = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
    let hx2 = host(x2.clone());
    let burn2 = host(bm.forward(x2));
    let tract2 = run_tract(&onnx, &hx2);
    assert_eq!(tract2.shape, burn2.shape);
    compare_output("onnx batch 2 (tract) vs burn", &tract2, &burn2, &mut r);
    eprintln!("{name}\n{}", r.render());
    assert!(r.ok(), "{}", r.render());
    std::fs::remove_dir_all(&dir).ok();
}

/// A classifier through every format: the fusion check on its logits, the safetensors and burn record
/// reloaded, the ONNX graph (softmax output `(batch, nc)`) in tract, all against Ultralytics' probabilities.
fn export_classifier(name: &str) {
    let fx = fixture(name);
    assert_eq!(fx.spec.task(), model::Task::Classify);
    let dir = tmpdir(name);
    let weights = own_weights(&fx, &dir);
    let device = Device::flex();
    let loaded = load_model(weights.to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
    assert_eq!(
        loaded.model.task(),
        model::Task::Classify,
        "the saved YAML says classifier"
    );
    let [h, w] = fx.meta.imgsz;
    let out = dir.join("out");
    let opts = ExportOptions {
        formats: vec![Format::Safetensors, Format::Onnx, Format::Burn],
        imgsz: (h, w),
        fuse: true,
        out: out.clone(),
        stem: "best".into(),
        image: None,
    };
    let s = export(loaded.model, &loaded.names, &opts, &device).expect("export");
    // Class logits on the image and on the random batch.
    assert!(
        s.report.ok() && s.report.checks.len() == 2,
        "{}",
        s.report.render()
    );
    assert!(s.params.1 < s.params.0 && s.gflops.1 < s.gflops.0);
    let expected = fx.expected.tensors.get("fused_output").unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(fx.input.data.clone(), fx.input.shape.clone()),
        &device,
    );
    let mut r = Report::default();
    let mut check = |name: &str, ours: &HostTensor, theirs: &HostTensor| {
        assert_eq!(ours.shape, theirs.shape, "{name}");
        let d = ours
            .data
            .iter()
            .zip(&theirs.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        r.checks.push(deploy::verify::Check {
            name: name.into(),
            max_abs: d,
            tol: deploy::verify::SCORE_TOL,
        });
    };
    let st = out.join("best_fused.safetensors");
    let lm = load_model(st.to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
    assert!(lm.model.is_fused());
    check("safetensors", &host(lm.model.classify(x.clone())), expected);
    let keys: Vec<String> = model::weights::state_dict(&lm.model).into_keys().collect();
    let theirs: Vec<String> = fx.fused_weights.tensors.keys().cloned().collect();
    assert_eq!(
        keys, theirs,
        "Ultralytics' fused keys, the Linear weight 2-d"
    );

    let skeleton = YoloModel::new(&fx.spec, &device).fuse();
    let bm = load_burn_record(&out.join("best_fused.bpk"), skeleton).expect("burn record loads");
    check("burn record", &host(bm.classify(x.clone())), expected);

    let onnx = out.join("best_fused.onnx");
    check("onnx (tract)", &run_tract(&onnx, &fx.input), expected);
    let x2 = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
    let burn2 = host(bm.classify(x2.clone()));
    check(
        "onnx batch 2 (tract) vs burn",
        &run_tract(&onnx, &host(x2)),
        &burn2,
    );
    eprintln!("{name}\n{}", r.render());
    assert!(r.ok(), "{}", r.render());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn export_classifiers_all_formats() {
    export_classifier("v8cls_nc5_64");
    export_classifier("mobileone_cls_nc5_96x64");
}

#[test]
fn export_yolov8_all_formats() {
    export_fixture("v8_nc80_64x96");
}

#[test]
fn export_mobileone_all_formats() {
    export_fixture("mobileone_nc3_96x128");
}

#[test]
fn export_mobileone_with_se_all_formats() {
    export_fixture("mobileone_se_nc80_64");
}

/// Ultralytics' family YAMLs (GhostConv, C2, ConvTranspose2d with ReLU, max pools and zero padding, four
/// levels): every block's own lowering makes an ONNX graph that reproduces the package's fused output.
#[test]
fn export_family_models_all_formats() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("family_"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for n in names {
        export_fixture(&n);
    }
}

#[test]
fn unwritable_out_dir_and_bad_sizes_leave_nothing() {
    let fx = fixture("v8_nc3_64");
    let dir = tmpdir("bad");
    let weights = own_weights(&fx, &dir);
    let device = Device::flex();
    let load = || load_model(weights.to_str().unwrap(), &LoadOptions::default(), &device).unwrap();
    let blocker = dir.join("a_file");
    std::fs::write(&blocker, b"x").unwrap();
    let mut opts = ExportOptions {
        formats: vec![Format::Safetensors, Format::Onnx],
        imgsz: (64, 64),
        fuse: true,
        out: blocker.join("out"),
        stem: "best".into(),
        image: None,
    };
    let l = load();
    let e = export(l.model, &l.names, &opts, &device).unwrap_err();
    assert!(
        format!("{e:#}").contains("cannot create the output folder"),
        "{e:#}"
    );

    opts.out = dir.join("out");
    opts.imgsz = (100, 100);
    let l = load();
    let e = export(l.model, &l.names, &opts, &device).unwrap_err();
    assert!(
        format!("{e:#}").contains("multiple of the max stride"),
        "{e:#}"
    );
    assert!(
        !opts.out.exists() || std::fs::read_dir(&opts.out).unwrap().next().is_none(),
        "nothing written"
    );

    opts.imgsz = (64, 64);
    opts.fuse = false;
    let l = load();
    let e = export(l.model, &l.names, &opts, &device).unwrap_err();
    assert!(
        format!("{e:#}").contains("ONNX export writes the fused graph"),
        "{e:#}"
    );

    // Weights that do not fit the config: one error listing the problems.
    let other = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/yolov8-mobileone.yaml");
    let lo = LoadOptions {
        config: Some(other.to_string_lossy().into_owned()),
        spec: model::SpecOptions {
            scale: Some("n".into()),
            nc: Some(3),
        },
    };
    let e = load_model(weights.to_str().unwrap(), &lo, &device)
        .err()
        .expect("mismatch")
        .to_string();
    assert!(e.contains("missing:") && e.contains("unexpected:"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
