//! Fuzzing the dataset YAML reader, the label parser, the image decoder and the COCO/VOC converters (see `data::fuzz`): mutations of
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

/// A fresh folder per input of a converter target, under one base for the run.
fn scratch(base: &std::path::Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let d = base.join(
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_string(),
    );
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// What a conversion wrote: every row five finite numbers with a positive size, every file inside `out`.
fn check_converted(out: &std::path::Path) {
    let Ok(dir) = std::fs::read_dir(out.join("labels/train")) else {
        return;
    };
    for e in dir {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines() {
            let v: Vec<f64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            assert_eq!(v.len(), 5, "{line}");
            assert!(
                v.iter().all(|x| x.is_finite()) && v[3] > 0.0 && v[4] > 0.0,
                "{line}"
            );
        }
    }
}

fn tiny_jpeg(p: &std::path::Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 140, 60]))
        .save(p)
        .unwrap();
}

/// Runs converter target `name`: each input in a fresh folder under `base/runs`, where `convert(folder,
/// input)` writes into `folder/out` (true when it succeeded); what it wrote is checked, then `sources_intact`.
fn fuzz_converter(
    name: &'static str,
    base: PathBuf,
    convert: impl Fn(&std::path::Path, &[u8]) -> bool + Send + Sync + 'static,
    sources_intact: impl Fn() -> bool + Send + Sync + 'static,
) {
    let runs = base.join("runs");
    let r = fuzz(name, seeds(name), budget(8.0), HANG, &crashes(), move |b| {
        let d = scratch(&runs);
        if convert(&d, b) {
            check_converted(&d.join("out"));
        }
        assert!(sources_intact(), "a source was removed");
        std::fs::remove_dir_all(&d).ok();
    });
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{name}: {} inputs (seed {})", r.executions, r.seed);
    std::fs::remove_dir_all(&base).ok();
}

/// COCO JSON conversion on mutated annotation files (images a.jpg and sub/a.jpg present; a sentinel file
/// beside the images folder must survive every input).
#[test]
fn fuzz_coco() {
    let base = std::env::temp_dir().join(format!("yolo-fuzz-coco-{}", std::process::id()));
    let images = base.join("images");
    tiny_jpeg(&images.join("a.jpg"));
    tiny_jpeg(&images.join("sub/a.jpg"));
    let sentinel = base.join("sentinel.jpg");
    tiny_jpeg(&sentinel);
    let imgs = images.clone();
    fuzz_converter(
        "coco",
        base,
        move |d, b| {
            let ann = d.join("ann.json");
            std::fs::write(&ann, b).unwrap();
            data::convert::coco(&ann, &imgs, &d.join("out"), "train").is_ok()
        },
        move || sentinel.is_file() && images.join("a.jpg").is_file(),
    );
}

/// Pascal VOC conversion on mutated annotations (JPEGImages/a.jpg present).
#[test]
fn fuzz_voc() {
    let base = std::env::temp_dir().join(format!("yolo-fuzz-voc-{}", std::process::id()));
    let shared = base.join("a.jpg");
    tiny_jpeg(&shared);
    let src = shared.clone();
    fuzz_converter(
        "voc",
        base,
        move |d, b| {
            let voc = d.join("voc");
            std::fs::create_dir_all(voc.join("Annotations")).unwrap();
            std::fs::create_dir_all(voc.join("JPEGImages")).unwrap();
            std::fs::copy(&src, voc.join("JPEGImages/a.jpg")).unwrap();
            std::fs::write(voc.join("Annotations/a.xml"), b).unwrap();
            data::convert::voc(&voc, &d.join("out"), "train").is_ok()
        },
        move || shared.is_file(),
    );
}
