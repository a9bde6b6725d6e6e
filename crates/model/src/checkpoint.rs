//! Ultralytics `.pt` checkpoints read without Python: a zip holding a pickled dict whose `ema` (else `model`)
//! is the pickled `DetectionModel` in float16. The tensors come out under the names of its `state_dict()`
//! (Ultralytics' keys, as ours), converted to float32; the model's `yaml` dict and `names` become the metadata
//! our safetensors files carry, so `--weights best.pt` alone is enough, as `scripts/pt_to_safetensors.py`
//! makes it. The tensors are read by burn's `pytorch-reader`, the model's plain attributes by `pickle` (no code
//! runs: classes are only named).

use crate::error::{FileError, ModelError, Result};
use crate::pickle::Value;
use crate::weights::{meta, HostTensor, StateDict, WeightsFile};
use pytorch_reader::PytorchReader;
use std::collections::HashMap;
use std::rc::Rc;

/// Whether the file opens like a zip (a PyTorch >= 1.6 checkpoint); reads its first four bytes only.
pub fn is_torch_zip(path: &str) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|_| &magic == b"PK\x03\x04")
}

fn err(path: &str, msg: impl Into<String>) -> ModelError {
    ModelError::Io {
        path: path.to_string(),
        msg: msg.into(),
    }
}

/// How much of a pickled value [`to_yaml`] converts: a model YAML is a few hundred values a dozen levels deep;
/// a crafted one can be cyclic, nested a million deep, or share one list so that it unfolds to 10^12 values.
struct YamlBudget {
    values: usize,
    exceeded: bool,
}

const YAML_MAX_DEPTH: usize = 64;
const YAML_MAX_VALUES: usize = 100_000;

/// A plain pickle value as YAML (objects and tensors are left out); `None` too once the budget is spent.
fn to_yaml(v: &Value, depth: usize, budget: &mut YamlBudget) -> Option<serde_yaml::Value> {
    use serde_yaml::Value as Y;
    if budget.exceeded || depth > YAML_MAX_DEPTH || budget.values >= YAML_MAX_VALUES {
        budget.exceeded = true;
        return None;
    }
    budget.values += 1;
    let seq = |items: &[Value], budget: &mut YamlBudget| {
        Y::Sequence(
            items
                .iter()
                .filter_map(|x| to_yaml(x, depth + 1, budget))
                .collect(),
        )
    };
    Some(match v {
        Value::None => Y::Null,
        Value::Bool(b) => Y::Bool(*b),
        Value::Int(i) => Y::Number((*i).into()),
        Value::Float(f) => Y::Number((*f).into()),
        Value::Str(s) => Y::String(s.clone()),
        Value::List(l) => seq(&l.borrow(), budget),
        Value::Tuple(l) => seq(l, budget),
        Value::Dict(d) => {
            let mut m = serde_yaml::Mapping::new();
            for (k, v) in d.borrow().iter() {
                if let (Some(k), Some(v)) =
                    (to_yaml(k, depth + 1, budget), to_yaml(v, depth + 1, budget))
                {
                    m.insert(k, v);
                }
            }
            Y::Mapping(m)
        }
        Value::Bytes(_) | Value::Global(_) | Value::Object(_) => return None,
    })
}

/// Class names from `{0: "a", 1: "b"}` or a list.
fn names_of(v: &Value) -> Option<Vec<String>> {
    let s = |v: &Value| match v {
        Value::Str(s) => Some(s.clone()),
        _ => None,
    };
    match v {
        Value::List(l) => l.borrow().iter().map(s).collect(),
        Value::Dict(d) => {
            let mut kv: Vec<(i64, String)> = d
                .borrow()
                .iter()
                .filter_map(|(k, v)| match k {
                    Value::Int(i) => Some((*i, s(v)?)),
                    _ => None,
                })
                .collect();
            kv.sort();
            Some(kv.into_iter().map(|(_, s)| s).collect())
        }
        _ => None,
    }
}

/// Reads an Ultralytics checkpoint (`ema` preferred over `model`, as Ultralytics loads them).
pub fn read(path: &str) -> Result<WeightsFile> {
    let root = crate::pickle::load(&data_pkl(path)?)
        .map_err(|e| FileError::decode(path, "not a readable PyTorch checkpoint", e))?;
    let key = ["ema", "model"]
        .into_iter()
        .find(|k| matches!(root.get(k), Some(Value::Object(_))))
        .ok_or_else(|| {
            err(
                path,
                "a PyTorch file, but not an Ultralytics checkpoint (no `ema` or `model` object in it)",
            )
        })?;
    let model = root.get(key).unwrap_or(Value::None);
    let metadata = metadata_of(&model, path)?;
    let reader = PytorchReader::with_top_level_key(path, key)
        .map_err(|e| FileError::decode(path, "not a readable PyTorch checkpoint", e))?;
    let mut tensors = StateDict::new();
    // torch.save stores every storage once, uncompressed: the tensors together hold no more bytes than the
    // file. A view can declare more (an `expand` has stride 0: 4e9 values from one); it is refused, not
    // materialized.
    let file_len = std::fs::metadata(path)
        .map_err(|e| FileError::io(path, e))?
        .len();
    let mut total = 0u64;
    for (name, t) in reader.tensors() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        total += t.byte_len() as u64;
        if total > file_len {
            return Err(err(
                path,
                format!(
                    "tensor {name} ({:?}, {} bytes) brings the tensors to more bytes than the whole file holds \
                     ({file_len}): an expanded (stride-0) or shared view; refused",
                    t.shape(),
                    t.byte_len()
                ),
            ));
        }
        let bytes = t
            .read()
            .map_err(|e| FileError::decode(path, format!("tensor {name}"), e))?;
        let data = to_f32(&bytes, t.dtype()).ok_or_else(|| {
            err(
                path,
                format!("tensor {name}: {:?} is not a float type", t.dtype()),
            )
        })?;
        tensors.insert(
            name.clone(),
            HostTensor {
                shape: t.shape().to_vec(),
                data,
            },
        );
    }
    Ok(WeightsFile {
        path: path.to_string(),
        tensors,
        metadata,
    })
}

/// Our metadata (YAML, scale, nc, names, whether fused) from a checkpoint's pickled model object, within
/// bounds: a cyclic, too deep or too large `yaml` is an error.
pub fn metadata_of(model: &Value, path: &str) -> Result<HashMap<String, String>> {
    let mut metadata = HashMap::new();
    metadata.insert(meta::FORMAT.to_string(), meta::FORMAT_VALUE.to_string());
    if let Some(yaml @ Value::Dict(_)) = model.get("yaml") {
        let mut budget = YamlBudget {
            values: 0,
            exceeded: false,
        };
        let converted = to_yaml(&yaml, 0, &mut budget);
        if budget.exceeded {
            return Err(err(
                path,
                format!(
                    "the model's yaml is nested deeper than {YAML_MAX_DEPTH} levels or holds more than \
                     {YAML_MAX_VALUES} values (cyclic or crafted): refused"
                ),
            ));
        }
        let Some(serde_yaml::Value::Mapping(mut y)) = converted else {
            return Err(err(path, "the model's yaml is not a dict"));
        };
        let scale = match y.remove("scale") {
            Some(serde_yaml::Value::String(s)) => s,
            _ => String::new(),
        };
        y.remove("yaml_file");
        y.remove("channels");
        if let Some(nc) = y.get("nc").and_then(|v| v.as_u64()) {
            metadata.insert(meta::NC.to_string(), nc.to_string());
        }
        let text =
            serde_yaml::to_string(&y).map_err(|e| FileError::decode(path, "its model yaml", e))?;
        metadata.insert(meta::YAML.to_string(), text);
        metadata.insert(meta::SCALE.to_string(), scale);
    }
    if let Some(names) = model.get("names").and_then(|n| names_of(&n)) {
        metadata.insert(
            meta::NAMES.to_string(),
            serde_json::to_string(&names).unwrap_or_default(),
        );
    }
    metadata.insert(
        meta::FUSED.to_string(),
        (!holds_batch_norm(model)).to_string(),
    );
    Ok(metadata)
}

/// The class path PyTorch pickles a BatchNorm module under.
const BATCH_NORM_CLASS: &str = "torch.nn.modules.batchnorm.BatchNorm2d";

/// Whether the pickled module tree holds a BatchNorm module (an unfused model): Ultralytics' `fuse()` deletes
/// them. Shared and cyclic values are visited once.
fn holds_batch_norm(root: &Value) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(v) = stack.pop() {
        let ptr = match &v {
            Value::List(l) => Rc::as_ptr(l) as *const (),
            Value::Tuple(t) => Rc::as_ptr(t) as *const (),
            Value::Dict(d) => Rc::as_ptr(d) as *const (),
            Value::Object(o) => Rc::as_ptr(o) as *const (),
            _ => continue,
        };
        if !seen.insert(ptr) {
            continue;
        }
        match &v {
            Value::List(l) => stack.extend(l.borrow().iter().cloned()),
            Value::Tuple(t) => stack.extend(t.iter().cloned()),
            Value::Dict(d) => stack.extend(d.borrow().iter().map(|(_, v)| v.clone())),
            Value::Object(o) => {
                let o = o.borrow();
                if o.class == BATCH_NORM_CLASS {
                    return true;
                }
                stack.push(o.args.clone());
                stack.push(o.state.clone());
            }
            _ => {}
        }
    }
    false
}

fn to_f32(b: &[u8], dtype: pytorch_reader::DType) -> Option<Vec<f32>> {
    use pytorch_reader::DType as D;
    Some(match dtype {
        D::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        D::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        D::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        D::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => return None,
    })
}

/// The largest `data.pkl` read (pytorch-reader's own limit).
const MAX_PICKLE_BYTES: u64 = pytorch_reader::MAX_PICKLE_SIZE;

/// The pickle of a checkpoint (`*/data.pkl` in its zip).
fn data_pkl(path: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).map_err(|e| FileError::io(path, e))?;
    let mut z = zip::ZipArchive::new(f)
        .map_err(|e| FileError::decode(path, "not a readable PyTorch checkpoint (zip)", e))?;
    let name = (0..z.len())
        .filter_map(|i| {
            z.name_for_index(i)
                .and_then(|n| n.ok())
                .map(|n| n.to_string())
        })
        .find(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        .ok_or_else(|| err(path, "no data.pkl inside: not a PyTorch checkpoint"))?;
    let mut entry = z
        .by_name(&name)
        .map_err(|e| FileError::decode(path, "checkpoint zip", e))?;
    // Read no more than the limit: a compressed entry can unfold to gigabytes from a small file.
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(&mut entry, MAX_PICKLE_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| FileError::io(path, e))?;
    if bytes.len() as u64 > MAX_PICKLE_BYTES {
        return Err(err(
            path,
            format!(
                "{name} is larger than {} MB unpacked (a checkpoint's is well under 1 MB): refused",
                MAX_PICKLE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}
