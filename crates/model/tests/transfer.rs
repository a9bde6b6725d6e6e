//! Backbone transfer from a classifier to a detector (`train --weights`, Ultralytics' `intersect_dicts` rule):
//! a classifier with yolov8-mobileone's backbone gives the detector every tensor of rows 0-8, values included,
//! and nothing else; the seed's MobileOneNet layout shares no row with it.

use model::burn::tensor::Device;
use model::weights::{load_matching, state_dict};
use model::{ModelSpec, SpecOptions, YoloModel};
use std::path::Path;

fn build(cfg: &str, scale: &str, nc: usize) -> YoloModel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs")
        .join(cfg);
    let spec = ModelSpec::from_file(p.to_str().unwrap(), &SpecOptions::scaled(scale, nc)).unwrap();
    YoloModel::new(&spec, &Device::flex())
}

fn is_backbone(key: &str) -> bool {
    (0..=8).any(|i| key.starts_with(&format!("model.{i}.")))
}

#[test]
fn a_backbone_classifier_transfers_rows_0_to_8() {
    for scale in ["n", "m"] {
        let cls = build("yolov8-mobileone-backbone-cls.yaml", scale, 2);
        let theirs = state_dict(&cls);
        let mut det = build("yolov8-mobileone.yaml", scale, 1);
        let t = load_matching(&mut det, &theirs, "classifier").unwrap();
        let ours = state_dict(&det);
        let backbone: Vec<&String> = ours.keys().filter(|k| is_backbone(k)).collect();
        assert!(backbone.len() > 100, "{scale}: {}", backbone.len());
        assert_eq!(
            t.loaded,
            backbone.len(),
            "{scale}: every backbone tensor, nothing else"
        );
        assert!(
            t.kept.iter().all(|k| !is_backbone(k)),
            "{scale}: {:?}",
            t.kept
        );
        for k in backbone {
            assert_eq!(ours[k].data, theirs[k].data, "{scale}: {k}");
        }
    }
    // MobileOneNet's stages are not the detector's: the same keys where rows line up, never the same shapes.
    let seed = build("yolov8-mobileone-cls.yaml", "s", 2);
    let mut det = build("yolov8-mobileone.yaml", "n", 1);
    let t = load_matching(&mut det, &state_dict(&seed), "seed").unwrap();
    assert_eq!(t.loaded, 0);
}
