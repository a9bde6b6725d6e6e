//! The detection loss against Ultralytics' own v8DetectionLoss (tests/fixtures/loss.safetensors, made by
//! scripts/make_loss_fixture.py): box, cls and dfl within 1e-4 relative; and gradients reach every map.

use data::loader::Target;
use model::burn::tensor::{Device, Tensor, TensorData};
use model::weights::WeightsFile;
use train::loss::{detection_loss, LossGains, LossOutput};

fn load(case: &str, device: &Device) -> (Vec<Tensor<4>>, Vec<Target>, Vec<f32>, f32) {
    let f = WeightsFile::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/loss.safetensors"
    ))
    .unwrap();
    let t = |k: &str| f.tensors.get(&format!("{case}.{k}")).unwrap().clone();
    let raw = (3..6)
        .map(|i| {
            let h = t(&format!("p{i}"));
            Tensor::<4>::from_data(TensorData::new(h.data, h.shape), device)
        })
        .collect();
    let tg = t("targets");
    let targets = tg
        .data
        .chunks(6)
        .map(|r| Target {
            batch_idx: r[0] as usize,
            cls: r[1] as usize,
            cx: r[2],
            cy: r[3],
            w: r[4],
            h: r[5],
        })
        .collect();
    (raw, targets, t("loss").data, t("total").data[0])
}

/// The loss on the fixture's head maps: strides 8/16/32, 3 classes, reg_max 16, a 96x128 input.
fn fixture_loss(raw: &[Tensor<4>], targets: &[Target]) -> LossOutput {
    detection_loss(
        raw,
        &[8.0, 16.0, 32.0],
        3,
        16,
        targets,
        (96, 128),
        LossGains::default(),
    )
}

#[test]
fn loss_components_equal_ultralytics() {
    let device = Device::flex();
    for case in ["mixed", "empty"] {
        let (raw, targets, want, total) = load(case, &device);
        let out = fixture_loss(&raw, &targets);
        for (i, name) in ["box", "cls", "dfl"].iter().enumerate() {
            let (a, b) = (out.components[i], want[i]);
            let rel = (a - b).abs() / b.abs().max(1e-6);
            eprintln!("{case} {name}: ours {a} Ultralytics {b} (rel {rel:.2e})");
            assert!(
                if b == 0.0 { a == 0.0 } else { rel <= 1e-4 },
                "{case} {name}: {a} vs {b}"
            );
        }
        let t = out
            .total
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()[0];
        assert!(
            (t - total).abs() / total <= 1e-4,
            "{case} total {t} vs {total}"
        );
    }
}

#[test]
fn gradients_reach_the_head_maps() {
    let device = Device::flex().autodiff();
    let (raw, targets, _, _) = load("mixed", &device);
    let raw: Vec<Tensor<4>> = raw.into_iter().map(|t| t.require_grad()).collect();
    let out = fixture_loss(&raw, &targets);
    let grads = out.total.backward();
    for r in &raw {
        let g = r.grad(&grads).expect("gradient");
        let v = g
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert!(v.iter().all(|x| x.is_finite()));
        assert!(v.iter().any(|x| *x != 0.0));
    }
}
