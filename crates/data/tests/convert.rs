//! `data convert` through the binary against labels made by the real Ultralytics converters
//! (`scripts/make_convert_fixture.py`: `convert_coco` and VOC.yaml's `convert_label`) from annotations of the
//! datasets/trees val tiles, with crowd, zero-size, repeated and difficult objects in them; the result loads
//! as a dataset with the class names kept.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_data");

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/convert")
}

/// Every expected label file has a twin in `got` with the same rows (within 1e-9), and no other file exists.
fn same_labels(expected: &Path, got: &Path) -> usize {
    let mut n = 0;
    let mut names: Vec<_> = std::fs::read_dir(expected)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in &names {
        let (a, b) = (
            testkit::label_rows(&expected.join(name)),
            testkit::label_rows(&got.join(name)),
        );
        assert_eq!(a.len(), b.len(), "{name:?}: rows");
        for (ra, rb) in a.iter().zip(&b) {
            assert_eq!(ra.len(), rb.len());
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() < 1e-9, "{name:?}: {ra:?} vs {rb:?}");
            }
        }
        n += a.len();
    }
    let written = std::fs::read_dir(got).unwrap().count();
    assert_eq!(written, names.len(), "label files written");
    n
}

fn convert(args: &[&str], extra: &[&Path]) -> String {
    let s = testkit::succeeds(Command::new(BIN).arg("convert").args(args).args(extra));
    s
}

#[test]
fn coco_and_voc_match_ultralytics_converters() {
    let tmp = std::env::temp_dir().join(format!("yolo-convert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let images = root().join("datasets/trees/images/val");

    let out = tmp.join("coco");
    let ann = fixture().join("coco/instances_val.json");
    let s = convert(
        &["--from", "coco", "--split", "val"],
        &[
            &ann,
            Path::new("--images"),
            &images,
            Path::new("--out"),
            &out,
        ],
    );
    let n = same_labels(&fixture().join("coco_expected"), &out.join("labels/val"));
    assert!(n > 50, "{n} boxes");
    for why in [
        "crowd annotation",
        "box of zero width or height",
        "repeated box",
    ] {
        assert!(s.contains(why), "{why} counted: {s}");
    }
    let cfg = data::DataConfig::from_file(&out.join("data.yaml")).unwrap();
    assert_eq!(cfg.names, ["Tree", "Snag"]);
    let ds = data::Dataset::load(&cfg, "val").unwrap();
    assert_eq!(ds.len(), 14);

    // VOC: the fixture's Annotations/ with the tiles as JPEGImages/.
    let voc = tmp.join("voc-in");
    std::fs::create_dir_all(voc.join("JPEGImages")).unwrap();
    copy_dir(&fixture().join("voc/Annotations"), &voc.join("Annotations"));
    copy_dir(&images, &voc.join("JPEGImages"));
    let out = tmp.join("voc");
    let s = convert(&["--from", "voc"], &[&voc, Path::new("--out"), &out]);
    let n = same_labels(&fixture().join("voc_expected"), &out.join("labels/train"));
    assert!(n > 50, "{n} boxes");
    assert!(s.contains("difficult object"), "{s}");
    let cfg = data::DataConfig::from_file(&out.join("data.yaml")).unwrap();
    assert_eq!(cfg.names, ["Snag", "Tree"]);

    // Not a COCO file: an error naming it.
    let o = Command::new(BIN)
        .args(["convert", "--from", "coco"])
        .arg(root().join("datasets/trees/data.yaml"))
        .arg("--images")
        .arg(&images)
        .arg("--out")
        .arg(tmp.join("bad"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("data.yaml: not JSON"), "{e}");
    std::fs::remove_dir_all(&tmp).ok();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// An annotation whose `<filename>` is not in JPEGImages/ (the deepforest wheel's `OSBS_029.xml` names a
/// `.tif` shipped as `.png`), or names a path, is matched by its stem as Ultralytics does, with one note;
/// the labels are Ultralytics' as before.
#[test]
fn voc_finds_images_by_the_annotation_stem() {
    let tmp = std::env::temp_dir().join(format!("yolo-convert-stem-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let voc = tmp.join("voc-in");
    copy_dir(&fixture().join("voc/Annotations"), &voc.join("Annotations"));
    copy_dir(
        &root().join("datasets/trees/images/val"),
        &voc.join("JPEGImages"),
    );
    let renamed = [
        ("2019_YELL_2_541000_4977000_image_crop_r0_c0", ".tif"),
        (
            "2019_YELL_2_541000_4977000_image_crop_r0_c1",
            "/../../outside.jpg",
        ),
    ];
    for (stem, tail) in renamed {
        let p = voc.join("Annotations").join(format!("{stem}.xml"));
        let xml = std::fs::read_to_string(&p).unwrap();
        let named = format!("<filename>{stem}{tail}</filename>");
        let xml = xml.replace(&format!("<filename>{stem}.jpg</filename>"), &named);
        assert!(xml.contains(&named));
        std::fs::write(&p, xml).unwrap();
    }
    let out = tmp.join("out");
    let s = convert(&["--from", "voc"], &[&voc, Path::new("--out"), &out]);
    let n = same_labels(&fixture().join("voc_expected"), &out.join("labels/train"));
    assert!(n > 50, "{n} boxes");
    assert!(
        s.contains("note: 2 annotations name an image that is not in JPEGImages/")
            && s.contains("crop_r0_c0.tif -> 2019_YELL_2_541000_4977000_image_crop_r0_c0.jpg"),
        "{s}"
    );
    assert!(!tmp.join("outside.jpg").exists() && !voc.join("outside.jpg").exists());
    std::fs::remove_dir_all(&tmp).ok();
}
