//! The one error type of the kit: what can go wrong while starting, watching
//! or stopping a cluster for a test, a benchmark or a Jepsen run.
//!
//! Must not: panic on its own; the panicking conveniences (`wait_for`, the
//! test wrappers) turn these into messages.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a harness step failed. Every variant is an operating error of the
/// harness's environment (a missing binary, a taken port, a child that
/// crashed, a condition that never came true), never a verdict about the
/// code under test; the harness decides what a failure means.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or process operation failed; `what` names the file or the step.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The binary to run is not there.
    #[error("{} not found; build it with `cargo build --release -p booking` or pass its path", .0.display())]
    MissingBinary(PathBuf),
    /// A `cluster.toml` the kit wrote does not validate (a bug in the caller's values).
    #[error("the cluster.toml written for the test is invalid: {0}")]
    Config(#[from] cluster_config::ConfigError),
    /// A child process exited while it was expected to run.
    #[error("{name} exited early ({status}); its log is {}", log.display())]
    Exited {
        name: String,
        status: ExitStatus,
        log: PathBuf,
    },
    /// A polled condition did not come true within its bound.
    #[error("timed out after {limit:?} waiting for {what}")]
    TimedOut { what: String, limit: Duration },
    /// The test cluster's certificates could not be made.
    #[error("the test cluster's certificates: {0}")]
    Tls(String),
    /// A node id the cluster does not have, or a node in the wrong state.
    #[error("{0}")]
    Node(String),
}

impl Error {
    /// An I/O failure of the step `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
