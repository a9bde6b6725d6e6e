//! A tracker YAML with Ultralytics' keys (`bytetrack.yaml`, `botsort.yaml`), read strictly: an unknown key, a
//! missing one or a value of the wrong type is an error naming the key and the file.

use serde_yaml::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {msg}")]
    Bad { file: String, msg: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackerType {
    ByteTrack,
    BotSort,
}

/// BoT-SORT's camera-motion compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GmcMethod {
    None,
    /// Sparse optical flow between corners of consecutive frames (`crate::gmc`).
    SparseOptFlow,
}

/// The GMC methods this build implements, as the YAML spells them.
pub const GMC_METHODS: &[&str] = &["none", "sparseOptFlow"];

#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    pub tracker_type: TrackerType,
    pub track_high_thresh: f64,
    pub track_low_thresh: f64,
    pub new_track_thresh: f64,
    pub track_buffer: usize,
    pub match_thresh: f64,
    pub fuse_score: bool,
    /// BoT-SORT only.
    pub gmc_method: GmcMethod,
    pub proximity_thresh: f64,
    pub appearance_thresh: f64,
}

const COMMON: &[&str] = &[
    "tracker_type",
    "track_high_thresh",
    "track_low_thresh",
    "new_track_thresh",
    "track_buffer",
    "match_thresh",
    "fuse_score",
];
const BOTSORT: &[&str] = &[
    "gmc_method",
    "proximity_thresh",
    "appearance_thresh",
    "with_reid",
    "model",
];

impl TrackerConfig {
    /// Whether the tracker warps its tracks by the camera's motion, and so wants the frames.
    pub fn compensates_motion(&self) -> bool {
        self.tracker_type == TrackerType::BotSort && self.gmc_method == GmcMethod::SparseOptFlow
    }

    /// Ultralytics' `bytetrack.yaml` defaults.
    pub fn bytetrack() -> TrackerConfig {
        TrackerConfig {
            tracker_type: TrackerType::ByteTrack,
            track_high_thresh: 0.25,
            track_low_thresh: 0.1,
            new_track_thresh: 0.25,
            track_buffer: 30,
            match_thresh: 0.8,
            fuse_score: true,
            gmc_method: GmcMethod::None,
            proximity_thresh: 0.5,
            appearance_thresh: 0.8,
        }
    }

    pub fn from_file(path: &Path) -> Result<TrackerConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::from_str(&text, &file)
    }

    pub fn from_str(text: &str, file: &str) -> Result<TrackerConfig, ConfigError> {
        let bad = |msg: String| ConfigError::Bad {
            file: file.to_string(),
            msg,
        };
        let doc: Value =
            serde_yaml::from_str(text).map_err(|e| bad(format!("not valid YAML: {e}")))?;
        let map = doc
            .as_mapping()
            .ok_or_else(|| bad("expected a mapping of tracker keys".into()))?;
        let get = |k: &str| map.get(Value::String(k.to_string()));
        let kind = match get("tracker_type").and_then(Value::as_str) {
            Some("bytetrack") => TrackerType::ByteTrack,
            Some("botsort") => TrackerType::BotSort,
            Some(other) => {
                return Err(bad(format!(
                    "tracker_type: got '{other}', expected bytetrack or botsort"
                )))
            }
            None => return Err(bad("tracker_type: missing (bytetrack or botsort)".into())),
        };
        for k in map.keys() {
            let k = k.as_str().unwrap_or("<not a string>");
            let known =
                COMMON.contains(&k) || (kind == TrackerType::BotSort && BOTSORT.contains(&k));
            if !known {
                let mut keys: Vec<&str> = COMMON.to_vec();
                if kind == TrackerType::BotSort {
                    keys.extend(BOTSORT);
                }
                return Err(bad(format!(
                    "unknown key '{k}' for {}: expected {}",
                    if kind == TrackerType::BotSort {
                        "botsort"
                    } else {
                        "bytetrack"
                    },
                    keys.join(", ")
                )));
            }
        }
        let num = |k: &str| -> Result<f64, ConfigError> {
            match get(k) {
                Some(v) => v
                    .as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| bad(format!("{k}: expected a number, got {}", show(v)))),
                None => Err(bad(format!("{k}: missing"))),
            }
        };
        let unit = |k: &str| -> Result<f64, ConfigError> {
            let x = num(k)?;
            if (0.0..=1.0).contains(&x) {
                Ok(x)
            } else {
                Err(bad(format!("{k}: {x} is outside 0..1")))
            }
        };
        let flag = |k: &str| -> Result<bool, ConfigError> {
            match get(k) {
                Some(v) => v
                    .as_bool()
                    .ok_or_else(|| bad(format!("{k}: expected True or False, got {}", show(v)))),
                None => Err(bad(format!("{k}: missing"))),
            }
        };
        let track_buffer = match get("track_buffer") {
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
                bad(format!(
                    "track_buffer: expected a whole number of frames, got {}",
                    show(v)
                ))
            })?,
            None => return Err(bad("track_buffer: missing".into())),
        };
        let mut cfg = TrackerConfig {
            tracker_type: kind,
            track_high_thresh: unit("track_high_thresh")?,
            track_low_thresh: unit("track_low_thresh")?,
            new_track_thresh: unit("new_track_thresh")?,
            track_buffer,
            match_thresh: unit("match_thresh")?,
            fuse_score: flag("fuse_score")?,
            ..TrackerConfig::bytetrack()
        };
        if kind == TrackerType::BotSort {
            cfg.gmc_method = match get("gmc_method") {
                Some(Value::Null) => GmcMethod::None,
                Some(Value::String(s)) if s == "none" || s == "None" => GmcMethod::None,
                Some(Value::String(s)) if s == "sparseOptFlow" => GmcMethod::SparseOptFlow,
                Some(v) => {
                    return Err(bad(format!(
                        "gmc_method: {} is not implemented; implemented: {}",
                        show(v),
                        GMC_METHODS.join(", ")
                    )))
                }
                None => return Err(bad("gmc_method: missing".into())),
            };
            cfg.proximity_thresh = unit("proximity_thresh")?;
            cfg.appearance_thresh = unit("appearance_thresh")?;
            if flag("with_reid")? {
                return Err(bad(
                    "with_reid: True is not implemented (BoT-SORT without ReID only)".into(),
                ));
            }
        }
        Ok(cfg)
    }
}

fn show(v: &Value) -> String {
    serde_yaml::to_string(v)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| format!("{v:?}"))
}
