//! `deploy track` against what Ultralytics' `track` wrote for a 24-frame pan over a trees tile
//! (`scripts/make_track_fixture.py`: the Ultralytics-trained weights of fixtures/trained_mobileone, imgsz 192,
//! bytetrack.yaml, botsort.yaml as shipped (camera motion by sparse optical flow) and botsort.yaml with
//! `gmc_method: none`, at the defaults (nothing reaches conf 0.1) and with low thresholds; each fixture folder
//! holds the YAML used and the label files). The same files, the same rows: boxes, scores and
//! track ids, and the package's rules for frames without tracks (no file while a new track awaits
//! confirmation, the plain detections without ids when there is none).
#![cfg(feature = "video")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The files in `d`; none when it does not exist (git keeps no empty fixture folder).
fn names(d: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(d) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn track(bin: &str, verb_args: &[&str], run: &Path, out: &Path) -> String {
    let conf = if run.to_string_lossy().ends_with("_low") {
        vec!["--conf", "0.005"]
    } else {
        vec![]
    };
    testkit::succeeds(
        Command::new(bin)
            .args(verb_args)
            .arg(fixtures().join("trained_mobileone/weights.safetensors"))
            .arg("--source")
            .arg(fixtures().join("video/pan24.avi"))
            .arg("--tracker")
            .arg(run.join("tracker.yaml"))
            .args([
                "--imgsz",
                "192",
                "--save-txt",
                "--save-conf",
                "--save",
                "false",
            ])
            .args(["--device", "cpu", "--out"])
            .arg(out)
            .args(conf),
    )
}

#[test]
fn track_labels_equal_ultralytics_for_every_tracker() {
    let dir = std::env::temp_dir().join(format!("yolo-track-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runs = [
        "bytetrack",
        "bytetrack_low",
        "botsort_gmc_none",
        "botsort_gmc_none_low",
        "botsort",
        "botsort_low",
    ];
    let mut with_ids = 0;
    for run in runs {
        let want = fixtures().join(format!("video/track_{run}"));
        let out = dir.join(run);
        let said = track(
            env!("CARGO_BIN_EXE_deploy"),
            &["track", "--weights"],
            &want,
            &out,
        );
        assert!(said.contains("24 frames of 1 video(s)"), "{run}: {said}");
        assert_eq!(
            names(&out.join("labels")),
            names(&want.join("labels")),
            "{run}: label files"
        );
        for n in names(&want.join("labels")) {
            let (g, w) = (
                testkit::label_rows(&out.join("labels").join(&n)),
                testkit::label_rows(&want.join("labels").join(&n)),
            );
            assert_eq!(g.len(), w.len(), "{run} {n}: rows");
            for (a, b) in g.iter().zip(&w) {
                assert_eq!(a.len(), b.len(), "{run} {n}: {a:?} vs {b:?}");
                assert_eq!(a[0], b[0], "{run} {n}: class");
                if a.len() == 7 {
                    assert_eq!(a[6], b[6], "{run} {n}: track id in {a:?} vs {b:?}");
                    with_ids += 1;
                }
                for (x, y) in a[1..6].iter().zip(&b[1..6]) {
                    assert!((x - y).abs() <= 1e-5, "{run} {n}: {a:?} vs {b:?}");
                }
            }
        }
    }
    assert!(with_ids >= 18, "{with_ids} rows with a track id");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn track_only_flags_are_refused_in_predict_and_bad_trackers_name_the_file() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_deploy"))
            .args(args)
            .arg("--weights")
            .arg(fixtures().join("trained_mobileone/weights.safetensors"))
            .arg("--source")
            .arg(fixtures().join("video/clip.avi"))
            .args(["--device", "cpu", "--save", "false"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    for flags in [
        &["predict", "--persist"][..],
        &["predict", "--tracker", "botsort.yaml"],
        &["predict", "--trails"],
    ] {
        let e = run(flags);
        assert!(e.contains("for track mode"), "{flags:?}: {e}");
    }
    let bad = std::env::temp_dir().join(format!("yolo-bad-tracker-{}.yaml", std::process::id()));
    std::fs::write(&bad, "tracker_type: bytetrack\ntrack_buffer: thirty\n").unwrap();
    let e = run(&["track", "--tracker", bad.to_str().unwrap()]);
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("track_buffer"),
        "{e}"
    );
    let e = run(&["track", "--tracker", "nosuch.yaml"]);
    assert!(e.contains("nosuch.yaml: cannot read"), "{e}");
    std::fs::remove_file(&bad).ok();
}

/// `--trails` draws each track's recent centres on the annotated video: frames where a track has a path differ
/// from the same run without trails; the first frame, where no track has moved yet, does not.
#[test]
fn trails_are_drawn_on_the_annotated_video() {
    use deploy::video::{Location, VideoReader};
    let dir = std::env::temp_dir().join(format!("yolo-trails-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = fixtures().join("video/track_botsort_low");
    let frames = |trails: &str| {
        let out = dir.join(trails);
        testkit::succeeds(
            Command::new(env!("CARGO_BIN_EXE_deploy"))
                .args(["track", "--weights"])
                .arg(fixtures().join("trained_mobileone/weights.safetensors"))
                .arg("--source")
                .arg(fixtures().join("video/pan24.avi"))
                .arg("--tracker")
                .arg(run.join("tracker.yaml"))
                .args(["--imgsz", "192", "--conf", "0.005", "--trails", trails])
                .args(["--device", "cpu", "--out"])
                .arg(&out),
        );
        let mut r = VideoReader::open(&Location::File(out.join("pan24.avi")), 1).unwrap();
        let mut v = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            v.push(f.into_raw());
        }
        v
    };
    let (with, without) = (frames("true"), frames("false"));
    assert_eq!(with.len(), 24);
    assert_eq!(with.len(), without.len());
    assert_eq!(with[0], without[0], "no trail on the first frame");
    let differ = with.iter().zip(&without).filter(|(a, b)| a != b).count();
    assert!(differ >= 5, "only {differ} frames show trails");
    std::fs::remove_dir_all(&dir).ok();
}
