//! YOLO-format datasets for training and evaluation: Ultralytics dataset YAML (`config`), validated labels
//! (`labels`), splits with a label cache and a summary (`dataset`), image decoding and letterbox (`image_ops`),
//! the training augmentation pipeline (`augment`), classification datasets (`image_folder`) and their
//! transforms (`classify` for evaluation, `classify_augment` and `randaugment` for training), threaded batch
//! loading (`loader`), box drawing (`draw`),
//! a generated dataset for tests (`synth`), COCO/VOC import (`convert`) and the
//! command-line commands (`cli`). No tensor library: batches are plain f32 buffers.

pub mod args;
pub mod augment;
pub mod classify;
pub mod classify_augment;
pub mod classify_loader;
pub mod cli;
pub mod config;
pub mod convert;
pub mod dataset;
pub mod draw;
pub mod error;
pub mod fuzz;
pub mod image_folder;
pub mod image_ops;
pub mod labels;
pub mod loader;
pub mod randaugment;
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

/// What a process stopped at once (a second Ctrl-C or SIGTERM) still does before it exits: temporary files
/// are removed, and a JSON array being written is closed after its last complete element and put in place.
pub mod forced_exit {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    enum Pending {
        Remove(PathBuf),
        /// `(temp file, final path)` of a JSON array written two-space-indented, one element at a time.
        CloseJson(PathBuf, PathBuf),
    }

    static PENDING: Mutex<Vec<Pending>> = Mutex::new(Vec::new());

    fn pending() -> std::sync::MutexGuard<'static, Vec<Pending>> {
        PENDING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `tmp` is removed if the process is stopped at once before [`done`] is called for it.
    pub fn remove_on_exit(tmp: &Path) {
        pending().push(Pending::Remove(tmp.to_path_buf()));
    }

    /// `tmp` (a JSON array in progress) becomes `path`, cut after its last complete element, if the process
    /// is stopped at once before [`done`].
    pub fn close_json_on_exit(tmp: &Path, path: &Path) {
        pending().push(Pending::CloseJson(tmp.to_path_buf(), path.to_path_buf()));
    }

    /// `tmp` was finished or removed by its owner.
    pub fn done(tmp: &Path) {
        pending().retain(|p| match p {
            Pending::Remove(t) | Pending::CloseJson(t, _) => t != tmp,
        });
    }

    /// A partial JSON array whose elements are indented by two spaces, closed after the last element that
    /// ended (its closing `  }` at the start of a line).
    pub fn close_partial_array(text: &str) -> String {
        match text.rfind("\n  }") {
            Some(i) => format!("{}\n]", &text[..i + 4]),
            None => "[]".to_string(),
        }
    }

    /// Does what is pending; for the signal handler, right before it exits.
    pub fn run() {
        for p in pending().drain(..) {
            match p {
                Pending::Remove(t) => {
                    let _ = std::fs::remove_file(t);
                }
                Pending::CloseJson(t, path) => {
                    if let Ok(text) = std::fs::read_to_string(&t) {
                        let _ = std::fs::write(&path, close_partial_array(&text));
                    }
                    let _ = std::fs::remove_file(t);
                }
            }
        }
    }
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

/// `f` over `items` on up to `threads` scoped threads, results in order; each item of a chunk whose thread
/// panicked gets `on_panic()` (a decoder bug costs its images, not the run).
pub fn par_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
    on_panic: impl Fn() -> R,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                (
                    part.len(),
                    s.spawn(move || part.iter().map(f).collect::<Vec<R>>()),
                )
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(n, h)| {
                h.join()
                    .unwrap_or_else(|_| (0..n).map(|_| on_panic()).collect())
            })
            .collect()
    })
}

#[cfg(test)]
mod forced_exit_tests {
    use super::forced_exit::close_partial_array;

    #[test]
    fn a_partial_array_is_cut_after_its_last_complete_element() {
        let whole = serde_json::json!([{"a": 1, "b": [1, 2]}, {"a": 2, "b": {"c": 3}}]);
        let text = serde_json::to_string_pretty(&whole).unwrap();
        let body = text.trim_end_matches(']').trim_end();
        // Cut anywhere inside the second element: the first survives, valid.
        let second = body.find("},").unwrap() + 2;
        for cut in second..body.len() {
            let closed = close_partial_array(&body[..cut]);
            let v: serde_json::Value =
                serde_json::from_str(&closed).unwrap_or_else(|e| panic!("{cut}: {e}\n{closed}"));
            assert_eq!(v.as_array().unwrap().len(), 1, "{closed}");
        }
        let v: serde_json::Value = serde_json::from_str(&close_partial_array(body)).unwrap();
        assert_eq!(v, whole);
        assert_eq!(close_partial_array("[\n  {\n    \"a\""), "[]");
    }
}
