//! `.pt` files built to exhaust the reader (issue 28), through the binary: each is refused with a message,
//! quickly and without aborting. The first three are saved by the real torch.save
//! (`scripts/make_hostile_pt.py`): a cyclic `yaml` dict, a `yaml` sharing one list into 10^12 values, a
//! float16 buffer expanded from 1 value to 4e9; the last two are made here: a pickle nesting tuples a million
//! deep (freed level by level it overflowed the stack) and a `data.pkl` that unpacks to 200 MB from a small zip.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(name)
}

/// `model info --weights PATH`: it must fail (not crash) within a few seconds, saying `says`.
fn refused(path: &Path, says: &str) {
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_model"))
        .args(["info", "--weights"])
        .arg(path)
        .output()
        .unwrap();
    let said = testkit::said(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}: an error exit, not a crash:\n{said}",
        path.display()
    );
    assert!(said.contains(says), "{}:\n{said}", path.display());
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "{}: {:?}",
        path.display(),
        t.elapsed()
    );
}

fn zip_with_pickle(path: &Path, write: impl FnOnce(&mut dyn Write)) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file("archive/data.pkl", opts).unwrap();
    write(&mut z);
    z.finish().unwrap();
}

#[test]
fn crafted_checkpoints_are_refused_with_a_message() {
    refused(&fixture("cyclic_yaml.pt"), "nested deeper than 64 levels");
    refused(&fixture("memo_bomb.pt"), "holds more than 100000 values");
    refused(
        &fixture("stride0.pt"),
        "more bytes than the whole file holds",
    );

    let dir = std::env::temp_dir().join(format!("yolo-hostile-pt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deep = dir.join("deep.pt");
    zip_with_pickle(&deep, |w| {
        w.write_all(b"\x80\x02]").unwrap();
        w.write_all(&vec![0x85u8; 1_000_000]).unwrap();
        w.write_all(b".").unwrap();
    });
    refused(&deep, "not an Ultralytics checkpoint");

    let bomb = dir.join("bomb.pt");
    zip_with_pickle(&bomb, |w| {
        let chunk = vec![b'N'; 1 << 20];
        for _ in 0..200 {
            w.write_all(&chunk).unwrap();
        }
    });
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2_000_000);
    refused(&bomb, "larger than 100 MB unpacked");
    std::fs::remove_dir_all(&dir).ok();
}
