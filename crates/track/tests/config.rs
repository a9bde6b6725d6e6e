//! Tracker YAMLs: ours load as Ultralytics' defaults; an unknown key, a wrong type, a missing key, an
//! unimplemented GMC method or ReID is an error naming the key and the file.

use std::path::Path;
use track::{GmcMethod, TrackerConfig, TrackerType};

fn ours(name: &str) -> TrackerConfig {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../configs/trackers")
        .join(name);
    TrackerConfig::from_file(&p).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn shipped_files_load_with_the_packages_defaults() {
    assert_eq!(ours("bytetrack.yaml"), TrackerConfig::bytetrack());
    let b = ours("botsort.yaml");
    assert_eq!(b.tracker_type, TrackerType::BotSort);
    assert_eq!(b.gmc_method, GmcMethod::SparseOptFlow);
    assert_eq!((b.proximity_thresh, b.appearance_thresh), (0.5, 0.8));
    assert_eq!(
        TrackerConfig {
            tracker_type: TrackerType::ByteTrack,
            gmc_method: GmcMethod::None,
            ..b
        },
        TrackerConfig::bytetrack()
    );
}

#[test]
fn bad_files_are_errors_naming_key_and_file() {
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/trackers/botsort.yaml"),
    )
    .unwrap();
    // (in botsort.yaml, replace, with, the error says)
    let edits = [
        (
            "match_thresh: 0.8",
            "match_tresh: 0.8",
            "unknown key 'match_tresh'",
        ),
        (
            "track_buffer: 30",
            "track_buffer: 2.5",
            "track_buffer: expected a whole number",
        ),
        (
            "track_buffer: 30",
            "track_buffer: -1",
            "track_buffer: expected a whole number",
        ),
        (
            "fuse_score: True",
            "fuse_score: yes please",
            "fuse_score: expected True or False",
        ),
        (
            "match_thresh: 0.8",
            "match_thresh: '0.8'",
            "match_thresh: expected a number",
        ),
        (
            "new_track_thresh: 0.25",
            "new_track_thresh: 1.5",
            "new_track_thresh: 1.5 is outside 0..1",
        ),
        (
            "gmc_method: sparseOptFlow",
            "gmc_method: orb",
            "gmc_method: orb is not implemented; implemented: none, sparseOptFlow",
        ),
        (
            "with_reid: False",
            "with_reid: True",
            "with_reid: True is not implemented",
        ),
        (
            "tracker_type: botsort",
            "tracker_type: deepsort",
            "expected bytetrack or botsort",
        ),
        ("track_low_thresh: 0.1", "", "track_low_thresh: missing"),
    ];
    let whole = [
        (
            "tracker_type: bytetrack\ngmc_method: none\n",
            "unknown key 'gmc_method' for bytetrack",
        ),
        ("- 1\n- 2\n", "expected a mapping"),
        ("a: [\n", "not valid YAML"),
    ];
    let cases = edits
        .iter()
        .map(|(a, b, want)| (base.replace(a, b), *want))
        .chain(whole.iter().map(|(t, want)| (t.to_string(), *want)));
    for (text, want) in cases {
        let e = TrackerConfig::from_str(&text, "my/tracker.yaml")
            .expect_err(want)
            .to_string();
        assert!(
            e.starts_with("my/tracker.yaml: ") && e.contains(want),
            "{want}: got {e}"
        );
    }
    let missing = TrackerConfig::from_file(Path::new("no/such/tracker.yaml"))
        .expect_err("missing file")
        .to_string();
    assert!(
        missing.contains("no/such/tracker.yaml: cannot read"),
        "{missing}"
    );
}
