//! The `deploy predict` binary stopped with Ctrl-C: it exits 130 and keeps what it did (a label file per
//! processed image, predictions.json for them, the closing line); stopped at once (SIGTERM twice), it still
//! leaves a valid predictions.json and no temporary file.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A folder of `total` small images and `deploy predict` started on it (labels, predictions.json), once it has
/// written 10 label files (`extra` flags replace the defaults): the child, the folder, and the output folder.
fn predict_running(
    tag: &str,
    total: usize,
    extra: &[(&'static str, &'static str)],
) -> (std::process::Child, std::path::PathBuf, std::path::PathBuf) {
    let mut flags = vec![("--imgsz", "96"), ("--conf", "0.2"), ("--batch", "1")];
    for (k, v) in extra {
        match flags.iter_mut().find(|f| f.0 == *k) {
            Some(f) => f.1 = v,
            None => flags.push((k, v)),
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures/mobileone_nc3_96x128");
    let dir = std::env::temp_dir().join(format!("yolo-predict-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let mut img = image::RgbImage::from_pixel(96, 96, image::Rgb([90, 140, 60]));
    for (i, p) in img.pixels_mut().enumerate() {
        p.0[0] = (i * 7 % 251) as u8;
    }
    let bytes = {
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, image::ImageFormat::Png).unwrap();
        c.into_inner()
    };
    for i in 0..total {
        std::fs::write(dir.join(format!("src/{i:05}.png")), &bytes).unwrap();
    }
    let out = dir.join("out");
    let child = testkit::spawn(
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(["predict", "--weights"])
            .arg(fixture.join("weights.safetensors"))
            .arg("--config")
            .arg(fixture.join("model.yaml"))
            .args(["--scale", "t", "--nc", "3", "--device", "cpu"])
            .args(["--save-txt", "--save-json"])
            .args(flags.iter().flat_map(|(k, v)| [*k, *v]))
            .arg("--source")
            .arg(dir.join("src"))
            .arg("--out")
            .arg(&out),
    );
    let t = Instant::now();
    while std::fs::read_dir(out.join("labels")).map_or(0, |d| d.count()) < 10 {
        assert!(t.elapsed() < Duration::from_secs(120), "no labels written");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, dir, out)
}

#[test]
fn ctrl_c_keeps_the_outputs_of_processed_images() {
    let total = 3000;
    let (child, dir, out) = predict_running("cli", total, &[]);
    testkit::interrupt(&child);
    let o = child.wait_with_output().unwrap();
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(130), "{said}");
    let done: usize = said
        .lines()
        .find_map(|l| {
            l.split_once(" images (")
                .and_then(|(n, _)| n.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no closing line in:\n{said}"));
    assert!(done >= 10 && done < total, "{done} of {total}");
    let labels = std::fs::read_dir(out.join("labels")).unwrap().count();
    assert_eq!(labels, done, "one label file per processed image");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap()).unwrap();
    let mut files: Vec<String> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["file_name"].as_str().unwrap().to_string())
        .collect();
    files.dedup();
    assert!(!files.is_empty(), "the fixture detects at conf 0.2");
    for f in &files {
        let stem = f.trim_end_matches(".png");
        assert!(out.join(format!("labels/{stem}.txt")).exists(), "{f}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_second_sigterm_stops_at_once_leaving_valid_json_and_no_temp_files() {
    // Batches of 32 at 640: the first signal's orderly stop (finish the batch) takes long enough for a second.
    let (child, dir, out) = predict_running(
        "term",
        3000,
        &[("--batch", "32"), ("--imgsz", "640"), ("--conf", "0.001")],
    );
    for _ in 0..2 {
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        // Two signals sent together could arrive as one.
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = child.wait_with_output().unwrap();
    let said = testkit::said(&o);
    assert_eq!(o.status.code(), Some(130), "{said}");
    assert!(
        said.contains("stopping now"),
        "the second signal stopped it at once: {said}"
    );
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("predictions.json")).unwrap())
            .unwrap_or_else(|e| panic!("predictions.json: {e}\n{said}"));
    assert!(json.as_array().is_some_and(|a| !a.is_empty()), "{said}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A model whose box branch outputs infinities (as a diverged run's weights do): no `NaN` label line or
/// null JSON box, a warning naming the batch, exit 0.
#[test]
fn non_finite_model_outputs_are_dropped_with_a_warning() {
    use model::weights::{to_safetensors_bytes, WeightsFile};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures/trained_mobileone");
    let dir = std::env::temp_dir().join(format!("yolo-predict-nan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let w = WeightsFile::read(&fixture.join("weights.safetensors").to_string_lossy()).unwrap();
    let mut sd = w.tensors.clone();
    let key = sd
        .keys()
        .find(|k| k.contains(".cv2.0.2.bias"))
        .cloned()
        .expect("the box branch bias of level 0");
    let t = sd.get_mut(&key).unwrap();
    for v in t.data.iter_mut().step_by(2) {
        *v = f32::INFINITY;
    }
    let broken = dir.join("broken.safetensors");
    std::fs::write(&broken, to_safetensors_bytes(&sd, &w.metadata).unwrap()).unwrap();
    let out = dir.join("out");
    for engine in ["true", "false"] {
        let _ = std::fs::remove_dir_all(&out);
        let said = testkit::succeeds(
            Command::new(env!("CARGO_BIN_EXE_deploy"))
                .args(["predict", "--weights"])
                .arg(&broken)
                .args([
                    "--imgsz", "320", "--conf", "0.0001", "--device", "cpu", "--engine", engine,
                ])
                .args(["--save-txt", "--save-json", "--save", "false", "--source"])
                .arg(root.join("../../datasets/trees/images/val"))
                .arg("--out")
                .arg(&out),
        );
        assert!(said.contains("NaN or infinite"), "engine {engine}: {said}");
        let json = std::fs::read_to_string(out.join("predictions.json")).unwrap();
        assert!(
            !json.contains("null") && !json.contains("NaN"),
            "engine {engine}"
        );
        for e in std::fs::read_dir(out.join("labels")).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            assert!(
                !text.to_lowercase().contains("nan") && !text.contains("inf"),
                "{text}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `a/x.png`, `b/x.png` and `x.jpg` in one source: three label files and three images, none overwritten.
#[test]
fn same_named_images_from_different_folders_keep_their_own_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("yolo-predict-names-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["src/a", "src/b"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut tiles: Vec<_> = std::fs::read_dir(root.join("../../datasets/trees/images/val"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    let open = |i: usize| image::open(&tiles[i]).unwrap().to_rgb8();
    open(0).save(dir.join("src/a/x.png")).unwrap();
    open(1).save(dir.join("src/b/x.png")).unwrap();
    std::fs::copy(&tiles[2], dir.join("src/x.jpg")).unwrap();
    let out = dir.join("out");
    let said = testkit::succeeds(
        Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(["predict", "--weights"])
            .arg(root.join("tests/fixtures/trained_mobileone/weights.safetensors"))
            .args([
                "--imgsz",
                "320",
                "--conf",
                "0.001",
                "--device",
                "cpu",
                "--save-txt",
                "--source",
            ])
            .arg(dir.join("src"))
            .arg("--out")
            .arg(&out),
    );
    assert!(said.contains("3 inputs share a file name"), "{said}");
    let mut labels: Vec<String> = std::fs::read_dir(out.join("labels"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        ["a_x_png.txt", "b_x_png.txt", "x_jpg.txt"],
        "{said}"
    );
    let a = std::fs::read_to_string(out.join("labels/a_x_png.txt")).unwrap();
    let b = std::fs::read_to_string(out.join("labels/b_x_png.txt")).unwrap();
    assert_ne!(a, b, "two different images, two different results");
    for n in ["a_x_png.jpg", "b_x_png.jpg", "x_jpg.jpg"] {
        assert!(out.join(n).exists(), "{n}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--tile`: a 2x2 mosaic of four val tiles, cut into its four 400 px tiles (no overlap), gives exactly the boxes
/// of the four tiles predicted one by one, shifted into the mosaic (the trained fixture model, real detections).
#[test]
fn tiled_prediction_equals_the_tiles_predicted_alone() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights = root.join("tests/fixtures/trained_mobileone/weights.safetensors");
    let val = root.join("../../datasets/trees/images/val");
    let dir = std::env::temp_dir().join(format!("yolo-predict-tile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tiles")).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&val)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let mut mosaic = image::RgbImage::new(800, 800);
    for (k, p) in names.iter().take(4).enumerate() {
        let img = image::open(p).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (400, 400));
        let (x, y) = ((k % 2) as i64 * 400, (k / 2) as i64 * 400);
        image::imageops::replace(&mut mosaic, &img, x, y);
        img.save(dir.join(format!("tiles/{k}.png"))).unwrap();
    }
    mosaic.save(dir.join("mosaic.png")).unwrap();
    let predict = |source: &Path, out: &str, tile: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(["predict", "--weights"])
            .arg(&weights)
            .arg("--source")
            .arg(source)
            .args([
                "--imgsz",
                "416",
                "--conf",
                "0.02",
                "--save-txt",
                "--save-conf",
            ])
            .args(["--save", "false", "--device", "cpu", "--out"])
            .arg(dir.join(out))
            .args(tile)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{s}");
    };
    predict(&dir.join("tiles"), "alone", &[]);
    // --tile-match 1: no merging (boxes of one tile can contain each other; merging would join those too).
    let plain = ["--tile", "400", "--overlap", "0", "--tile-match", "1"];
    predict(&dir.join("mosaic.png"), "tiled", &plain);
    predict(
        &dir.join("mosaic.png"),
        "merged",
        &["--tile", "400", "--overlap", "0"],
    );
    let rows = |p: &Path| -> Vec<[f64; 6]> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                [v[0], v[1], v[2], v[3], v[4], v[5]]
            })
            .collect()
    };
    let mut want = vec![];
    for k in 0..4 {
        let (x, y) = ((k % 2) as f64 * 400.0, (k / 2) as f64 * 400.0);
        for r in rows(&dir.join(format!("alone/labels/{k}.txt"))) {
            // Tile-normalized xywh to mosaic-normalized.
            want.push([
                r[0],
                (r[1] * 400.0 + x) / 800.0,
                (r[2] * 400.0 + y) / 800.0,
                r[3] / 2.0,
                r[4] / 2.0,
                r[5],
            ]);
        }
    }
    let got = rows(&dir.join("tiled/labels/mosaic.txt"));
    assert!(want.len() > 20, "{} boxes", want.len());
    assert_eq!(got.len(), want.len());
    let merged = rows(&dir.join("merged/labels/mosaic.txt")).len();
    assert!(
        merged > 0 && merged < want.len(),
        "merging joins some: {merged}"
    );
    for w in &want {
        assert!(
            got.iter().any(|g| g[0] == w[0]
                && (g[5] - w[5]).abs() < 1e-4
                && (1..5).all(|i| (g[i] - w[i]).abs() < 2e-5)),
            "{w:?} not among the tiled boxes"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
