//! Ultralytics `.pt` checkpoints: a real one made by the package (`scripts/make_pt_fixture.py`: the fixture
//! yolov8-mobileone trained one epoch) reads to the same tensors and metadata as `scripts/pt_to_safetensors.py
//! --half` makes of it, builds its model from the YAML inside, and `model info --weights best.pt` works alone.

use model::weights::{load_state_dict, meta, WeightsFile};
use model::{SpecOptions, YoloModel};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pt")
        .join(name)
}

#[test]
fn a_real_checkpoint_reads_as_the_python_converter_writes_it() {
    let pt = WeightsFile::read(&fixture("tiny.pt").to_string_lossy()).unwrap();
    let st = WeightsFile::read(&fixture("tiny.safetensors").to_string_lossy()).unwrap();
    let keys = |w: &WeightsFile| w.tensors.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&pt), keys(&st));
    assert!(pt.tensors.len() > 400);
    for (k, a) in &pt.tensors {
        let b = &st.tensors[k];
        assert_eq!(a.shape, b.shape, "{k}");
        assert_eq!(
            a.data, b.data,
            "{k}: float16 values, converted the same way"
        );
    }
    for key in [meta::SCALE, meta::NC, meta::NAMES, meta::FUSED] {
        assert_eq!(pt.metadata.get(key), st.metadata.get(key), "{key}");
    }
    let spec_pt = pt.spec(&SpecOptions::default()).unwrap().unwrap();
    let spec_st = st.spec(&SpecOptions::default()).unwrap().unwrap();
    assert_eq!(spec_pt.layers.len(), spec_st.layers.len());
    assert_eq!((spec_pt.nc, &spec_pt.scale), (spec_st.nc, &spec_st.scale));
    let mut m = YoloModel::new(&spec_pt, &model::burn::tensor::Device::flex());
    load_state_dict(&mut m, &pt.tensors, &pt.path).unwrap();
}

#[test]
fn model_info_takes_a_pt_file_alone() {
    let run = |w: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_model"))
            .args(["info", "--weights"])
            .arg(w)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{s}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        s
    };
    let (a, b) = (run(&fixture("tiny.pt")), run(&fixture("tiny.safetensors")));
    assert!(a.contains("299,691 parameters"), "{a}");
    assert_eq!(a.replace("tiny.pt", "tiny.safetensors"), b);

    // A .pt that is not an Ultralytics checkpoint: an error naming the file.
    let tmp = std::env::temp_dir().join(format!("yolo-pt-{}.pt", std::process::id()));
    std::fs::write(&tmp, b"PK\x03\x04 not really a zip").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_model"))
        .args(["info", "--weights"])
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&*tmp.to_string_lossy()) && e.contains("PyTorch"),
        "{e}"
    );
    std::fs::remove_file(&tmp).ok();
}
