//! The async Rust client of the booking cluster: leader discovery, redirects,
//! and retries that reuse the same `(client_id, request_id)` so a retried write
//! applies once. The `bookctl` CLI (src/bin/bookctl.rs) is built on it, and so
//! is the HTTP gateway.
//!
//! Layout:
//! - [`client`]: [`Client`], its channel pool and leader cache, split by
//!   concept: the one bounded retry loop (its docs state the retry semantics
//!   exactly), writes ([`Client::submit`] with [`Ids`]), reads and watch,
//!   administration.
//! - [`error`]: [`ClientError`] with [`ClientError::is_definite`] (is the
//!   outcome known?) and [`ClientError::is_retryable`].
//! - [`options`]: [`ClientOptions`], every timeout and retry bound, and the
//!   TLS settings (the cluster's CA and this client's certificate).
//! - [`types`]: status, membership and watch views.
//!
//! Owns: the client side of the gRPC API and the conversion between protobuf
//! messages and `state_machine` types. Must not: know openraft or sled, or let
//! a protobuf type into its public API.
//!
//! Caveats:
//! - Exactly-once holds only while the state machine still remembers the
//!   request (at least `dedupe_ttl_ms`, by the leader's monotonic clock and
//!   in log time; when the table is full, new requests are refused as
//!   `overloaded`, never remembered ones forgotten). A caller that
//!   resolves an unknown outcome much later may see the command applied twice.
//! - `client_id` is random per [`Client`]: two processes never share one, but
//!   a restarted process starts a new one, so it cannot dedupe against writes
//!   of its previous life. A caller that must ([`Ids::Derived`], used by the
//!   gateway for `Idempotency-Key`) names its requests itself.
//! - A transport error other than a refused connection is treated as "may
//!   have been applied" (the request may have reached the node).

pub mod client;
pub mod error;
pub mod options;
pub mod types;

pub use client::{
    Client, Ids, Rejoined, RequestIds, Submitted, Transfer, ENDPOINTS_MAX, HANDOVER_PAUSE_MS,
};
pub mod backup;
/// The TLS settings a client dials with ([`ClientOptions::tls`]).
pub use cluster_tls::{ClientTls, TlsIdentity};
pub use error::ClientError;
pub use options::ClientOptions;
pub use types::{
    ClusterStatus, Consistency, EndpointStatus, Member, MembershipChange, NodeStatus, ResyncReason,
    WatchItem,
};

/// The domain types callers build commands and queries from.
pub use state_machine;
