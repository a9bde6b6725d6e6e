//! One training step of a classifier against the real Ultralytics package (tests/fixtures/classify_step, made
//! by scripts/make_cls_step_fixture.py): a MobileOne classifier in training mode on a batch of four images,
//! its logits, the cross-entropy loss (v8ClassificationLoss), every parameter's gradient, and the BatchNorm
//! running statistics the step leaves (PyTorch's momentum 0.1, unbiased variance).

use data::loader::Target;
use model::burn::module::Module;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::weights::{load_state_dict, state_dict, HostTensor, WeightsFile};
use model::{ModelSpec, SpecOptions, Task, YoloModel};
use std::path::{Path, PathBuf};
use train::loss::LossGains;
use train::optim::{AnyTensor, GradMap};
use train::parallel::{shard_step, LossSetup, Shard};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classify_step")
}

fn read(name: &str) -> WeightsFile {
    WeightsFile::read(&fixture().join(name).to_string_lossy()).unwrap()
}

/// The fixture's model on `device` in training mode (on its autodiff device), with the package's weights.
fn model(device: &Device) -> YoloModel {
    let spec = ModelSpec::from_file(
        &fixture().join("model.yaml").to_string_lossy(),
        &SpecOptions {
            scale: Some("t".into()),
            nc: Some(3),
        },
    )
    .unwrap();
    assert_eq!(spec.task(), Task::Classify);
    let mut m = YoloModel::new(&spec, device);
    let w = read("weights.safetensors");
    load_state_dict(&mut m, &w.tensors, &w.path).unwrap();
    m.fork(&device.clone().autodiff()).train()
}

/// The largest difference relative to the tensor's largest magnitude.
fn rel_diff(got: &[f32], want: &HostTensor) -> f32 {
    assert_eq!(got.len(), want.data.len());
    let scale = want
        .data
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(1e-12);
    got.iter()
        .zip(&want.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn host(g: &AnyTensor) -> Vec<f32> {
    match g {
        AnyTensor::R4(t) => t.clone().into_data().try_to_vec::<f32>().unwrap(),
        AnyTensor::R1(t) => t.clone().into_data().try_to_vec::<f32>().unwrap(),
    }
}

#[test]
fn training_step_equals_ultralytics() {
    let device = Device::flex();
    let step = read("step.safetensors");
    let t = |k: &str| step.tensors.get(k).unwrap_or_else(|| panic!("{k}")).clone();
    let input = t("input");
    let classes: Vec<usize> = t("classes").data.iter().map(|&c| c as usize).collect();

    // The logits of the training-mode forward (batch statistics).
    let x = Tensor::<4>::from_data(
        TensorData::new(input.data.clone(), input.shape.clone()),
        &device.clone().autodiff(),
    );
    let logits = model(&device)
        .forward_logits(x, 0.0)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let d = rel_diff(&logits, &t("logits"));
    eprintln!("logits differ by {d:.2e} of their largest");
    assert!(d < 1e-4, "logits differ by {d}");

    // Loss and gradients through the trainer's own step.
    let mut m = model(&device);
    let setup = LossSetup::of(&m, LossGains::default());
    let shard = Shard {
        images: input.data.clone(),
        shape: [
            input.shape[0],
            input.shape[1],
            input.shape[2],
            input.shape[3],
        ],
        targets: classes
            .iter()
            .enumerate()
            .map(|(i, &cls)| Target {
                batch_idx: i,
                cls,
                cx: 0.0,
                cy: 0.0,
                w: 0.0,
                h: 0.0,
            })
            .collect(),
    };
    let mut grads = GradMap::new();
    let comps = shard_step(
        &mut m,
        &device.clone().autodiff(),
        shard,
        &setup,
        &mut grads,
        None,
    );
    let want_loss = t("loss").data[0];
    eprintln!("loss ours {} Ultralytics {want_loss}", comps[0]);
    assert!((comps[0] - want_loss).abs() < 1e-5 * want_loss.max(1.0));

    let want_grads: Vec<(&String, &HostTensor)> = step
        .tensors
        .iter()
        .filter(|(k, _)| k.starts_with("grad."))
        .collect();
    assert!(want_grads.len() > 20, "{} gradients", want_grads.len());
    let mut worst = (0f32, String::new());
    for (k, want) in want_grads {
        let name = &k["grad.".len()..];
        let got = grads
            .get(name)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let d = rel_diff(&host(got), want);
        if d > worst.0 {
            worst = (d, name.to_string());
        }
    }
    eprintln!(
        "gradients: largest difference {:.2e} ({})",
        worst.0, worst.1
    );
    // float32 sums over the batch in another order than PyTorch's; the BatchNorm gradients through batch
    // statistics are the least exact.
    assert!(
        worst.0 < 2e-3,
        "gradient of {} differs by {}",
        worst.1,
        worst.0
    );
    assert_eq!(
        grads.len(),
        step.tensors
            .keys()
            .filter(|k| k.starts_with("grad."))
            .count()
    );

    // The running statistics after the step.
    let after = state_dict(&m);
    let mut n = 0;
    for (k, want) in step.tensors.iter().filter(|(k, _)| k.starts_with("after.")) {
        let name = &k["after.".len()..];
        let got = after.get(name).unwrap_or_else(|| panic!("no {name}"));
        let d = rel_diff(&got.data, want);
        assert!(d < 1e-4, "{name} differs by {d}");
        n += 1;
    }
    assert!(n > 20, "{n} running statistics");
}
