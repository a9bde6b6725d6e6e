//! Datasets with real corrupt files, label problems, the cache, and the augmentation pipeline's determinism.

use data::augment::{AugmentConfig, Augmenter};
use data::loader::train_batches;
use data::{DataConfig, Dataset};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn trees() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees")
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("images/train")).unwrap();
    std::fs::create_dir_all(d.join("labels/train")).unwrap();
    d
}

/// Three real tiles with their labels, plus corrupt images and bad label files.
fn messy_dataset(tag: &str) -> PathBuf {
    let d = tmp(tag);
    let src = trees().join("images/train");
    let mut tiles: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    for (i, t) in tiles.iter().take(3).enumerate() {
        std::fs::copy(t, d.join(format!("images/train/good{i}.jpg"))).unwrap();
        let lab = data::config::label_path(t);
        if i < 2 {
            std::fs::copy(&lab, d.join(format!("labels/train/good{i}.txt"))).unwrap();
        }
    }
    // good2 has no label file: a background. Now the broken ones.
    let bytes = std::fs::read(&tiles[0]).unwrap();
    std::fs::write(
        d.join("images/train/truncated.jpg"),
        &bytes[..bytes.len() / 3],
    )
    .unwrap();
    std::fs::write(d.join("images/train/not_an_image.jpg"), b"hello, I am text").unwrap();
    let mut garbage = bytes[..20].to_vec();
    garbage.extend(std::iter::repeat_n(0xABu8, 2000));
    std::fs::write(d.join("images/train/garbage.jpg"), garbage).unwrap();
    image::RgbImage::new(5, 5)
        .save(d.join("images/train/tiny.png"))
        .unwrap();
    std::fs::write(d.join("labels/train/truncated.txt"), "0 0.5 0.5 0.1 0.1\n").unwrap();
    // A label file with every kind of problem next to a good row.
    let mut good1 = std::fs::read_to_string(d.join("labels/train/good1.txt")).unwrap();
    let first = good1.lines().next().unwrap().to_string();
    good1.push_str(&format!(
        "{first}\n0 0.5 0.5\n0 x 0.5 0.1 0.1\n0 3.0 0.5 0.1 0.1\n0 0.5 0.5 0 0.1\n"
    ));
    std::fs::write(d.join("labels/train/good1.txt"), good1).unwrap();
    std::fs::write(
        d.join("data.yaml"),
        "train: images/train\nval: images/train\nnames: [tree]\n",
    )
    .unwrap();
    d
}

#[test]
fn corrupt_files_are_skipped_and_reported_once_per_file() {
    let d = messy_dataset("messy");
    let cfg = DataConfig::from_file(&d.join("data.yaml")).unwrap();
    let ds = Dataset::load(&cfg, "train").unwrap();
    let s = &ds.summary;
    assert_eq!(s.images, 7);
    assert_eq!(
        ds.len(),
        4,
        "the three real tiles and the truncated one (decoded, as Ultralytics restores it)"
    );
    assert_eq!(s.corrupt, 3, "garbage JPEG, text file, 5 px image");
    assert_eq!(s.missing_labels, 1);
    assert!(s.backgrounds >= 1);
    let report = ds.report();
    for want in [
        "truncated.jpg: truncated JPEG",
        "garbage.jpg: skipped",
        "not_an_image.jpg: skipped",
        "tiny.png: skipped: image is 5x5",
        "good1.txt: line",
    ] {
        assert!(report.contains(want), "missing '{want}' in\n{report}");
    }
    let good1 = s
        .warnings
        .iter()
        .filter(|w| w.contains("good1.txt"))
        .count();
    assert_eq!(good1, 1, "one line per file");
    let w = s.warnings.iter().find(|w| w.contains("good1.txt")).unwrap();
    for want in [
        "3 columns",
        "non-numeric",
        "far outside",
        "zero-size",
        "1 duplicate row(s) removed",
    ] {
        assert!(w.contains(want), "missing '{want}' in {w}");
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn class_id_beyond_the_yaml_stops_with_file_and_line() {
    let d = messy_dataset("badcls");
    std::fs::write(
        d.join("labels/train/good0.txt"),
        "0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0.2 0.2\n",
    )
    .unwrap();
    let cfg = DataConfig::from_file(&d.join("data.yaml")).unwrap();
    let e = Dataset::load(&cfg, "train").unwrap_err().to_string();
    assert!(e.contains("good0.txt, line 2: class id 1"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn second_start_uses_the_cache_until_a_label_changes() {
    let d = messy_dataset("cache");
    let cfg = DataConfig::from_file(&d.join("data.yaml")).unwrap();
    let a = Dataset::load(&cfg, "train").unwrap();
    assert!(!a.from_cache);
    let b = Dataset::load(&cfg, "train").unwrap();
    assert!(b.from_cache);
    assert_eq!(a.summary.boxes_per_class, b.summary.boxes_per_class);
    assert_eq!(a.samples.len(), b.samples.len());
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(d.join("labels/train/good0.txt"), "0 0.5 0.5 0.1 0.1\n").unwrap();
    let c = Dataset::load(&cfg, "train").unwrap();
    assert!(!c.from_cache, "an edited label file invalidates the cache");
    assert_eq!(c.samples[0].labels.len(), 1);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn dataset_yaml_variants() {
    let d = tmp("yaml");
    let src = trees().join("images/val");
    let first = std::fs::read_dir(&src)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(d.join("list.txt"), format!("{}\n", first.display())).unwrap();
    std::fs::write(
        d.join("a.yaml"),
        "train: list.txt\nval: [list.txt]\nnames: {0: a, 1: b}\n",
    )
    .unwrap();
    let cfg = DataConfig::from_file(&d.join("a.yaml")).unwrap();
    assert_eq!(cfg.names, vec!["a", "b"]);
    assert_eq!(Dataset::load(&cfg, "val").unwrap().len(), 1);
    std::fs::write(d.join("b.yaml"), "train: x\nnames: {0: a, 2: b}\n").unwrap();
    let e = DataConfig::from_file(&d.join("b.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("b.yaml") && e.contains("without gaps"), "{e}");
    std::fs::write(d.join("c.yaml"), "train: nowhere\nnames: [a]\n").unwrap();
    let cfg = DataConfig::from_file(&d.join("c.yaml")).unwrap();
    let e = Dataset::load(&cfg, "train").unwrap_err().to_string();
    assert!(e.contains("nowhere") && e.contains("not found"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

fn trees_train() -> Arc<Dataset> {
    let cfg = DataConfig::from_file(&trees().join("data.yaml")).unwrap();
    Arc::new(Dataset::load(&cfg, "train").unwrap())
}

#[test]
fn augmentation_is_deterministic_and_keeps_boxes_in_the_image() {
    let ds = trees_train();
    let aug = Augmenter::new(ds.clone(), AugmentConfig::default(), 320, 7, false);
    let a = aug.train_sample(3, 1, true);
    let b = aug.train_sample(3, 1, true);
    assert_eq!(a.image.as_raw(), b.image.as_raw());
    assert_eq!(a.labels, b.labels);
    let c = aug.train_sample(3, 2, true);
    assert_ne!(
        a.image.as_raw(),
        c.image.as_raw(),
        "another epoch, another sample"
    );
    let mut total = 0;
    for i in 0..ds.len() {
        for mosaic in [true, false] {
            let s = aug.train_sample(i, 0, mosaic);
            assert_eq!(s.image.dimensions(), (320, 320));
            for l in &s.labels {
                assert!(l.w > 0.0 && l.h > 0.0);
                assert!(
                    l.cx - l.w / 2.0 >= -1e-5 && l.cx + l.w / 2.0 <= 1.0 + 1e-5,
                    "{l:?}"
                );
                assert!(
                    l.cy - l.h / 2.0 >= -1e-5 && l.cy + l.h / 2.0 <= 1.0 + 1e-5,
                    "{l:?}"
                );
            }
            total += s.labels.len();
        }
    }
    assert!(total > 500, "boxes survive augmentation: {total}");
}

#[test]
fn batches_do_not_depend_on_the_number_of_workers() {
    let ds = trees_train();
    let aug = Arc::new(Augmenter::new(ds, AugmentConfig::default(), 128, 1, false));
    let one: Vec<_> = train_batches(aug.clone(), 0, 8, 1, true)
        .collect::<Result<_, _>>()
        .unwrap();
    let three: Vec<_> = train_batches(aug.clone(), 0, 8, 3, true)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(one.len(), 6, "42 images in batches of 8");
    assert_eq!(one.last().unwrap().shape, [2, 3, 128, 128]);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.indices, b.indices);
        assert_eq!(a.images, b.images);
        assert_eq!(a.targets, b.targets);
    }
    let mut seen: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(
        seen,
        (0..42).collect::<Vec<_>>(),
        "every image once per epoch"
    );
}

#[test]
fn validation_labels_follow_the_letterbox() {
    let cfg = DataConfig::from_file(&trees().join("data.yaml")).unwrap();
    let ds = Arc::new(Dataset::load(&cfg, "val").unwrap());
    let aug = Augmenter::new(ds.clone(), AugmentConfig::default(), 320, 0, false);
    let s = aug.val_sample(0, 320, 320);
    assert_eq!(s.image.dimensions(), (320, 320));
    assert_eq!(s.letterbox.gain, 0.8);
    assert_eq!(s.labels.len(), ds.samples[0].labels.len());
    let (a, b) = (s.labels[0], ds.samples[0].labels[0]);
    assert!(
        (a.cx - b.cx).abs() < 1e-6 && (a.w - b.w).abs() < 1e-6,
        "square tile: same normalized box"
    );
}

#[test]
fn synthetic_dataset_is_deterministic_and_loads() {
    let a = tmp("synth-a");
    let b = tmp("synth-b");
    data::synth::write_dataset(&a, 5, 12, 4, 96).unwrap();
    data::synth::write_dataset(&b, 5, 12, 4, 96).unwrap();
    for f in [
        "images/train/train_0003.png",
        "labels/train/train_0003.txt",
        "labels/val/val_0001.txt",
    ] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    let cfg = DataConfig::from_file(&a.join("data.yaml")).unwrap();
    assert_eq!(cfg.nc(), 3);
    let ds = Dataset::load(&cfg, "train").unwrap();
    assert_eq!(ds.len(), 12);
    assert!(
        ds.summary.boxes_per_class.iter().all(|&n| n > 0),
        "{:?}",
        ds.summary.boxes_per_class
    );
    std::fs::remove_dir_all(&a).ok();
    std::fs::remove_dir_all(&b).ok();
}

#[test]
fn exif_orientation_is_applied() {
    // 40x20 stored, EXIF orientation 6 (rotate 90 degrees clockwise to display): 20x40, the green band on top.
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/exif_rotate90.jpg");
    let img = data::image_ops::read_rgb(&p).unwrap();
    assert_eq!(img.dimensions(), (20, 40));
    let top = img.get_pixel(10, 2).0;
    let bottom = img.get_pixel(10, 37).0;
    assert!(
        top[1] > 150 && top[0] < 80,
        "green on top after rotation: {top:?}"
    );
    assert!(bottom[0] > 150, "red below: {bottom:?}");
}
