//! RandAugment's colour operations against torchvision on Pillow 13 (tests/fixtures/randaugment, made by
//! scripts/make_randaugment_fixture.py): every output pixel equal, for each operation at RandAugment's
//! magnitude 9 of 31 (both signs) and at the ends of its ranges, on square and non-square crops.

use std::path::Path;

#[test]
fn colour_operations_equal_torchvision_to_the_bit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randaugment");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ops.json")).unwrap()).unwrap();
    let ops = meta["ops"].as_array().unwrap();
    let inputs = meta["inputs"].as_u64().unwrap();
    assert!(ops.len() >= 20 && inputs >= 3);
    let mut checked = 0;
    for k in 0..inputs {
        let input = image::open(dir.join(format!("in{k}.png")))
            .unwrap()
            .to_rgb8();
        let stack = image::open(dir.join(format!("out{k}.png")))
            .unwrap()
            .to_rgb8();
        let (w, h) = input.dimensions();
        assert_eq!(stack.dimensions(), (w, h * ops.len() as u32));
        for (i, op) in ops.iter().enumerate() {
            let name = op["op"].as_str().unwrap();
            let m = op["magnitude"].as_f64().unwrap();
            let want = image::imageops::crop_imm(&stack, 0, i as u32 * h, w, h).to_image();
            let got = data::randaugment::apply(&input, name, m).expect("a colour operation");
            let differ = got
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(
                differ, 0,
                "input {k} ({w}x{h}), {name} {m}: {differ} values differ"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, ops.len() * inputs as usize);
    assert!(data::randaugment::apply(&image::RgbImage::new(4, 4), "Rotate", 10.0).is_none());
}
