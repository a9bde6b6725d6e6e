//! `deploy predict` (and `yolo`) on hostile arguments and inputs, through the binaries (issue 28): thresholds
//! outside [0, 1] or not numbers are refused, a tile below 32 pixels is refused, an
//! image that would be cut into too many tiles is skipped with the reason, and a run in which every input
//! failed exits non-zero.

use std::path::{Path, PathBuf};
use std::process::Command;

fn weights() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/trained_mobileone/weights.safetensors")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "yolo-predict-hostile-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn image(dir: &Path, side: u32) -> PathBuf {
    let p = dir.join("scene.png");
    image::RgbImage::from_fn(side, side, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, 90])
    })
    .save(&p)
    .unwrap();
    p
}

/// `deploy predict --weights W --source SRC --out OUT ARGS`: success and everything said.
fn predict(src: &Path, out: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["predict", "--device", "cpu", "--imgsz", "320", "--weights"])
        .arg(weights())
        .arg("--source")
        .arg(src)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    (o.status.success(), testkit::said(&o))
}

#[test]
fn thresholds_outside_zero_one_are_refused() {
    let d = tmp("thresholds");
    let img = image(&d, 64);
    for (flag, v) in [
        ("--conf", "NaN"),
        ("--conf", "2"),
        ("--conf=-0.5", ""),
        ("--iou", "NaN"),
        ("--iou=-1", ""),
        ("--conf", "abc"),
    ] {
        let args: Vec<&str> = [flag, v].into_iter().filter(|a| !a.is_empty()).collect();
        let (ok, said) = predict(&img, &d.join("out"), &args);
        assert!(
            !ok && (said.contains("outside [0, 1]") || said.contains("not a number")),
            "{args:?}:\n{said}"
        );
    }
    assert!(!d.join("out").exists(), "nothing written");
}

#[test]
fn tiles_below_32_pixels_or_too_many_tiles_are_refused() {
    let d = tmp("tiles");
    let img = image(&d, 640);
    let (ok, said) = predict(&img, &d.join("a"), &["--tile", "1"]);
    assert!(!ok && said.contains("a tile must be at least 32"), "{said}");
    // 32-pixel tiles overlapping by 0.9 step 4 pixels: about 23,000 tiles for a 640-pixel image.
    let (ok, said) = predict(&img, &d.join("b"), &["--tile", "32", "--overlap", "0.9"]);
    assert!(
        !ok && said.contains("more than 10000: use a larger --tile")
            && said.contains("nothing was predicted: every input failed"),
        "{said}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn a_run_where_every_input_failed_exits_non_zero() {
    let d = tmp("failed");
    let bad = d.join("broken.jpg");
    std::fs::write(&bad, b"not a jpeg at all").unwrap();
    let (ok, said) = predict(&bad, &d.join("out"), &[]);
    assert!(!ok && said.contains("nothing was predicted"), "{said}");
    // One good image next to it: the run succeeds and says what it skipped.
    image(&d, 64);
    let (ok, said) = predict(&d, &d.join("out2"), &[]);
    assert!(ok && said.contains("1 skipped"), "{said}");
    std::fs::remove_dir_all(&d).ok();
}

/// A full disk (an output that is /dev/full) is reported with the file and the OS's error, not only as
/// "the output writer stopped".
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_names_the_file_and_the_error() {
    let d = tmp("full");
    let src = d.join("src");
    std::fs::create_dir_all(&src).unwrap();
    let one = image(&d, 64);
    for i in 0..20 {
        std::fs::copy(&one, src.join(format!("{i:05}.png"))).unwrap();
    }
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("00000.jpg")).unwrap();
    let (ok, said) = predict(&src, &out, &["--batch", "1"]);
    assert!(
        !ok && said.contains("00000.jpg") && said.contains("No space left on device"),
        "{said}"
    );
    std::fs::remove_dir_all(&d).ok();
}
