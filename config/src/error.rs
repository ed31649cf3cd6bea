//! The one error type of this crate: the file could not be read, or it is not
//! a valid cluster description. Both are definite: retrying without editing the
//! file gives the same answer.

use std::fmt;
use std::path::PathBuf;

/// Why a `cluster.toml` was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("cannot read cluster config {}: {source}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The underlying I/O error (not found, permission denied, not UTF-8).
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong
    /// type, or fails a semantic check.
    #[error("{}", InvalidDisplay { path, key, line: *line, column: *column, message })]
    Invalid {
        /// The file (or the origin given to `from_toml_str`).
        path: PathBuf,
        /// Dotted key, e.g. `raft.election_timeout_ms` or `node[2].addr`
        /// (1-based position among the `[[node]]` tables). `None` only when a
        /// syntax error is not at any key.
        key: Option<String>,
        /// 1-based line, when the problem is at a place in the file.
        line: Option<usize>,
        /// 1-based column (in characters), when `line` is set.
        column: Option<usize>,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => key.as_deref(),
        }
    }

    /// The 1-based line the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// `path:line:col: key `k`: message`, leaving out what is unknown.
struct InvalidDisplay<'a> {
    path: &'a PathBuf,
    key: &'a Option<String>,
    line: Option<usize>,
    column: Option<usize>,
    message: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid cluster config {}", self.path.display())?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, ":{line}:{column}")?,
            (Some(line), None) => write!(f, ":{line}")?,
            _ => {}
        }
        if let Some(key) = self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}
