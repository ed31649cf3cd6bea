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
//!   cannot know whether an address is free or reachable, nor whether a key
//!   file exists: the gateway checks its files (`[auth] jwt_keys_file`, the
//!   secret files) when it starts, and only it needs them, so a node starts
//!   from a file whose gateway part is not set up.

mod error;
mod notify;
mod parse;
mod parse_edge;
mod parse_tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use error::ConfigError;
pub use ipnet::IpNet;
pub use notify::{
    NotificationSink, NotificationsSection, SmtpSecurity, SmtpSink, WebhookSink, NOTIFY_POLL_MS_MAX,
};
pub use parse_tls::looks_like_uri;

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
    /// `[gateway]`: where the HTTP gateway listens, its admin credential,
    /// secret files and abuse limits.
    pub gateway: GatewaySection,
    /// `[auth]`: how the gateway knows who a user is.
    pub auth: AuthSection,
    /// `[payments]`: the payment provider and its webhook secret.
    pub payments: PaymentsSection,
    /// `[notifications]`: where the gateway delivers confirmed and cancelled
    /// bookings (none, a file, SMTP or a signed webhook).
    pub notifications: NotificationsSection,
    /// `[tls]`: mutual TLS on every gRPC port: the CA, the certificate
    /// files of nodes and clients, and the role markers.
    pub tls: TlsSection,
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
    /// Bookings can no longer be cancelled this long before their event
    /// starts, in milliseconds (decided in log time by the state machine;
    /// the gateway sends the value with each cancel). 0: until the start.
    pub cancel_cutoff_ms: u64,
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
    /// This node's certificate (PEM, with any intermediates after it);
    /// default `<tls dir>/node-<id>.pem`. Relative to `base_dir`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM); default `<tls dir>/node-<id>.key`.
    pub key_file: Option<PathBuf>,
}

/// Whether the gRPC ports speak mutual TLS (`[tls] mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Mutual TLS on every gRPC port (the default).
    On,
    /// Plaintext, anyone who reaches a port may do anything: experiments
    /// only, refused unless every node address is loopback, and a warning
    /// at every start.
    Off,
}

/// `[tls]`. Every file defaults to a name under [`TlsSection::dir`], the
/// layout `booking certs` writes (see [`ClusterConfig::tls_files`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TlsSection {
    /// `"on"` (the default) or `"off"`.
    pub mode: TlsMode,
    /// Directory of the default file names; default `<data_dir>/certs`.
    pub dir: Option<PathBuf>,
    /// The CA every node and client certificate must chain to (PEM).
    pub ca_file: Option<PathBuf>,
    /// The CA's private key: only `booking certs` reads it, to sign
    /// certificates for nodes that have none. Keep it off the nodes when
    /// the CA is your own.
    pub ca_key_file: Option<PathBuf>,
    /// The certificate clients present (the gateway, the client library,
    /// the harnesses): client RPCs, no administration.
    pub client_cert_file: Option<PathBuf>,
    /// The private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// The certificate `bookctl` presents: client RPCs and administration
    /// (membership, snapshots).
    pub admin_cert_file: Option<PathBuf>,
    /// The private key of `admin_cert_file`.
    pub admin_key_file: Option<PathBuf>,
    /// The URI subject-alternative name that marks a node certificate; peer
    /// (Raft) RPCs are refused without it.
    pub node_role_uri: String,
    /// The URI subject-alternative name that marks an administrator;
    /// membership and snapshot RPCs are refused without it.
    pub admin_role_uri: String,
}

/// Every file of the mutual TLS set-up, resolved (absolute when `base_dir` is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
}

/// `[gateway]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GatewaySection {
    /// Where the HTTP gateway listens.
    pub listen: SocketAddr,
    /// Bearer token for operator calls (creating events, opening sales). At
    /// least [`limits::ADMIN_TOKEN_LEN_MIN`] characters. Absent: read from
    /// `admin_token_file`; with neither, only JWTs with the `booking:admin`
    /// scope are operators.
    pub admin_token: Option<String>,
    /// File holding the admin token (default `<data_dir>/gateway/admin-token`,
    /// which `booking up` creates with a random token on first run).
    pub admin_token_file: Option<PathBuf>,
    /// Upper bound on one gateway call to the cluster, in ms; a write that
    /// times out answers 503 `outcome_unknown`.
    pub cluster_timeout_ms: u64,
    /// Secret of demo session tokens and waiting-room tokens (default
    /// `<data_dir>/gateway/session-secret`, created random on first start).
    pub session_secret_file: Option<PathBuf>,
    /// Ed25519 seed tickets are signed with (default
    /// `<data_dir>/gateway/ticket-key.hex`, created random on first start).
    pub ticket_key_file: Option<PathBuf>,
    /// Longest wait for a request's headers, in ms (at most 30 000).
    pub header_read_timeout_ms: u64,
    /// Longest wait for a whole request body, in ms.
    pub body_read_timeout_ms: u64,
    /// Longest a request may take from its headers to its answer, in ms.
    pub request_timeout_ms: u64,
    /// Connections served at once. Past it a bounded number more are
    /// accepted and wait, each asking the oldest served connection to close
    /// after its current request; the rest wait in the kernel's accept queue.
    pub connections_max: u32,
    /// How long a keep-alive connection may sit between requests, in ms,
    /// before the gateway closes it. HTTP/1 connections are also held to
    /// `header_read_timeout_ms` while they wait, so theirs is the smaller.
    pub keep_alive_idle_ms: u64,
    /// Open connections per client address (IPv6: per /64); more are closed.
    pub connections_per_address_max: u32,
    /// Live seat-map WebSockets at once; more get 503.
    pub ws_clients_max: u32,
    /// Live seat-map WebSockets per client address (IPv6: per /64); more get 429.
    pub ws_clients_per_address_max: u32,
    /// Origins (`https://tickets.example.com`) whose pages may open the live
    /// seat map, besides the gateway's own origin. `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// Requests per second per client address (token bucket), and its burst.
    pub rate_per_address_per_s: u32,
    pub rate_per_address_burst: u32,
    /// Requests per second per signed-in user, and its burst.
    pub rate_per_user_per_s: u32,
    pub rate_per_user_burst: u32,
    /// Peers (CIDRs) whose `Forwarded` / `X-Forwarded-For` header names the
    /// client address; from anyone else the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest block of waiting-room positions this gateway reserves with
    /// one log write (`ReserveQueueBlock`); blocks grow to it in a burst of
    /// joins. At most [`limits::QUEUE_BLOCK_MAX_MAX`].
    pub queue_block_max: u32,
}

/// How the gateway identifies users (`[auth] mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// `Authorization: Bearer <JWT>` from the operator's identity provider.
    Jwt,
    /// `POST /v1/sessions {"name"}` hands anyone a token for any name:
    /// demos and tests only, refused off loopback.
    Demo,
}

/// `[auth]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthSection {
    /// `"jwt"` (the default) or `"demo"`.
    pub mode: AuthMode,
    /// The `iss` every token must carry (jwt mode).
    pub jwt_issuer: Option<String>,
    /// The `aud` every token must carry (jwt mode).
    pub jwt_audience: Option<String>,
    /// A JWKS document (RFC 7517) with the issuer's public keys (jwt mode);
    /// re-read when it changes.
    pub jwt_keys_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub jwt_leeway_s: u64,
    /// Lifetime of a demo session token, in seconds.
    pub demo_session_ttl_s: u64,
}

/// Which payment provider the gateway charges (`[payments] provider`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentProviderKind {
    /// No provider: checkout answers 503 `payments_unavailable`.
    None,
    /// The built-in simulated provider (test card tokens): loopback only.
    Simulated,
}

/// `[payments]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentsSection {
    /// `"none"` (the default) or `"simulated"`.
    pub provider: PaymentProviderKind,
    /// The secret webhooks are signed with: the one the provider issued, or
    /// by default `<data_dir>/gateway/webhook-secret`, created random on
    /// first start.
    pub webhook_secret_file: Option<PathBuf>,
    /// Accepted age of a webhook's timestamp, either way, in seconds.
    pub webhook_tolerance_s: u64,
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
    /// `booking.cancel_cutoff_ms`: 24 hours.
    pub const CANCEL_CUTOFF_MS: u64 = 24 * 3_600_000;
    /// `gateway.listen`.
    pub const GATEWAY_LISTEN: &str = "127.0.0.1:8080";
    /// `gateway.cluster_timeout_ms`.
    pub const GATEWAY_CLUSTER_TIMEOUT_MS: u64 = 5_000;
    /// `gateway.header_read_timeout_ms`.
    pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
    /// `gateway.body_read_timeout_ms`.
    pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
    /// `gateway.request_timeout_ms`.
    pub const REQUEST_TIMEOUT_MS: u64 = 30_000;
    /// `gateway.connections_max`.
    pub const CONNECTIONS_MAX: u32 = 10_000;
    /// `gateway.connections_per_address_max`.
    pub const CONNECTIONS_PER_ADDRESS_MAX: u32 = 256;
    /// `gateway.keep_alive_idle_ms`: below `HEADER_READ_TIMEOUT_MS`, so an
    /// idle HTTP/1 connection is closed by this timer (cleanly, counted)
    /// rather than by the header-read timer.
    pub const KEEP_ALIVE_IDLE_MS: u64 = 5_000;
    /// `gateway.queue_block_max`: a burst of joins costs one log write per
    /// up to 16 384 fans; at 20 000 joins/s such a block lasts ~0.8 s, so
    /// the next one, reserved at its half, has ~0.4 s to commit.
    pub const GATEWAY_QUEUE_BLOCK_MAX: u32 = 16_384;
    /// `gateway.ws_clients_max`.
    pub const WS_CLIENTS_MAX: u32 = 10_000;
    /// `gateway.ws_clients_per_address_max`.
    pub const WS_CLIENTS_PER_ADDRESS_MAX: u32 = 16;
    /// `gateway.rate_per_address_per_s`.
    pub const RATE_PER_ADDRESS_PER_S: u32 = 2_000;
    /// `gateway.rate_per_address_burst`.
    pub const RATE_PER_ADDRESS_BURST: u32 = 4_000;
    /// `gateway.rate_per_user_per_s`.
    pub const RATE_PER_USER_PER_S: u32 = 50;
    /// `gateway.rate_per_user_burst`.
    pub const RATE_PER_USER_BURST: u32 = 100;
    /// `auth.jwt_leeway_s`.
    pub const JWT_LEEWAY_S: u64 = 60;
    /// `auth.demo_session_ttl_s`: one day.
    pub const DEMO_SESSION_TTL_S: u64 = 86_400;
    /// `payments.webhook_tolerance_s`.
    pub const WEBHOOK_TOLERANCE_S: u64 = 300;
    /// `tls.dir`, under the data directory (so a fresh `data/` is a fresh
    /// cluster with fresh certificates).
    pub const TLS_DIR_IN_DATA_DIR: &str = "certs";
    /// `tls.node_role_uri`.
    pub const NODE_ROLE_URI: &str = "urn:booking:role:node";
    /// `tls.admin_role_uri`.
    pub const ADMIN_ROLE_URI: &str = "urn:booking:role:admin";
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
    /// Largest `booking.cancel_cutoff_ms`: 365 days.
    pub const CANCEL_CUTOFF_MS_MAX: u64 = 365 * 24 * 3_600_000;
    /// Shortest `gateway.admin_token`.
    pub const ADMIN_TOKEN_LEN_MIN: usize = 16;
    /// Largest `gateway.header_read_timeout_ms` (the bound: 30 s).
    pub const HEADER_READ_TIMEOUT_MS_MAX: u64 = 30_000;
    /// Largest body and request timeouts, in ms (10 minutes).
    pub const REQUEST_TIMEOUT_MS_MAX: u64 = 600_000;
    /// Largest connection and WebSocket caps.
    pub const CONNECTIONS_MAX_MAX: u32 = 1_000_000;
    /// Largest `gateway.keep_alive_idle_ms` (10 minutes).
    pub const KEEP_ALIVE_IDLE_MS_MAX: u64 = 600_000;
    /// Largest `gateway.queue_block_max`: the state machine's default
    /// `Settings::queue_block_max`, the most one `ReserveQueueBlock` may ask
    /// for (a larger block is refused, and joins with it). This crate does
    /// not depend on the state machine; `http-gateway` tests that the two
    /// numbers agree.
    pub const QUEUE_BLOCK_MAX_MAX: u32 = 100_000;
    /// Largest rate or burst.
    pub const RATE_MAX: u32 = 10_000_000;
    /// Most `gateway.allowed_origins` and `gateway.trusted_proxies` entries.
    pub const LIST_LEN_MAX: usize = 256;
    /// Largest `auth.jwt_leeway_s` (5 minutes).
    pub const JWT_LEEWAY_S_MAX: u64 = 300;
    /// Largest `auth.demo_session_ttl_s` (30 days).
    pub const DEMO_SESSION_TTL_S_MAX: u64 = 30 * 86_400;
    /// Largest `payments.webhook_tolerance_s` (1 hour).
    pub const WEBHOOK_TOLERANCE_S_MAX: u64 = 3_600;
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
            cancel_cutoff_ms: defaults::CANCEL_CUTOFF_MS,
        }
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: defaults::GATEWAY_LISTEN
                .parse()
                .expect("default gateway address parses"),
            admin_token: None,
            admin_token_file: None,
            cluster_timeout_ms: defaults::GATEWAY_CLUSTER_TIMEOUT_MS,
            session_secret_file: None,
            ticket_key_file: None,
            header_read_timeout_ms: defaults::HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: defaults::BODY_READ_TIMEOUT_MS,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            connections_max: defaults::CONNECTIONS_MAX,
            connections_per_address_max: defaults::CONNECTIONS_PER_ADDRESS_MAX,
            keep_alive_idle_ms: defaults::KEEP_ALIVE_IDLE_MS,
            ws_clients_max: defaults::WS_CLIENTS_MAX,
            ws_clients_per_address_max: defaults::WS_CLIENTS_PER_ADDRESS_MAX,
            allowed_origins: Vec::new(),
            rate_per_address_per_s: defaults::RATE_PER_ADDRESS_PER_S,
            rate_per_address_burst: defaults::RATE_PER_ADDRESS_BURST,
            rate_per_user_per_s: defaults::RATE_PER_USER_PER_S,
            rate_per_user_burst: defaults::RATE_PER_USER_BURST,
            trusted_proxies: Vec::new(),
            queue_block_max: defaults::GATEWAY_QUEUE_BLOCK_MAX,
        }
    }
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: AuthMode::Jwt,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_keys_file: None,
            jwt_leeway_s: defaults::JWT_LEEWAY_S,
            demo_session_ttl_s: defaults::DEMO_SESSION_TTL_S,
        }
    }
}

impl Default for PaymentsSection {
    fn default() -> Self {
        PaymentsSection {
            provider: PaymentProviderKind::None,
            webhook_secret_file: None,
            webhook_tolerance_s: defaults::WEBHOOK_TOLERANCE_S,
        }
    }
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            mode: TlsMode::On,
            dir: None,
            ca_file: None,
            ca_key_file: None,
            client_cert_file: None,
            client_key_file: None,
            admin_cert_file: None,
            admin_key_file: None,
            node_role_uri: defaults::NODE_ROLE_URI.to_string(),
            admin_role_uri: defaults::ADMIN_ROLE_URI.to_string(),
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

    /// A path from the file (a key file), resolved against `base_dir`.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.base_dir.join(path)
    }

    /// Where the gateway keeps the files it creates (secrets, the generated
    /// admin token) unless a key names another path: `<data_dir>/gateway`.
    pub fn gateway_dir(&self) -> PathBuf {
        self.data_dir().join("gateway")
    }

    /// Whether the gRPC ports speak mutual TLS.
    pub fn tls_on(&self) -> bool {
        self.tls.mode == TlsMode::On
    }

    /// The directory of the default TLS file names: `tls.dir`, or
    /// `<data_dir>/certs`.
    pub fn tls_dir(&self) -> PathBuf {
        match &self.tls.dir {
            Some(dir) => self.resolve(dir),
            None => self.data_dir().join(defaults::TLS_DIR_IN_DATA_DIR),
        }
    }

    /// The CA, client and admin files, each from its key or the default name
    /// under [`ClusterConfig::tls_dir`].
    pub fn tls_files(&self) -> TlsFiles {
        let dir = self.tls_dir();
        let pick = |key: &Option<PathBuf>, name: &str| match key {
            Some(p) => self.resolve(p),
            None => dir.join(name),
        };
        let t = &self.tls;
        TlsFiles {
            ca_cert: pick(&t.ca_file, "ca.pem"),
            ca_key: pick(&t.ca_key_file, "ca.key"),
            client_cert: pick(&t.client_cert_file, "client.pem"),
            client_key: pick(&t.client_key_file, "client.key"),
            admin_cert: pick(&t.admin_cert_file, "admin.pem"),
            admin_key: pick(&t.admin_key_file, "admin.key"),
        }
    }

    /// Node `id`'s certificate and key: its `cert_file`/`key_file`, or
    /// `node-<id>.pem`/`node-<id>.key` under [`ClusterConfig::tls_dir`]
    /// (also for an id not in this file, such as a node being added).
    pub fn node_tls_files(&self, id: u64) -> (PathBuf, PathBuf) {
        let dir = self.tls_dir();
        let node = self.node(id);
        let cert = match node.and_then(|n| n.cert_file.as_ref()) {
            Some(p) => self.resolve(p),
            None => dir.join(format!("node-{id}.pem")),
        };
        let key = match node.and_then(|n| n.key_file.as_ref()) {
            Some(p) => self.resolve(p),
            None => dir.join(format!("node-{id}.key")),
        };
        (cert, key)
    }

    /// gRPC endpoints of every node in file order, e.g. `http://127.0.0.1:7101`
    /// (an identity for the client's endpoint list: the client switches to
    /// `https` when it has TLS settings).
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
