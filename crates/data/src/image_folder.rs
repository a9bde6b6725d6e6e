//! Classification datasets as Ultralytics reads them (`check_cls_dataset` + `ClassificationDataset`, over
//! torchvision's `ImageFolder`): a folder with `train/<class>/*` and `val/<class>/*` (or `validation/`,
//! `valid/`, `test/`), class names the train split's subfolders sorted by name, each class's images found
//! below its folder (sorted by folder, then by file name), corrupt images skipped by name.
//!
//! What the package lets pass silently is said here: images lying in a split's own folder (ImageFolder ignores
//! them) are skipped with a warning naming them, an empty class folder is a warning, and a detection dataset
//! (a `data.yaml`, or a split of images with no class folders) is refused with what a classifier expects.

use crate::config::{has_ext, IMAGE_EXTS};
use crate::dataset::verify_image;
use crate::error::{DataError, FileError, Result};
use std::path::{Path, PathBuf};

/// A classification dataset's folders and class names.
#[derive(Debug, Clone)]
pub struct ClassifyData {
    pub root: PathBuf,
    pub train: PathBuf,
    pub val: Option<PathBuf>,
    pub test: Option<PathBuf>,
    /// The train split's class folders, sorted (index = class id).
    pub names: Vec<String>,
}

/// One split: `(image, class id)` pairs that decoded, and what was skipped.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// This split's class folders, sorted.
    pub classes: Vec<String>,
    pub samples: Vec<(PathBuf, usize)>,
    /// One line per skipped image or empty class, naming it.
    pub warnings: Vec<String>,
}

fn config_err(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::Config {
        file: path.display().to_string(),
        msg: msg.into(),
    }
}

/// The subfolders of `dir`, sorted by name (what `ImageFolder.find_classes` lists; links to folders count).
fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| FileError::io(dir, e))? {
        let e = e.map_err(|e| FileError::io(dir, e))?;
        if e.path().is_dir() {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// The image files directly in `dir`, sorted.
fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| FileError::io(dir, e))? {
        let p = e.map_err(|e| FileError::io(dir, e))?.path();
        if p.is_file() && has_ext(&p, IMAGE_EXTS) {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// torchvision's `make_dataset` order for one class: `sorted(os.walk(folder, followlinks=True))` (folders by
/// path), then each folder's files by name. A folder reached twice through links is read once.
fn class_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut folders: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        let canonical = std::fs::canonicalize(&d).map_err(|e| FileError::io(&d, e))?;
        if !seen.insert(canonical) {
            continue;
        }
        for e in std::fs::read_dir(&d).map_err(|e| FileError::io(&d, e))? {
            let p = e.map_err(|e| FileError::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            }
        }
        folders.push(d);
    }
    folders.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    let mut out = Vec::new();
    for f in folders {
        out.extend(images_in(&f)?);
    }
    Ok(out)
}

/// Why `dir` is not a split of class folders, when it holds images but no class folder (a detection split,
/// or a flat folder of images).
fn flat_split_error(dir: &Path, n: usize) -> DataError {
    // Ultralytics' layout: images/<split> beside labels/<split>, or <split>/images beside <split>/labels.
    let swapped = {
        let parts: Vec<_> = dir.components().collect();
        parts
            .iter()
            .rposition(|c| c.as_os_str() == "images")
            .map(|i| {
                let mut p = PathBuf::new();
                for (k, c) in parts.iter().enumerate() {
                    p.push(if k == i {
                        std::ffi::OsStr::new("labels")
                    } else {
                        c.as_os_str()
                    });
                }
                p
            })
    };
    let labels = swapped
        .into_iter()
        .chain(dir.parent().map(|p| p.join("labels")))
        .find(|p| p.is_dir());
    let hint = match labels {
        Some(l) => format!(
            "; this looks like a detection dataset (labels in {}): train a detector with its data.yaml",
            l.display()
        ),
        None => String::new(),
    };
    config_err(
        dir,
        format!(
            "{n} images but no class folders: a classification split is <split>/<class>/*.jpg, one folder \
             per class{hint}"
        ),
    )
}

impl ClassifyData {
    /// Opens a dataset folder (`data=path/to/dir`), or a YAML naming its split folders (`path`, `train`, `val`,
    /// `test`; class names are the train folders'). A detection `data.yaml` is refused at its first split of
    /// images without class folders.
    pub fn open(data: &Path) -> Result<ClassifyData> {
        if data.is_file() {
            return Self::from_yaml(data);
        }
        if !data.is_dir() {
            return Err(config_err(
                data,
                "no such dataset folder (expected train/<class>/*.jpg and val/<class>/*.jpg inside)",
            ));
        }
        let train = data.join("train");
        if !train.is_dir() {
            let hint = if data.join("images").is_dir() && data.join("labels").is_dir() {
                ": this is a detection dataset (images/ and labels/); train a detector with its data.yaml"
            } else {
                ""
            };
            return Err(config_err(
                data,
                format!("no train/ folder (a classification dataset is train/<class>/*.jpg, val/<class>/*.jpg){hint}"),
            ));
        }
        let pick = |cands: &[&str]| cands.iter().map(|c| data.join(c)).find(|p| p.is_dir());
        Self::with_splits(
            data,
            train,
            pick(&["val", "validation", "valid"]),
            pick(&["test"]),
        )
    }

    /// A YAML naming the split folders, relative to `path` (itself relative to the YAML's folder).
    fn from_yaml(file: &Path) -> Result<ClassifyData> {
        let is_yaml = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if !is_yaml {
            return Err(config_err(
                file,
                "a classification dataset is a folder (train/<class>/*.jpg, val/<class>/*.jpg) or a YAML naming \
                 its split folders",
            ));
        }
        let text = std::fs::read_to_string(file).map_err(|e| FileError::io(file, e))?;
        let v: serde_yaml::Value = serde_yaml::from_str(&text)
            .map_err(|e| FileError::decode(file, "not valid YAML", e))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str());
        let dir = file.parent().unwrap_or(Path::new("."));
        let root = match get("path") {
            Some(p) if Path::new(p).is_absolute() => PathBuf::from(p),
            Some(p) => dir.join(p),
            None => dir.to_path_buf(),
        };
        let split = |k: &str| -> Result<Option<PathBuf>> {
            match v.get(k) {
                None | Some(serde_yaml::Value::Null) => Ok(None),
                Some(serde_yaml::Value::String(s)) => {
                    let p = root.join(s);
                    if p.is_dir() {
                        Ok(Some(p))
                    } else {
                        Err(config_err(
                            file,
                            format!(
                                "{k}: {} is not a folder (a folder of class folders)",
                                p.display()
                            ),
                        ))
                    }
                }
                Some(other) => Err(config_err(
                    file,
                    format!("{k}: expected one folder of class folders, got {other:?}"),
                )),
            }
        };
        let train = split("train")?.ok_or_else(|| config_err(file, "no train: folder"))?;
        Self::with_splits(&root, train, split("val")?, split("test")?)
    }

    /// The class names from `train`'s folders, the splits checked.
    fn with_splits(
        root: &Path,
        train: PathBuf,
        val: Option<PathBuf>,
        test: Option<PathBuf>,
    ) -> Result<ClassifyData> {
        let names = subfolders(&train)?;
        if names.is_empty() {
            let n = images_in(&train)?.len();
            if n > 0 {
                return Err(flat_split_error(&train, n));
            }
            return Err(config_err(&train, "no class folders (train/<class>/*.jpg)"));
        }
        if names.iter().all(|n| n == "images" || n == "labels") {
            return Err(config_err(
                &train,
                "holds images/ and labels/ folders: a detection dataset, not class folders; train a detector \
                 with its data.yaml",
            ));
        }
        if names.len() > crate::config::MAX_CLASSES {
            return Err(config_err(
                &train,
                format!(
                    "{} class folders: at most {}",
                    names.len(),
                    crate::config::MAX_CLASSES
                ),
            ));
        }
        for dir in val.iter().chain(&test) {
            if subfolders(dir)?.is_empty() {
                let n = images_in(dir)?.len();
                if n > 0 {
                    return Err(flat_split_error(dir, n));
                }
            }
        }
        Ok(ClassifyData {
            root: root.to_path_buf(),
            train,
            val,
            test,
            names,
        })
    }

    /// The folder of `split` (`train`, `val` or `test`); `val` falls back to `test` and the reverse, as
    /// Ultralytics does.
    pub fn split_dir(&self, split: &str) -> Result<&Path> {
        let found = match split {
            "train" => Some(&self.train),
            "val" => self.val.as_ref().or(self.test.as_ref()),
            "test" => self.test.as_ref().or(self.val.as_ref()),
            other => {
                return Err(config_err(
                    &self.root,
                    format!("split '{other}': expected train, val or test"),
                ))
            }
        };
        found.map(PathBuf::as_path).ok_or_else(|| {
            config_err(
                &self.root,
                format!(
                    "no {split}/ folder (nor val/, validation/, valid/ or test/) to validate on"
                ),
            )
        })
    }

    /// Scans a split with the dataset's class names.
    pub fn split(&self, split: &str) -> Result<ImageFolder> {
        ImageFolder::scan(self.split_dir(split)?, &self.names)
    }
}

impl ImageFolder {
    /// Lists and decodes a split's images. Class ids follow `names` (the dataset's or a model's) by folder
    /// name, as Ultralytics aligns a split to the model's classes; when no folder bears one of `names` (a model
    /// saved without class names) the folders' own sorted order gives the ids. A folder past the model's
    /// classes is skipped with a warning.
    pub fn scan(root: &Path, names: &[String]) -> Result<ImageFolder> {
        let classes = subfolders(root)?;
        if classes.is_empty() {
            let n = images_in(root)?.len();
            if n > 0 {
                return Err(flat_split_error(root, n));
            }
            return Err(config_err(root, "no class folders and no images"));
        }
        let mut warnings = Vec::new();
        let stray = images_in(root)?;
        if let Some(first) = stray.first() {
            warnings.push(format!(
                "{}: {} image(s) in the split's own folder, not in a class folder, skipped (e.g. {})",
                root.display(),
                stray.len(),
                first.display()
            ));
        }
        let by_name = classes.iter().any(|c| names.contains(c));
        let mut listed: Vec<(PathBuf, usize)> = Vec::new();
        for (k, c) in classes.iter().enumerate() {
            let dir = root.join(c);
            let id = if by_name {
                names.iter().position(|n| n == c)
            } else {
                Some(k).filter(|&k| k < names.len())
            };
            let Some(id) = id else {
                warnings.push(format!(
                    "{}: class '{c}' is not one of the {} classes ({}), skipped",
                    dir.display(),
                    names.len(),
                    names.join(", ")
                ));
                continue;
            };
            let files = class_images(&dir)?;
            if files.is_empty() {
                warnings.push(format!("{}: class '{c}' has no images", dir.display()));
            }
            listed.extend(files.into_iter().map(|f| (f, id)));
        }
        let verdicts = verify_all(&listed);
        let mut samples = Vec::with_capacity(listed.len());
        for ((p, id), v) in listed.into_iter().zip(verdicts) {
            match v {
                Ok(()) => samples.push((p, id)),
                Err(e) => warnings.push(format!("{}: ignoring corrupt image: {e}", p.display())),
            }
        }
        Ok(ImageFolder {
            root: root.to_path_buf(),
            classes,
            samples,
            warnings,
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }
}

/// Decodes every image (in parallel): `Ok` or why it cannot be used.
fn verify_all(items: &[(PathBuf, usize)]) -> Vec<std::result::Result<(), String>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    crate::par_map(
        items,
        threads,
        |(p, _)| verify_image(p).map(|_| ()),
        || Err("the decoder panicked".into()),
    )
}
