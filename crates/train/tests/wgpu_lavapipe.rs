//! The wgpu path on a software adapter (Mesa's lavapipe, `apt-get install mesa-vulkan-drivers`): one
//! training step (forward in train mode, the loss, backward, an SGD step) on wgpu equals the same step on
//! burn-flex, and a short run of the trainer completes on wgpu. Tiny sizes: lavapipe is ~100x slower than
//! flex. On a machine without a Vulkan driver the tests say so and skip (`YOLO_REQUIRE_ALL=1` fails instead).
#![cfg(feature = "wgpu")]

use model::burn::tensor::Device;
use model::weights::state_dict;
use model::{ModelSpec, SpecOptions, YoloModel};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use train::parity::{fixed_batch, one_step, StepDiff};
use train::trainer::{TrainArgs, Trainer};

const YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
);

fn spec() -> ModelSpec {
    ModelSpec::from_file(YAML, &SpecOptions::scaled("t", 3)).unwrap()
}

/// The software adapter, or None (after saying so) on a machine without a Vulkan driver.
fn lavapipe() -> Option<Device> {
    // Kernel autotuning benchmarks candidates: minutes on a software rasterizer, nothing to learn here.
    std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal");
    startup::quiet_vulkan_loader();
    match model::device::pick("wgpu:cpu") {
        Ok(picked) => {
            eprintln!("{}", picked.reason);
            Some(picked.device)
        }
        Err(e) => {
            testkit::skip(
                &format!("wgpu on a software Vulkan adapter ({e})"),
                "apt-get install mesa-vulkan-drivers",
            );
            None
        }
    }
}

#[test]
fn a_training_step_on_wgpu_equals_flex() {
    let Some(gpu) = lavapipe() else { return };
    let cpu = Device::flex();
    cpu.seed(3);
    let init = state_dict(&YoloModel::new(&spec(), &cpu));
    let batch = fixed_batch(2, 64, 96, 3);
    let t0 = std::time::Instant::now();
    let want = one_step(&spec(), &cpu, &init, &batch);
    let t1 = std::time::Instant::now();
    let got = one_step(&spec(), &gpu, &init, &batch);
    eprintln!(
        "flex {:.2} s, wgpu (lavapipe) {:.2} s; loss flex {:?} wgpu {:?}",
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        want.loss,
        got.loss
    );
    assert!(want.gradient_count > 100, "gradients reach the model");
    let d = StepDiff::of(&want, &got);
    eprintln!("{d:?}");
    assert!(d.ok(), "{d:?}");
}

#[test]
fn the_trainer_runs_on_wgpu() {
    let Some(gpu) = lavapipe() else { return };
    let root = std::env::temp_dir().join(format!("yolo-wgpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    data::synth::write_dataset(&root.join("data"), 5, 4, 2, 64).unwrap();
    let args = TrainArgs {
        config: YAML.into(),
        scale: Some("t".into()),
        data: root.join("data/data.yaml").display().to_string(),
        epochs: 1,
        imgsz: 64,
        batch: 2,
        nbs: 2,
        workers: 1,
        close_mosaic: 0,
        out: root.join("run").display().to_string(),
        ..Default::default()
    };
    let results = Trainer {
        args,
        resume: false,
        run_dir: root.join("run"),
        device: gpu,
        extra_devices: vec![],
        stop: Arc::new(AtomicBool::new(false)),
        max_steps: None,
    }
    .run()
    .unwrap()
    .results;
    assert_eq!(results.len(), 1);
    assert!(results[0].train.iter().all(|v| v.is_finite() && *v > 0.0));
    assert!(root.join("run/weights/best.safetensors").exists());
    std::fs::remove_dir_all(&root).ok();
}
