//! Model YAMLs with values that would build a broken model or abort on allocation: `model info` (the
//! binary) refuses each with the file, the row and the reason, and never panics.

use std::path::PathBuf;
use std::process::Command;

const BASE: &str = "nc: 3
scales:
  t: [0.33, 0.25, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, Conv, [128, 3, 2]]
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]]
  - [-1, 1, SPPF, [256, 5]]
head:
  - [[-1], 1, Detect, [nc]]
";

fn info(yaml: &str, tag: &str, imgsz: &str) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("yolo-bad-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f: PathBuf = dir.join(format!("{tag}.yaml"));
    std::fs::write(&f, yaml).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_model"))
        .args(["info", "--scale", "t", "--imgsz", imgsz, "--config"])
        .arg(&f)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let said = testkit::said(&o);
    (o.status.code(), said)
}

/// `info` on `yaml` exits 1 with the file, `want` and (`names_row`) the row named, and no panic.
fn assert_refused(tag: &str, yaml: &str, want: &str, names_row: bool) {
    let (code, said) = info(yaml, tag, "64");
    assert_eq!(code, Some(1), "{tag}: {said}");
    assert!(
        said.contains(&format!("{tag}.yaml")),
        "{tag}: names the file: {said}"
    );
    assert!(said.contains(want), "{tag}: wanted '{want}': {said}");
    assert!(!said.contains("panicked"), "{tag}: {said}");
    if names_row {
        assert!(said.contains("row"), "{tag}: names the row: {said}");
    }
}

#[test]
fn the_base_model_is_fine() {
    let (code, said) = info(BASE, "base", "64");
    assert_eq!(code, Some(0), "{said}");
}

#[test]
fn bad_values_are_errors_naming_row_and_reason() {
    let edit = |from: &str, to: &str| BASE.replace(from, to);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "groups0",
            edit("[64, 3, 2]]", "[64, 3, 2, None, 0]]"),
            "groups 0",
        ),
        ("e0", edit("[128, True]", "[128, True, 1, 0.0]"), "e 0"),
        (
            "eneg",
            edit("[128, True]", "[128, True, 1, -0.5]"),
            "e -0.5",
        ),
        (
            "width",
            edit("[0.33, 0.25, 1024]", "[0.33, -0.25, 1024]"),
            "width -0.25",
        ),
        ("c2neg", edit("[64, 3, 2]]", "[-64, 3, 2]]"), "0 channels"),
        ("k0", edit("[64, 3, 2]]", "[64, 0, 2]]"), "k"),
        ("sppf_even", edit("[256, 5]", "[256, 4]"), "odd"),
        ("reg_max0", format!("reg_max: 0\n{BASE}"), "reg_max 0"),
        ("reg_max1", format!("reg_max: 1\n{BASE}"), "reg_max 1"),
        ("nc_huge", edit("nc: 3", "nc: 100000000"), "nc 100000000"),
        (
            "repeats_huge",
            edit("[-1, 3, C2f", "[-1, 1000000, C2f"),
            "repeats",
        ),
        (
            "width_huge",
            BASE.replace("[0.33, 0.25, 1024]", "[0.33, 8.0, 1.0e12]")
                .replace("[256, 3, 2]", "[1.0e11, 3, 2]"),
            "channels",
        ),
        (
            "detect_only",
            "nc: 3\nbackbone:\n  - [-1, 1, Detect, [nc]]\nhead: []\n".to_string(),
            "Detect reads the image",
        ),
    ];
    for (tag, yaml, want) in cases {
        let top_level = ["width", "reg_max0", "reg_max1", "nc_huge"].contains(&tag);
        assert_refused(tag, &yaml, want, !top_level);
    }
}

#[test]
fn bad_classifier_rows_name_row_and_reason() {
    let cls = BASE.replace("  - [[-1], 1, Detect, [nc]]", "  - [-1, 1, Classify, [nc]]");
    let (code, said) = info(&cls, "cls", "64");
    assert_eq!(code, Some(0), "the base classifier: {said}");
    assert!(
        said.contains("ultralytics.nn.modules.head.Classify"),
        "{said}"
    );
    let cases: Vec<(&str, String, &str, bool)> = vec![
        (
            "cls_and_detect",
            cls.replace("head:\n", "head:\n  - [[-1], 1, Detect, [nc]]\n"),
            "only head row",
            false,
        ),
        (
            "cls_mid",
            cls.replace(
                "  - [-1, 1, SPPF, [256, 5]]",
                "  - [-1, 1, Classify, [nc]]\n  - [-1, 1, SPPF, [256, 5]]",
            ),
            "only head row",
            false,
        ),
        (
            "cls_first",
            "nc: 3\nbackbone:\n  - [-1, 1, Classify, [nc]]\nhead: []\n".to_string(),
            "Classify reads the image",
            true,
        ),
        (
            "cls_two_inputs",
            cls.replace("[-1, 1, Classify", "[[-1, 2], 1, Classify"),
            "takes one input",
            true,
        ),
        (
            "cls_nc0",
            cls.replace("Classify, [nc]", "Classify, [0]"),
            "nc must be at least 1",
            true,
        ),
        (
            "cls_k0",
            cls.replace("Classify, [nc]", "Classify, [nc, 0]"),
            "k 0",
            true,
        ),
        (
            "cls_groups",
            cls.replace("Classify, [nc]", "Classify, [nc, 1, 1, None, 7]"),
            "groups 7",
            true,
        ),
        (
            "cls_args",
            cls.replace("Classify, [nc]", "Classify, [nc, 1, 1, None, 1, 9]"),
            "[nc, k=1",
            true,
        ),
    ];
    for (tag, yaml, want, names_row) in cases {
        assert_refused(tag, &yaml, want, names_row);
    }
}

#[test]
fn an_input_the_model_cannot_take_is_refused() {
    // Stride 64: one more downsampling row before the head; 96 is not a multiple of it.
    let p6 = BASE.replace(
        "  - [-1, 1, SPPF, [256, 5]]",
        "  - [-1, 1, Conv, [256, 3, 2]]\n  - [-1, 1, Conv, [256, 3, 2]]\n  - [-1, 1, Conv, [256, 3, 2]]\n  - [-1, 1, SPPF, [256, 5]]",
    );
    let (code, said) = info(&p6, "p6", "96");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("multiple of 64"), "{said}");
    // A size that no model takes (72 is not a multiple of 32) is refused where it is typed, before the YAML is
    // read: the Concat of this model would join maps of different sizes at it.
    let fpn = "nc: 3
backbone:
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
head:
  - [-1, 1, nn.Upsample, [None, 2, 'nearest']]
  - [[-1, 2], 1, Concat, [1]]
  - [[-1], 1, Detect, [nc]]
";
    let (code, said) = info(fpn, "fpn", "64,72");
    assert_eq!(code, Some(2), "{said}");
    assert!(
        said.contains("'64,72'") && said.contains("multiple of 32"),
        "{said}"
    );
}

#[test]
fn a_model_too_large_to_allocate_is_refused_before_allocating() {
    // Every value is in range on its own; together they need ~1e12 weights.
    let big = BASE
        .replace("[0.33, 0.25, 1024]", "[0.33, 1.0, 16384]")
        .replace("[256, 3, 2]]", "[16384, 63, 2]]");
    let (code, said) = info(&big, "too_big", "64");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("weights") && said.contains("GB"), "{said}");
}

#[test]
fn os_errors_keep_their_source() {
    let e = model::weights::WeightsFile::read("/nonexistent/best.safetensors").unwrap_err();
    let source = std::error::Error::source(&e).expect("the OS error is the source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(
        e.to_string().starts_with("/nonexistent/best.safetensors: "),
        "{e}"
    );
}

#[test]
fn decoder_errors_keep_their_source() {
    let dir = std::env::temp_dir().join(format!("yolo-decode-src-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truncated = dir.join("half.safetensors");
    std::fs::write(&truncated, b"\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let e = model::weights::WeightsFile::read(&truncated.to_string_lossy()).unwrap_err();
    let source = std::error::Error::source(&e).expect("the decoder's error is the source");
    assert!(
        source
            .downcast_ref::<safetensors::SafeTensorError>()
            .is_some(),
        "{source:?}"
    );
    assert!(e.to_string().contains("half-written"), "{e}");

    let e = model::ModelSpec::from_str("backbone: [", "bad.yaml", &Default::default()).unwrap_err();
    let source = std::error::Error::source(&e).expect("the YAML parser's error is the source");
    assert!(source.downcast_ref::<serde_yaml::Error>().is_some());
    assert!(e.to_string().starts_with("bad.yaml: not valid YAML"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
