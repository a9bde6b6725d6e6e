//! The validation loop end to end on the generated dataset: every image and box is counted, and the
//! confusion matrix accounts for every ground-truth box exactly once.

use data::{DataConfig, Dataset};
use model::burn::tensor::Device;
use model::{ModelSpec, SpecOptions, YoloModel};
use std::sync::Arc;
use train::val::{validate, ValOptions};

#[test]
fn validate_counts_every_box_once() {
    let dir = std::env::temp_dir().join(format!("yolo-val-{}", std::process::id()));
    data::synth::write_dataset(&dir, 3, 4, 10, 96).unwrap();
    let cfg = DataConfig::from_file(&dir.join("data.yaml")).unwrap();
    let ds = Arc::new(Dataset::load(&cfg, "val").unwrap());
    let yaml = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
    );
    let spec = ModelSpec::from_file(yaml, &SpecOptions::scaled("t", 3)).unwrap();
    let model = YoloModel::new(&spec, &Device::flex());
    let opts = ValOptions {
        imgsz: 96,
        batch: 4,
        ..Default::default()
    };
    let r = validate(&model, ds.clone(), &opts, &Device::flex()).unwrap();
    assert_eq!(r.images, 10);
    let boxes: usize = ds.summary.boxes_per_class.iter().sum();
    assert_eq!(r.instances, boxes);
    for c in 0..3 {
        let column: f64 = (0..4).map(|row| r.confusion.matrix[row][c]).sum();
        assert_eq!(
            column as usize, ds.summary.boxes_per_class[c],
            "class {c} column"
        );
    }
    let m = &r.metrics;
    assert!(m.map() >= 0.0 && m.map() <= m.map50() + 1e-12 && m.map50() <= 1.0);
    let json = train::val::to_json(&r, &cfg.names);
    for k in [
        "precision",
        "recall",
        "mAP50",
        "mAP50-95",
        "per_class",
        "speed_ms",
    ] {
        assert!(json.get(k).is_some(), "{k}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
