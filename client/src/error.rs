//! The client's one error type, and how a gRPC status from a node is read.
//!
//! The distinction that matters to a caller is whether the request *may have
//! been applied*. [`ClientError::is_definite`] is true when the answer is known
//! (refused, rejected, or certainly never applied); false when a write's
//! outcome is unknown. An unknown outcome is resolved by sending the same
//! command again with the SAME `(client_id, request_id)`
//! ([`crate::Ids::Resend`]): the state machine returns the remembered outcome
//! instead of applying twice.
//!
//! Must not: build statuses (that is raft-node's side); it only reads them, by
//! the codes pinned in docs/config-and-node-interface.md.

use state_machine::BookingError;

/// Why a client call did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The store applied the command and refused it (seat taken, hold expired,
    /// not the owner, ...). Definite: the command changed nothing. Only made
    /// by [`crate::Submitted::into_reply`]; [`crate::Client::submit`] returns
    /// it inside `Ok`.
    #[error("refused by the store: {0} ({code})", code = .0.code())]
    Refused(BookingError),
    /// A node refused the request before proposing it (malformed, too big, a
    /// membership change that is not allowed now). Definite, not applied;
    /// sending it again unchanged gives the same answer.
    #[error("rejected ({code}): {message}")]
    Rejected {
        /// The node's `booking-error` code (e.g. `invalid_argument`, `membership`).
        code: String,
        /// The node's message.
        message: String,
    },
    /// No node took the request within the attempt and time bounds, and no
    /// attempt can have been applied (every one was refused before proposing,
    /// or could not connect). Definite; retrying later may succeed.
    #[error("cluster unavailable after {attempts} attempt(s); nothing was applied: {last_error}")]
    Unavailable {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// A write may or may not have been applied: an attempt timed out, lost its
    /// connection, or its leader changed after proposing, and the bounded
    /// retries (all with the same ids) did not reach an answer. Resolve it by
    /// submitting the same command with [`crate::Ids::Resend`] of these ids.
    #[error(
        "outcome unknown after {attempts} attempt(s){ids}: it may or may not have been applied: {last_error}",
        ids = match request_id {
            Some(r) => format!(" for request (client {client_id}, request {r}); retry with the same ids"),
            None => "; the call is idempotent by value, repeat it".to_string(),
        }
    )]
    OutcomeUnknown {
        /// The client id the request carried.
        client_id: u64,
        /// The request id to retry with; `None` for membership calls, which
        /// carry no ids and are idempotent by value.
        request_id: Option<u64>,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// An endpoint that cannot be used (not a URI), or no endpoints at all.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it was refused.
        reason: String,
    },
    /// The TLS settings could not be loaded (a missing or bad certificate
    /// file): nothing was sent.
    #[error("TLS settings: {reason}")]
    Tls {
        /// Which file and what is wrong with it.
        reason: String,
    },
    /// A node answered with bytes this client cannot decode (a version
    /// mismatch or a bug). For a write the command may have been applied.
    #[error("undecodable response: {reason}")]
    Protocol {
        /// What did not decode.
        reason: String,
    },
}

impl ClientError {
    /// True when the result is known: the request was refused, rejected or
    /// certainly not applied. False when a write may have been applied.
    pub fn is_definite(&self) -> bool {
        match self {
            ClientError::Refused(_)
            | ClientError::Rejected { .. }
            | ClientError::Unavailable { .. }
            | ClientError::InvalidEndpoint { .. }
            | ClientError::Tls { .. } => true,
            ClientError::OutcomeUnknown { .. } | ClientError::Protocol { .. } => false,
        }
    }

    /// True when trying again may succeed: the cluster was unavailable (any
    /// time later), the outcome is unknown (again with the SAME ids), or the
    /// store refused for a capacity reason (e.g. a full waiting room).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unavailable { .. } | ClientError::OutcomeUnknown { .. } => true,
            ClientError::Refused(e) => !e.is_client_error(),
            ClientError::Rejected { .. }
            | ClientError::InvalidEndpoint { .. }
            | ClientError::Tls { .. }
            | ClientError::Protocol { .. } => false,
        }
    }

    /// Stable snake_case code: the store's code for a refusal, else the kind.
    pub fn code(&self) -> &str {
        match self {
            ClientError::Refused(e) => e.code(),
            ClientError::Rejected { code, .. } => code,
            ClientError::Unavailable { .. } => "unavailable",
            ClientError::OutcomeUnknown { .. } => "outcome_unknown",
            ClientError::InvalidEndpoint { .. } => "invalid_endpoint",
            ClientError::Tls { .. } => "tls",
            ClientError::Protocol { .. } => "protocol",
        }
    }

    /// The store's refusal, if this is one.
    pub fn refusal(&self) -> Option<&BookingError> {
        match self {
            ClientError::Refused(e) => Some(e),
            _ => None,
        }
    }
}

/// What one failed attempt means for the retry loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AttemptFailure {
    /// This node is not the leader; `leader_addr` (`http://host:port`) or
    /// `leader_id` says where to go, when known. Not applied.
    NotLeader {
        leader_id: Option<u64>,
        leader_addr: Option<String>,
        message: String,
    },
    /// Not applied, and another try (after a pause, maybe elsewhere) may work:
    /// no leader, overloaded, cannot connect.
    NotApplied { message: String },
    /// May have been applied: timed out, connection lost, leader changed after
    /// proposing, node shutting down or failing.
    Unknown { message: String },
    /// Not applied, and trying again will not help.
    Definite { code: String, message: String },
}

/// Metadata keys pinned in docs/config-and-node-interface.md.
pub(crate) const META_ERROR: &str = "booking-error";
pub(crate) const META_OUTCOME: &str = "booking-outcome";
pub(crate) const META_LEADER_ID: &str = "booking-leader-id";
pub(crate) const META_LEADER_ADDR: &str = "booking-leader-addr";

/// `booking-error` of a status this client makes itself (never a node):
/// a node that had served `SubmitBatchCompact` refused it, so nothing in the
/// batch was decoded or applied (`client/src/client/compact.rs`).
pub(crate) const COMPACT_UNSUPPORTED: &str = "compact_unsupported";

pub(crate) fn classify(status: &tonic::Status) -> AttemptFailure {
    let meta = |key: &str| {
        status
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let message = format!("{:?}: {}", status.code(), status.message());
    let Some(code) = meta(META_ERROR) else {
        return classify_transport(status, message);
    };
    match code.as_str() {
        "not_leader" => AttemptFailure::NotLeader {
            leader_id: meta(META_LEADER_ID).and_then(|id| id.parse().ok()),
            leader_addr: meta(META_LEADER_ADDR).map(|addr| normalize_endpoint(&addr)),
            message,
        },
        "no_leader" | "overloaded" | COMPACT_UNSUPPORTED => AttemptFailure::NotApplied { message },
        "outcome_unknown" | "shutting_down" | "storage" | "internal" => {
            AttemptFailure::Unknown { message }
        }
        // `upgrade_pending`: a member's build cannot decode the command yet;
        // the same request succeeds once the rolling upgrade is finished.
        "invalid_argument" | "membership" | "upgrade_pending" => {
            AttemptFailure::Definite { code, message }
        }
        // A code this client does not know yet: trust the outcome metadata,
        // and do not loop on something it cannot interpret.
        _ => match meta(META_OUTCOME).as_deref() {
            Some("not_applied") => AttemptFailure::Definite { code, message },
            _ => AttemptFailure::Unknown { message },
        },
    }
}

/// A status without our metadata comes from the transport (or from a node
/// that is not ours). A refused connection certainly did not deliver the
/// request; anything else after sending might have.
fn classify_transport(status: &tonic::Status, message: String) -> AttemptFailure {
    use tonic::Code;
    let mut text = status.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(status);
    // Bounded walk: error chains are short, but a cycle must not hang us.
    for _ in 0..8 {
        let Some(err) = source else { break };
        text.push_str(&err.to_string().to_ascii_lowercase());
        source = err.source();
    }
    if text.contains("connection refused") || text.contains("tcp connect error") {
        return AttemptFailure::NotApplied { message };
    }
    match status.code() {
        Code::InvalidArgument
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::OutOfRange
        | Code::NotFound
        | Code::AlreadyExists => AttemptFailure::Definite {
            code: format!("{:?}", status.code()).to_ascii_lowercase(),
            message,
        },
        _ => AttemptFailure::Unknown { message },
    }
}

/// `host:port` → `http://host:port`; a URI with a scheme is kept.
pub(crate) fn normalize_endpoint(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}
