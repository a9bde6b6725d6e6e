//! Facts about a model read from its module tree, not from the spelling of its tensor names: which convs a
//! BatchNorm directly follows (the legacy bias fold) and which tensors only an unfused model holds (whether a
//! file without our metadata is fused).

use crate::graph::YoloModel;
use crate::nn::{key, Bn, Conv2d, NamedRef, Slot};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use std::collections::HashMap;

/// A float tensor's place in burn's walk: the fields above it (`(field, the type that holds it)`).
type Path = Vec<(String, String)>;

/// Finds each bias-free `Conv2d` whose next sibling field is a `Bn` (Ultralytics' `Conv`, a MobileOne branch's
/// conv+bn) by the types burn's derived walk reports, as `(conv weight id, bn weight id)`.
#[derive(Default)]
struct ConvThenNorm {
    path: Path,
    last: Option<Visited>,
    pairs: Vec<(ParamId, ParamId)>,
}

/// The last float tensor visited.
struct Visited {
    id: ParamId,
    /// The first tensor of a `Conv2d` (its weight): the conv is bias-free if nothing of it follows.
    conv_weight: bool,
    owner: Path,
}

const CONV2D: &str = "Struct:Conv2d";
const BN: &str = "Struct:Bn";

impl ModuleVisitor for ConvThenNorm {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = self.path.len();
        if n < 2 {
            return;
        }
        // The last entry names the tensor within its owner (and the owner's type); the one before, the owner
        // within its parent.
        let owner_type = self.path[n - 1].1.as_str();
        let owner = &self.path[..n - 1];
        let first = self.last.as_ref().is_none_or(|l| l.owner != owner);
        if owner_type == BN && first {
            if let Some(l) = self.last.as_ref().filter(|l| l.conv_weight) {
                if l.owner[..l.owner.len() - 1] == self.path[..n - 2] {
                    self.pairs.push((l.id, param.id));
                }
            }
        }
        let conv_weight = owner_type == CONV2D && first;
        self.last = Some(Visited {
            id: param.id,
            conv_weight,
            owner: owner.to_vec(),
        });
    }
}

/// Each bias-free conv directly followed by a BatchNorm in the same module, as the state_dict prefixes
/// `(conv, bn)` of the model's own walk (`model.3.conv`, `model.3.bn`).
pub fn conv_norm_pairs(model: &YoloModel) -> Vec<(String, String)> {
    let mut v = ConvThenNorm::default();
    model.visit(&mut v);
    // The owners' prefixes: the keys of their weights less the name each type gives its weight.
    let mut prefix: HashMap<ParamId, String> = HashMap::new();
    model.for_each_named("", &mut |k, slot| {
        let (id, name) = match slot {
            Slot::W4(p) => (p.id, Conv2d::WEIGHT),
            Slot::Norm(p) => (p.id, Bn::WEIGHT),
            _ => return,
        };
        if let Some(p) = k.strip_suffix(name).and_then(|p| p.strip_suffix('.')) {
            prefix.insert(id, p.to_string());
        }
    });
    v.pairs
        .iter()
        .filter_map(|(c, b)| Some((prefix.get(c)?.clone(), prefix.get(b)?.clone())))
        .collect()
}

/// The keys only an unfused model holds: its BatchNorms' tensors, by their kind.
pub fn norm_keys(unfused: &YoloModel) -> Vec<String> {
    let mut keys = Vec::new();
    unfused.for_each_named("", &mut |k, slot| {
        if slot.is_norm() {
            keys.push(k);
        }
    });
    keys
}

/// The state_dict key of the bias a conv at `prefix` would have.
pub fn conv_bias_key(prefix: &str) -> String {
    key(prefix, Conv2d::BIAS)
}

/// The state_dict key of the running mean of a BatchNorm at `prefix`.
pub fn running_mean_key(prefix: &str) -> String {
    key(prefix, Bn::RUNNING_MEAN)
}
