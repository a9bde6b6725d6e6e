//! Parity fixtures made by the real Ultralytics package (`scripts/make_fixture.py`) checked against our forward,
//! our fusion, and Ultralytics' own fused weights.

use crate::engine::{Engine, EngineError};
use anyhow::{bail, Context, Result};
use model::burn::tensor::{Device, Tensor, TensorData};
use model::nn::Named;
use model::weights::{host, load_state_dict, state_dict, HostTensor, WeightsFile};
use model::{ModelSpec, SpecOptions, YoloModel};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Tolerances from the model issue: boxes scale with the output, scores and raw maps are absolute.
pub const BOX_REL: f32 = 2e-5;
pub const BOX_ABS: f32 = 1e-3;
pub const SCORE_TOL: f32 = 1e-4;
pub const RAW_TOL: f32 = 1e-3;
pub const FUSED_WEIGHT_REL: f32 = 1e-4;

#[derive(Debug, Deserialize)]
pub struct FixtureMeta {
    /// `classify` for a classifier's fixture; a detector's says nothing.
    #[serde(default)]
    pub task: Option<String>,
    pub config: String,
    pub scale: String,
    pub nc: usize,
    pub imgsz: [usize; 2],
}

/// One compared quantity.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub max_abs: f32,
    pub tol: f32,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.max_abs <= self.tol && self.max_abs.is_finite()
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    /// What was not checked, and why.
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(Check::ok)
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "{:<44}{:>14}{:>14}  result\n",
            "check", "max |diff|", "tolerance"
        );
        for c in &self.checks {
            s += &format!(
                "{:<60}{:>12.3e}{:>12.3e}  {}\n",
                c.name,
                c.max_abs,
                c.tol,
                if c.ok() { "ok" } else { "FAIL" }
            );
        }
        for n in &self.notes {
            s += &format!("note: {n}\n");
        }
        s
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m: f32, d| {
            if d.is_nan() || m.is_nan() {
                f32::NAN
            } else {
                m.max(d)
            }
        })
}

fn get<'a>(f: &'a WeightsFile, key: &str) -> Result<&'a HostTensor> {
    f.tensors
        .get(key)
        .with_context(|| format!("{}: no tensor '{key}'", f.path))
}

/// Compares a `(1, 4+nc, A)` output: boxes (rows 0-3) against a tolerance scaled by the expected output's
/// magnitude, scores (rows 4..) absolutely.
pub fn compare_output(name: &str, ours: &HostTensor, expected: &HostTensor, report: &mut Report) {
    if ours.shape != expected.shape {
        report.checks.push(Check {
            name: format!("{name}: shape {:?} vs {:?}", ours.shape, expected.shape),
            max_abs: f32::INFINITY,
            tol: 0.0,
        });
        return;
    }
    let (n, rows, a) = (expected.shape[0], expected.shape[1], expected.shape[2]);
    let per = rows * a;
    let mut max_out = 0f32;
    let (mut dbox, mut dscore) = (0f32, 0f32);
    for i in 0..n {
        let (e, o) = (
            &expected.data[i * per..(i + 1) * per],
            &ours.data[i * per..(i + 1) * per],
        );
        max_out = e[..4 * a].iter().fold(max_out, |m, x| m.max(x.abs()));
        dbox = dbox.max(max_abs_diff(&o[..4 * a], &e[..4 * a]));
        dscore = dscore.max(max_abs_diff(&o[4 * a..], &e[4 * a..]));
    }
    let batch = if n > 1 {
        format!("{n} x ")
    } else {
        String::new()
    };
    report.checks.push(Check {
        name: format!("{name} boxes ({batch}4 x {a})"),
        max_abs: dbox,
        tol: BOX_REL * max_out + BOX_ABS,
    });
    report.checks.push(Check {
        name: format!("{name} scores ({batch}{} x {a})", rows - 4),
        max_abs: dscore,
        tol: SCORE_TOL,
    });
}

/// A loaded fixture folder.
pub struct Fixture {
    pub dir: PathBuf,
    pub meta: FixtureMeta,
    pub spec: ModelSpec,
    pub weights: WeightsFile,
    pub fused_weights: WeightsFile,
    pub input: HostTensor,
    pub expected: WeightsFile,
}

impl Fixture {
    pub fn load(dir: &Path, config: Option<&str>) -> Result<Fixture> {
        let meta_path = dir.join("meta.json");
        let meta: FixtureMeta = serde_json::from_str(
            &std::fs::read_to_string(&meta_path)
                .with_context(|| format!("{}: cannot read", meta_path.display()))?,
        )
        .with_context(|| format!("{}: not a fixture meta.json", meta_path.display()))?;
        let cfg = match config {
            Some(c) => PathBuf::from(c),
            None => {
                let in_dir = dir.join(&meta.config);
                if in_dir.exists() {
                    in_dir
                } else {
                    PathBuf::from(&meta.config)
                }
            }
        };
        let spec = ModelSpec::from_file(
            &cfg.to_string_lossy(),
            &SpecOptions {
                scale: Some(meta.scale.clone()),
                nc: Some(meta.nc),
            },
        )?;
        let read = |n: &str| WeightsFile::read(&dir.join(n).to_string_lossy());
        let input_file = read("input.safetensors")?;
        let input = get(&input_file, "images")?.clone();
        let [h, w] = meta.imgsz;
        if input.shape != [1, 3, h, w] {
            bail!(
                "{}: images is {:?}, meta.json says 1x3x{h}x{w}",
                dir.display(),
                input.shape
            );
        }
        let classify = meta.task.as_deref() == Some("classify");
        if classify != (spec.task() == model::Task::Classify) {
            bail!(
                "{}: meta.json says task {}, but {} is a {} model",
                dir.display(),
                meta.task.as_deref().unwrap_or("detect"),
                cfg.display(),
                spec.task().name()
            );
        }
        Ok(Fixture {
            dir: dir.to_path_buf(),
            spec,
            weights: read("weights.safetensors")?,
            fused_weights: read("fused_weights.safetensors")?,
            expected: read("expected.safetensors")?,
            input,
            meta,
        })
    }

    fn input_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.input.data.clone(), self.input.shape.clone()),
            device,
        )
    }

    /// Runs every check: unfused forward (output + raw maps), our fusion, and Ultralytics' fused weights.
    pub fn verify(&self, device: &Device) -> Result<Report> {
        if self.spec.task() == model::Task::Classify {
            return self.verify_classify(device);
        }
        let mut report = Report::default();
        let mut model = YoloModel::new(&self.spec, device);
        load_state_dict(&mut model, &self.weights.tensors, &self.weights.path)?;
        let x = self.input_tensor(device);

        let (raw, out) = model.forward_both(x.clone());
        self.check_engine(
            &model,
            "unfused",
            get(&self.expected, "output")?,
            &mut report,
        )?;
        compare_output(
            "output",
            &host(out),
            get(&self.expected, "output")?,
            &mut report,
        );
        for (i, r) in raw.into_iter().enumerate() {
            let key = format!("p{}", i + 3);
            let exp = get(&self.expected, &key)?;
            let ours = host(r);
            report.checks.push(Check {
                name: format!("raw {key} {:?}", exp.shape),
                max_abs: if ours.shape == exp.shape {
                    max_abs_diff(&ours.data, &exp.data)
                } else {
                    f32::INFINITY
                },
                tol: RAW_TOL,
            });
        }

        // Our reparameterization + fusion against Ultralytics' fused model.
        let fused = model.fuse();
        let fused_expected = get(&self.expected, "fused_output")?;
        compare_output(
            "fused output (our fusion)",
            &host(fused.forward(x.clone())),
            fused_expected,
            &mut report,
        );
        self.check_engine(&fused, "fused", fused_expected, &mut report)?;
        self.check_fused_weights(&fused, &mut report);

        // Ultralytics' fused weights straight into our fused structure.
        let mut theirs_model = YoloModel::new(&self.spec, device).fuse();
        load_state_dict(
            &mut theirs_model,
            &self.fused_weights.tensors,
            &self.fused_weights.path,
        )?;
        compare_output(
            "fused output (Ultralytics' fused weights)",
            &host(theirs_model.forward(x)),
            fused_expected,
            &mut report,
        );
        let _ = theirs_model.parameter_count();
        Ok(report)
    }
}

impl Fixture {
    /// Our fused tensors against Ultralytics' fused `state_dict`: the same keys and shapes, values within
    /// [`FUSED_WEIGHT_REL`] of each tensor's largest.
    fn check_fused_weights(&self, fused: &YoloModel, report: &mut Report) {
        let ours_sd = state_dict(fused);
        let theirs = &self.fused_weights.tensors;
        let mut worst = 0f32;
        let mut key_problems = Vec::new();
        for (k, t) in theirs {
            match ours_sd.get(k) {
                None => key_problems.push(format!("missing {k}")),
                Some(o) if o.shape != t.shape => key_problems.push(format!("shape {k}")),
                Some(o) => {
                    let scale = t.data.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
                    worst = worst.max(max_abs_diff(&o.data, &t.data) / scale);
                }
            }
        }
        key_problems.extend(
            ours_sd
                .keys()
                .filter(|k| !theirs.contains_key(*k))
                .map(|k| format!("unexpected {k}")),
        );
        report.checks.push(Check {
            name: format!(
                "fused weights vs Ultralytics ({} tensors, rel)",
                theirs.len()
            ),
            max_abs: if key_problems.is_empty() {
                worst
            } else {
                f32::INFINITY
            },
            tol: FUSED_WEIGHT_REL,
        });
        if !key_problems.is_empty() {
            report.checks.push(Check {
                name: format!("fused keys differ: {}", key_problems.join(", ")),
                max_abs: f32::INFINITY,
                tol: 0.0,
            });
        }
    }

    /// A classifier's fixture: probabilities and logits of the unfused model, of our fusion and of Ultralytics'
    /// fused weights, through burn and through the engine.
    fn verify_classify(&self, device: &Device) -> Result<Report> {
        let mut report = Report::default();
        let mut model = YoloModel::new(&self.spec, device);
        load_state_dict(&mut model, &self.weights.tensors, &self.weights.path)?;
        let x = self.input_tensor(device);
        let expected = get(&self.expected, "output")?;
        let check =
            |report: &mut Report, name: String, ours: &[f32], exp: &HostTensor, tol: f32| {
                report.checks.push(Check {
                    name: format!("{name} {:?}", exp.shape),
                    max_abs: max_abs_diff(ours, &exp.data),
                    tol,
                });
            };
        let logits = host(model.forward_logits(x.clone(), 0.0));
        check(
            &mut report,
            "logits".into(),
            &logits.data,
            get(&self.expected, "logits")?,
            RAW_TOL,
        );
        let probs = host(model.classify(x.clone()));
        check(
            &mut report,
            "probabilities".into(),
            &probs.data,
            expected,
            SCORE_TOL,
        );
        self.check_classify_engine(&model, "unfused", expected, &mut report)?;

        let fused = model.fuse();
        let fused_expected = get(&self.expected, "fused_output")?;
        let ours = host(fused.classify(x.clone()));
        check(
            &mut report,
            "fused probabilities (our fusion)".into(),
            &ours.data,
            fused_expected,
            SCORE_TOL,
        );
        self.check_classify_engine(&fused, "fused", fused_expected, &mut report)?;
        self.check_fused_weights(&fused, &mut report);

        let mut theirs_model = YoloModel::new(&self.spec, device).fuse();
        load_state_dict(
            &mut theirs_model,
            &self.fused_weights.tensors,
            &self.fused_weights.path,
        )?;
        let theirs = host(theirs_model.classify(x));
        check(
            &mut report,
            "fused probabilities (Ultralytics' fused weights)".into(),
            &theirs.data,
            fused_expected,
            SCORE_TOL,
        );
        Ok(report)
    }

    /// The engine for `model`, `None` (and a note) on a CPU without its instruction sets.
    fn engine_for(
        &self,
        model: &YoloModel,
        form: &str,
        report: &mut Report,
    ) -> Result<Option<Engine>> {
        match Engine::new(model) {
            Ok(e) => Ok(Some(e)),
            Err(EngineError::NoSimd) => {
                report
                    .notes
                    .push(format!("engine ({form}) not run: {}", EngineError::NoSimd));
                Ok(None)
            }
            Err(e) => bail!(
                "{}: the engine cannot run this model: {e}",
                self.dir.display()
            ),
        }
    }

    /// The engine's probabilities and logits for a classifier.
    fn check_classify_engine(
        &self,
        model: &YoloModel,
        form: &str,
        expected: &HostTensor,
        report: &mut Report,
    ) -> Result<()> {
        let Some(engine) = self.engine_for(model, form, report)? else {
            return Ok(());
        };
        let [h, w] = self.meta.imgsz;
        let (out, raw) = engine.run_with_raw(&self.input.data, 1, h, w)?;
        let level = format!("{:?}", engine.level());
        report.checks.push(Check {
            name: format!("{form} probabilities (engine, {level})"),
            max_abs: max_abs_diff(&out, &expected.data),
            tol: SCORE_TOL,
        });
        if form == "unfused" {
            let logits = get(&self.expected, "logits")?;
            report.checks.push(Check {
                name: format!("engine {form} logits"),
                max_abs: raw
                    .first()
                    .map_or(f32::INFINITY, |r| max_abs_diff(r, &logits.data)),
                tol: RAW_TOL,
            });
        }
        Ok(())
    }

    /// The inference engine on our model (fused or not) against Ultralytics' output of that form and the raw
    /// maps (nothing to check on a CPU without the engine's instruction sets).
    fn check_engine(
        &self,
        model: &YoloModel,
        form: &str,
        expected: &HostTensor,
        report: &mut Report,
    ) -> Result<()> {
        let Some(engine) = self.engine_for(model, form, report)? else {
            return Ok(());
        };
        let [h, w] = self.meta.imgsz;
        let (out, raw) = engine.run_with_raw(&self.input.data, 1, h, w)?;
        let ours = HostTensor {
            shape: expected.shape.clone(),
            data: out,
        };
        let level = format!("{:?}", engine.level());
        compare_output(
            &format!("{form} output (engine, {level})"),
            &ours,
            expected,
            report,
        );
        for (i, r) in raw.iter().enumerate() {
            let key = format!("p{}", i + 3);
            let exp = get(&self.expected, &key)?;
            report.checks.push(Check {
                name: format!("engine {form} raw {key}"),
                max_abs: if r.len() == exp.data.len() {
                    max_abs_diff(r, &exp.data)
                } else {
                    f32::INFINITY
                },
                tol: RAW_TOL,
            });
        }
        Ok(())
    }
}

/// Keys of a model, for listing what a fixture covers.
pub fn keys(model: &mut YoloModel) -> Vec<String> {
    let mut v = Vec::new();
    model.visit_named("", &mut |k, _| v.push(k));
    v
}
