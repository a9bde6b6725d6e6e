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
    /// An operating-system error on a file or folder, kept as the source.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C during a long scan: stopped before anything was written.
    #[error("interrupted (Ctrl-C) while reading {what}; nothing was written")]
    Interrupted { what: String },
    /// A batch worker thread died (a bug): the run stops instead of taking it for the end of the data.
    #[error("a data worker stopped: {0}")]
    Worker(String),
}

pub type Result<T> = std::result::Result<T, DataError>;
