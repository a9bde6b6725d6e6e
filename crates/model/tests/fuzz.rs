//! Fuzzing the model YAML parser, the safetensors loader and the .pt pickle reader (see `data::fuzz`): mutations of the committed
//! corpus in `tests/fuzz_corpus/` give an error or a model, never a panic, abort or hang.
//! `YOLO_FUZZ_SECS` (default 8 per target) sets the budget; a failing input is saved under the temp folder.

use data::fuzz::{budget, fuzz};
use model::burn::tensor::Device;
use model::weights::{load_state_dict, WeightsFile};
use model::{ModelSpec, SpecOptions, YoloModel};
use std::path::PathBuf;
use std::time::Duration;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    data::fuzz::seeds(env!("CARGO_MANIFEST_DIR"), target)
}

fn crashes() -> PathBuf {
    data::fuzz::crash_dir()
}

const HANG: Duration = Duration::from_secs(20);

/// Models small enough to build in a fuzz loop (the parser caps the rest with an error of its own).
fn small(spec: &ModelSpec) -> bool {
    model::shapes::weight_count(spec) < 3e6
}

#[test]
fn fuzz_model_yaml() {
    let r = fuzz(
        "model_yaml",
        seeds("model_yaml"),
        budget(8.0),
        HANG,
        &crashes(),
        |b| {
            let text = String::from_utf8_lossy(b);
            for scale in [None, Some("t".to_string()), Some("n".to_string())] {
                let opts = SpecOptions { scale, nc: None };
                let Ok(spec) = ModelSpec::from_str(&text, "fuzz.yaml", &opts) else {
                    continue;
                };
                let _ = model::shapes::gflops(&spec, 64, 64, false);
                if spec.check_input(64, 64).is_ok() && small(&spec) {
                    let m = YoloModel::new(&spec, &Device::flex());
                    let _ = m.forward(model::burn::tensor::Tensor::zeros(
                        [1, 3, 64, 64],
                        &Device::flex(),
                    ));
                }
            }
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("model_yaml: {} inputs (seed {})", r.executions, r.seed);
}

#[test]
fn fuzz_safetensors() {
    let r = fuzz(
        "safetensors",
        seeds("safetensors"),
        budget(8.0),
        HANG,
        &crashes(),
        |b| {
            let Ok(file) = WeightsFile::from_bytes(b, "fuzz.safetensors") else {
                return;
            };
            let Some(Ok(spec)) = file.spec(&SpecOptions::default()) else {
                return;
            };
            if !small(&spec) {
                return;
            }
            let mut m = file.build_model(&spec, &Device::flex());
            let _ = load_state_dict(&mut m, &file.tensors, "fuzz.safetensors");
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("safetensors: {} inputs (seed {})", r.executions, r.seed);
}

/// The checkpoint pickle reader and the metadata read from it (seeds: the data.pkl of the real tiny.pt and of
/// the crafted cyclic and memo-bomb checkpoints).
#[test]
fn fuzz_pickle() {
    let r = fuzz(
        "pickle",
        seeds("pickle"),
        budget(8.0),
        HANG,
        &crashes(),
        |b| {
            if let Ok(root) = model::pickle::load(b) {
                let _ = model::checkpoint::metadata_of(&root, "fuzz.pkl");
                for k in ["ema", "model"] {
                    if let Some(m) = root.get(k) {
                        let _ = model::checkpoint::metadata_of(&m, "fuzz.pkl");
                    }
                }
            }
        },
    );
    let r = r.unwrap_or_else(|e| panic!("{e}"));
    eprintln!("pickle: {} inputs (seed {})", r.executions, r.seed);
}
