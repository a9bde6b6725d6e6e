//! The names our structs' fields give every tensor are the real package's: the state_dict keys and shapes
//! Ultralytics gives every config we ship, every family YAML and a model of the blocks no YAML uses, unfused
//! and fused (tests/fixtures/names.json, scripts/make_names_fixture.py). Every tensor burn sees is named once,
//! and the conv -> BatchNorm pairs read from the module types agree with Ultralytics' naming.

use model::burn::module::{Module, ModuleVisitor, Param};
use model::burn::tensor::{Device, Tensor};
use model::nn::{Named, NamedRef, Slot};
use model::{ModelSpec, SpecOptions, YoloModel};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Default)]
struct Count {
    tensors: usize,
    values: usize,
}

impl ModuleVisitor for Count {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.tensors += 1;
        self.values += param.val().shape().num_elements();
    }
}

fn check(model: &mut YoloModel, what: &str) {
    let mut tree = Count::default();
    model.visit(&mut tree);
    let mut names = BTreeSet::new();
    let mut values = 0;
    let mut tensors = 0;
    model.visit_named("", &mut |k, slot| {
        tensors += 1;
        values += slot.numel();
        assert!(names.insert(k.clone()), "{what}: {k} named twice");
    });
    assert_eq!(
        tensors, tree.tensors,
        "{what}: tensors named vs in the module tree"
    );
    assert_eq!(
        values, tree.values,
        "{what}: values named vs in the module tree"
    );
    // The convs a BatchNorm follows, found from the module types, are the ones Ultralytics' naming says
    // (`X.conv` then `X.bn`, bias-free) and none once fused.
    let mut by_names = BTreeSet::new();
    for k in &names {
        if let Some(x) = k.strip_suffix(".conv.weight") {
            if names.contains(&format!("{x}.bn.weight"))
                && !names.contains(&format!("{x}.conv.bias"))
            {
                by_names.insert((format!("{x}.conv"), format!("{x}.bn")));
            }
        }
    }
    let pairs: BTreeSet<_> = model::structure::conv_norm_pairs(model)
        .into_iter()
        .collect();
    assert_eq!(pairs, by_names, "{what}: conv -> BatchNorm pairs");
    assert_eq!(
        pairs.is_empty(),
        model.is_fused(),
        "{what}: pairs iff unfused"
    );
}

fn configs() -> Vec<std::path::PathBuf> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs"));
    let mut v = Vec::new();
    for dir in [root.to_path_buf(), root.join("ultralytics")] {
        for e in std::fs::read_dir(&dir).expect("configs") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "yaml") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

#[test]
fn every_tensor_of_every_block_has_one_name() {
    let device = Device::flex();
    let mut built = 0;
    for cfg in configs() {
        // The family YAMLs with blocks not written yet fail to parse; the others must build.
        let Ok(mut spec) = ModelSpec::from_file(&cfg.to_string_lossy(), &SpecOptions::default())
        else {
            continue;
        };
        // Small widths keep this quick; the structure is the same.
        spec = ModelSpec::from_str(
            &spec
                .yaml_text
                .replace("depth_multiple: 1.0", "depth_multiple: 0.33")
                .replace("width_multiple: 1.0", "width_multiple: 0.25"),
            &spec.source,
            &SpecOptions {
                scale: Some(spec.scale.clone()).filter(|s| !s.is_empty()),
                nc: Some(3),
            },
        )
        .expect("reparses");
        let mut m = YoloModel::new(&spec, &device);
        check(&mut m, &format!("{} unfused", cfg.display()));
        check(&mut m.fuse(), &format!("{} fused", cfg.display()));
        built += 1;
    }
    assert!(built >= 13, "built {built} configs");
}

#[test]
fn blocks_no_config_uses_are_covered_too() {
    // DWConv, a strided GhostBottleneck (its depthwise and shortcut convs), C2, a MobileOneBlock with SE and
    // ConvTranspose2d appear in no shipped YAML.
    let fx = fixture();
    let text = fx["models"]
        .as_array()
        .and_then(|v| v.iter().find_map(|m| m["text"].as_str()))
        .expect("the fixture's blocks model");
    let spec = ModelSpec::from_str(text, "blocks.yaml", &SpecOptions::default()).expect("parses");
    let mut m = YoloModel::new(&spec, &Device::flex());
    check(&mut m, "blocks.yaml unfused");
    let y = m.forward(Tensor::zeros([1, 3, 64, 64], &Device::flex()));
    // Strides 2, 4 (DWConv), 8 (GhostBottleneck), 4 (ConvTranspose2d), 8: one 8x8 level.
    assert_eq!(y.dims(), [1, 4 + 3, 8 * 8]);
    check(&mut m.fuse(), "blocks.yaml fused");
}

fn keys_and_shapes(m: &YoloModel) -> Vec<(String, Vec<usize>)> {
    let mut v = Vec::new();
    m.for_each_named("", &mut |k, slot| {
        let shape = match slot {
            Slot::W4(p) | Slot::Linear(p) | Slot::Frozen(p) => p.val().dims().to_vec(),
            Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => p.val().dims().to_vec(),
        };
        v.push((k, shape));
    });
    v.sort();
    v
}

fn theirs(list: &Value) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<(String, Vec<usize>)> = list
        .as_array()
        .expect("a key list")
        .iter()
        .map(|e| {
            let shape = e[1].as_array().expect("a shape");
            (
                e[0].as_str().expect("a key").to_string(),
                shape
                    .iter()
                    .map(|d| d.as_u64().expect("a dim") as usize)
                    .collect(),
            )
        })
        .collect();
    v.sort();
    v
}

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/names.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

#[test]
fn names_and_shapes_are_the_packages() {
    let fx = fixture();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = fx["models"].as_array().expect("models");
    assert!(models.len() >= 16, "{} models", models.len());
    for m in models {
        let name = m["name"].as_str().expect("name");
        let text = if let Some(t) = m["text"].as_str() {
            t.to_string()
        } else {
            std::fs::read_to_string(root.join(name))
                .expect("config")
                .replace("depth_multiple: 1.0", "depth_multiple: 0.33")
                .replace("width_multiple: 1.0", "width_multiple: 0.25")
        };
        let opts = SpecOptions {
            scale: m["scale"].as_str().map(str::to_string),
            nc: Some(3),
        };
        let spec = ModelSpec::from_str(&text, name, &opts).expect("parses");
        let model = YoloModel::new(&spec, &Device::flex());
        for (form, ours) in [
            ("unfused", keys_and_shapes(&model)),
            ("fused", keys_and_shapes(&model.clone().fuse())),
        ] {
            let want = theirs(&m[form]);
            let missing: Vec<_> = want.iter().filter(|k| !ours.contains(k)).collect();
            let extra: Vec<_> = ours.iter().filter(|k| !want.contains(k)).collect();
            assert!(
                missing.is_empty() && extra.is_empty(),
                "{name} {form}: theirs only {missing:?}, ours only {extra:?}"
            );
        }
    }
}
