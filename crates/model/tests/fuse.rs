//! Deploy-time folding on models the YAML builds: outputs equal before/after, branch parameters gone,
//! idempotent, and the equivalent kernel differentiable for training-time use.

use model::burn::tensor::{Device, Distribution, Tensor, Tolerance};
use model::nn::{MobileOneBlock, Named, Slot};
use model::{ModelSpec, SpecOptions, YoloModel};
use std::path::Path;

fn spec(cfg: &str, yaml_patch: Option<(&str, &str)>) -> ModelSpec {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).join(cfg);
    let mut text = std::fs::read_to_string(&path).unwrap();
    if let Some((a, b)) = yaml_patch {
        text = text.replace(a, b);
    }
    let opts = SpecOptions {
        scale: Some("n".into()),
        nc: Some(5),
    };
    ModelSpec::from_str(&text, cfg, &opts).unwrap()
}

/// Non-trivial BatchNorm statistics, so that folding has something to fold.
fn randomize_bn(m: &mut YoloModel) {
    m.visit_named("", &mut |k, slot| match slot {
        Slot::Stat(s) => {
            let n = s.val().dims()[0];
            let (lo, hi) = if k.ends_with("running_var") {
                (0.5, 2.0)
            } else {
                (-0.3, 0.3)
            };
            *s = model::burn::module::Param::initialized(
                s.id,
                Tensor::random([n], Distribution::Uniform(lo, hi), &s.val().device()),
            );
        }
        Slot::Norm(p) => {
            let n = p.val().dims()[0];
            *p = model::burn::module::Param::from_tensor(Tensor::random(
                [n],
                Distribution::Uniform(0.5, 1.5),
                &p.val().device(),
            ));
        }
        _ => {}
    });
}

fn keys(m: &mut YoloModel) -> Vec<String> {
    let mut v = Vec::new();
    m.visit_named("", &mut |k, _| v.push(k));
    v
}

fn check_fusion(mut m: YoloModel, h: usize, w: usize) {
    let device = Device::flex();
    randomize_bn(&mut m);
    let x = Tensor::<4>::random([2, 3, h, w], Distribution::Uniform(0.0, 1.0), &device);
    let before = m.forward(x.clone());
    let params_before = m.parameter_count();
    let mut fused = m.fuse();
    let after = fused.forward(x.clone());
    let scale = before.clone().abs().max().into_scalar::<f32>();
    before
        .clone()
        .into_data()
        .assert_approx_eq::<f32>(&after.into_data(), Tolerance::absolute(2e-5 * scale + 1e-3));
    let ks = keys(&mut fused);
    assert!(fused.is_fused());
    assert!(
        !ks.iter()
            .any(|k| k.contains("dw_3x3") || k.contains("pw_1x1") || k.contains("bn")),
        "branch params are gone: {ks:?}"
    );
    assert!(fused.parameter_count() < params_before);
    // Idempotent: fusing again changes nothing.
    let sd1 = model::weights::state_dict(&fused);
    let twice = fused.fuse();
    assert_eq!(sd1, model::weights::state_dict(&twice));
}

#[test]
fn fusing_yolov8_keeps_the_output() {
    check_fusion(
        YoloModel::new(&spec("yolov8.yaml", None), &Device::flex()),
        64,
        96,
    );
}

#[test]
fn fusing_mobileone_keeps_the_output_with_and_without_se() {
    let d = Device::flex();
    check_fusion(
        YoloModel::new(&spec("yolov8-mobileone.yaml", None), &d),
        96,
        64,
    );
    let se = spec(
        "yolov8-mobileone.yaml",
        Some(("[128, 4, 1]]", "[128, 4, 1, 1, zeros, False, True]]")),
    );
    assert!(matches!(
        se.layers[2].module,
        model::spec::ModuleSpec::Block(model::modules::BlockKind::MobileOne(
            model::modules::mobileone::MobileOneSpec { use_se: true, .. }
        ))
    ));
    check_fusion(YoloModel::new(&se, &d), 64, 64);
}

#[test]
fn fusing_a_c3_spp_model_works_too() {
    let s = spec(
        "yolov8.yaml",
        Some(("C2f, [128, True]]", "C3, [128, True]]")),
    );
    let s = ModelSpec::from_str(
        &s.yaml_text
            .replace("SPPF, [1024, 5]]", "SPP, [1024, [5, 9, 13]]]"),
        "c3spp.yaml",
        &SpecOptions::scaled("n", 2),
    )
    .unwrap();
    check_fusion(YoloModel::new(&s, &Device::flex()), 64, 64);
}

#[test]
fn equivalent_kernel_is_differentiable() {
    let device = Device::flex().autodiff();
    let block = MobileOneBlock::new(8, 8, 2, 1, false, &device);
    let l2 = block.custom_l2().expect("branches present");
    let grads = l2.backward();
    let g = block.dw_3x3[1]
        .conv
        .conv
        .weight
        .val()
        .grad(&grads)
        .expect("gradient reaches a branch kernel");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
    let g = block.pw_1x1[0]
        .conv
        .bn
        .weight
        .val()
        .grad(&grads)
        .expect("and a branch BN scale");
    assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
}

#[test]
fn strided_block_folds_exactly() {
    let device = Device::flex();
    for (c1, c2, k, s) in [(8, 16, 3, 2), (16, 16, 1, 1), (8, 8, 4, 2)] {
        let block = MobileOneBlock::new(c1, c2, k, s, false, &device);
        let x = Tensor::<4>::random([1, c1, 9, 10], Distribution::Uniform(-1.0, 1.0), &device);
        let a = block.forward(x.clone());
        let fused = block.reparameterize();
        assert!(fused.dw_1x1.is_none() && fused.dw_3x3.is_empty() && fused.fused().is_some());
        a.into_data()
            .assert_approx_eq::<f32>(&fused.forward(x).into_data(), Tolerance::absolute(1e-5));
    }
}

/// `--rep-l2`'s regulariser is the squared norm of the kernels the fused model holds: summed over the model's
/// MobileOne blocks, it equals the sum of squares of every `dw_reparam` / `pw_reparam` weight after fusion;
/// its parameters are the blocks' branch kernels (and only theirs); a fused model has none.
#[test]
fn rep_l2_is_the_squared_norm_of_the_fused_kernels() {
    let mut m = YoloModel::new(&spec("yolov8-mobileone.yaml", None), &Device::flex());
    randomize_bn(&mut m);
    let l2 = m
        .rep_l2()
        .expect("an unfused MobileOne model")
        .into_scalar::<f32>() as f64;
    let ids = m.rep_l2_params();
    let mut fused = m.clone().fuse();
    let mut want = 0.0f64;
    let mut branch_keys = 0;
    fused.visit_named("", &mut |k, slot| {
        if let Slot::W4(p) = slot {
            if k.contains("_reparam") {
                let v: Vec<f32> = p.val().into_data().try_to_vec::<f32>().unwrap();
                want += v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
            }
        }
    });
    m.visit_named("", &mut |k, slot| {
        if let Slot::W4(p) = slot {
            if ids.contains(&p.id) {
                branch_keys += 1;
                assert!(
                    k.contains(".dw_") || k.contains(".pw_"),
                    "{k} is not a MobileOne branch"
                );
            }
        }
    });
    assert!(branch_keys > 20, "{branch_keys} branch kernels");
    assert!(
        (l2 - want).abs() <= 1e-4 * want,
        "rep_l2 {l2}, fused kernels {want}"
    );
    assert!(fused.rep_l2().is_none() && fused.rep_l2_params().is_empty());
}
