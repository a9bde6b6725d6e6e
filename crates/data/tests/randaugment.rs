//! RandAugment's operations against torchvision on Pillow 13 (tests/fixtures/randaugment, made by
//! scripts/make_randaugment_fixture.py): every output pixel equal, for each operation at RandAugment's
//! magnitude 9 of 31 (both signs) and at the ends of its ranges (shear, translate, rotate included: the affine
//! matrices and Pillow's bilinear transform), on square and non-square crops.

use std::path::Path;

#[test]
fn operations_equal_torchvision_to_the_bit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randaugment");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ops.json")).unwrap()).unwrap();
    let ops = meta["ops"].as_array().unwrap();
    let inputs = meta["inputs"].as_u64().unwrap();
    assert!(ops.len() >= 40 && inputs >= 3);
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
            let got = data::randaugment::apply(&input, name, m).expect("an operation");
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
    assert!(data::randaugment::apply(&image::RgbImage::new(4, 4), "Invert", 0.0).is_none());
}

#[test]
fn magnitudes_are_torchvision_s_tables() {
    use data::randaugment::magnitude;
    // torch.linspace's float32 values at RandAugment's default bin 9 of 31 (the fixture's, read from torch).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randaugment");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ops.json")).unwrap()).unwrap();
    let first = |op: &str| {
        meta["ops"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["op"] == op)
            .unwrap()["magnitude"]
            .as_f64()
            .unwrap()
    };
    for op in [
        "Brightness",
        "Color",
        "Contrast",
        "Sharpness",
        "ShearX",
        "ShearY",
        "Rotate",
        "Solarize",
        "Posterize",
        "TranslateX",
        "TranslateY",
    ] {
        assert_eq!(magnitude(op, 9, 64, 64), first(op), "{op}");
    }
    assert_eq!(magnitude("Posterize", 30, 64, 64), 4.0);
    assert_eq!(magnitude("Solarize", 30, 64, 64), 0.0);
}

#[test]
fn rand_augment_draws_its_operations_from_the_seed() {
    use rand::SeedableRng;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randaugment");
    let img = image::open(dir.join("in0.png")).unwrap().to_rgb8();
    let run = |seed: u64| {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..8)
            .map(|_| data::randaugment::rand_augment(&img, 2, 9, &mut rng))
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(1), run(1));
    assert_eq!(a, b, "the same seed, the same images");
    assert!(a.iter().any(|x| *x != img), "eight draws change the image");
    assert_ne!(a, run(2));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    assert_eq!(data::randaugment::rand_augment(&img, 0, 9, &mut rng), img);
}
