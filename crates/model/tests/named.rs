//! Every tensor burn sees in a model (its module tree: parameters and running statistics) is reached by the
//! `Named` walk under exactly one name, for every block of every config we ship and of Ultralytics' family
//! YAMLs, unfused and fused: a field a block's walk left out would otherwise be silently not saved, loaded or
//! trained. The conv -> BatchNorm pairs read from the module types agree with Ultralytics' naming.

use model::burn::module::{Module, ModuleVisitor, Param};
use model::burn::tensor::{Device, Tensor};
use model::nn::Named;
use model::{ModelSpec, SpecOptions, YoloModel};
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
    model.visit_named("model", &mut |k, slot| {
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
    // DWConv and a strided GhostBottleneck (its depthwise and shortcut convs) appear in no shipped YAML.
    let text = "nc: 3\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, DWConv, [32, 3, 2]]\n  \
                - [-1, 1, GhostBottleneck, [32, 3, 2]]\n  - [-1, 1, GhostBottleneck, [32, 3, 1]]\n  \
                - [-1, 1, C2, [32, True]]\nhead:\n  - [[-1], 1, Detect, [nc]]\n";
    let spec = ModelSpec::from_str(text, "blocks.yaml", &SpecOptions::default()).expect("parses");
    let mut m = YoloModel::new(&spec, &Device::flex());
    check(&mut m, "blocks.yaml unfused");
    let y = m.forward(Tensor::zeros([1, 3, 64, 64], &Device::flex()));
    // Strides 2, 4 (DWConv), 8 (GhostBottleneck): one 8x8 level.
    assert_eq!(y.dims(), [1, 4 + 3, 8 * 8]);
    check(&mut m.fuse(), "blocks.yaml fused");
}
