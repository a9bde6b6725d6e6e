//! MuSGD against Ultralytics' own optimizer (tests/fixtures/musgd, made by scripts/make_musgd_fixture.py):
//! the package's parameter groups (Muon on conv filters, 3x lr on the class branch, decay on Muon weights
//! only) and three steps with fixed gradients land every tensor where the package puts it.

use model::burn::module::Module;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::nn::{Named, Slot};
use model::weights::{load_state_dict, state_dict, WeightsFile};
use model::{ModelSpec, SpecOptions, YoloModel};
use train::optim::{AnyTensor, GradMap, GroupLr, Optimizer, OptimizerKind};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/musgd");

/// The fixture's gradient formula: 2e-3 * sin(0.37 i + 1.3 step + 0.11 t), tensor t in sorted-name order.
fn fixture_grad(n: usize, t: usize, step: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (2e-3 * (0.37 * i as f64 + 1.3 * step as f64 + 0.11 * t as f64).sin()) as f32)
        .collect()
}

fn grads(model: &mut YoloModel, step: usize, device: &Device) -> GradMap {
    let mut shapes: Vec<(String, Vec<usize>)> = vec![];
    model.visit_named("", &mut |key, slot| match slot {
        Slot::W4(p) | Slot::Linear(p) if p.is_require_grad() => {
            shapes.push((key, p.val().dims().to_vec()))
        }
        Slot::W1(p) | Slot::Norm(p) if p.is_require_grad() => {
            shapes.push((key, p.val().dims().to_vec()))
        }
        _ => {}
    });
    shapes.sort();
    shapes
        .into_iter()
        .enumerate()
        .map(|(t, (key, shape))| {
            let n = shape.iter().product();
            let data = TensorData::new(fixture_grad(n, t, step), shape.clone());
            let g = if shape.len() == 4 {
                AnyTensor::R4(Tensor::from_data(data, device))
            } else {
                AnyTensor::R1(Tensor::from_data(data, device))
            };
            (key, g)
        })
        .collect()
}

#[test]
fn musgd_steps_equal_ultralytics() {
    let spec =
        ModelSpec::from_file(&format!("{DIR}/model.yaml"), &SpecOptions::scaled("t", 3)).unwrap();
    let device = Device::flex().autodiff();
    let mut model = YoloModel::new(&spec, &Device::flex());
    let init = WeightsFile::read(&format!("{DIR}/weights.safetensors")).unwrap();
    load_state_dict(&mut model, &init.tensors, &init.path).unwrap();
    let mut model = model.fork(&device).train();
    let steps = WeightsFile::read(&format!("{DIR}/steps.safetensors")).unwrap();
    let (lrs, momenta) = (&steps.tensors["lr"].data, &steps.tensors["momentum"].data);
    let mut opt = Optimizer::new(OptimizerKind::MuSgd, 0.9, 5e-4).for_model(&model);
    for (step, (&lr, &m)) in lrs.iter().zip(momenta).enumerate() {
        let g = grads(&mut model, step, &device);
        assert_eq!(
            g.len(),
            261,
            "every trained tensor (DFL frozen) gets a gradient"
        );
        let lr = lr as f64;
        let group = GroupLr {
            base: [lr; 3],
            boosted: [3.0 * lr; 3],
        };
        let norm = opt.step(&mut model, &g, group, m as f64);
        assert!(norm < 10.0, "the fixture assumes no clipping");
    }
    let expected = WeightsFile::read(&format!("{DIR}/expected.safetensors")).unwrap();
    let ours = state_dict(&model);
    let (mut worst, mut worst_key, mut largest_move) = (0f32, String::new(), 0f32);
    for (k, want) in &expected.tensors {
        let got = &ours[k];
        let before = &init.tensors[k];
        assert_eq!(got.shape, want.shape, "{k}");
        for ((g, w), b) in got.data.iter().zip(&want.data).zip(&before.data) {
            largest_move = largest_move.max((w - b).abs());
            let d = (g - w).abs();
            if d > worst {
                worst = d;
                worst_key = k.clone();
            }
        }
    }
    assert_eq!(expected.tensors.len(), 261);
    eprintln!("largest move {largest_move:.3e}, largest difference {worst:.3e} ({worst_key})");
    assert!(largest_move > 1e-3, "the steps move the weights");
    assert!(
        worst < 2e-6 * largest_move.max(1.0) && worst < largest_move * 1e-3,
        "{worst_key} differs by {worst}"
    );
}
