//! Safetensors in and out under Ultralytics' `state_dict` names, with our metadata (YAML, scale, nc, names).

use crate::error::{FileError, ModelError, Result};
use crate::graph::YoloModel;
use crate::nn::{Named, NamedRef, Slot};
use crate::spec::{ModelSpec, SpecOptions};
use crate::structure;
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// A host-side tensor: shape and f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub type StateDict = BTreeMap<String, HostTensor>;

/// Metadata keys we write (safetensors `__metadata__`, all strings).
pub mod meta {
    pub const YAML: &str = "yaml";
    pub const SCALE: &str = "scale";
    pub const NC: &str = "nc";
    pub const NAMES: &str = "names";
    pub const FUSED: &str = "fused";
    pub const FORMAT: &str = "format";
    pub const FORMAT_VALUE: &str = "yolo-burn/ultralytics-state-dict";
}

/// Copies a tensor to the host as f32.
pub fn host<const D: usize>(t: Tensor<D>) -> HostTensor {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("float tensors convert to f32");
    HostTensor { shape, data }
}

/// The model's tensors by key (`model.0.conv.weight`, ...).
pub fn state_dict(model: &YoloModel) -> StateDict {
    let mut sd = StateDict::new();
    model.for_each_named("", &mut |k, slot| {
        let t = match slot {
            Slot::W4(p) | Slot::Frozen(p) => host(p.val()),
            Slot::Linear(p) => host(p.val().flatten::<2>(1, 3)),
            Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => host(p.val()),
        };
        sd.insert(k, t);
    });
    sd
}

/// Loads `sd` into the model, replacing every tensor. Missing, unexpected and mis-shaped keys are reported
/// together in one error, and the model is left untouched on error. `num_batches_tracked` is ignored.
pub fn load_state_dict(model: &mut YoloModel, sd: &StateDict, source: &str) -> Result<()> {
    let mut expected: Vec<(String, Vec<usize>)> = Vec::new();
    model.for_each_named("", &mut |k, slot| {
        let shape = match slot {
            Slot::W4(p) | Slot::Frozen(p) => p.val().dims().to_vec(),
            Slot::Linear(p) => p.val().dims()[..2].to_vec(),
            Slot::W1(p) | Slot::Norm(p) | Slot::Stat(p) => p.val().dims().to_vec(),
        };
        expected.push((k, shape));
    });
    let known: HashSet<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
    let folded = fold_conv_biases_before_bn(sd, model, &known);
    let sd = match &folded {
        Some((sd, n)) => {
            eprintln!(
                "note: {source}: {n} branch-conv biases folded into the BatchNorm running means that follow them \
                 (weights written before MobileOne's branch convs became bias-free, as in the seed; outputs unchanged)"
            );
            sd
        }
        None => sd,
    };
    let mut missing = Vec::new();
    let mut mis_shaped = Vec::new();
    for (k, shape) in &expected {
        match sd.get(k) {
            None => missing.push(format!("  missing: {k} {shape:?}")),
            Some(t) if &t.shape != shape => mis_shaped.push(format!(
                "  wrong shape: {k} is {:?} in the file, the model needs {shape:?}",
                t.shape
            )),
            _ => {}
        }
    }
    let unexpected: Vec<String> = sd
        .keys()
        .filter(|k| !known.contains(k.as_str()) && !k.ends_with("num_batches_tracked"))
        .map(|k| format!("  unexpected: {k} {:?}", sd[k].shape))
        .collect();
    if !(missing.is_empty() && mis_shaped.is_empty() && unexpected.is_empty()) {
        let mut lines = Vec::new();
        for group in [&missing, &mis_shaped, &unexpected] {
            lines.extend(group.iter().take(20).cloned());
            if group.len() > 20 {
                lines.push(format!("  ... and {} more like that", group.len() - 20));
            }
        }
        lines.push(format!(
            "({} missing, {} wrong shape, {} unexpected; is the config/scale/nc right, and fused vs unfused?)",
            missing.len(),
            mis_shaped.len(),
            unexpected.len()
        ));
        return Err(ModelError::Weights {
            path: source.to_string(),
            msg: lines.join("\n"),
        });
    }
    let device = model_device(model);
    model.visit_named("", &mut |k, slot| {
        let t = &sd[&k];
        let data = TensorData::new(t.data.clone(), t.shape.clone());
        match slot {
            // Asking the old tensor would say "no gradient" for every weight on a plain (non-autodiff) device,
            // freezing them for training; the kind says what is frozen.
            Slot::W4(p) => *p = Param::from_tensor(Tensor::<4>::from_data(data, &device)),
            Slot::Linear(p) => {
                let [o, i] = [t.shape[0], t.shape[1]];
                let data = TensorData::new(t.data.clone(), vec![o, i, 1, 1]);
                *p = Param::from_tensor(Tensor::<4>::from_data(data, &device))
            }
            Slot::Frozen(p) => {
                *p = Param::from_tensor(Tensor::<4>::from_data(data, &device))
                    .set_require_grad(false)
            }
            Slot::W1(p) | Slot::Norm(p) => {
                *p = Param::from_tensor(Tensor::<1>::from_data(data, &device))
            }
            Slot::Stat(p) => *p = Param::initialized(p.id, Tensor::<1>::from_data(data, &device)),
        }
    });
    Ok(())
}

/// What [`load_matching`] loaded.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Model tensors taken from the file.
    pub loaded: usize,
    /// Model tensors in all.
    pub total: usize,
    /// Model tensors left at their values (absent from the file, or another shape), in visit order.
    pub kept: Vec<String>,
}

/// Loads the tensors of `sd` whose name and shape match the model's and keeps the others, as Ultralytics'
/// `intersect_dicts` transfer of pretrained weights: a file trained for another class count gives everything
/// but the class branch.
pub fn load_matching(model: &mut YoloModel, sd: &StateDict, source: &str) -> Result<Transfer> {
    let mut full = state_dict(model);
    let known: HashSet<&str> = full.keys().map(String::as_str).collect();
    let folded = fold_conv_biases_before_bn(sd, model, &known);
    let sd = folded.as_ref().map(|(sd, _)| sd).unwrap_or(sd);
    let mut order = Vec::new();
    model.for_each_named("", &mut |k, _| order.push(k));
    let mut kept = Vec::new();
    for k in order {
        match sd.get(&k) {
            Some(t) if t.shape == full[&k].shape => {
                full.insert(k, t.clone());
            }
            _ => kept.push(k),
        }
    }
    let total = full.len();
    load_state_dict(model, &full, source)?;
    Ok(Transfer {
        loaded: total - kept.len(),
        total,
        kept,
    })
}

/// A conv bias right before a BatchNorm is redundant: `bn(Wx + b)` with running mean `m` equals `bn(Wx)` with
/// running mean `m - b`, in eval and in training (the batch mean shifts by `b` too). Files written while our
/// MobileOne branch convs still had a bias load into the bias-free model this way. Which convs a BatchNorm
/// follows comes from the model's module tree (walked only when the file holds a key the model does not:
/// `known`). `None` when there is none.
fn fold_conv_biases_before_bn(
    sd: &StateDict,
    model: &YoloModel,
    known: &HashSet<&str>,
) -> Option<(StateDict, usize)> {
    if sd.keys().all(|k| known.contains(k.as_str())) {
        return None;
    }
    let foldable: Vec<(String, String)> = structure::conv_norm_pairs(model)
        .into_iter()
        .filter_map(|(conv, bn)| {
            let (bias, mean) = (
                structure::conv_bias_key(&conv),
                structure::running_mean_key(&bn),
            );
            let fits =
                matches!((sd.get(&bias), sd.get(&mean)), (Some(b), Some(m)) if b.shape == m.shape);
            fits.then_some((bias, mean))
        })
        .collect();
    if foldable.is_empty() {
        return None;
    }
    let mut out = sd.clone();
    for (bias_key, mean_key) in &foldable {
        let bias = out.remove(bias_key).expect("listed from the same map");
        let mean = out.get_mut(mean_key).expect("checked above");
        for (m, b) in mean.data.iter_mut().zip(&bias.data) {
            *m -= b;
        }
    }
    Some((out, foldable.len()))
}

fn model_device(model: &YoloModel) -> Device {
    model
        .devices()
        .into_iter()
        .next()
        .expect("a model has tensors")
}

/// A safetensors file read into host tensors (f32, f16, bf16 and f64 are converted to f32).
#[derive(Debug, Clone)]
pub struct WeightsFile {
    pub path: String,
    pub tensors: StateDict,
    pub metadata: HashMap<String, String>,
}

fn view_to_f32(v: &TensorView<'_>, key: &str, path: &str) -> Result<Vec<f32>> {
    let b = v.data();
    let bad = |m: &str| ModelError::Io {
        path: path.to_string(),
        msg: format!("tensor {key}: {m}"),
    };
    Ok(match v.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        other => return Err(bad(&format!("unsupported dtype {other:?}"))),
    })
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) & 1) as u32;
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as u32;
    let v = if exp == 0 {
        (frac as f32) * 2f32.powi(-24)
    } else if exp == 31 {
        if frac == 0 {
            f32::INFINITY
        } else {
            f32::NAN
        }
    } else {
        f32::from_bits(((exp - 15 + 127) as u32) << 23 | frac << 13)
    };
    if sign == 1 {
        -v
    } else {
        v
    }
}

impl WeightsFile {
    /// Reads our safetensors files and Ultralytics' `.pt` checkpoints (told apart by their first bytes).
    pub fn read(path: &str) -> Result<WeightsFile> {
        if crate::checkpoint::is_torch_zip(path) {
            return crate::checkpoint::read(path);
        }
        let bytes = std::fs::read(path).map_err(|e| FileError::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<WeightsFile> {
        let (_, md) = SafeTensors::read_metadata(bytes).map_err(|e| {
            FileError::decode(
                path,
                "not a readable safetensors file, truncated or half-written?",
                e,
            )
        })?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| {
            FileError::decode(
                path,
                "not a readable safetensors file, truncated or half-written?",
                e,
            )
        })?;
        let mut tensors = StateDict::new();
        let mut int8 = BTreeMap::new();
        for (k, v) in st.tensors() {
            if v.dtype() == Dtype::I8 {
                let data = v.data().iter().map(|&b| b as i8).collect();
                let shape = v.shape().to_vec();
                int8.insert(k, crate::int8::Int8Tensor { shape, data });
                continue;
            }
            let data = view_to_f32(&v, &k, path)?;
            tensors.insert(
                k,
                HostTensor {
                    shape: v.shape().to_vec(),
                    data,
                },
            );
        }
        crate::int8::dequantize_into(&mut tensors, int8, path)?;
        let metadata = md.metadata().clone().unwrap_or_default();
        Ok(WeightsFile {
            path: path.to_string(),
            tensors,
            metadata,
        })
    }

    /// The model spec stored in our metadata, if this file carries one.
    pub fn spec(&self, opts: &SpecOptions) -> Option<Result<ModelSpec>> {
        let yaml = self.metadata.get(meta::YAML)?;
        let mut opts = opts.clone();
        if opts.scale.is_none() {
            opts.scale = self
                .metadata
                .get(meta::SCALE)
                .cloned()
                .filter(|s| !s.is_empty());
        }
        if opts.nc.is_none() {
            opts.nc = self.metadata.get(meta::NC).and_then(|n| n.parse().ok());
        }
        Some(ModelSpec::from_str(
            yaml,
            &format!("{} (embedded YAML)", self.path),
            &opts,
        ))
    }

    /// The model for `spec` in the structure this file's tensors fill: fused or not as our metadata says, else
    /// (a file written by others) fused unless the file holds the tensors of the unfused model's BatchNorms.
    pub fn build_model(&self, spec: &ModelSpec, device: &Device) -> YoloModel {
        let model = YoloModel::new(spec, device);
        let fused = match self.metadata.get(meta::FUSED) {
            Some(v) => v == "true",
            None => !structure::norm_keys(&model)
                .iter()
                .any(|k| self.tensors.contains_key(k)),
        };
        if fused {
            model.fuse()
        } else {
            model
        }
    }

    pub fn names(&self) -> Option<Vec<String>> {
        serde_json::from_str(self.metadata.get(meta::NAMES)?).ok()
    }
}

/// Serialises host tensors (f32) with metadata.
pub fn to_safetensors_bytes(sd: &StateDict, metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    to_safetensors_bytes_with_int8(sd, &BTreeMap::new(), metadata)
}

/// [`to_safetensors_bytes`] with the tensors of `int8` stored as int8 (their scales are f32 tensors of `sd`).
pub fn to_safetensors_bytes_with_int8(
    sd: &StateDict,
    int8: &BTreeMap<String, crate::int8::Int8Tensor>,
    metadata: &HashMap<String, String>,
) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = sd
        .iter()
        .filter(|(k, _)| !int8.contains_key(*k))
        .map(|(k, t)| {
            let b: Vec<u8> = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), Dtype::F32, b, t.shape.clone())
        })
        .chain(int8.iter().map(|(k, t)| {
            let b: Vec<u8> = t.data.iter().map(|&v| v as u8).collect();
            (k.clone(), Dtype::I8, b, t.shape.clone())
        }))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, d, b, s)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| ModelError::Encode {
                    what: format!("tensor {k}"),
                    source: e.into(),
                })
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, &Some(metadata.clone())).map_err(|e| ModelError::Encode {
        what: "safetensors serialisation".into(),
        source: e.into(),
    })
}

/// Writes `bytes` to `path` atomically and durably: a temporary sibling, flushed to disk, renamed over
/// `path`, then the folder flushed, so after a crash or power loss `path` holds the old or the new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(data::write_atomic(path, bytes).map_err(|e| FileError::io(path, e))?)
}

/// Our metadata for a model: YAML text, scale, nc, class names and whether it is fused.
pub fn model_metadata(model: &mut YoloModel, names: &[String]) -> HashMap<String, String> {
    let fused = model.is_fused();
    let spec = &model.spec;
    HashMap::from([
        (meta::FORMAT.to_string(), meta::FORMAT_VALUE.to_string()),
        (meta::YAML.to_string(), spec.yaml_text.clone()),
        (meta::SCALE.to_string(), spec.scale.clone()),
        (meta::NC.to_string(), spec.nc.to_string()),
        (
            meta::NAMES.to_string(),
            serde_json::to_string(names).expect("strings serialise"),
        ),
        (meta::FUSED.to_string(), fused.to_string()),
    ])
}

/// Saves the model as safetensors with Ultralytics keys and our metadata (atomic write).
pub fn save_model(
    model: &mut YoloModel,
    path: &Path,
    names: &[String],
    extra: &[(String, String)],
) -> Result<()> {
    let sd = state_dict(model);
    let mut md = model_metadata(model, names);
    md.extend(extra.iter().cloned());
    write_atomic(path, &to_safetensors_bytes(&sd, &md)?)
}

/// Default class names `class0..` where a file carries none.
pub fn default_names(nc: usize) -> Vec<String> {
    (0..nc).map(|i| format!("class{i}")).collect()
}

/// How to find the model for a weights file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Model YAML for files without our metadata (Ultralytics conversions of others, fixtures).
    pub config: Option<String>,
    pub spec: SpecOptions,
}

/// A loaded model with its class names.
pub struct Loaded {
    pub model: YoloModel,
    pub names: Vec<String>,
    pub file: WeightsFile,
}

/// Builds the model a weights file describes (its own YAML, or `opts.config`), fused when the file is, and
/// loads the tensors.
pub fn load_model(path: &str, opts: &LoadOptions, device: &Device) -> Result<Loaded> {
    load_from(WeightsFile::read(path)?, opts, device)
}

/// [`load_model`] for a safetensors file already in memory (a web page's download); `name` stands for its
/// path in messages.
pub fn load_model_bytes(
    bytes: &[u8],
    name: &str,
    opts: &LoadOptions,
    device: &Device,
) -> Result<Loaded> {
    load_from(WeightsFile::from_bytes(bytes, name)?, opts, device)
}

fn load_from(file: WeightsFile, opts: &LoadOptions, device: &Device) -> Result<Loaded> {
    let path = file.path.clone();
    let path = path.as_str();
    let spec = match (&opts.config, file.spec(&opts.spec)) {
        (Some(cfg), _) => ModelSpec::from_file(cfg, &opts.spec)?,
        (None, Some(spec)) => spec?,
        (None, None) => return Err(ModelError::Io {
            path: path.to_string(),
            msg: "the file carries no model YAML in its metadata; pass --config (and --scale/--nc)"
                .into(),
        }),
    };
    let mut model = file.build_model(&spec, device);
    load_state_dict(&mut model, &file.tensors, path)?;
    if let Some(text) = file.metadata.get(crate::int8::META_KEY) {
        model.int8 = Some(crate::int8::Int8Info::from_metadata(text, path)?);
    }
    let names = file
        .names()
        .filter(|n| n.len() == spec.nc)
        .unwrap_or_else(|| default_names(spec.nc));
    Ok(Loaded { model, names, file })
}
