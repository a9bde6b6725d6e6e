//! YOLO-format datasets for training and evaluation: Ultralytics dataset YAML (`config`), validated labels
//! (`labels`), splits with a label cache and a summary (`dataset`), image decoding and letterbox (`image_ops`),
//! the training augmentation pipeline (`augment`), threaded batch loading (`loader`), box drawing (`draw`),
//! a generated dataset for tests (`synth`), COCO/VOC import (`convert`) and the
//! command-line commands (`cli`). No tensor library: batches are plain f32 buffers.

pub mod args;
pub mod augment;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dataset;
pub mod draw;
pub mod error;
pub mod fuzz;
pub mod image_ops;
pub mod labels;
pub mod loader;
pub mod synth;

pub use config::DataConfig;
pub use dataset::Dataset;
pub use error::{DataError, Result};

/// Temp files `PREFIX<pid>` left by a process that was killed mid-write (its pid no longer runs). Linux
/// only (`/proc`); elsewhere they stay.
fn remove_stale_temps(dir: &std::path::Path, prefix: &str) {
    if !std::path::Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks long data work (the label scan) to stop: the binaries' Ctrl-C handler calls this.
pub fn interrupt() {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Writes `bytes` to `path` through a temporary sibling that is flushed to disk before it is renamed over
/// `path`: readers never see half a file, and after a crash or power loss `path` holds the old or the new
/// content. The one atomic-write helper of the workspace (checkpoints, caches, results.csv, exports).
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.tmp");
    remove_stale_temps(dir, &prefix);
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    written
        .and_then(|_| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    // The rename itself reaches the disk with the folder's metadata (not possible everywhere: best effort).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
