//! The inference engine against burn's forward of the same model, on every parity fixture's weights (made by
//! the real Ultralytics package, the family YAMLs included: C2, C3k2, C2PSA's attention, GhostConv, grouped
//! and depthwise convs, ConvTranspose, ZeroPad, strided pools, the 8.4 head; `deploy verify` checks the
//! engine against Ultralytics' own output): batches that run one image per thread and ones that split
//! operations, non-square inputs, AVX-512 and AVX2 kernels where the CPU has them, fused and unfused models.
//! Bad inputs are errors.

use deploy::engine::{Engine, EngineError, Level};
use deploy::verify::{compare_output, Fixture, Report};
use model::burn::tensor::{Device, Distribution, Tensor};
use model::weights::{host, load_state_dict};
use model::YoloModel;
use std::path::Path;

fn fixture_model(name: &str) -> YoloModel {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let fx = Fixture::load(&dir, None).expect("fixture loads");
    let mut m = YoloModel::new(&fx.spec, &Device::flex());
    load_state_dict(&mut m, &fx.weights.tensors, &fx.weights.path).expect("weights load");
    m
}

/// Every SIMD level this CPU runs; none is a skip (a failure under `YOLO_REQUIRE_ALL=1`), not a pass.
fn levels() -> Vec<Level> {
    testkit::or_skip(
        Level::available(),
        "the engine (no SIMD level on this CPU)",
        Level::REQUIREMENT,
    )
}

#[test]
fn engine_equals_burn_on_every_fixture_batch_and_size() {
    let levels = levels();
    if levels.is_empty() {
        eprintln!("no AVX2/AVX-512 here: the engine is not used on this CPU");
        return;
    }
    let device = Device::flex();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("meta.json").exists())
        .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
        .collect();
    names.sort();
    assert!(
        names.len() >= 16,
        "the model fixtures and the twelve family ones"
    );
    for name in &names {
        let unfused = fixture_model(name);
        let fused = unfused.clone().fuse();
        // Sizes in units of the model's largest stride (32, or 64 for P6 models).
        let u = unfused.spec.strides().last().copied().unwrap_or(32.0) as usize;
        for (form, m) in [("fused", &fused), ("unfused", &unfused)] {
            for &(b, h, w) in &[(1, 2 * u, 2 * u), (3, 3 * u, 5 * u), (4, 4 * u, 3 * u)] {
                let x = Tensor::<4>::random([b, 3, h, w], Distribution::Uniform(0.0, 1.0), &device);
                let classifier = m.task() == model::Task::Classify;
                let want = if classifier {
                    host(m.classify(x.clone()))
                } else {
                    host(m.forward(x.clone()))
                };
                let xs = host(x).data;
                for &level in &levels {
                    let e = Engine::with_level(m, level).expect("the engine takes the fixtures");
                    let got = e.run(&xs, b, h, w).expect("runs");
                    if classifier {
                        // Probabilities `(b, nc)`.
                        let d = got
                            .iter()
                            .zip(&want.data)
                            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
                        assert!(
                            got.len() == want.data.len() && d <= deploy::verify::SCORE_TOL,
                            "{name} {form} {level:?} batch {b} {h}x{w}: {d:e}"
                        );
                        continue;
                    }
                    let mut report = Report::default();
                    let got = model::weights::HostTensor {
                        shape: want.shape.clone(),
                        data: got,
                    };
                    compare_output("engine vs burn", &got, &want, &mut report);
                    assert!(
                        report.ok(),
                        "{name} {form} {level:?} batch {b} {h}x{w}:\n{}",
                        report.render()
                    );
                }
            }
        }
    }
}

#[test]
fn bad_inputs_are_refused_with_a_reason() {
    if levels().is_empty() {
        return;
    }
    let e = Engine::new(&fixture_model("mobileone_nc3_96x128").fuse()).expect("fused runs");
    let err = e.run(&[0.0; 10], 1, 64, 64).unwrap_err();
    assert!(err.to_string().contains("10 floats"), "{err}");
    // Stride-32 maps of 16x16 input: P5 is 1x1 and its upsample no longer matches P4, an error, not a panic.
    let err = e.run(&vec![0.0; 3 * 16 * 16], 1, 16, 16).unwrap_err();
    assert!(err.to_string().contains("16x16"), "{err}");
    assert!(matches!(err, EngineError::BadInput { .. }));
}
