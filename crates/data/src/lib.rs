//! YOLO-format datasets for training and evaluation: Ultralytics dataset YAML (`config`), validated labels
//! (`labels`), splits with a label cache and a summary (`dataset`), image decoding and letterbox (`image_ops`),
//! the training augmentation pipeline (`augment`), threaded batch loading (`loader`), box drawing (`draw`)
//! and a generated dataset for tests (`synth`). No tensor library: batches are plain f32 buffers.

pub mod args;
pub mod augment;
pub mod config;
pub mod dataset;
pub mod draw;
pub mod error;
pub mod image_ops;
pub mod labels;
pub mod loader;
pub mod synth;

pub use config::DataConfig;
pub use dataset::Dataset;
pub use error::{DataError, Result};

/// Writes `bytes` to `path` through a temporary sibling and a rename, so readers never see half a file.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}
