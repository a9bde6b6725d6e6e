//! The wgpu path on a software adapter (Mesa's lavapipe, `apt-get install mesa-vulkan-drivers`): one
//! training step (forward in train mode, the loss, backward, an SGD step) on wgpu equals the same step on
//! burn-flex, and a short run of the trainer completes on wgpu. Tiny sizes: lavapipe is ~100x slower than
//! flex. Set YOLO_SKIP_WGPU=1 to skip on a machine without a Vulkan driver.
#![cfg(feature = "wgpu")]

use data::loader::Target;
use model::burn::module::Module;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::weights::{load_state_dict, state_dict, StateDict};
use model::{ModelSpec, SpecOptions, YoloModel};
use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use train::loss::{detection_loss, LossGains};
use train::optim::{accumulate, GradMap, GroupLr, Optimizer, OptimizerKind};
use train::trainer::{TrainArgs, Trainer};

const YAML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/tests/fixtures/mobileone_nc3_96x128/model.yaml"
);

fn spec() -> ModelSpec {
    ModelSpec::from_file(
        YAML,
        &SpecOptions {
            scale: Some("t".into()),
            nc: Some(3),
        },
    )
    .unwrap()
}

/// The software adapter, or None when the test is told to skip.
fn lavapipe() -> Option<Device> {
    if std::env::var("YOLO_SKIP_WGPU").is_ok_and(|v| v == "1") {
        eprintln!("YOLO_SKIP_WGPU=1: wgpu test skipped");
        return None;
    }
    // Kernel autotuning benchmarks candidates: minutes on a software rasterizer, nothing to learn here.
    std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal");
    let picked = model::device::pick("wgpu:cpu").unwrap();
    eprintln!("{}", picked.reason);
    Some(picked.device)
}

struct Step {
    loss: [f32; 3],
    after: StateDict,
    eval_out: Vec<f32>,
}

fn one_step(device: &Device, init: &StateDict) -> Step {
    let mut model = YoloModel::new(&spec(), device);
    load_state_dict(&mut model, init, "init").unwrap();
    let train_dev = device.clone().autodiff();
    let mut model = model.fork(&train_dev).train();
    let (b, h, w) = (2, 64, 96);
    let x: Vec<f32> = (0..b * 3 * h * w)
        .map(|i| ((i * 37 % 251) as f32) / 251.0)
        .collect();
    let x_data = TensorData::new(x, [b, 3, h, w]);
    let x = Tensor::<4>::from_data(x_data.clone(), &train_dev);
    let t = |batch_idx, cls, cx, cy, w, h| Target {
        batch_idx,
        cls,
        cx,
        cy,
        w,
        h,
    };
    let targets = [
        t(0, 0, 0.3, 0.4, 0.2, 0.3),
        t(0, 2, 0.7, 0.6, 0.4, 0.5),
        t(1, 1, 0.5, 0.5, 0.1, 0.15),
    ];
    let raw = model.forward_raw(x);
    let gains = LossGains {
        box_gain: 7.5,
        cls_gain: 0.5,
        dfl_gain: 1.5,
    };
    let strides = model.detect().strides.clone();
    let out = detection_loss(&raw, &strides, 3, 16, &targets, (h, w), gains);
    let grads = out.total.backward();
    let mut acc: GradMap = HashMap::new();
    accumulate(&mut acc, &mut model, &grads);
    assert!(acc.len() > 100, "gradients reach the model");
    let mut opt = Optimizer::new(OptimizerKind::Sgd, 0.9, 5e-4);
    opt.step(&mut model, &acc, GroupLr::uniform([0.05; 3]), 0.9);
    let after = state_dict(&mut model);
    let mut eval = YoloModel::new(&spec(), device);
    load_state_dict(&mut eval, &after, "after the step").unwrap();
    let eval_out = eval
        .forward(Tensor::<4>::from_data(x_data, device))
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    Step {
        loss: out.components,
        after,
        eval_out,
    }
}

#[test]
fn a_training_step_on_wgpu_equals_flex() {
    let Some(gpu) = lavapipe() else { return };
    let cpu = Device::flex();
    cpu.seed(3);
    let init = state_dict(&mut YoloModel::new(&spec(), &cpu));
    let t0 = std::time::Instant::now();
    let want = one_step(&cpu, &init);
    let t1 = std::time::Instant::now();
    let got = one_step(&gpu, &init);
    eprintln!(
        "flex {:.2} s, wgpu (lavapipe) {:.2} s; loss flex {:?} wgpu {:?}",
        (t1 - t0).as_secs_f64(),
        t1.elapsed().as_secs_f64(),
        want.loss,
        got.loss
    );
    for (a, b) in want.loss.iter().zip(got.loss) {
        assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "loss {a} vs {b}");
    }
    let mut worst = (0f32, String::new());
    for (k, a) in &want.after {
        let b = &got.after[k];
        for (x, y) in a.data.iter().zip(&b.data) {
            let d = (x - y).abs() / x.abs().max(1.0);
            if d > worst.0 {
                worst = (d, k.clone());
            }
        }
    }
    eprintln!(
        "weights after the step: largest difference {:.2e} ({})",
        worst.0, worst.1
    );
    assert!(worst.0 < 1e-4, "{} differs by {}", worst.1, worst.0);
    let scale = want.eval_out.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = want
        .eval_out
        .iter()
        .zip(&got.eval_out)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("eval output: largest difference {diff:.2e} of {scale:.1}");
    assert!(diff <= 1e-4 * scale.max(1.0));
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
