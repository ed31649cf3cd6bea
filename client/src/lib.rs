//! The async Rust client of the booking cluster: leader discovery, redirects,
//! and retries that reuse the same `(client_id, request_id)` so a retried write
//! applies once. The `bookctl` CLI is built on it.
//!
//! Owns: the client side of the gRPC API. Must not: know openraft or sled.
//!
//! Not written yet: arrives with the node issue.
