//! Fuzzing the dataset YAML reader, the label parser and the image decoder (see `data::fuzz`): mutations of
//! the committed corpus in `tests/fuzz_corpus/` give an error or a result, never a panic, abort or hang.
//! `YOLO_FUZZ_SECS` (default 8 per target) sets the budget; a failing input is saved under the temp folder.

use data::fuzz::{budget, fuzz};
use std::path::PathBuf;
use std::time::Duration;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    data::fuzz::seeds(env!("CARGO_MANIFEST_DIR"), target)
}

fn crashes() -> PathBuf {
    data::fuzz::crash_dir()
}

const HANG: Duration = Duration::from_secs(20);

#[test]
fn fuzz_dataset_yaml() {
    let dir = std::env::temp_dir().join(format!("yolo-fuzz-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data.yaml");
    let r = fuzz(
        "data_yaml",
        seeds("data_yaml"),
        budget(8.0),
        HANG,
        &crashes(),
        move |b| {
            std::fs::write(&file, b).unwrap();
            if let Ok(cfg) = data::DataConfig::from_file(&file) {
                let _ = cfg.nc();
                let _ = cfg.split("train");
            }
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("data_yaml: {} inputs (seed {})", r.executions, r.seed);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fuzz_labels() {
    let r = fuzz(
        "labels",
        seeds("labels"),
        budget(8.0),
        HANG,
        &crashes(),
        |b| {
            let text = String::from_utf8_lossy(b);
            for nc in [1, 3, 80] {
                if let Ok(p) = data::labels::parse_labels(&text, "fuzz.txt", nc) {
                    for l in &p.labels {
                        assert!(l.cls < nc, "class {} past nc {nc}", l.cls);
                        for v in [l.cx, l.cy, l.w, l.h] {
                            assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{l:?}");
                        }
                    }
                }
            }
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("labels: {} inputs (seed {})", r.executions, r.seed);
}

#[test]
fn fuzz_image_decode() {
    let r = fuzz(
        "images",
        seeds("images"),
        budget(8.0),
        HANG,
        &crashes(),
        |b| {
            if let Ok(img) = data::image_ops::decode_rgb(b, "fuzz") {
                assert!(img.width() > 0 && img.height() > 0);
                let _ = data::image_ops::letterbox_auto(&img, 64, 64, 32);
            }
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("images: {} inputs (seed {})", r.executions, r.seed);
}
