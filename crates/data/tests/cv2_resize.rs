//! The pixels the network sees equal Ultralytics' byte for byte: JPEG decoding as cv2.imread, resize as
//! cv2.resize(INTER_LINEAR), and the predict/val letterboxes, against outputs of the real OpenCV and
//! Ultralytics (`scripts/make_cv2_fixture.py`).

use data::image_ops::{letterbox_auto, letterbox_image, read_rgb, resize_linear, resize_long_side};
use image::RgbImage;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cv2_resize")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("cases.json")).unwrap()).unwrap()
}

fn png(name: &str) -> RgbImage {
    image::open(fixture().join(name)).unwrap().to_rgb8()
}

fn fnv1a64(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn val_tile(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/trees/images/val")
        .join(name)
}

#[test]
fn resize_equals_cv2_byte_for_byte() {
    let c = cases();
    let cases = c["resize"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut failed = Vec::new();
    for case in cases {
        let src = png(case["src"].as_str().unwrap());
        let want = png(case["out"].as_str().unwrap());
        let (w, h) = (case["w"].as_u64().unwrap(), case["h"].as_u64().unwrap());
        let got = resize_linear(&src, w as u32, h as u32);
        assert_eq!(got.dimensions(), want.dimensions());
        let differ = got
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        if differ > 0 {
            failed.push(format!(
                "{} -> {w}x{h}: {differ} of {} bytes differ",
                case["src"],
                want.as_raw().len()
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "OpenCV {}:\n{}",
        c["opencv"],
        failed.join("\n")
    );
}

#[test]
fn jpeg_decoding_equals_cv2_imread() {
    let c = cases();
    let decodes = c["decode_fnv1a64_rgb"].as_object().unwrap();
    assert_eq!(decodes.len(), 14, "every val tile");
    let failed: Vec<&String> = decodes
        .iter()
        .filter(|(name, want)| {
            fnv1a64(read_rgb(&val_tile(name)).unwrap().as_raw()) != want.as_str().unwrap()
        })
        .map(|(name, _)| name)
        .collect();
    assert!(failed.is_empty(), "decoded differently: {failed:?}");
}

#[test]
fn predict_and_val_letterboxes_equal_ultralytics() {
    let c = cases();
    let mut failed = Vec::new();
    for case in c["letterbox"].as_array().unwrap() {
        let img = read_rgb(&val_tile(case["image"].as_str().unwrap())).unwrap();
        let crop = case["crop"].as_array().unwrap();
        let (ch, cw) = (crop[0].as_u64().unwrap(), crop[1].as_u64().unwrap());
        let img = image::imageops::crop_imm(&img, 0, 0, cw as u32, ch as u32).to_image();
        let imgsz = case["imgsz"].as_u64().unwrap() as usize;
        let (p, _) = letterbox_auto(&img, imgsz, imgsz, 32);
        let (v, _) = resize_long_side(img, imgsz);
        let (v, _) = letterbox_image(&v, imgsz, imgsz);
        for (what, out) in [("predict", &p), ("val", &v)] {
            let shape = case[format!("{what}_shape")].as_array().unwrap();
            let want_shape = (shape[0].as_u64().unwrap(), shape[1].as_u64().unwrap());
            let got_shape = (out.height() as u64, out.width() as u64);
            if got_shape != want_shape || fnv1a64(out.as_raw()) != case[what].as_str().unwrap() {
                failed.push(format!(
                    "{what} {} crop {ch}x{cw} at {imgsz}: shape {got_shape:?} vs {want_shape:?}",
                    case["image"]
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
