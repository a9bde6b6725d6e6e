//! Training end to end on the generated dataset: a run leaves its folder (weights, results.csv, results.png,
//! args.yaml), and a run stopped mid-epoch then resumed ends with the same weights as an uninterrupted one.

use model::burn::tensor::Device;
use model::weights::WeightsFile;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use train::trainer::{TrainArgs, Trainer};

fn args(data: &Path, out: &Path) -> TrainArgs {
    TrainArgs {
        config: concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
        )
        .into(),
        scale: Some("t".into()),
        data: data.join("data.yaml").display().to_string(),
        epochs: 3,
        imgsz: 64,
        batch: 4,
        nbs: 4,
        workers: 1,
        close_mosaic: 1,
        out: out.display().to_string(),
        ..Default::default()
    }
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
fn interrupted_then_resumed_equals_uninterrupted() {
    let root = std::env::temp_dir().join(format!("yolo-train-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    data::synth::write_dataset(&root.join("data"), 11, 10, 4, 64).unwrap();
    let (a_dir, b_dir) = (root.join("a"), root.join("b"));

    let full = trainer(args(&root.join("data"), &a_dir), a_dir.clone(), None, false)
        .run()
        .unwrap()
        .results;
    assert_eq!(full.len(), 3);
    assert!(full
        .iter()
        .all(|r| r.train.iter().all(|v| v.is_finite() && *v > 0.0)));
    for f in [
        "weights/last.safetensors",
        "weights/best.safetensors",
        "results.csv",
        "results.png",
        "args.yaml",
    ] {
        assert!(a_dir.join(f).exists(), "{f}");
    }
    let csv = std::fs::read_to_string(a_dir.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "header and one row per epoch");

    // 3 batches per epoch: stop after 5 optimizer steps, in the middle of epoch 2.
    let part = trainer(
        args(&root.join("data"), &b_dir),
        b_dir.clone(),
        Some(5),
        false,
    )
    .run()
    .unwrap();
    assert!(part.interrupted);
    let part = part.results;
    assert_eq!(part.len(), 1, "one completed epoch before the stop");
    assert!(b_dir.join("weights/interrupted.safetensors").exists());
    // Without resume, a folder holding a run is refused.
    let e = trainer(args(&root.join("data"), &b_dir), b_dir.clone(), None, false)
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("already holds a run"), "{e}");
    let rest = trainer(args(&root.join("data"), &b_dir), b_dir.clone(), None, true)
        .run()
        .unwrap();
    assert!(!rest.interrupted);
    let rest = rest.results;
    assert_eq!(rest.len(), 3, "the resumed run reports every epoch");
    // Epoch 1 comes back from results.csv (5 decimals); the resumed epochs must be identical.
    for (x, y) in full.iter().zip(&rest) {
        for (a, b) in x.train.iter().zip(&y.train) {
            let tol = if x.epoch == 0 { 1e-5 } else { 0.0 };
            assert!(
                (a - b).abs() <= tol,
                "epoch {}: {:?} vs {:?}",
                x.epoch,
                x.train,
                y.train
            );
        }
    }

    let wa = WeightsFile::read(&a_dir.join("weights/last.safetensors").to_string_lossy()).unwrap();
    let wb = WeightsFile::read(&b_dir.join("weights/last.safetensors").to_string_lossy()).unwrap();
    assert_eq!(wa.tensors.len(), wb.tensors.len());
    let mut worst = 0f32;
    let mut worst_key = String::new();
    for (k, ta) in &wa.tensors {
        let tb = &wb.tensors[k];
        for (x, y) in ta.data.iter().zip(&tb.data) {
            let d = (x - y).abs() / x.abs().max(1e-3);
            if d > worst {
                worst = d;
                worst_key = k.clone();
            }
        }
    }
    eprintln!("largest difference in {worst_key}");
    eprintln!("resumed vs uninterrupted: max relative difference {worst:.2e}");
    assert!(worst < 1e-4, "{worst}");
    assert_eq!(wb.metadata.get("epoch").map(String::as_str), Some("3"));
    std::fs::remove_dir_all(&root).ok();
}
