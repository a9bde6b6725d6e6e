//! Bad files through the door users take (`data check`, the binary): each is an error or a warning naming
//! the file, never a panic, an abort or a silently wrong count.

use std::path::{Path, PathBuf};
use std::process::Command;

fn trees() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/trees")
}

/// A dataset of two real tiles with boxes, and their labels; `tag` names the temp folder.
fn dataset(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("yolo-bad-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("images/train")).unwrap();
    std::fs::create_dir_all(d.join("labels/train")).unwrap();
    let mut tiles: Vec<PathBuf> = std::fs::read_dir(trees().join("images/train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tiles.sort();
    let with_boxes = tiles.iter().filter(|t| {
        std::fs::read_to_string(data::config::label_path(t)).is_ok_and(|s| s.lines().count() > 3)
    });
    for (i, t) in with_boxes.take(2).enumerate() {
        std::fs::copy(t, d.join(format!("images/train/tile{i}.jpg"))).unwrap();
        std::fs::copy(
            data::config::label_path(t),
            d.join(format!("labels/train/tile{i}.txt")),
        )
        .unwrap();
    }
    std::fs::write(
        d.join("data.yaml"),
        format!(
            "path: {}\ntrain: images/train\nval: images/train\nnames: ['tree']\n",
            d.display()
        ),
    )
    .unwrap();
    d
}

fn check(d: &Path) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_data"))
        .args(["check", "--split", "train", "--data"])
        .arg(d.join("data.yaml"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let said = testkit::said(&o);
    (o.status.success(), said)
}

/// PNG bytes whose header claims `w x h` pixels (the data is one row of nothing).
fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend(data);
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
    }
    fn crc32(b: &[u8]) -> u32 {
        let mut c = !0u32;
        for &x in b {
            c ^= x as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn usable(said: &str) -> usize {
    let i = said.find(" usable").expect("the summary line");
    said[..i].rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn an_image_header_claiming_gigapixels_is_skipped_not_allocated() {
    let d = dataset("bomb");
    std::fs::write(
        d.join("images/train/bomb.png"),
        png_header_claiming(100_000, 100_000),
    )
    .unwrap();
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
    assert!(
        said.contains("bomb.png") && said.contains("100000x100000"),
        "{said}"
    );
    assert_eq!(usable(&said), 2, "{said}");
}

#[test]
fn a_cr_only_label_file_keeps_every_box() {
    let d = dataset("cr");
    let lf = d.join("labels/train/tile0.txt");
    let text = std::fs::read_to_string(&lf).unwrap();
    let rows = text.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(rows > 3);
    std::fs::write(&lf, text.replace("\r\n", "\n").replace('\n', "\r")).unwrap();
    let cr = data::labels::parse_labels(&std::fs::read_to_string(&lf).unwrap(), "t", 1).unwrap();
    assert_eq!(
        cr.labels.len(),
        rows,
        "every CR-separated row is a box: {:?}",
        cr.notes
    );
    assert!(cr.notes.is_empty(), "{:?}", cr.notes);
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
}

#[test]
fn a_label_file_that_is_not_utf8_is_a_corrupt_pair_not_a_background() {
    let d = dataset("utf8");
    let lf = d.join("labels/train/tile1.txt");
    let mut bytes = std::fs::read(&lf).unwrap();
    bytes.insert(3, 0xFF);
    std::fs::write(&lf, bytes).unwrap();
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
    assert!(
        said.contains("tile1.txt") && said.contains("not UTF-8"),
        "{said}"
    );
    assert!(
        said.contains("1 corrupt") && said.contains("0 backgrounds"),
        "{said}"
    );
}

#[test]
fn a_cache_with_a_bad_class_id_is_rebuilt() {
    let d = dataset("cache");
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
    let cache = d.join("labels/train.yolo-burn.cache");
    let text = std::fs::read_to_string(&cache).unwrap();
    assert!(text.contains("\"cls\":0"), "a cache with class ids");
    std::fs::write(&cache, text.replacen("\"cls\":0", "\"cls\":7", 1)).unwrap();
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
    let again = std::fs::read_to_string(&cache).unwrap();
    assert!(
        !again.contains("\"cls\":7"),
        "the cache was rebuilt from the labels"
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_under_images_does_not_repeat_images() {
    let d = dataset("loop");
    std::os::unix::fs::symlink(d.join("images/train"), d.join("images/train/again")).unwrap();
    let (ok, said) = check(&d);
    assert!(ok, "{said}");
    assert!(said.contains("2 images found"), "{said}");
}

#[test]
fn a_negative_or_quoted_nc_next_to_names_is_an_error_naming_it() {
    for nc in ["-1", "'1'"] {
        let d = dataset("nc");
        let y = d.join("data.yaml");
        let text = std::fs::read_to_string(&y).unwrap();
        std::fs::write(&y, format!("{text}nc: {nc}\n")).unwrap();
        let (ok, said) = check(&d);
        assert!(!ok, "nc: {nc} must be refused: {said}");
        assert!(said.contains("data.yaml") && said.contains("nc"), "{said}");
        assert!(!said.contains("panicked"), "{said}");
    }
}

#[test]
fn zero_sizes_on_the_command_line_are_refused_where_typed() {
    let bin = env!("CARGO_BIN_EXE_data");
    for args in [
        vec!["synth", "--out", "/tmp/never", "--size", "0"],
        vec!["synth", "--out", "/tmp/never", "--train", "0"],
        vec!["bench", "--batch", "0"],
        vec!["bench", "--imgsz", "0"],
        vec!["dump", "--imgsz", "100"],
    ] {
        let o = Command::new(bin).args(&args).output().unwrap();
        let said = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains("invalid value"), "{args:?}: {said}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write() {
    let d = std::env::temp_dir().join(format!("yolo-stale-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    // A pid above the kernel's maximum (4194304) never runs.
    let stale = d.join(".results.csv.tmp4294967");
    std::fs::write(&stale, "half").unwrap();
    let other = d.join(".other.csv.tmp4294967");
    std::fs::write(&other, "not ours").unwrap();
    data::write_atomic(&d.join("results.csv"), b"whole\n").unwrap();
    assert!(!stale.exists(), "the dead writer's temp file is gone");
    assert!(other.exists(), "another file's temp is left alone");
    assert_eq!(std::fs::read(d.join("results.csv")).unwrap(), b"whole\n");
    std::fs::remove_dir_all(&d).ok();
}
