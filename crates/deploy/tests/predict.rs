//! `predict` end to end on a folder with nested and corrupt files: outputs written, bad files skipped,
//! labels normalized, and the same detections whatever the batch size.

use deploy::predict::{collect_sources, predict, PredictOptions};
use deploy::verify::Fixture;
use model::burn::tensor::Device;
use model::postprocess::NmsOptions;
use model::YoloModel;
use std::path::{Path, PathBuf};

fn setup(tag: &str) -> (PathBuf, YoloModel) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fx = Fixture::load(&root.join("tests/fixtures/mobileone_nc3_96x128"), None).unwrap();
    let mut m = YoloModel::new(&fx.spec, &Device::flex());
    model::weights::load_state_dict(&mut m, &fx.weights.tensors, "fixture").unwrap();
    let dir = std::env::temp_dir().join(format!("yolo-predict-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/nested")).unwrap();
    let val = root.join("../../datasets/trees/images/val");
    let mut tiles: Vec<PathBuf> = std::fs::read_dir(&val)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    std::fs::copy(&tiles[0], dir.join("src/a.jpg")).unwrap();
    std::fs::copy(
        root.join("tests/data/OSBS_029.jpg"),
        dir.join("src/nested/b.jpg"),
    )
    .unwrap();
    image::RgbImage::from_pixel(300, 170, image::Rgb([90, 140, 60]))
        .save(dir.join("src/c.png"))
        .unwrap();
    std::fs::write(dir.join("src/broken.jpg"), b"not a jpeg").unwrap();
    (dir, m.fuse())
}

fn opts(out: PathBuf, batch: usize) -> PredictOptions {
    PredictOptions {
        input: deploy::predict::InputShape {
            imgsz: data::args::ImgSize::square(128),
            stride: 32,
            crop: false,
        },
        nms: NmsOptions {
            conf: 0.2,
            ..NmsOptions::predict()
        },
        batch,
        out,
        save_img: true,
        save_txt: true,
        save_conf: true,
        save_json: true,
        workers: 2,
        stop: None,
        engine: true,
        tile: None,
        vid_stride: 1,
        stream_timeout: std::time::Duration::from_secs(10),
        stream_buffer: false,
        tracker: None,
        trails: false,
    }
}

#[test]
fn predicts_a_folder_and_skips_bad_files() {
    let (dir, model) = setup("folder");
    let names: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
    let src = collect_sources(dir.join("src").to_str().unwrap()).unwrap();
    assert_eq!(src.len(), 4, "recursive, sorted: {src:?}");
    let out1 = dir.join("out1");
    let s = predict(
        &model,
        &names,
        src.clone(),
        &opts(out1.clone(), 1),
        &Device::flex(),
    )
    .unwrap();
    assert_eq!((s.images, s.skipped), (3, 1));
    assert!(
        s.detections > 0,
        "the fixture's class biases make detections at conf 0.2"
    );
    for f in [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "labels/a.txt",
        "labels/b.txt",
        "predictions.json",
    ] {
        assert!(out1.join(f).exists(), "{f}");
    }
    let text = std::fs::read_to_string(out1.join("labels/a.txt")).unwrap();
    for line in text.lines() {
        let v: Vec<f32> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        assert_eq!(v.len(), 6);
        assert!(v[1..].iter().all(|x| (0.0..=1.0).contains(x)), "{line}");
    }
    let json1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("predictions.json")).unwrap()).unwrap();
    assert_eq!(json1.as_array().unwrap().len(), s.detections);
    // Batching (and the letterbox shapes grouping it) does not change any detection.
    let out3 = dir.join("out3");
    predict(&model, &names, src, &opts(out3.clone(), 3), &Device::flex()).unwrap();
    let json3: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out3.join("predictions.json")).unwrap()).unwrap();
    assert_eq!(json1, json3);
    let glob = format!("{}/src/*.png", dir.display());
    assert_eq!(collect_sources(&glob).unwrap().len(), 1);
    assert!(collect_sources(dir.join("nowhere").to_str().unwrap()).is_err());
    std::fs::remove_dir_all(&dir).ok();
}
