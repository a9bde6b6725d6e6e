//! The `deploy predict` binary stopped with Ctrl-C: it exits 130 and keeps what it did (a label file per
//! processed image, predictions.json for them, the closing line).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn ctrl_c_keeps_the_outputs_of_processed_images() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures/mobileone_nc3_96x128");
    let dir = std::env::temp_dir().join(format!("yolo-predict-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let total = 3000;
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
    let child = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["predict", "--weights"])
        .arg(fixture.join("weights.safetensors"))
        .arg("--config")
        .arg(fixture.join("model.yaml"))
        .args([
            "--scale", "t", "--nc", "3", "--imgsz", "96", "--conf", "0.2",
        ])
        .args([
            "--batch",
            "1",
            "--device",
            "cpu",
            "--save-txt",
            "--save-json",
        ])
        .arg("--source")
        .arg(dir.join("src"))
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while std::fs::read_dir(out.join("labels")).map_or(0, |d| d.count()) < 10 {
        assert!(t.elapsed() < Duration::from_secs(120), "no labels written");
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let o = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
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
