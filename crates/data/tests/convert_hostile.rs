//! `data convert` on crafted annotations, through the binary (issue 28): nothing outside `--out` is written
//! or removed, the sources are never deleted (not even when `--out` is where they live), every box that is
//! kept is a finite, positive-size row, two images with one name keep all their boxes, a second conversion
//! into one `--out` is refused, and a COCO file without categories is an error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_data");

fn tree_image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../datasets/trees/images/val")
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg"))
        .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-hostile-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&Path]) -> Output {
    Command::new(BIN)
        .arg("convert")
        .args(args)
        .output()
        .unwrap()
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn coco(dir: &Path, json: &str, images: &Path, out: &Path) -> Output {
    let ann = dir.join("ann.json");
    std::fs::write(&ann, json).unwrap();
    run(&[
        Path::new("--from"),
        Path::new("coco"),
        &ann,
        Path::new("--images"),
        images,
        Path::new("--out"),
        out,
    ])
}

fn labels(out: &Path, split: &str) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(out.join("labels").join(split))
        .map(|d| {
            d.map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn coco_file_names_outside_images_are_never_read_linked_or_removed() {
    let d = tmp("coco-paths");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(tree_image(), images.join("a.jpg")).unwrap();
    let secret = d.join("secret.jpg");
    std::fs::copy(tree_image(), &secret).unwrap();
    let json = format!(
        r#"{{"categories": [{{"id": 1, "name": "tree"}}],
            "images": [{{"id": 1, "file_name": "{}", "width": 400, "height": 400}},
                       {{"id": 2, "file_name": "../secret.jpg", "width": 400, "height": 400}},
                       {{"id": 3, "file_name": "a.jpg", "width": 400, "height": 400}}],
            "annotations": [{{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}},
                            {{"image_id": 2, "category_id": 1, "bbox": [1, 1, 10, 10]}},
                            {{"image_id": 3, "category_id": 1, "bbox": [1, 1, 10, 10]}}]}}"#,
        secret.display()
    );
    let out = d.join("out");
    let o = coco(&d, &json, &images, &out);
    let s = said(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("skipped 2: file_name absolute or with .."),
        "{s}"
    );
    let placed: Vec<_> = std::fs::read_dir(out.join("images/train"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(placed, ["a.jpg"], "only the image inside --images");
    assert!(secret.is_file(), "the file outside is untouched");
    assert_eq!(labels(&out, "train").len(), 1);
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn an_out_folder_that_is_the_source_keeps_the_source_images() {
    let d = tmp("coco-inplace");
    let out = d.join("ds");
    let images = out.join("images/train");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(tree_image(), images.join("a.jpg")).unwrap();
    let before = std::fs::read(images.join("a.jpg")).unwrap();
    let json = r#"{"categories": [{"id": 0, "name": "tree"}],
        "images": [{"id": 7, "file_name": "a.jpg", "width": 400, "height": 400}],
        "annotations": [{"image_id": 7, "category_id": 0, "bbox": [10, 20, 30, 40]}]}"#;
    let o = coco(&d, json, &images, &out);
    assert!(o.status.success(), "{}", said(&o));
    assert_eq!(std::fs::read(images.join("a.jpg")).unwrap(), before);
    assert_eq!(labels(&out, "train").len(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["a.jpg"], "no temporary files left");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn boxes_are_finite_and_images_with_one_name_keep_all_their_boxes() {
    let d = tmp("coco-dups");
    let images = d.join("images");
    for sub in ["x", "y"] {
        std::fs::create_dir_all(images.join(sub)).unwrap();
        std::fs::copy(tree_image(), images.join(sub).join("t.jpg")).unwrap();
    }
    // Width 0 (the image's own size is used instead), two images named t.jpg in two folders, and the first
    // image listed twice under another id: every box is kept, none is infinite.
    let json = r#"{"categories": [{"id": 1, "name": "tree"}],
        "images": [{"id": 1, "file_name": "x/t.jpg", "width": 0, "height": 400},
                   {"id": 2, "file_name": "y/t.jpg", "width": 400, "height": 400},
                   {"id": 3, "file_name": "x/t.jpg", "width": 400, "height": 400}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40]},
                        {"image_id": 2, "category_id": 1, "bbox": [0, 0, 80, 80]},
                        {"image_id": 3, "category_id": 1, "bbox": [200, 200, 20, 20]}]}"#;
    let out = d.join("out");
    let o = coco(&d, json, &images, &out);
    let s = said(&o);
    assert!(o.status.success(), "{s}");
    let l = labels(&out, "train");
    let all: Vec<&str> = l.iter().flat_map(|(_, t)| t.lines()).collect();
    assert_eq!(all.len(), 3, "{l:?}\n{s}");
    assert!(
        all.iter().all(|r| r
            .split(' ')
            .all(|v| v.parse::<f64>().is_ok_and(f64::is_finite))),
        "{all:?}"
    );
    assert_eq!(l.len(), 2, "two images, two label files: {l:?}");
    assert!(
        s.contains("renamed") && s.contains("wrote 2 images, 3 boxes"),
        "{s}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn voc_non_finite_and_inverted_boxes_are_skipped_and_paths_never_joined() {
    let d = tmp("voc");
    let voc = d.join("voc");
    std::fs::create_dir_all(voc.join("Annotations")).unwrap();
    std::fs::create_dir_all(voc.join("JPEGImages")).unwrap();
    std::fs::copy(tree_image(), voc.join("JPEGImages/a.jpg")).unwrap();
    let victim = d.join("victim.jpg");
    std::fs::copy(tree_image(), &victim).unwrap();
    let obj = |x0: &str, x1: &str, y0: &str, y1: &str| {
        format!(
            "<object><name>tree</name><bndbox><xmin>{x0}</xmin><xmax>{x1}</xmax><ymin>{y0}</ymin>\
             <ymax>{y1}</ymax></bndbox></object>"
        )
    };
    let xml = format!(
        "<annotation><filename>{}</filename><size><width>400</width><height>400</height></size>{}{}{}{}{}\
         </annotation>",
        victim.display(),
        obj("10", "50", "10", "50"),
        obj("NaN", "50", "10", "50"),
        obj("10", "inf", "10", "50"),
        obj("60", "20", "10", "50"),
        obj("-1e308", "1e308", "10", "50"),
    );
    std::fs::write(voc.join("Annotations/a.xml"), xml).unwrap();
    let out = d.join("out");
    let o = run(&[
        Path::new("--from"),
        Path::new("voc"),
        &voc,
        Path::new("--out"),
        &out,
    ]);
    let s = said(&o);
    assert!(o.status.success(), "{s}");
    assert!(victim.is_file(), "an absolute <filename> is never joined");
    let l = labels(&out, "train");
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].1.lines().count(), 1, "{l:?}");
    assert!(
        s.contains("skipped 3: box with a coordinate that is not a finite number")
            && s.contains("skipped 1: box with xmax <= xmin or ymax <= ymin"),
        "{s}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn converting_twice_into_one_out_and_coco_without_classes_are_errors() {
    let d = tmp("again");
    let images = d.join("images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy(tree_image(), images.join("a.jpg")).unwrap();
    let json = r#"{"categories": [{"id": 1, "name": "tree"}],
        "images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 400}],
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40]}]}"#;
    let out = d.join("out");
    assert!(coco(&d, json, &images, &out).status.success());
    let first = labels(&out, "train");
    let o = coco(&d, json, &images, &out);
    let s = said(&o);
    assert!(
        !o.status.success() && s.contains("already holds label files"),
        "{s}"
    );
    assert_eq!(labels(&out, "train"), first, "nothing changed");

    let none = r#"{"categories": [], "images": [], "annotations": []}"#;
    let out2 = d.join("out2");
    let o = coco(&d, none, &images, &out2);
    let s = said(&o);
    assert!(!o.status.success() && s.contains("names no class"), "{s}");
    assert!(!out2.exists(), "nothing written");
    std::fs::remove_dir_all(&d).ok();
}
