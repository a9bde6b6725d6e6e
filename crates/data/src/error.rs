//! Errors that stop a data run (the YAML or a label is wrong in a way that cannot be skipped).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{file}: {msg}")]
    Config { file: String, msg: String },
    #[error("{file}, line {line}: {msg}")]
    Label {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error(transparent)]
    File(#[from] FileError),
    /// Ctrl-C during a long scan: stopped before anything was written.
    #[error("interrupted (Ctrl-C) while reading {what}; nothing was written")]
    Interrupted { what: String },
    /// A batch worker thread died (a bug): the run stops instead of taking it for the end of the data.
    #[error("a data worker stopped: {0}")]
    Worker(String),
}

pub type Result<T> = std::result::Result<T, DataError>;

/// Any decoder's error, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A file or folder the operating system refused, or whose contents a decoder refused (YAML, JSON, XML, an
/// image header, safetensors, a checkpoint's zip or pickle): the path, what the file was expected to be, and
/// the underlying error kept as the source. The model crate's errors use it too.
#[derive(Debug, Error)]
pub struct FileError {
    pub path: String,
    /// What the file was expected to be; none for an operating-system error.
    pub what: Option<String>,
    #[source]
    pub source: BoxError,
}

impl FileError {
    /// An operating-system error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> FileError {
        FileError {
            path: path.as_ref().display().to_string(),
            what: None,
            source: source.into(),
        }
    }

    /// `path` is not `what` (a decoder's `source` says why).
    pub fn decode(
        path: impl AsRef<std::path::Path>,
        what: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> FileError {
        FileError {
            path: path.as_ref().display().to_string(),
            what: Some(what.into()),
            source: source.into(),
        }
    }
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.what {
            None => write!(f, "{}: {}", self.path, self.source),
            Some(what) => write!(f, "{}: {what} ({})", self.path, self.source),
        }
    }
}
