//! What the crates' integration tests share. Tests run the binaries (the door users take) and read what
//! those said; each crate's tests used to repeat these lines.

use std::process::Output;

/// A finished command's stdout then stderr, as text (assert messages, and checks of what it printed).
pub fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` to its end and asserts it succeeded; returns what it said ([`said`]).
pub fn succeeds(cmd: &mut std::process::Command) -> String {
    let o = cmd.output().expect("the binary starts");
    let text = said(&o);
    assert!(o.status.success(), "{cmd:?}:\n{text}");
    text
}

/// Starts `cmd` with no input and its output captured (read it with `wait_with_output`).
pub fn spawn(cmd: &mut std::process::Command) -> std::process::Child {
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary starts")
}

/// Sends Ctrl-C's signal (SIGINT) to `child`.
pub fn interrupt(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -INT {}", child.id());
}

/// A test that cannot run on this machine (a system library or driver is missing) says so in one line naming
/// what to install, and the caller returns; with `YOLO_REQUIRE_ALL=1` (what `.ci/run` sets) that is a failure
/// instead, so CI proves every test ran.
pub fn skip(what: &str, install: &str) {
    let line = format!("skipped: {what} (needs {install})");
    if std::env::var("YOLO_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("{line}; YOLO_REQUIRE_ALL=1 does not allow skipping");
    }
    eprintln!("{line}");
}

/// `items`, after a [`skip`] line when there are none (what a test would otherwise pass by looping over nothing).
pub fn or_skip<T>(items: Vec<T>, what: &str, install: &str) -> Vec<T> {
    if items.is_empty() {
        skip(what, install);
    }
    items
}

/// The rows of a YOLO label file (`cls cx cy w h [conf] [id]`) as numbers.
pub fn label_rows(p: &std::path::Path) -> Vec<Vec<f64>> {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|e| panic!("{}: {v}: {e}", p.display()))
                })
                .collect()
        })
        .collect()
}

/// The first `n` images (by name) of each class folder of a classification dataset's `split`, copied from `src`
/// to the same place under `dst`: a small image-folder dataset for a quick training run.
pub fn copy_class_images(src: &std::path::Path, dst: &std::path::Path, split: &str, n: usize) {
    for class in std::fs::read_dir(src.join(split)).expect("the split folder") {
        let from = class.expect("a class folder").path();
        let to = dst
            .join(split)
            .join(from.file_name().expect("a folder name"));
        std::fs::create_dir_all(&to).expect("a writable destination");
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&from)
            .expect("a class folder")
            .map(|e| e.expect("an entry").path())
            .collect();
        files.sort();
        for f in files.iter().take(n) {
            std::fs::copy(f, to.join(f.file_name().expect("a file name"))).expect("a copy");
        }
    }
}

/// Intersection over union of two boxes given as x1 y1 x2 y2.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter + 1e-12)
}

/// A JSON array of numbers (a box, a fixture's values); panics on anything else, as a test should.
pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}
