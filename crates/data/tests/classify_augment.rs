//! The classification training transform: RandomResizedCrop's resize of a region equals torchvision's
//! `F.resized_crop` on Pillow to the bit (tests/fixtures/randaugment, scripts/make_randaugment_fixture.py), and the
//! parameter draws keep torchvision's ranges, fallbacks and rounding.

use data::classify_augment::{crop_params, erase_params, resized_crop, to_chw, ClassifyAugment};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/randaugment")
}

#[test]
fn resized_crops_equal_torchvision_to_the_bit() {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("ops.json")).unwrap())
            .unwrap();
    let img = image::open(fixture().join("crop.png")).unwrap().to_rgb8();
    let stack = image::open(fixture().join("crops.png")).unwrap().to_rgb8();
    let crops = meta["crops"].as_array().unwrap();
    assert!(crops.len() >= 5);
    for (k, c) in crops.iter().enumerate() {
        let r: Vec<u32> = c["region"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let want = image::imageops::crop_imm(&stack, 0, 32 * k as u32, 32, 32).to_image();
        let got = resized_crop(&img, (r[0], r[1], r[2], r[3]), 32);
        assert_eq!(got, want, "region {r:?}");
    }
}

#[test]
fn crop_draws_stay_in_torchvision_s_ranges() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (w, h) = (120u32, 80u32);
    for _ in 0..2000 {
        let (i, j, ch, cw) = crop_params(w, h, (0.5, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
        assert!(i + ch <= h && j + cw <= w && ch > 0 && cw > 0);
        let area = (ch * cw) as f64 / (w * h) as f64;
        let fallback = (i, j, ch, cw) == (0, 6, 80, 107);
        assert!(fallback || (0.49..=1.01).contains(&area), "{area}");
        let aspect = cw as f64 / ch as f64;
        assert!(fallback || (0.72..=1.36).contains(&aspect), "{aspect}");
    }
    // A strip no crop of 3/4..4/3 fits: ten misses, then the centre crop clamped to the ratio.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    assert_eq!(
        crop_params(200, 10, (0.5, 1.0), (0.75, 4.0 / 3.0), &mut rng),
        (0, 93, 10, 13)
    );
    for _ in 0..2000 {
        if let Some((i, j, eh, ew)) = erase_params(64, 64, &mut rng) {
            assert!(eh < 64 && ew < 64 && i + eh <= 64 && j + ew <= 64);
            let area = (eh * ew) as f64 / 4096.0;
            assert!((0.01..=0.35).contains(&area), "{area}");
        }
    }
}

#[test]
fn the_transform_is_reproducible_and_erases_with_zeros() {
    let img = image::open(fixture().join("crop.png")).unwrap().to_rgb8();
    let aug = ClassifyAugment::default();
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..16)
            .map(|_| aug.apply(&img, 32, &mut rng))
            .collect::<Vec<_>>()
    };
    let a = run(5);
    assert_eq!(a, run(5));
    assert_ne!(a, run(6));
    assert!(a.iter().all(|x| x.len() == 3 * 32 * 32));
    let x = to_chw(
        &image::RgbImage::from_pixel(8, 8, image::Rgb([255, 255, 255])),
        Some((2, 3, 4, 2)),
    );
    let zeros = x.iter().filter(|v| **v == 0.0).count();
    assert_eq!(zeros, 3 * 4 * 2, "the region in every channel");
    assert_eq!(x[2 * 8 + 3], 0.0);
    assert_eq!(x[2 * 8 + 2], 1.0);
}
