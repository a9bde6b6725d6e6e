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
}

pub type Result<T> = std::result::Result<T, DataError>;
