//! A split of a YOLO dataset: image files, their validated labels, a summary, and a label cache next to the
//! labels so a second start does not re-read every file.

use crate::config::{image_files, label_path, DataConfig};
use crate::error::{DataError, Result};
use crate::labels::{parse_labels, Label};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped whenever what the cache stores or how labels are validated changes.
const CACHE_VERSION: u32 = 1;
/// Ultralytics rejects images smaller than this on either side.
const MIN_SIDE: u32 = 10;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub image: PathBuf,
    /// Original (width, height), EXIF orientation applied.
    pub size: (u32, u32),
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub images: usize,
    pub backgrounds: usize,
    pub missing_labels: usize,
    pub corrupt: usize,
    pub boxes_per_class: Vec<usize>,
    /// One line per file that had problems.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub split: String,
    pub names: Vec<String>,
    pub samples: Vec<Sample>,
    pub summary: Summary,
    pub from_cache: bool,
    pub cache_path: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    hash: u64,
    nc: usize,
    samples: Vec<Sample>,
    summary: Summary,
}

impl CacheFile {
    /// What the loader relies on holds: the file is ours only if it passes this; otherwise the labels are read
    /// again (a cache edited by hand or by another tool must not reach the loss with a bad class id).
    fn valid(&self) -> bool {
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        self.summary.boxes_per_class.len() == self.nc
            && self.samples.iter().all(|s| {
                s.size.0 > 0
                    && s.size.1 > 0
                    && s.labels.iter().all(|l| {
                        l.cls < self.nc
                            && unit(l.cx)
                            && unit(l.cy)
                            && unit(l.w)
                            && unit(l.h)
                            && l.w > 0.0
                            && l.h > 0.0
                    })
            })
    }
}

/// FNV-1a: a stable hash for the cache key (std's hasher may change between Rust releases).
fn fnv(h: &mut u64, bytes: &[u8]) {
    for b in bytes {
        *h ^= *b as u64;
        *h = h.wrapping_mul(0x100000001b3);
    }
}

fn file_stamp(p: &Path) -> Option<(u64, u128)> {
    let m = std::fs::metadata(p).ok()?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Some((m.len(), mtime))
}

fn files_hash(images: &[PathBuf], nc: usize) -> u64 {
    let mut h = 0xcbf29ce484222325u64;
    fnv(&mut h, &(CACHE_VERSION as u64).to_le_bytes());
    fnv(&mut h, &(nc as u64).to_le_bytes());
    for img in images {
        for p in [img.clone(), label_path(img)] {
            fnv(&mut h, p.to_string_lossy().as_bytes());
            match file_stamp(&p) {
                Some((len, t)) => {
                    fnv(&mut h, &len.to_le_bytes());
                    fnv(&mut h, &t.to_le_bytes());
                }
                None => fnv(&mut h, b"-"),
            }
        }
    }
    h
}

/// Decodes an image in full (so truncated or corrupt files are caught here, not mid-epoch) and returns its
/// size after EXIF orientation; images under 10 px a side are rejected as Ultralytics does.
pub fn verify_image(p: &Path) -> std::result::Result<(u32, u32), String> {
    let img = crate::image_ops::read_rgb(p).map_err(|e| format!("{e:#}"))?;
    let (w, h) = img.dimensions();
    if w < MIN_SIDE || h < MIN_SIDE {
        return Err(format!("image is {w}x{h}, smaller than {MIN_SIDE} px"));
    }
    Ok((w, h))
}

/// A JPEG cut short (no end-of-image marker) still decodes, with the missing part grey; Ultralytics keeps
/// such images too ("corrupt JPEG restored"), so it is a warning, not a skip.
fn truncated_jpeg(p: &Path) -> bool {
    let is_jpeg = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"));
    is_jpeg && std::fs::read(p).is_ok_and(|b| !b.ends_with(&[0xFF, 0xD9]))
}

impl Dataset {
    /// Loads a split, from the cache when the image and label files are unchanged.
    pub fn load(cfg: &DataConfig, split: &str) -> Result<Dataset> {
        let sources = cfg.split(split)?;
        let images = image_files(sources)?;
        if images.is_empty() {
            return Err(DataError::Config {
                file: cfg.file.display().to_string(),
                msg: format!("{split}: no images found in {sources:?}"),
            });
        }
        let nc = cfg.nc();
        let hash = files_hash(&images, nc);
        let cache_path = label_path(&images[0]).parent().map(|d| {
            d.with_file_name(format!(
                "{}.yolo-burn.cache",
                d.file_name().unwrap_or_default().to_string_lossy()
            ))
        });
        if let Some(cp) = &cache_path {
            if let Ok(text) = std::fs::read_to_string(cp) {
                if let Ok(c) = serde_json::from_str::<CacheFile>(&text) {
                    if c.version == CACHE_VERSION && c.hash == hash && c.nc == nc && c.valid() {
                        return Ok(Dataset {
                            split: split.to_string(),
                            names: cfg.names.clone(),
                            samples: c.samples,
                            summary: c.summary,
                            from_cache: true,
                            cache_path,
                        });
                    }
                }
            }
        }
        let mut summary = Summary {
            boxes_per_class: vec![0; nc],
            ..Default::default()
        };
        let mut samples = Vec::with_capacity(images.len());
        for img in &images {
            if crate::interrupted() {
                return Err(DataError::Interrupted {
                    what: format!("the {split} labels"),
                });
            }
            summary.images += 1;
            let size = match verify_image(img) {
                Ok(s) => s,
                Err(e) => {
                    summary.corrupt += 1;
                    summary
                        .warnings
                        .push(format!("{}: skipped: {e}", img.display()));
                    continue;
                }
            };
            if truncated_jpeg(img) {
                summary.warnings.push(format!(
                    "{}: truncated JPEG (no end marker); the missing part is grey",
                    img.display()
                ));
            }
            let lp = label_path(img);
            let text = match std::fs::read(&lp) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(Err(format!("cannot read ({e})"))),
                Ok(bytes) => Some(String::from_utf8(bytes).map_err(|e| {
                    format!(
                        "not UTF-8 text (byte {} is invalid)",
                        e.utf8_error().valid_up_to()
                    )
                })),
            };
            let labels = match text {
                None => {
                    summary.missing_labels += 1;
                    vec![]
                }
                // Ultralytics counts an unreadable label file as a corrupt image/label pair and drops it.
                Some(Err(why)) => {
                    summary.corrupt += 1;
                    summary
                        .warnings
                        .push(format!("{}: skipped: label file {why}", lp.display()));
                    continue;
                }
                Some(Ok(text)) => {
                    let parsed = parse_labels(&text, &lp.display().to_string(), nc)?;
                    if !parsed.notes.is_empty() {
                        summary.warnings.push(format!(
                            "{}: {}",
                            lp.display(),
                            parsed.notes.join("; ")
                        ));
                    }
                    parsed.labels
                }
            };
            if labels.is_empty() {
                summary.backgrounds += 1;
            }
            for l in &labels {
                summary.boxes_per_class[l.cls] += 1;
            }
            samples.push(Sample {
                image: img.clone(),
                size,
                labels,
            });
        }
        if samples.is_empty() {
            return Err(DataError::Config {
                file: cfg.file.display().to_string(),
                msg: format!("{split}: every image is unreadable"),
            });
        }
        let mut ds = Dataset {
            split: split.to_string(),
            names: cfg.names.clone(),
            samples,
            summary,
            from_cache: false,
            cache_path: cache_path.clone(),
        };
        if let Some(cp) = &cache_path {
            let c = CacheFile {
                version: CACHE_VERSION,
                hash,
                nc,
                samples: ds.samples.clone(),
                summary: ds.summary.clone(),
            };
            let ok = serde_json::to_vec(&c)
                .map_err(|e| e.to_string())
                .and_then(|b| crate::write_atomic(cp, &b).map_err(|e| e.to_string()));
            if let Err(e) = ok {
                ds.summary.warnings.push(format!(
                    "{}: cache not written ({e}); the next start re-reads the labels",
                    cp.display()
                ));
                ds.cache_path = None;
            }
        }
        Ok(ds)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The summary lines a run prints once at start: counts, then one warning per problem file.
    pub fn report(&self) -> String {
        let s = &self.summary;
        let boxes: usize = s.boxes_per_class.iter().sum();
        let per_class: Vec<String> = self
            .names
            .iter()
            .zip(&s.boxes_per_class)
            .map(|(n, c)| format!("{n} {c}"))
            .collect();
        let mut out = format!(
            "{}: {} images found, {} usable, {} backgrounds ({} without a label file), {} corrupt, {} boxes ({}){}\n",
            self.split,
            s.images,
            self.samples.len(),
            s.backgrounds,
            s.missing_labels,
            s.corrupt,
            boxes,
            per_class.join(", "),
            if self.from_cache { ", from cache" } else { "" }
        );
        for w in &s.warnings {
            out += &format!("  warning: {w}\n");
        }
        out
    }
}
