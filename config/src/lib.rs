//! `cluster.toml`: one struct per section, every field documented, defaults in
//! one place ([`defaults`]), and validation at start that names the bad key and
//! the line it is on.
//!
//! Owns: reading, parsing and validating the file, and the few derived values
//! everyone needs (a node's data directory, the client endpoints).
//!
//! Must not: start anything, open sockets, create directories, or know about
//! openraft, sled or protobuf. The node, the gateway, `bookctl` and the test
//! harnesses all depend on this crate, so it stays small and synchronous.
//!
//! Caveats:
//! - Relative paths (`cluster.data_dir`) are relative to the directory of the
//!   file, not to the process's working directory, so `booking up` behaves the
//!   same from anywhere. [`ClusterConfig::load`] makes that directory absolute.
//! - A key whose value is left at its default has no line; an error about a
//!   combination of keys names the key that is present in the file.
//! - Validation checks the file against itself (ids, addresses, timeouts); it
//!   cannot know whether an address is free or reachable.

mod error;
mod parse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::ConfigError;

/// The whole validated file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterConfig {
    /// `[cluster]`: the cluster's name and where nodes keep their data.
    pub cluster: ClusterSection,
    /// `[raft]`: timing and log-size knobs handed to openraft and the proposer.
    pub raft: RaftSection,
    /// `[booking]`: defaults of the booking domain that the leader enforces.
    pub booking: BookingSection,
    /// `[[node]]`: every member of the initial cluster, in file order. Never empty.
    pub nodes: Vec<NodeSection>,
    /// `[gateway]`: where the HTTP gateway listens and its admin credential.
    pub gateway: GatewaySection,
    /// Directory of the file: relative paths in it are resolved against this,
    /// so the same file works whatever the working directory is.
    pub base_dir: PathBuf,
}

/// `[cluster]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterSection {
    /// A label for logs and metrics; letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Parent of every node's data directory (node N uses `<data_dir>/node-<N>`).
    /// Relative to [`ClusterConfig::base_dir`] unless absolute.
    pub data_dir: PathBuf,
}

/// `[raft]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RaftSection {
    /// How often the leader sends heartbeats, in milliseconds. openraft 0.9
    /// also bounds every AppendEntries by it (the follower's fsync included),
    /// so it must stay above the disk's fsync latency (twice its p99).
    pub heartbeat_interval_ms: u64,
    /// `[min, max]` of the randomised election timeout, in milliseconds.
    /// Invariant: `heartbeat_interval_ms < min < max`.
    pub election_timeout_ms: [u64; 2],
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind a snapshot, so slightly lagging followers catch
    /// up from the log instead of a whole snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Timeout of one InstallSnapshot RPC, in milliseconds.
    pub install_snapshot_timeout_ms: u64,
    /// Timeout of one AppendEntries or Vote RPC, in milliseconds.
    pub rpc_timeout_ms: u64,
    /// The most commands the leader packs into one log entry.
    pub propose_batch_max: usize,
    /// How long the proposer waits for more commands to fill a batch, in microseconds.
    pub propose_linger_us: u64,
}

/// `[booking]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BookingSection {
    /// Hold TTL for events that set none, in milliseconds of log time.
    pub hold_ttl_ms: u64,
    /// How long `BeginPayment` extends a hold so a payment in flight keeps its seats.
    pub payment_window_ms: u64,
    /// How often the leader proposes `Tick` while holds are due, in milliseconds.
    pub expiry_sweep_ms: u64,
}

/// One `[[node]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeSection {
    /// The Raft node id; unique, at least 1.
    pub id: u64,
    /// gRPC address for peers and clients; also what the node listens on.
    pub addr: SocketAddr,
    /// Optional Prometheus endpoint.
    pub metrics_addr: Option<SocketAddr>,
}

/// `[gateway]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewaySection {
    /// Where the HTTP gateway listens.
    pub listen: SocketAddr,
    /// Bearer token for admin calls (creating events). The gateway refuses the
    /// default token on a non-loopback address.
    pub admin_token: String,
    /// Upper bound on one gateway call to the cluster, in ms; a write that
    /// times out answers 503 `outcome_unknown`.
    pub cluster_timeout_ms: u64,
}

/// Every default in one place. A key absent from the file takes these values.
pub mod defaults {
    /// `cluster.name`.
    pub const CLUSTER_NAME: &str = "local";
    /// `cluster.data_dir`.
    pub const DATA_DIR: &str = "data";
    /// `raft.heartbeat_interval_ms`.
    pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
    /// `raft.election_timeout_ms`.
    pub const ELECTION_TIMEOUT_MS: [u64; 2] = [400, 800];
    /// `raft.snapshot_every_entries`.
    pub const SNAPSHOT_EVERY_ENTRIES: u64 = 20_000;
    /// `raft.max_in_snapshot_log_to_keep`.
    pub const MAX_IN_SNAPSHOT_LOG_TO_KEEP: u64 = 1_000;
    /// `raft.install_snapshot_timeout_ms`.
    pub const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 5_000;
    /// `raft.rpc_timeout_ms`.
    pub const RPC_TIMEOUT_MS: u64 = 2_000;
    /// `raft.propose_batch_max`.
    pub const PROPOSE_BATCH_MAX: usize = 1_024;
    /// `raft.propose_linger_us`.
    pub const PROPOSE_LINGER_US: u64 = 200;
    /// `booking.hold_ttl_ms`.
    pub const HOLD_TTL_MS: u64 = 600_000;
    /// `booking.payment_window_ms`.
    pub const PAYMENT_WINDOW_MS: u64 = 120_000;
    /// `booking.expiry_sweep_ms`.
    pub const EXPIRY_SWEEP_MS: u64 = 1_000;
    /// `gateway.listen`.
    pub const GATEWAY_LISTEN: &str = "127.0.0.1:8080";
    /// `gateway.admin_token`. Only acceptable on loopback (the gateway checks).
    pub const ADMIN_TOKEN: &str = "dev-admin-token";
    /// `gateway.cluster_timeout_ms`.
    pub const GATEWAY_CLUSTER_TIMEOUT_MS: u64 = 5_000;
}

/// Upper bounds that validation enforces, so a typo (an extra zero, seconds
/// written as milliseconds twice) fails at start instead of stalling a cluster.
pub mod limits {
    /// Most `[[node]]` entries in one file.
    pub const NODES_MAX: usize = 64;
    /// Longest `cluster.name`.
    pub const CLUSTER_NAME_LEN_MAX: usize = 64;
    /// Longest accepted Raft timing value (heartbeat, election, RPC), in ms.
    pub const RAFT_TIMEOUT_MS_MAX: u64 = 600_000;
    /// Largest `raft.propose_batch_max`.
    pub const PROPOSE_BATCH_MAX_MAX: usize = 65_536;
    /// Largest `raft.propose_linger_us` (100 ms): a longer linger is a latency bug.
    pub const PROPOSE_LINGER_US_MAX: u64 = 100_000;
    /// Largest booking duration (hold TTL, payment window, sweep): 7 days, in ms.
    pub const BOOKING_DURATION_MS_MAX: u64 = 7 * 24 * 3_600_000;
}

impl Default for ClusterSection {
    fn default() -> Self {
        ClusterSection {
            name: defaults::CLUSTER_NAME.to_string(),
            data_dir: PathBuf::from(defaults::DATA_DIR),
        }
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_interval_ms: defaults::HEARTBEAT_INTERVAL_MS,
            election_timeout_ms: defaults::ELECTION_TIMEOUT_MS,
            snapshot_every_entries: defaults::SNAPSHOT_EVERY_ENTRIES,
            max_in_snapshot_log_to_keep: defaults::MAX_IN_SNAPSHOT_LOG_TO_KEEP,
            install_snapshot_timeout_ms: defaults::INSTALL_SNAPSHOT_TIMEOUT_MS,
            rpc_timeout_ms: defaults::RPC_TIMEOUT_MS,
            propose_batch_max: defaults::PROPOSE_BATCH_MAX,
            propose_linger_us: defaults::PROPOSE_LINGER_US,
        }
    }
}

impl Default for BookingSection {
    fn default() -> Self {
        BookingSection {
            hold_ttl_ms: defaults::HOLD_TTL_MS,
            payment_window_ms: defaults::PAYMENT_WINDOW_MS,
            expiry_sweep_ms: defaults::EXPIRY_SWEEP_MS,
        }
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: defaults::GATEWAY_LISTEN
                .parse()
                .expect("default gateway address parses"),
            admin_token: defaults::ADMIN_TOKEN.to_string(),
            cluster_timeout_ms: defaults::GATEWAY_CLUSTER_TIMEOUT_MS,
        }
    }
}

impl RaftSection {
    /// Lower bound of the election timeout, in milliseconds.
    pub fn election_timeout_ms_min(&self) -> u64 {
        self.election_timeout_ms[0]
    }

    /// Upper bound of the election timeout, in milliseconds.
    pub fn election_timeout_ms_max(&self) -> u64 {
        self.election_timeout_ms[1]
    }
}

impl ClusterConfig {
    /// Reads, parses and validates the file at `path`. Errors name the file, the
    /// line and the key. `base_dir` becomes the file's directory, made absolute.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Absolute, so a node that changes directory (or a child process started
        // elsewhere) still finds the same data directory.
        let origin = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self::from_toml_str(&text, &origin)
    }

    /// Parses and validates `text` as if it were the file at `origin` (used for
    /// error messages and as the base of relative paths; it need not exist).
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<ClusterConfig, ConfigError> {
        parse::parse(text, origin)
    }

    /// The `[[node]]` with this id.
    pub fn node(&self, id: u64) -> Option<&NodeSection> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Where node `id` keeps its sled database and snapshots:
    /// `<base_dir>/<data_dir>/node-<id>` (or `<data_dir>/node-<id>` if absolute).
    pub fn node_data_dir(&self, id: u64) -> PathBuf {
        self.data_dir().join(format!("node-{id}"))
    }

    /// The parent of every node's data directory, resolved against `base_dir`.
    pub fn data_dir(&self) -> PathBuf {
        self.base_dir.join(&self.cluster.data_dir)
    }

    /// gRPC endpoints of every node in file order, e.g. `http://127.0.0.1:7101`.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.addr))
            .collect()
    }

    /// Node ids in file order.
    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }
}

#[cfg(test)]
mod tests;
