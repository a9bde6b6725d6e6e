//! Errors of the model crate: every message names the file (and the YAML row where there is one).

pub use data::error::{BoxError, FileError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{file}{}: {msg}", row.map(|r| format!(", row {r}")).unwrap_or_default())]
    Yaml {
        file: String,
        row: Option<usize>,
        msg: String,
    },
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
    #[error(transparent)]
    File(#[from] FileError),
    /// Tensors that could not be serialised, with the encoder's error as the source.
    #[error("{what} ({source})")]
    Encode {
        what: String,
        #[source]
        source: BoxError,
    },
    #[error("{path}: weights do not match the model:\n{msg}")]
    Weights { path: String, msg: String },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, ModelError>;
