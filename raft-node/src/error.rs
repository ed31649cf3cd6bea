//! `NodeError`: the one error enum of this crate, its classifier, and its
//! conversion to `tonic::Status` (the only place, besides `client`, where a
//! gRPC status is made).
//!
//! Owns: the mapping of every failure to a gRPC code plus the metadata keys
//! documented in `docs/config-and-node-interface.md` ("gRPC errors and leader
//! hints"). Must not: carry domain refusals: those are `Outcome`s inside a
//! successful response. Caveat: the metadata keys and codes are a contract with
//! `client`; change them only together.

use std::path::PathBuf;

use crate::types::NodeId;

/// Metadata key: stable snake_case error code.
pub const META_ERROR: &str = "booking-error";
/// Metadata key: `not_applied` or `unknown`.
pub const META_OUTCOME: &str = "booking-outcome";
/// Metadata key: decimal id of the leader (only with `not_leader`).
pub const META_LEADER_ID: &str = "booking-leader-id";
/// Metadata key: leader's "host:port" (only with `not_leader`).
pub const META_LEADER_ADDR: &str = "booking-leader-addr";

/// Everything that can go wrong in a node, from start-up to a single RPC.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data directory is corrupt, foreign or unreadable. The node refuses
    /// to start rather than diverge. `path` names the file or directory.
    #[error("data directory problem at {path}: {problem}")]
    DataDir { path: PathBuf, problem: String },
    /// The configuration cannot run this node (unknown id, bad timeouts).
    #[error("configuration: {0}")]
    Config(String),
    /// A listener or other OS resource could not be had.
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A storage operation failed while running; openraft stops the node.
    #[error("storage: {0}")]
    Storage(String),
    /// This node is not the leader; the leader is known.
    #[error("not the leader; leader is node {leader_id} at {leader_addr}")]
    NotLeader {
        leader_id: NodeId,
        leader_addr: String,
    },
    /// No leader is known (election in progress, or this node was removed).
    #[error("no leader is known")]
    NoLeader,
    /// The proposer queue is full; nothing was proposed.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The command may or may not have been committed (leader changed, or the
    /// wait timed out after proposing).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The node is stopping.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The request is malformed (undecodable bytes, empty batch, too large).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The command needs a command set that some member does not apply yet
    /// (a rolling upgrade is under way); nothing was proposed.
    #[error("upgrade pending: {0}")]
    UpgradePending(String),
    /// A membership change was refused by openraft.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// A bug or an unexpected openraft state.
    #[error("internal: {0}")]
    Internal(String),
}

/// How a caller should treat a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Definitely not applied, and trying again (perhaps elsewhere) may work.
    RetryableNotApplied,
    /// May have been applied; retry only with the same (client_id, request_id).
    RetryableUnknown,
    /// Definitely not applied, and retrying the same request will not help.
    Definite,
    /// The node cannot go on (start-up or storage failure).
    Fatal,
}

impl NodeError {
    pub fn data_dir(path: impl Into<PathBuf>, problem: impl Into<String>) -> Self {
        NodeError::DataDir {
            path: path.into(),
            problem: problem.into(),
        }
    }

    /// Retryable or definite, and whether the outcome is known.
    pub fn class(&self) -> ErrorClass {
        match self {
            NodeError::NotLeader { .. } | NodeError::NoLeader | NodeError::Overloaded(_) => {
                ErrorClass::RetryableNotApplied
            }
            NodeError::OutcomeUnknown(_) | NodeError::ShuttingDown | NodeError::Internal(_) => {
                ErrorClass::RetryableUnknown
            }
            // Definite: retrying at once cannot help; the same request
            // succeeds once the upgrade is finished.
            NodeError::InvalidArgument(_)
            | NodeError::Membership(_)
            | NodeError::UpgradePending(_) => ErrorClass::Definite,
            NodeError::DataDir { .. }
            | NodeError::Config(_)
            | NodeError::Io { .. }
            | NodeError::Storage(_) => ErrorClass::Fatal,
        }
    }

    /// True when a retry (with the same request id) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.class(),
            ErrorClass::RetryableNotApplied | ErrorClass::RetryableUnknown
        )
    }

    /// The stable `booking-error` code.
    pub fn code(&self) -> &'static str {
        match self {
            NodeError::NotLeader { .. } => "not_leader",
            NodeError::NoLeader => "no_leader",
            NodeError::Overloaded(_) => "overloaded",
            NodeError::OutcomeUnknown(_) => "outcome_unknown",
            NodeError::ShuttingDown => "shutting_down",
            NodeError::InvalidArgument(_) => "invalid_argument",
            NodeError::Membership(_) => "membership",
            NodeError::UpgradePending(_) => "upgrade_pending",
            NodeError::Storage(_) | NodeError::DataDir { .. } => "storage",
            NodeError::Config(_) | NodeError::Io { .. } | NodeError::Internal(_) => "internal",
        }
    }

    fn outcome(&self) -> &'static str {
        match self.class() {
            ErrorClass::RetryableNotApplied | ErrorClass::Definite => "not_applied",
            ErrorClass::RetryableUnknown | ErrorClass::Fatal => "unknown",
        }
    }

    /// The gRPC status, with the metadata of the documented contract.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            NodeError::NotLeader { .. }
            | NodeError::Membership(_)
            | NodeError::UpgradePending(_) => Code::FailedPrecondition,
            NodeError::NoLeader | NodeError::OutcomeUnknown(_) | NodeError::ShuttingDown => {
                Code::Unavailable
            }
            NodeError::Overloaded(_) => Code::ResourceExhausted,
            NodeError::InvalidArgument(_) => Code::InvalidArgument,
            _ => Code::Internal,
        };
        let mut status = tonic::Status::new(code, self.to_string());
        let md = status.metadata_mut();
        // Values below are ASCII by construction (codes, digits, socket
        // addresses); a parse failure would only drop the hint, not the error.
        if let Ok(v) = self.code().parse() {
            md.insert(META_ERROR, v);
        }
        if let Ok(v) = self.outcome().parse() {
            md.insert(META_OUTCOME, v);
        }
        if let NodeError::NotLeader {
            leader_id,
            leader_addr,
        } = self
        {
            if let Ok(v) = leader_id.to_string().parse() {
                md.insert(META_LEADER_ID, v);
            }
            if let Ok(v) = leader_addr.parse() {
                md.insert(META_LEADER_ADDR, v);
            }
        }
        status
    }
}

impl From<NodeError> for tonic::Status {
    fn from(e: NodeError) -> Self {
        e.to_status()
    }
}
