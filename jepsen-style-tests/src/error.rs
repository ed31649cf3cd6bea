//! The crate's one error enum.
//!
//! Owns: every failure the library reports (unreadable files, malformed lines,
//! histories that do not pair up). Must not: carry checker verdicts; a history
//! that is *not linearizable* is a result, not an error.
//! Caveat: all of these are "bad input" errors: none is retryable, and a
//! caller that gets one must report it rather than guess a verdict.

use std::path::PathBuf;

/// Why a history could not be read or interpreted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a JSON-lines history is not a valid event.
    #[error("line {line}: not a history event: {source}")]
    Json {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    /// A line of a Jepsen log looks like an event but cannot be parsed.
    #[error("line {line}: {reason}: {text:?}")]
    Parse {
        line: usize,
        reason: String,
        text: String,
    },
    /// The events do not form a well-formed history (see `history::pair`).
    #[error("event {event} (process {process}): {reason}")]
    History {
        /// Position of the offending event in the input (0-based).
        event: usize,
        process: u64,
        reason: String,
    },
    /// An operation's value does not fit the model it is checked against.
    #[error("operation {op}: {reason}")]
    Decode { op: usize, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
