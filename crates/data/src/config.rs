//! Ultralytics dataset YAML: `path`, `train`, `val`, `test` (a folder, a list of folders or a .txt list of
//! image paths) and `names` (a list or an `{id: name}` map).

use crate::error::{DataError, FileError, Result};
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Far past any real dataset (a typo must fail with a message, not allocate gigabytes of names); the model
/// YAML's `nc` has the same cap.
pub const MAX_CLASSES: usize = 100_000;

/// Image file extensions we read.
pub const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "bmp", "webp"];
/// Ultralytics' VID_FORMATS: the video files `predict --source` reads (through FFmpeg).
pub const VIDEO_EXTS: &[&str] = &[
    "asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm",
];

#[derive(Debug, Clone)]
pub struct DataConfig {
    pub file: PathBuf,
    pub root: PathBuf,
    pub names: Vec<String>,
    pub train: Vec<PathBuf>,
    pub val: Vec<PathBuf>,
    pub test: Vec<PathBuf>,
}

impl DataConfig {
    pub fn nc(&self) -> usize {
        self.names.len()
    }

    pub fn split(&self, name: &str) -> Result<&[PathBuf]> {
        let v = match name {
            "train" => &self.train,
            "val" => &self.val,
            "test" => &self.test,
            other => {
                return Err(DataError::Config {
                    file: self.file.display().to_string(),
                    msg: format!("unknown split '{other}' (train, val or test)"),
                })
            }
        };
        if v.is_empty() {
            return Err(DataError::Config {
                file: self.file.display().to_string(),
                msg: format!("no '{name}' entry"),
            });
        }
        Ok(v)
    }

    /// Reads a dataset YAML. A relative `path` (or none) is taken from the YAML's own folder, so a dataset
    /// folder can be moved as a whole.
    pub fn from_file(file: &Path) -> Result<DataConfig> {
        let err = |msg: String| DataError::Config {
            file: file.display().to_string(),
            msg,
        };
        if file.is_dir() {
            let classify = file.join("train").is_dir()
                && std::fs::read_dir(file.join("train"))
                    .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir())));
            return Err(err(if classify {
                "a folder of class folders (train/<class>/...): a classification dataset; a detector needs a \
                 data.yaml (image folders with labels/ beside them, names), a classifier (a -cls model) reads this"
                    .into()
            } else if file.join("data.yaml").is_file() {
                format!(
                    "a folder: pass its data.yaml ({})",
                    file.join("data.yaml").display()
                )
            } else {
                "a folder: a detection dataset is described by a data.yaml (train/val image folders, names)".into()
            }));
        }
        let text = std::fs::read_to_string(file).map_err(|e| FileError::io(file, e))?;
        let v: Value = serde_yaml::from_str(&text)
            .map_err(|e| FileError::decode(file, "not valid YAML", e))?;
        let map = v
            .as_mapping()
            .ok_or_else(|| err("expected a mapping".into()))?;
        let get = |k: &str| map.get(Value::String(k.into()));
        let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let root = match get("path").and_then(|p| p.as_str()) {
            Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
            Some(p) => dir.join(p),
            None => dir,
        };
        let names: Vec<String> = match get("names") {
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|n| match n {
                    Value::String(s) => Ok(s.clone()),
                    other => Ok(serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string()),
                })
                .collect::<Result<_>>()?,
            Some(Value::Mapping(m)) => {
                let mut pairs: Vec<(usize, String)> = Vec::new();
                for (k, v) in m {
                    let id = k
                        .as_u64()
                        .or_else(|| k.as_str().and_then(|s| s.parse().ok()))
                        .ok_or_else(|| err(format!("names: key {k:?} is not a class id")))?;
                    let name = v
                        .as_str()
                        .map(String::from)
                        .ok_or_else(|| err(format!("names: {id} has no name")))?;
                    pairs.push((id as usize, name));
                }
                pairs.sort();
                for (i, (id, _)) in pairs.iter().enumerate() {
                    if *id != i {
                        return Err(err(format!(
                            "names: ids must be 0..{} without gaps",
                            pairs.len()
                        )));
                    }
                }
                pairs.into_iter().map(|(_, n)| n).collect()
            }
            None => match get("nc").and_then(|n| n.as_u64()) {
                Some(nc) if nc > MAX_CLASSES as u64 => {
                    return Err(err(format!("nc {nc}: at most {MAX_CLASSES} classes")))
                }
                Some(nc) => (0..nc).map(|i| format!("class{i}")).collect(),
                None => return Err(err("needs 'names' (a list or a map of class names)".into())),
            },
            Some(other) => {
                return Err(err(format!(
                    "names: expected a list or a map, got {other:?}"
                )))
            }
        };
        if names.is_empty() {
            return Err(err("names is empty".into()));
        }
        if let Some(v) = get("nc").filter(|v| !v.is_null()) {
            // Ultralytics compares nc with len(names) as they are: -1 or "3" next to names is a mismatch.
            let nc = v
                .as_u64()
                .ok_or_else(|| err(format!("nc: expected a whole number of classes, got {v:?}")))?;
            if nc as usize != names.len() {
                return Err(err(format!("nc is {nc} but names lists {}", names.len())));
            }
        }
        let split = |k: &str| -> Result<Vec<PathBuf>> {
            Ok(match get(k) {
                None | Some(Value::Null) => vec![],
                Some(Value::String(s)) => vec![root.join(s)],
                Some(Value::Sequence(v)) => v
                    .iter()
                    .map(|x| {
                        x.as_str()
                            .map(|s| root.join(s))
                            .ok_or_else(|| err(format!("{k}: expected paths")))
                    })
                    .collect::<Result<_>>()?,
                Some(other) => {
                    return Err(err(format!(
                        "{k}: expected a path or a list, got {other:?}"
                    )))
                }
            })
        };
        Ok(DataConfig {
            file: file.to_path_buf(),
            names,
            train: split("train")?,
            val: split("val")?,
            test: split("test")?,
            root,
        })
    }
}

/// Whether the file's extension (any case) is one of `exts`.
pub fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| exts.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_image(p: &Path) -> bool {
    has_ext(p, IMAGE_EXTS)
}

/// Collects the files below `dir` whose extension is one of `exts`. A folder reached twice (a symlink loop, or
/// two links to one folder) is read once: `seen` holds the canonical paths visited.
pub fn walk(
    dir: &Path,
    exts: &[&str],
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> std::io::Result<()> {
    if !seen.insert(std::fs::canonicalize(dir)?) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, exts, out, seen)?;
        } else if has_ext(&p, exts) {
            out.push(p);
        }
    }
    Ok(())
}

/// The paths a .txt list names, one a line (blank lines skipped); relative ones are relative to the list's
/// folder, as Ultralytics reads them.
pub fn list_file(list: &Path) -> std::io::Result<Vec<PathBuf>> {
    let base = list.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(list)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let p = Path::new(line);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        })
        .collect())
}

/// Image files of a split entry: a folder (recursive), a .txt list (paths relative to the list's folder), or
/// one image. Sorted, without duplicates.
pub fn image_files(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for s in sources {
        let io = |e| FileError::io(s, e);
        if s.is_dir() {
            walk(s, IMAGE_EXTS, &mut out, &mut Default::default()).map_err(io)?;
        } else if s.extension().and_then(|e| e.to_str()) == Some("txt") {
            out.extend(list_file(s).map_err(io)?);
        } else if s.is_file() && is_image(s) {
            out.push(s.clone());
        } else {
            return Err(DataError::Io {
                path: s.display().to_string(),
                msg: "not found (expected a folder of images, a .txt list or an image)".into(),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Ultralytics' `img2label_paths`: the last `/images/` becomes `/labels/`, the extension `.txt`.
pub fn label_path(img: &Path) -> PathBuf {
    let s = img.to_string_lossy();
    let sep = std::path::MAIN_SEPARATOR;
    let pat = format!("{sep}images{sep}");
    let swapped = match s.rfind(&pat) {
        Some(i) => format!("{}{sep}labels{sep}{}", &s[..i], &s[i + pat.len()..]),
        None => s.to_string(),
    };
    Path::new(&swapped).with_extension("txt")
}
