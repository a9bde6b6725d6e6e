//! Ultralytics model YAML -> a resolved layer list, following `parse_model` of Ultralytics 8.4.
//!
//! Everything here is plain data (no tensors), so `info` can print the table and the FLOPs of any
//! scale without building a model.

use crate::error::{FileError, ModelError, Result};
use crate::modules::classify::ClassifySpec;
use crate::modules::{self, check_channels, BlockKind, Role, Row};
use crate::nn::Act;
use crate::yaml_args::{
    args_display, as_f64, as_usize, check_arity, make_divisible, resolve_arg, Arg, Ctx,
};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// One YAML row after depth/width scaling and argument resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleSpec {
    /// A registered block ([`crate::modules`]).
    Block(BlockKind),
    Upsample {
        scale: usize,
    },
    Concat,
    Detect {
        nc: usize,
        reg_max: usize,
        ch: Vec<usize>,
        /// The v3/v5/v8 head (3x3 convs in the class branch); the 8.4 one (YOLO11) has depthwise ones.
        legacy: bool,
    },
    /// The classification head ([`crate::modules::classify`]).
    Classify(ClassifySpec),
}

/// What a model predicts, from its head row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Detect,
    Classify,
}

impl Task {
    /// Ultralytics' task name.
    pub fn name(self) -> &'static str {
        match self {
            Task::Detect => "detect",
            Task::Classify => "classify",
        }
    }
}

impl ModuleSpec {
    /// The class path Ultralytics prints in its model table.
    pub fn type_name(&self) -> &'static str {
        match self {
            ModuleSpec::Block(b) => b.type_name(),
            ModuleSpec::Upsample { .. } => "torch.nn.modules.upsampling.Upsample",
            ModuleSpec::Concat => "ultralytics.nn.modules.conv.Concat",
            ModuleSpec::Detect { .. } => "ultralytics.nn.modules.head.Detect",
            ModuleSpec::Classify(_) => ClassifySpec::TYPE_PATH,
        }
    }

    /// Whether the row is the model's head (its last row).
    pub fn is_head(&self) -> bool {
        matches!(self, ModuleSpec::Detect { .. } | ModuleSpec::Classify(_))
    }
}

/// A resolved row of the model table.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    pub index: usize,
    /// `from` as written (relative negatives kept), for display.
    pub from_raw: Vec<i64>,
    /// Whether `from` was written as a list.
    pub from_is_list: bool,
    /// Absolute source layer per input; `None` = the previous layer's output (or the image for layer 0).
    pub from: Vec<Option<usize>>,
    /// Number of stacked copies (Sequential) after depth scaling; 1 for repeat modules (C2f/C3 take n as an arg).
    pub repeats: usize,
    /// Repeats shown in the table (the scaled n, also for C2f/C3).
    pub n_display: usize,
    pub module: ModuleSpec,
    /// Args as Ultralytics passes them to the constructor, for display.
    pub args_display: String,
    pub c_out: usize,
}

/// A parsed model YAML at one scale.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub source: String,
    pub yaml_text: String,
    pub nc: usize,
    pub scale: String,
    pub depth: f64,
    pub width: f64,
    pub max_channels: f64,
    pub reg_max: usize,
    /// The activation of every `act=True` conv (the YAML's `activation:`, SiLU by default).
    pub act: Act,
    pub layers: Vec<LayerSpec>,
    /// Layers whose outputs later rows read (Ultralytics' `save` list).
    pub save: Vec<usize>,
}

/// Limits far past any real model, so a typo fails with a message instead of an allocation abort.
const MAX_NC: usize = data::config::MAX_CLASSES;
const MAX_REPEATS: usize = 100;
/// nn.Upsample's largest scale factor.
const MAX_SCALE: usize = 64;
/// 8 GB of float32: 100x yolov8x.
const MAX_WEIGHTS: f64 = 2e9;

/// `guess_model_scale`: the scale letter after the version digits in a file stem (`yolov8n-mobileone` -> `n`).
pub fn scale_from_name(path: &str) -> Option<String> {
    let stem = Path::new(path).file_stem()?.to_str()?.to_ascii_lowercase();
    let bytes = stem.as_bytes();
    let mut i = 0;
    while let Some(pos) = stem[i..].find("yolo") {
        let mut j = i + pos + 4;
        if stem[j..].starts_with("e-") {
            j += 2;
        }
        if j < bytes.len() && bytes[j] == b'v' {
            j += 1;
        }
        let digits_start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j > digits_start && j < bytes.len() && b"nslmx".contains(&bytes[j]) {
            return Some((bytes[j] as char).to_string());
        }
        i += pos + 4;
    }
    None
}

/// Where a bare model name (`yolov8n-mobileone.yaml`, no folder) is looked up, in order: the working
/// directory, its `configs/` and `configs/ultralytics/`, the same next to the executable, and the checkout the
/// binary was built from (so `model=yolov8n-mobileone.yaml` works from any folder).
pub fn config_dirs() -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from(".")];
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        roots.push(dir);
    }
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let mut dirs = Vec::new();
    for r in roots {
        dirs.push(r.join("configs"));
        dirs.push(r.join("configs/ultralytics"));
    }
    dirs
}

/// A model YAML path: `name` itself when it exists or names a folder, else the first of [`config_dirs`]
/// that holds it (or its unified file, for a scaled name); `name` unchanged when none does (the error then
/// names it).
pub fn find_config(name: &str) -> String {
    let p = Path::new(name);
    if p.exists() || p.parent().is_some_and(|d| !d.as_os_str().is_empty()) {
        return name.to_string();
    }
    for dir in config_dirs() {
        let candidate = dir.join(name);
        let unified = unified_name(&candidate.to_string_lossy());
        if candidate.exists() || Path::new(&unified).exists() {
            return candidate.to_string_lossy().into_owned();
        }
    }
    name.to_string()
}

/// The unified file for a scaled name (`yolov8n-mobileone.yaml` -> `yolov8-mobileone.yaml`), like `yaml_model_load`.
pub fn unified_name(path: &str) -> String {
    let p = Path::new(path);
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return path.to_string();
    };
    let bytes = name.as_bytes();
    // Find the last "<digits><scale letter>" followed by something (the extension at least).
    let mut out = None;
    for i in 1..bytes.len().saturating_sub(1) {
        if bytes[i - 1].is_ascii_digit() && b"nslmx".contains(&bytes[i]) {
            out = Some(i);
        }
    }
    match out {
        Some(i) => {
            let new_name = format!("{}{}", &name[..i], &name[i + 1..]);
            p.with_file_name(new_name).to_string_lossy().into_owned()
        }
        None => path.to_string(),
    }
}

impl ModelSpec {
    /// The model-wide keys of a model YAML: nc (or the override), reg_max, the activation, and the scale's
    /// depth, width and max_channels (`scales`, or the older depth_multiple/width_multiple with no channel
    /// cap): a spec without rows yet.
    fn header(
        map: &serde_yaml::Mapping,
        opts: &SpecOptions,
        source: &str,
        text: &str,
    ) -> Result<ModelSpec> {
        let top_err = |msg: String| ModelError::Yaml {
            file: source.to_string(),
            row: None,
            msg,
        };
        let get = |k: &str| map.get(Value::String(k.to_string()));
        let mut nc = match get("nc") {
            None => 80,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| top_err(format!("nc: expected a positive integer, got {v:?}")))?
                as usize,
        };
        if let Some(n) = opts.nc {
            nc = n;
        }
        if nc == 0 {
            return Err(top_err("nc must be at least 1".into()));
        }
        let act = match get("activation") {
            None | Some(Value::Null) => Act::Silu,
            Some(v) => v.as_str().and_then(Act::from_yaml).ok_or_else(|| {
                top_err(format!(
                    "activation: {v:?} is not supported (nn.SiLU() or nn.ReLU(), as Conv.default_act)"
                ))
            })?,
        };
        let reg_max = match get("reg_max") {
            None => 16,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| top_err("reg_max: expected an integer".into()))?
                as usize,
        };

        let (scale, depth, width, max_channels) = match get("scales") {
            Some(Value::Mapping(scales)) => {
                let keys: Vec<String> = scales
                    .keys()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect();
                let scale = match &opts.scale {
                    Some(s) => s.clone(),
                    None => keys
                        .first()
                        .cloned()
                        .ok_or_else(|| top_err("scales is empty".into()))?,
                };
                let row = scales.get(Value::String(scale.clone())).ok_or_else(|| {
                    top_err(format!(
                        "scale '{scale}' is not in scales (have: {})",
                        keys.join(", ")
                    ))
                })?;
                let vals: Vec<f64> = row
                    .as_sequence()
                    .map(|s| s.iter().filter_map(|v| v.as_f64()).collect())
                    .unwrap_or_default();
                if vals.len() != 3 {
                    return Err(top_err(format!(
                        "scales.{scale}: expected [depth, width, max_channels], got {row:?}"
                    )));
                }
                (scale, vals[0], vals[1], vals[2])
            }
            Some(other) => {
                return Err(top_err(format!(
                    "scales: expected a mapping, got {other:?}"
                )))
            }
            None => {
                let d = get("depth_multiple")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(1.0);
                let w = get("width_multiple")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(1.0);
                (opts.scale.clone().unwrap_or_default(), d, w, f64::INFINITY)
            }
        };
        Ok(ModelSpec {
            source: source.to_string(),
            yaml_text: text.to_string(),
            nc,
            scale,
            depth,
            width,
            max_channels,
            reg_max,
            act,
            layers: vec![],
            save: vec![],
        })
    }
}

/// A row's `from`: one index or a list, each -1 (the previous layer) or a layer before row `i` (negative
/// counts back). Returns the values as written, whether they were a list, and the layers they name (None for -1).
#[allow(clippy::type_complexity)]
fn parse_from(v: &Value, i: usize, ctx: &Ctx) -> Result<(Vec<i64>, bool, Vec<Option<usize>>)> {
    let (from_raw, from_is_list) = match v {
        Value::Number(n) => (
            vec![n
                .as_i64()
                .ok_or_else(|| ctx.err("from: expected an integer"))?],
            false,
        ),
        Value::Sequence(v) => (
            v.iter()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| ctx.err(format!("from: expected integers, got {x:?}")))
                })
                .collect::<Result<Vec<_>>>()?,
            true,
        ),
        other => {
            return Err(ctx.err(format!(
                "from: expected an integer or a list of integers, got {other:?}"
            )))
        }
    };
    if from_raw.is_empty() {
        return Err(ctx.err("from: empty list"));
    }
    let mut from = Vec::new();
    for &f in &from_raw {
        if f == -1 {
            from.push(None);
            continue;
        }
        let abs = if f < 0 { i as i64 + f } else { f };
        if abs < 0 || abs >= i as i64 {
            return Err(ctx.err(format!(
                "from: {f} does not name an earlier layer (layer {i} can read layers 0..{})",
                i as i64 - 1
            )));
        }
        from.push(Some(abs as usize));
    }
    Ok((from_raw, from_is_list, from))
}

/// nn.Upsample's `[size=None, scale_factor, mode='nearest']`: the integer scale factor.
fn upsample_scale(args: &[Arg], ctx: &Ctx) -> Result<usize> {
    check_arity(args, 1, 3, "[size=None, scale_factor, mode='nearest']", ctx)?;
    if args.first() != Some(&Arg::None) {
        return Err(ctx.err("nn.Upsample: only size=None with a scale_factor is supported"));
    }
    let scale = match args.get(1) {
        Some(Arg::Int(s)) if *s >= 1 => *s as usize,
        Some(Arg::Float(x)) if *x >= 1.0 && x.fract() == 0.0 => *x as usize,
        other => {
            return Err(ctx.err(format!(
                "nn.Upsample: scale_factor must be a positive integer, got {}",
                other.map(|a| a.to_string()).unwrap_or("nothing".into())
            )))
        }
    };
    match args.get(2) {
        None => {}
        Some(Arg::Str(m)) if m == "nearest" => {}
        Some(other) => {
            return Err(ctx.err(format!(
                "nn.Upsample: only mode 'nearest' is supported, got {other}"
            )))
        }
    }
    Ok(scale)
}

/// Options for turning a YAML file into a spec.
#[derive(Debug, Clone, Default)]
pub struct SpecOptions {
    pub scale: Option<String>,
    pub nc: Option<usize>,
}

impl SpecOptions {
    /// Scale `scale` with `nc` classes.
    pub fn scaled(scale: &str, nc: usize) -> SpecOptions {
        SpecOptions {
            scale: Some(scale.to_string()),
            nc: Some(nc),
        }
    }
}

impl ModelSpec {
    /// Reads a model YAML file. A scaled name that does not exist (`yolov8n-mobileone.yaml`) resolves to its
    /// unified file, with the scale taken from the name unless `opts.scale` says otherwise.
    pub fn from_file(path: &str, opts: &SpecOptions) -> Result<ModelSpec> {
        let mut file = path.to_string();
        if !Path::new(&file).exists() {
            let unified = unified_name(path);
            if Path::new(&unified).exists() {
                file = unified;
            } else {
                return Err(ModelError::Io {
                    path: path.to_string(),
                    msg: "no such model YAML file".into(),
                });
            }
        }
        let text = std::fs::read_to_string(&file).map_err(|e| FileError::io(&file, e))?;
        let mut opts = opts.clone();
        if opts.scale.is_none() {
            opts.scale = scale_from_name(path);
        }
        Self::from_str(&text, path, &opts)
    }

    /// Parses YAML text; `source` names the file in error messages.
    pub fn from_str(text: &str, source: &str, opts: &SpecOptions) -> Result<ModelSpec> {
        let root: Value = serde_yaml::from_str(text)
            .map_err(|e| FileError::decode(source, "not valid YAML", e))?;
        let top_err = |msg: String| ModelError::Yaml {
            file: source.to_string(),
            row: None,
            msg,
        };
        let map = root
            .as_mapping()
            .ok_or_else(|| top_err("the model YAML must be a mapping".into()))?;
        let get = |k: &str| map.get(Value::String(k.to_string()));

        let mut spec = ModelSpec::header(map, opts, source, text)?;

        let mut rows: Vec<&Value> = Vec::new();
        for key in ["backbone", "head"] {
            match get(key) {
                Some(Value::Sequence(seq)) => rows.extend(seq.iter()),
                Some(other) => {
                    return Err(top_err(format!(
                        "{key}: expected a list of rows, got {other:?}"
                    )))
                }
                None => return Err(top_err(format!("missing '{key}'"))),
            }
        }

        let locals: Vec<(&str, Arg)> = vec![
            ("nc", Arg::Int(spec.nc as i64)),
            ("depth", Arg::Float(spec.depth)),
            ("width", Arg::Float(spec.width)),
            ("max_channels", Arg::Float(spec.max_channels)),
            ("reg_max", Arg::Int(spec.reg_max as i64)),
        ];

        let mut ch: Vec<usize> = vec![3];
        let mut layers = Vec::new();
        let mut save = std::collections::BTreeSet::new();
        for (i, row) in rows.iter().enumerate() {
            let ctx = Ctx { source, row: i };
            let seq = row.as_sequence().ok_or_else(|| {
                ctx.err(format!(
                    "expected a row [from, repeats, module, args], got {row:?}"
                ))
            })?;
            if seq.len() != 4 {
                return Err(ctx.err(format!(
                    "expected 4 fields [from, repeats, module, args], got {}",
                    seq.len()
                )));
            }
            let (from_raw, from_is_list, from) = parse_from(&seq[0], i, &ctx)?;
            save.extend(from.iter().flatten().copied());
            let ch_of = |f: &Option<usize>| -> usize {
                match f {
                    None => *ch.last().unwrap_or(&3),
                    Some(j) => ch[*j],
                }
            };
            // repeats
            let n_raw = seq[1].as_i64().filter(|n| *n >= 1).ok_or_else(|| {
                ctx.err(format!(
                    "repeats: expected a positive integer, got {:?}",
                    seq[1]
                ))
            })? as usize;
            let n = if n_raw > 1 {
                ((n_raw as f64 * spec.depth).round_ties_even() as usize).max(1)
            } else {
                n_raw
            };
            // module
            let mname = seq[2]
                .as_str()
                .ok_or_else(|| ctx.err(format!("module: expected a name, got {:?}", seq[2])))?;
            let mname = mname
                .strip_prefix("nn.")
                .or_else(|| mname.strip_prefix("torch.nn."))
                .map(|s| format!("nn.{s}"))
                .unwrap_or_else(|| mname.to_string());
            let raw_args = match &seq[3] {
                Value::Sequence(v) => v.clone(),
                Value::Null => vec![],
                other => return Err(ctx.err(format!("args: expected a list, got {other:?}"))),
            };
            let mut args: Vec<Arg> = raw_args
                .iter()
                .map(|a| resolve_arg(a, &locals, &ctx))
                .collect::<Result<_>>()?;

            let single_from = || -> Result<Option<usize>> {
                if from_is_list && from.len() != 1 {
                    return Err(ctx.err(format!(
                        "{mname} takes one input, but from lists {}",
                        from.len()
                    )));
                }
                Ok(from[0])
            };
            let scale_c2 = |args: &[Arg]| -> Result<usize> {
                let c2 = as_f64(
                    args.first()
                        .ok_or_else(|| ctx.err("missing c2 (output channels)"))?,
                    "c2",
                    &ctx,
                )?;
                Ok(make_divisible(c2.min(spec.max_channels) * spec.width, 8))
            };

            let mut repeats = n;
            let module;
            let c_out;
            match (mname.as_str(), modules::role(&mname)) {
                (_, Some(role)) => {
                    let c1 = ch_of(&single_from()?);
                    let c2 = if role == Role::SameChannels {
                        c1
                    } else {
                        let c2 = scale_c2(&args)?;
                        let rest: Vec<Arg> = args[1..].to_vec();
                        args = [Arg::Int(c1 as i64), Arg::Int(c2 as i64)]
                            .into_iter()
                            .chain(rest)
                            .collect();
                        c2
                    };
                    if role == Role::C2FirstRepeat {
                        args.insert(2, Arg::Int(n as i64));
                        repeats = 1;
                    }
                    // The block's own arguments, as the row wrote them.
                    let own: Vec<Arg> = match role {
                        Role::SameChannels => args.clone(),
                        Role::C2First => args[2..].to_vec(),
                        Role::C2FirstRepeat => args[3..].to_vec(),
                    };
                    let row = Row {
                        args: &own,
                        c1,
                        c2,
                        n,
                        act: spec.act,
                        scale: &spec.scale,
                        ctx: &ctx,
                    };
                    let block = modules::parse(&mname, &row).expect("registered name")?;
                    if repeats > 1 && block.c_out() != c1 {
                        return Err(ctx.err(format!(
                            "repeats {repeats} stacks identical {mname} blocks, so c1 ({c1}) must equal c2 ({}); \
                             split the row into a first block and a repeated one",
                            block.c_out()
                        )));
                    }
                    if repeats > 1 && block.out_hw(64, 64) != (64, 64) {
                        return Err(ctx.err(format!(
                            "repeats {repeats} stacks identical {mname} blocks, so each would change the map size; use stride 1 for repeated rows"
                        )));
                    }
                    c_out = block.c_out();
                    module = ModuleSpec::Block(block);
                }
                ("nn.Upsample", None) => {
                    let c1 = ch_of(&single_from()?);
                    let scale = upsample_scale(&args, &ctx)?;
                    module = ModuleSpec::Upsample { scale };
                    c_out = c1;
                }
                ("Concat", None) => {
                    check_arity(&args, 0, 1, "[dimension=1]", &ctx)?;
                    if let Some(a) = args.first() {
                        if as_usize(a, "dimension", &ctx)? != 1 {
                            return Err(ctx.err("Concat: only dimension 1 (channels) is supported"));
                        }
                    }
                    module = ModuleSpec::Concat;
                    c_out = from.iter().map(ch_of).sum();
                }
                ("Detect", None) => {
                    check_arity(&args, 1, 1, "[nc]", &ctx)?;
                    let dnc = as_usize(&args[0], "nc", &ctx)?;
                    let chs: Vec<usize> = from.iter().map(ch_of).collect();
                    args.push(Arg::Int(spec.reg_max as i64));
                    args.push(Arg::None);
                    args.push(Arg::List(chs.iter().map(|c| Arg::Int(*c as i64)).collect()));
                    if dnc == 0 {
                        return Err(ctx.err("Detect: nc must be at least 1"));
                    }
                    // parse_model: a C3k2 (or later block) row anywhere before gives the 8.4 head.
                    let legacy = !layers.iter().any(|l: &LayerSpec| {
                        matches!(&l.module, ModuleSpec::Block(b) if b.modern_head())
                    });
                    module = ModuleSpec::Detect {
                        nc: dnc,
                        reg_max: spec.reg_max,
                        ch: chs,
                        legacy,
                    };
                    c_out = 0;
                }
                ("Classify", None) => {
                    let c1 = ch_of(&single_from()?);
                    // parse_model: Classify's c2 (the class count) is the one base-module c2 not width-scaled.
                    check_arity(&args, 1, 5, ClassifySpec::SIGNATURE, &ctx)?;
                    let cnc = as_usize(&args[0], "nc", &ctx)?;
                    let head = ClassifySpec::parse(&args[1..], c1, cnc, spec.act, &ctx)?;
                    args.insert(0, Arg::Int(c1 as i64));
                    c_out = cnc;
                    module = ModuleSpec::Classify(head);
                }
                (other, None) => {
                    return Err(ctx.err(format!(
                        "unknown module '{other}' (supported: {}, nn.Upsample, Concat, Detect, Classify)",
                        modules::NAMES.join(", ")
                    )))
                }
            }
            if repeats > 1 && !matches!(module, ModuleSpec::Block(_)) {
                return Err(ctx.err(format!("repeats {repeats} is not supported for {mname}")));
            }
            if i == 0 {
                ch.clear();
            }
            ch.push(c_out);
            layers.push(LayerSpec {
                index: i,
                from_raw,
                from_is_list,
                from,
                repeats,
                n_display: n,
                module,
                args_display: args_display(&args),
                c_out,
            });
        }
        let head_count = layers.iter().filter(|l| l.module.is_head()).count();
        let last_is_head = layers.last().is_some_and(|l| l.module.is_head());
        if head_count != 1 || !last_is_head {
            return Err(top_err(
                "the last row must be the only head row (Detect, or Classify for a classifier)"
                    .into(),
            ));
        }
        spec.layers = layers;
        spec.save = save.into_iter().collect();
        spec.check_values()?;
        Ok(spec)
    }

    /// Range checks on what the rows resolved to, each naming its row: values Ultralytics would reject or
    /// that would build a broken or unallocatable model (zero or negative widths, even pooling kernels,
    /// expansions that leave no channels, sizes past any real model).
    fn check_values(&self) -> Result<()> {
        let top = |msg: String| ModelError::Yaml {
            file: self.source.clone(),
            row: None,
            msg,
        };
        if !(self.depth > 0.0 && self.depth <= 10.0 && self.width > 0.0 && self.width <= 10.0) {
            return Err(top(format!(
                "scale {}: depth {} and width {} must be in (0, 10]",
                self.scale, self.depth, self.width
            )));
        }
        if self.max_channels.is_nan() || self.max_channels < 1.0 {
            return Err(top(format!(
                "max_channels {} must be at least 1",
                self.max_channels
            )));
        }
        if !(2..=64).contains(&self.reg_max) {
            return Err(top(format!(
                "reg_max {}: must be between 2 and 64 (the DFL needs bins; reg_max 1, a head without DFL, is not supported)",
                self.reg_max
            )));
        }
        if self.nc > MAX_NC {
            return Err(top(format!("nc {}: at most {MAX_NC} classes", self.nc)));
        }
        for l in &self.layers {
            let ctx = Ctx {
                source: &self.source,
                row: l.index,
            };
            if l.repeats.max(l.n_display) > MAX_REPEATS {
                return Err(ctx.err(format!(
                    "repeats {}: at most {MAX_REPEATS}",
                    l.repeats.max(l.n_display)
                )));
            }
            match &l.module {
                ModuleSpec::Detect { .. } => {}
                ModuleSpec::Classify(h) => {
                    if h.nc > MAX_NC {
                        return Err(ctx.err(format!("nc {}: at most {MAX_NC} classes", h.nc)));
                    }
                    if l.index == 0 {
                        return Err(ctx.err(
                            "Classify reads the image itself: a model needs layers before its head",
                        ));
                    }
                }
                _ => check_channels("the output", l.c_out, &ctx)?,
            }
            match &l.module {
                ModuleSpec::Block(b) => b.check(&ctx)?,
                ModuleSpec::Upsample { scale } if *scale > MAX_SCALE => {
                    return Err(ctx.err(format!("scale_factor {scale}: at most {MAX_SCALE}")));
                }
                ModuleSpec::Detect { nc, ch, .. } => {
                    if *nc > MAX_NC {
                        return Err(ctx.err(format!("nc {nc}: at most {MAX_NC} classes")));
                    }
                    if l.from.contains(&None) && l.index == 0 {
                        return Err(ctx.err(
                            "Detect reads the image itself: a model needs layers before its head",
                        ));
                    }
                    for &c in ch {
                        check_channels("a Detect input", c, &ctx)?;
                    }
                }
                _ => {}
            }
        }
        let weights = crate::shapes::weight_count(self);
        if weights > MAX_WEIGHTS {
            return Err(top(format!(
                "the model would hold {:.3e} weights ({:.0} GB), more than the {MAX_WEIGHTS:.0e} allowed",
                weights,
                weights * 4.0 / 1e9
            )));
        }
        Ok(())
    }

    /// An error naming the file when the model is not a detector: the commands that decode boxes refuse a
    /// classifier up front instead of failing inside.
    pub fn require_detector(&self, command: &str) -> std::result::Result<(), String> {
        match self.task() {
            Task::Detect => Ok(()),
            Task::Classify => Err(format!(
                "{}: a classification model (its last row is Classify); {command} runs detection models \
                 (a Detect head) only so far",
                self.source
            )),
        }
    }

    /// What the model predicts.
    pub fn task(&self) -> Task {
        match self.layers.last().map(|l| &l.module) {
            Some(ModuleSpec::Classify(_)) => Task::Classify,
            _ => Task::Detect,
        }
    }

    /// The downsampling of each map the head reads (the Detect strides), from a 256x256 dry run of the shapes
    /// as Ultralytics does.
    pub fn strides(&self) -> Vec<f32> {
        let shapes = crate::shapes::layer_shapes(self, 256, 256);
        let head = self.layers.last().expect("validated: a head row exists");
        head.from
            .iter()
            .map(|f| {
                let j = f.unwrap_or(head.index - 1);
                256.0 / shapes[j].1 as f32
            })
            .collect()
    }

    /// Whether this model runs on an `h x w` input: a multiple of its largest stride (Ultralytics rounds
    /// imgsz up to it and warns; refusing keeps the user's number) with every Concat's inputs equal in size.
    pub fn check_input(&self, h: usize, w: usize) -> std::result::Result<(), String> {
        let max_stride = self.strides().into_iter().fold(1.0f32, f32::max).round() as usize;
        if !h.is_multiple_of(max_stride) || !w.is_multiple_of(max_stride) || h == 0 || w == 0 {
            return Err(format!(
                "imgsz {h}x{w}: must be a multiple of {max_stride}, this model's largest stride"
            ));
        }
        crate::shapes::check_input_size(self, h, w)
    }

    /// The Detect row, its class count and input channels; `None` for a classifier.
    pub fn detect(&self) -> Option<(&LayerSpec, usize, &[usize])> {
        let l = self.layers.last()?;
        match &l.module {
            ModuleSpec::Detect { nc, ch, .. } => Some((l, *nc, ch)),
            _ => None,
        }
    }

    /// The model's class count (its head's).
    pub fn head_nc(&self) -> usize {
        match self.layers.last().map(|l| &l.module) {
            Some(ModuleSpec::Detect { nc, .. }) => *nc,
            Some(ModuleSpec::Classify(h)) => h.nc,
            _ => self.nc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_letters_follow_ultralytics() {
        assert_eq!(scale_from_name("yolov8n.yaml").as_deref(), Some("n"));
        assert_eq!(
            scale_from_name("configs/yolov8s-mobileone.yaml").as_deref(),
            Some("s")
        );
        assert_eq!(scale_from_name("yolov8-mobileone.yaml"), None);
        assert_eq!(
            unified_name("configs/yolov8n-mobileone.yaml"),
            "configs/yolov8-mobileone.yaml"
        );
        assert_eq!(unified_name("yolov8x.yaml"), "yolov8.yaml");
    }

    #[test]
    fn bankers_rounding_of_depth() {
        assert_eq!((3.0f64 * 0.33).round_ties_even(), 1.0);
        assert_eq!((6.0f64 * 0.67).round_ties_even(), 4.0);
        assert_eq!(make_divisible(1024.0 * 0.25, 8), 256);
        assert_eq!(make_divisible(576.0 * 1.0, 8), 576);
    }

    fn bad(yaml_rows: &str) -> String {
        let text = format!("nc: 3\nbackbone:\n{yaml_rows}\nhead:\n  - [[-1], 1, Detect, [nc]]\n");
        ModelSpec::from_str(&text, "bad.yaml", &SpecOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_rows_name_file_row_and_expectation() {
        let e = bad("  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 1, Foo, [16]]");
        assert!(
            e.contains("bad.yaml") && e.contains("row 1") && e.contains("unknown module 'Foo'"),
            "{e}"
        );
        let e = bad("  - [-1, 1, Conv, [16, 3, 2]]\n  - [5, 1, Conv, [16]]");
        assert!(e.contains("row 1") && e.contains("from: 5"), "{e}");
        let e = bad("  - [-1, 1, Conv, [16, 3, 2, null, 1, 1, true, 9]]");
        assert!(
            e.contains("row 0") && e.contains("wrong number of args"),
            "{e}"
        );
        let e = bad("  - [-1, 1, Conv, [16, x, 2]]");
        assert!(
            e.contains("row 0") && e.contains("k: expected a non-negative integer"),
            "{e}"
        );
        let e = bad("  - [-1, 1, MobileOneBlock, [16]]");
        assert!(
            e.contains("row 0")
                && e.contains("[c2, k, stride=1, dilation=1, padding_mode='zeros', deploy=False, use_se=False]"),
            "{e}"
        );
        // The seed's 4th argument is dilation, not use_se: an old-style `[c2, k, s, True]` row says so.
        let e = bad("  - [-1, 1, MobileOneBlock, [16, 4, 2, True]]");
        assert!(
            e.contains("dilation: got True") && e.contains("use_se is the 7th argument"),
            "{e}"
        );
        let text = "nc: 3\nbackbone:\n  - [-1, 1, MobileOneBlock, [16, 4, 2, 1, 'zeros', False, True]]\nhead:\n  - [[-1], 1, Detect, [nc]]\n";
        let spec = ModelSpec::from_str(text, "se.yaml", &SpecOptions::default()).unwrap();
        assert!(matches!(
            spec.layers[0].module,
            ModuleSpec::Block(BlockKind::MobileOne(
                crate::modules::mobileone::MobileOneSpec {
                    k: 4,
                    stride: 2,
                    use_se: true,
                    ..
                }
            ))
        ));
        let e = bad("  - [-1, 1, Conv, [16, 3, 2]]\n  - [-1, 2, MobileOneBlock, [32, 1, 1]]");
        assert!(
            e.contains("row 1") && e.contains("c1 (16) must equal c2 (32)"),
            "{e}"
        );
    }
}
