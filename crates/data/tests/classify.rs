//! The classification evaluation transform against what Ultralytics' `classify_transforms` (torchvision on PIL)
//! makes of regions of a trees tile (tests/fixtures/classify, scripts/make_classify_fixture.py): the resized
//! size, and the cropped pixels to the bit, for downscaling, upscaling, wide and tall regions.

use data::classify::{center_crop, eval_input, pil_resize_bilinear, shorter_side_size};
use serde_json::Value;
use std::path::Path;

#[test]
fn resize_and_crop_give_the_packages_pixels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/fixtures/classify");
    let fx: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let tile =
        data::image_ops::read_rgb(&root.join("../..").join(fx["tile"].as_str().unwrap())).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let r: Vec<u32> = c["region"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let size = c["size"].as_u64().unwrap() as u32;
        let region = image::imageops::crop_imm(&tile, r[0], r[1], r[2], r[3]).to_image();
        let (w, h) = shorter_side_size(r[2], r[3], size);
        assert_eq!(
            [w as u64, h as u64],
            [
                c["resized"][0].as_u64().unwrap(),
                c["resized"][1].as_u64().unwrap()
            ],
            "{c}"
        );
        let ours = center_crop(&pil_resize_bilinear(&region, w, h), size);
        let theirs = image::open(dir.join(c["crop"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{c}");
        let differ = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differ, 0, "{c}: {differ} values differ");
        let input = eval_input(&region, size);
        let n = (size * size) as usize;
        for (i, p) in theirs.pixels().enumerate().step_by(97) {
            for ch in 0..3 {
                assert_eq!(input[ch * n + i], p[ch] as f32 / 255.0);
            }
        }
    }
}
