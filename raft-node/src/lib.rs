//! The replicated booking node: openraft's type configuration, the sled log and
//! state-machine stores, the tonic network between peers, the proposer (time
//! stamps, batching, expiry ticks) and the client-facing gRPC server.
//!
//! Owns: everything that knows openraft and sled. Must not: decide booking
//! semantics (that is `state-machine`) or speak HTTP (that is `http-gateway`).
//!
//! Layout:
//! - [`types`]: openraft type config (`D = state_machine::Batch`).
//! - [`store`]: the data directory (identity record, one sled `Db` with trees
//!   `log`, `meta`, `sm`), `LogStore` and `SmStore`.
//! - [`network`]: the tonic client side of Raft RPCs, one pooled channel per peer.
//! - [`server`]: the gRPC services (`booking.v1.Booking`, `booking.raft.v1.Raft`).
//! - [`node`]: `run_node`, the proposer, the ReadIndex coalescer, the tick
//!   proposer and the stamp clock.
//! - [`watch`]: the ring of recent seat changes and its subscribers.
//! - [`leader_log`]: one info line per leadership change (openraft's own
//!   election narration is filtered out by default).
//! - [`metrics`]: counters and the Prometheus text endpoint.
//! - [`error`]: `NodeError`, its classifier and its gRPC mapping.
//! - [`bugs`]: which deliberate bug for `jepsen selftest` was chosen at start
//!   (the bugs sit at their sites, compiled only with the cargo feature
//!   `fault-injection-bugs`, off in every normal build).
//!
//! Choices worth knowing:
//! - Writes and linearizable reads are not forwarded between nodes: a follower
//!   answers FAILED_PRECONDITION with the leader's id and address in metadata
//!   (see `docs/config-and-node-interface.md`). Linearizable reads are served
//!   by followers too, by asking the leader for a read index.
//! - The state machine lives in memory; its durable form is the newest
//!   snapshot plus the log after it.
//!
//! Caveats: sled 0.34's own flush survives a process kill but not a power
//! loss, so the store adds its own fsyncs after it (`store`, and
//! ARCHITECTURE.md "Durability"); the watch ring is in memory and starts
//! empty after a restart.

// openraft's error types (`StorageError`, `RPCError`) are large by design and
// fixed by its trait signatures; boxing them here would only add conversions.
#![allow(clippy::result_large_err)]

pub mod backup;
pub mod bugs;
pub mod error;
pub mod leader_log;
pub mod metrics;
pub mod network;
pub mod node;
pub mod server;
pub mod store;
pub mod types;
pub mod watch;

pub use error::{ErrorClass, NodeError};
pub use node::run_node;
