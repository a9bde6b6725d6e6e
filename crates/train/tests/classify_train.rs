//! Training a classifier end to end: through the `train` binary a run on image folders leaves Ultralytics'
//! classify run folder (results.csv with top-1/top-5 columns, results.png, confusion_matrix.png, best/last
//! weights) and `val` on its best weights reports the top-1 the run recorded for that epoch; in the library, a
//! classifier run stopped mid-epoch and resumed ends with the weights of an uninterrupted one; a detection
//! dataset or a wrong `--task` is refused with what a classifier expects.

use model::burn::tensor::Device;
use model::weights::WeightsFile;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use train::trainer::{TrainArgs, Trainer};

const TRAIN: &str = env!("CARGO_BIN_EXE_train");
const VAL: &str = env!("CARGO_BIN_EXE_val");

fn model_yaml() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/classify_step/model.yaml"
    )
    .into()
}

/// A small copy of datasets/trees_cls: the first `n_train` and `n_val` images of each class.
fn small_dataset(root: &Path, n_train: usize, n_val: usize) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees_cls");
    let dst = root.join("cls");
    testkit::copy_class_images(&src, &dst, "train", n_train);
    testkit::copy_class_images(&src, &dst, "val", n_val);
    dst
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-cls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().expect("the binary runs")
}

#[test]
fn a_classifier_trains_through_the_binary_and_val_agrees_with_its_run() {
    let root = tmp("bin");
    let data = small_dataset(&root, 24, 16);
    let out = root.join("run");
    let o = run(Command::new(TRAIN)
        .args([
            "--config",
            &model_yaml(),
            "--scale",
            "t",
            "--task",
            "classify",
            "--data",
        ])
        .arg(&data)
        .args("--epochs 3 --imgsz 32 --batch 8 --workers 2 --device cpu --out".split(' '))
        .arg(&out));
    let log = testkit::said(&o);
    assert!(o.status.success(), "{log}");
    assert!(log.contains("final (epoch 3): top1"), "{log}");
    for f in [
        "weights/last.safetensors",
        "weights/best.safetensors",
        "results.csv",
        "results.png",
        "confusion_matrix.png",
        "train_batch0.jpg",
        "args.yaml",
    ] {
        assert!(out.join(f).exists(), "{f}\n{log}");
    }
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "epoch,time,train/loss,metrics/accuracy_top1,metrics/accuracy_top5,val/loss,lr/pg0,lr/pg1,lr/pg2"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r[2].is_finite() && r[2] > 0.0, "train loss {r:?}");
        assert!(
            (0.0..=1.0).contains(&r[3]) && r[4] == 1.0,
            "two classes: top-5 is 1 {r:?}"
        );
        assert!(r[5].is_finite() && r[5] > 0.0, "val loss {r:?}");
    }
    // best.safetensors holds the epoch of the highest (top-1 + top-5) / 2, the first of equals.
    let best = rows
        .iter()
        .fold(None::<&Vec<f64>>, |b, r| match b {
            Some(b) if b[3] + b[4] >= r[3] + r[4] => Some(b),
            _ => Some(r),
        })
        .unwrap();
    let w = WeightsFile::read(&out.join("weights/best.safetensors").to_string_lossy()).unwrap();
    assert_eq!(
        w.metadata.get("epoch").map(String::as_str),
        Some(format!("{}", best[0]).as_str())
    );

    let o = run(Command::new(VAL)
        .arg("--weights")
        .arg(out.join("weights/best.safetensors"))
        .arg("--data")
        .arg(&data)
        .args([
            "--imgsz", "32", "--json", "--device", "cpu", "--plots", "--out",
        ])
        .arg(root.join("val")));
    assert!(o.status.success(), "{}", testkit::said(&o));
    assert!(
        root.join("val/confusion_matrix.png").exists(),
        "{}",
        testkit::said(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let top1 = v["top1"].as_f64().unwrap();
    assert!(
        (top1 - best[3]).abs() < 1e-4,
        "val top1 {top1}, the run's best epoch {best:?}"
    );
    assert_eq!(v["images"].as_u64(), Some(32));
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn wrong_data_or_task_is_refused_before_training() {
    let root = tmp("refuse");
    let trees = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees/data.yaml");
    let o = run(Command::new(TRAIN)
        .args(["--config", &model_yaml(), "--scale", "t", "--data"])
        .arg(&trees)
        .args(["--epochs", "1", "--device", "cpu", "--out"])
        .arg(root.join("a")));
    assert!(!o.status.success());
    assert!(
        testkit::said(&o).contains("detection dataset"),
        "{}",
        testkit::said(&o)
    );

    let o = run(Command::new(TRAIN)
        .args([
            "--config",
            &model_yaml(),
            "--task",
            "detect",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(root.join("b")));
    assert!(!o.status.success());
    let t = testkit::said(&o);
    assert!(
        t.contains("--task detect") && t.contains("classify model"),
        "{t}"
    );

    let o = run(Command::new(TRAIN)
        .args([
            "--config",
            &model_yaml(),
            "--auto-augment",
            "augmix",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(root.join("c")));
    assert!(!o.status.success());
    assert!(
        testkit::said(&o).contains("augmix are not"),
        "{}",
        testkit::said(&o)
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn trainer(a: TrainArgs, dir: PathBuf, max_steps: Option<u64>, resume: bool) -> Trainer {
    Trainer {
        args: a,
        resume,
        run_dir: dir,
        device: Device::flex(),
        extra_devices: vec![],
        stop: Arc::new(AtomicBool::new(false)),
        max_steps,
    }
}

#[test]
fn a_classifier_run_stopped_then_resumed_equals_an_uninterrupted_one() {
    let root = tmp("resume");
    let data = small_dataset(&root, 12, 6);
    let args = |out: &Path| TrainArgs {
        config: model_yaml(),
        scale: Some("t".into()),
        data: data.display().to_string(),
        epochs: 2,
        imgsz: 32,
        batch: 8,
        nbs: 8,
        workers: 1,
        dump: 0,
        out: out.display().to_string(),
        ..Default::default()
    };
    let (a, b) = (root.join("a"), root.join("b"));
    let full = trainer(args(&a), a.clone(), None, false).run().unwrap();
    assert_eq!(full.results.len(), 2);
    // 3 batches an epoch: stop after 4 optimizer steps, in epoch 2.
    let part = trainer(args(&b), b.clone(), Some(4), false).run().unwrap();
    assert!(part.interrupted);
    assert_eq!(part.results.len(), 1);
    let rest = trainer(args(&b), b.clone(), None, true).run().unwrap();
    assert_eq!(rest.results.len(), 2);
    assert_eq!(full.results[1].train, rest.results[1].train);
    assert_eq!(full.results[1].top1, rest.results[1].top1);
    // The final evaluation of best.safetensors draws the confusion matrix, whichever run wrote that epoch.
    assert!(b.join("confusion_matrix.png").exists());
    let wa = WeightsFile::read(&a.join("weights/last.safetensors").to_string_lossy()).unwrap();
    let wb = WeightsFile::read(&b.join("weights/last.safetensors").to_string_lossy()).unwrap();
    assert_eq!(wa.tensors.len(), wb.tensors.len());
    for (k, t) in &wa.tensors {
        assert_eq!(t.data, wb.tensors[k].data, "{k}");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// A classifier pretrains a detector's backbone through the binaries: configs/yolov8-mobileone-backbone-cls.yaml
/// trained on image folders, then `train --weights` on configs/yolov8-mobileone.yaml transfers every tensor of
/// rows 0-8 (and says how many); with `--freeze 9` the detector's backbone weights stay the classifier's.
#[test]
fn a_classifier_backbone_transfers_to_the_detector() {
    let root = tmp("transfer");
    let data = small_dataset(&root, 16, 8);
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let cls = root.join("cls");
    let o = run(Command::new(TRAIN)
        .arg("--config")
        .arg(configs.join("yolov8-mobileone-backbone-cls.yaml"))
        .arg("--data")
        .arg(&data)
        .args("--epochs 1 --imgsz 32 --batch 16 --workers 1 --device cpu --out".split(' '))
        .arg(&cls));
    assert!(o.status.success(), "{}", testkit::said(&o));
    let best = cls.join("weights/best.safetensors");

    let det_data = root.join("det");
    data::synth::write_dataset(&det_data, 3, 4, 2, 64).unwrap();
    let det = root.join("det_run");
    let o = run(Command::new(TRAIN)
        .arg("--config")
        .arg(configs.join("yolov8-mobileone.yaml"))
        .arg("--data")
        .arg(det_data.join("data.yaml"))
        .arg("--weights")
        .arg(&best)
        .args("--freeze 9 --epochs 1 --imgsz 64 --batch 4 --nbs 4 --workers 1 --val false --device cpu --out".split(' '))
        .arg(&det));
    let said = testkit::said(&o);
    assert!(o.status.success(), "{said}");

    let c = WeightsFile::read(&best.to_string_lossy()).unwrap();
    let d = WeightsFile::read(&det.join("weights/last.safetensors").to_string_lossy()).unwrap();
    let row = |k: &str| k.split('.').nth(1).and_then(|r| r.parse::<usize>().ok());
    let backbone: Vec<&String> = d
        .tensors
        .keys()
        .filter(|k| row(k).is_some_and(|r| r < 9))
        .collect();
    assert!(
        said.contains(&format!(
            "transferred {}/{} tensors",
            backbone.len(),
            d.tensors.len()
        )),
        "{} backbone tensors of {}: {said}",
        backbone.len(),
        d.tensors.len()
    );
    let mut trained = 0;
    for k in backbone {
        // BatchNorm running statistics move in training mode even in frozen layers, as in PyTorch.
        if k.contains("running_") {
            continue;
        }
        // The EMA of unchanging weights, d * w + (1 - d) * w, may round by an ulp.
        let diff = d.tensors[k]
            .data
            .iter()
            .zip(&c.tensors[k].data)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff < 1e-6, "{k} moved by {diff}");
        trained += 1;
    }
    assert!(trained > 50, "{trained}");
    let _ = std::fs::remove_dir_all(&root);
}
