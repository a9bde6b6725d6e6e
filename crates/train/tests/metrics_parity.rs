//! Metrics and NMS against Ultralytics' own code on fixed inputs (tests/fixtures/metrics.json, made by
//! scripts/make_metrics_fixture.py), and against pycocotools as a second opinion.

use model::postprocess::{non_max_suppression, Detection, NmsOptions};
use serde_json::Value;
use train::metrics::{ap_per_class, match_predictions, ImageStats};

fn fixture() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f(v: &Value) -> f32 {
    v.as_f64().unwrap() as f32
}

fn stats(fx: &Value) -> Vec<ImageStats> {
    let mut out = Vec::new();
    for im in fx["images"].as_array().unwrap() {
        let gt: Vec<[f32; 4]> = im["gt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| std::array::from_fn(|i| f(&b[i])))
            .collect();
        let gt_cls: Vec<usize> = im["gt_cls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as usize)
            .collect();
        let dets: Vec<Detection> = im["pred"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Detection {
                x1: f(&p[0]),
                y1: f(&p[1]),
                x2: f(&p[2]),
                y2: f(&p[3]),
                conf: f(&p[4]),
                cls: p[5].as_u64().unwrap() as usize,
            })
            .collect();
        let correct = match_predictions(&dets, &gt, &gt_cls);
        let want: Vec<Vec<bool>> = im["correct"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64() == Some(1))
                    .collect()
            })
            .collect();
        let got: Vec<Vec<bool>> = correct.iter().map(|r| r.to_vec()).collect();
        assert_eq!(got, want, "matching differs from Ultralytics");
        out.push(ImageStats {
            correct,
            conf: dets.iter().map(|d| d.conf).collect(),
            pred_cls: dets.iter().map(|d| d.cls).collect(),
            target_cls: gt_cls,
        });
    }
    out
}

#[test]
fn metrics_equal_ultralytics_within_1e4() {
    let fx = fixture();
    let m = ap_per_class(&stats(&fx));
    let u = &fx["ultralytics_metrics"];
    let worst = std::cell::Cell::new(0f64);
    let close = |a: f64, b: &Value, what: &str| {
        let b = b.as_f64().unwrap();
        worst.set(worst.get().max((a - b).abs()));
        assert!((a - b).abs() <= 1e-4, "{what}: ours {a} vs Ultralytics {b}");
    };
    assert_eq!(m.classes, vec![0, 1, 2]);
    for (i, _) in m.classes.iter().enumerate() {
        close(m.p[i], &u["p"][i], "P");
        close(m.r[i], &u["r"][i], "R");
        close(m.ap50[i], &u["ap50"][i], "AP50");
        close(m.ap[i], &u["ap"][i], "AP50-95");
        for t in 0..10 {
            close(m.ap_all[i][t], &u["ap_all"][i][t], "AP at one threshold");
        }
    }
    close(m.mp(), &u["mp"], "mP");
    close(m.mr(), &u["mr"], "mR");
    close(m.map50(), &u["map50"], "mAP50");
    close(m.map(), &u["map"], "mAP50-95");
    eprintln!(
        "largest difference from Ultralytics over every metric: {:.2e}",
        worst.get()
    );
    // pycocotools integrates differently (sum over 101 points, not a trapezoid), so only close.
    let coco = &fx["pycocotools"];
    let (dm, d50) = (
        (m.map() - coco["map"].as_f64().unwrap()).abs(),
        (m.map50() - coco["map50"].as_f64().unwrap()).abs(),
    );
    eprintln!("ours vs pycocotools: mAP50-95 {dm:.2e}, mAP50 {d50:.2e}");
    assert!(dm < 5e-3 && d50 < 5e-3);
}

#[test]
fn nms_equals_ultralytics() {
    let fx = fixture();
    let nc = fx["nc"].as_u64().unwrap() as usize;
    let input = fx["nms_input"].as_array().unwrap();
    for case in fx["nms_cases"].as_array().unwrap() {
        let o = NmsOptions {
            conf: f(&case["conf"]),
            iou: f(&case["iou"]),
            multi_label: case["multi_label"].as_bool().unwrap(),
            agnostic: case["agnostic"].as_bool().unwrap(),
            classes: case["classes"]
                .as_array()
                .map(|v| v.iter().map(|c| c.as_u64().unwrap() as usize).collect()),
            max_det: case["max_det"].as_u64().unwrap() as usize,
            ..NmsOptions::predict()
        };
        for (b, img) in input.iter().enumerate() {
            let rows = img.as_array().unwrap();
            let a = rows[0].as_array().unwrap().len();
            let flat: Vec<f32> = rows
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter().map(f))
                .collect();
            let ours = non_max_suppression(&flat, nc, a, &o);
            let theirs = case["output"][b].as_array().unwrap();
            assert_eq!(ours.len(), theirs.len(), "case {case:?} image {b}");
            for (d, t) in ours.iter().zip(theirs) {
                let t: Vec<f32> = t.as_array().unwrap().iter().map(f).collect();
                for (x, y) in [d.x1, d.y1, d.x2, d.y2, d.conf, d.cls as f32]
                    .iter()
                    .zip(&t)
                {
                    assert!((x - y).abs() < 1e-4, "{d:?} vs {t:?}");
                }
            }
        }
    }
}
