//! Writing a valid `cluster.toml` without writing TOML: [`ConfigFile`]
//! holds every section as the `cluster_config` type it parses into,
//! serialises them with `toml`, and reads the result back through
//! `cluster_config`'s own validation.
//!
//! Owns: the file shape (`[cluster]`, `[raft]`, `[booking]`, `[gateway]`,
//! `[auth]`, `[payments]`, `[[node]]`), the loopback test gateway
//! ([`ConfigFile::with_demo_gateway`]: demo sessions, the simulated payment
//! provider, a given admin token), the timing every in-process test cluster uses
//! ([`test_raft`], [`test_booking`]), and node lists on fixed or free ports.
//!
//! Must not: splice text. A file that does not validate is an error here,
//! not a node that refuses to start later. (Deliberately broken files, for
//! the tests of the validation itself, are literal text in those tests.)
//!
//! TLS: `[tls]` is on, as in production. [`ConfigFile::write`] (and the
//! in-process cluster) make the test directory's certificates with
//! `cluster_tls::ensure_certs` (once per directory: existing files are
//! kept), so a test needs no step of its own; [`ConfigFile::client_options`]
//! gives a client the config's client certificate.
//!
//! Caveat: every key is written, defaults included, so a written file does
//! not show which values a test chose; the builder call does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cluster_config::{
    AuthMode, AuthSection, BookingSection, ClusterConfig, ClusterSection, ConfigError,
    GatewaySection, NodeSection, PaymentProviderKind, PaymentsSection, RaftSection, TlsSection,
};
use serde::Serialize;

use crate::{free_addr, Error};

/// A `cluster.toml` to write, section by section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    pub cluster: ClusterSection,
    pub raft: RaftSection,
    pub booking: BookingSection,
    pub gateway: GatewaySection,
    pub auth: AuthSection,
    pub payments: PaymentsSection,
    pub tls: TlsSection,
    /// The `[[node]]` tables, in file order.
    pub nodes: Vec<NodeSection>,
}

/// The file as `toml` serialises it: the sections under their file names.
#[derive(Serialize)]
struct Shape<'a> {
    cluster: &'a ClusterSection,
    raft: &'a RaftSection,
    booking: &'a BookingSection,
    gateway: &'a GatewaySection,
    auth: &'a AuthSection,
    payments: &'a PaymentsSection,
    tls: &'a TlsSection,
    node: &'a [NodeSection],
}

/// Raft timing of the in-process test clusters: 50 ms heartbeats, small
/// snapshots kept rare, RPCs bounded at 1 s, small batches.
pub fn test_raft() -> RaftSection {
    RaftSection {
        heartbeat_interval_ms: 50,
        election_timeout_ms: [400, 800],
        snapshot_every_entries: 10_000,
        max_in_snapshot_log_to_keep: 100,
        install_snapshot_timeout_ms: 5_000,
        rpc_timeout_ms: 1_000,
        propose_batch_max: 256,
        propose_linger_us: 200,
    }
}

/// Booking defaults of the in-process test clusters: the documented hold TTL
/// and payment window, and a 100 ms expiry sweep so expiries show quickly.
pub fn test_booking() -> BookingSection {
    BookingSection {
        hold_ttl_ms: 600_000,
        payment_window_ms: 120_000,
        expiry_sweep_ms: 100,
        cancel_cutoff_ms: 0,
    }
}

impl ConfigFile {
    /// Cluster `name`, every section at its documented default, no nodes.
    pub fn new(name: &str) -> ConfigFile {
        ConfigFile {
            cluster: ClusterSection {
                name: name.to_string(),
                ..ClusterSection::default()
            },
            raft: RaftSection::default(),
            booking: BookingSection::default(),
            gateway: GatewaySection::default(),
            auth: AuthSection::default(),
            payments: PaymentsSection::default(),
            tls: TlsSection::default(),
            nodes: Vec::new(),
        }
    }

    /// The gateway a test drives on loopback: `[auth] mode = "demo"` (a
    /// session for any name), `[payments] provider = "simulated"` (test
    /// card tokens) and `admin_token` (at least 16 characters). The gateway
    /// refuses both modes off loopback, so the listen address must stay there.
    pub fn with_demo_gateway(mut self, admin_token: &str) -> ConfigFile {
        self.auth.mode = AuthMode::Demo;
        self.payments.provider = PaymentProviderKind::Simulated;
        self.gateway.admin_token = Some(admin_token.to_string());
        self
    }

    /// Nodes 1..=`count` on `127.0.0.1:base_port+id` (tests with fixed port
    /// ranges, so their addresses can be named in assertions).
    pub fn with_nodes_from_port(mut self, base_port: u16, count: u16) -> ConfigFile {
        self.nodes = (1..=count)
            .map(|id| {
                node(
                    u64::from(id),
                    SocketAddr::from(([127, 0, 0, 1], base_port + id)),
                )
            })
            .collect();
        self
    }

    /// Nodes 1..=`count` on fresh loopback ports ([`free_addr`]).
    pub fn with_free_nodes(mut self, count: u64) -> ConfigFile {
        self.nodes = (1..=count).map(|id| node(id, free_addr())).collect();
        self
    }

    /// Every node serving `/metrics` on a fresh loopback port ([`free_addr`]).
    pub fn with_free_metrics(mut self) -> ConfigFile {
        for n in &mut self.nodes {
            n.metrics_addr = Some(free_addr());
        }
        self
    }

    /// The gateway listening on `listen`, everything else of `[gateway]` as it is.
    pub fn with_gateway_listen(mut self, listen: SocketAddr) -> ConfigFile {
        self.gateway.listen = listen;
        self
    }

    /// `[cluster] data_dir` (relative paths resolve against the file's directory).
    pub fn with_data_dir(mut self, data_dir: PathBuf) -> ConfigFile {
        self.cluster.data_dir = data_dir;
        self
    }

    /// The file's text.
    fn to_toml(&self) -> String {
        let shape = Shape {
            cluster: &self.cluster,
            raft: &self.raft,
            booking: &self.booking,
            gateway: &self.gateway,
            auth: &self.auth,
            payments: &self.payments,
            tls: &self.tls,
            node: &self.nodes,
        };
        let body = toml::to_string(&shape).expect("the config sections serialise to TOML");
        format!("# Written by a test harness (testkit::ConfigFile).\n{body}")
    }

    /// Validates the file as if it were at `path` (relative paths resolve
    /// against its directory), without writing it.
    pub fn parse(&self, path: &Path) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::from_toml_str(&self.to_toml(), path)
    }

    /// Writes the file to `path` and loads it back, validated, as a node
    /// would; with TLS on, makes the certificates it names that are missing.
    pub fn write(&self, path: &Path) -> Result<ClusterConfig, Error> {
        std::fs::write(path, self.to_toml())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let config = ClusterConfig::load(path)?;
        ensure_test_certs(&config)?;
        Ok(config)
    }
}

/// A `[[node]]` without a metrics endpoint, its certificate at the default
/// place.
pub fn node(id: u64, addr: SocketAddr) -> NodeSection {
    NodeSection {
        id,
        addr,
        metrics_addr: None,
        cert_file: None,
        key_file: None,
    }
}

/// Makes the certificates `config` names that are missing (nothing with
/// `[tls] mode = "off"`).
pub fn ensure_test_certs(config: &ClusterConfig) -> Result<(), Error> {
    if config.tls_on() {
        cluster_tls::ensure_certs(config).map_err(|e| Error::Tls(e.to_string()))?;
    }
    Ok(())
}

/// Client options for `config`'s cluster: defaults, with the config's client
/// certificate when TLS is on (`identity` `Admin` for membership and
/// snapshot calls).
pub fn client_tls(
    config: &ClusterConfig,
    identity: cluster_tls::TlsIdentity,
) -> Option<cluster_tls::ClientTls> {
    cluster_tls::ClientTls::load(config, identity)
        .unwrap_or_else(|e| panic!("the test cluster's client certificate: {e}"))
}

/// A lazily connected channel to `addr` ("host:port") that speaks as node
/// `as_node` (its certificate, with the node role, when TLS is on): for
/// tests that call the peer-to-peer Raft service directly.
#[cfg(feature = "in-process")]
pub fn peer_channel(config: &ClusterConfig, as_node: u64, addr: &str) -> tonic::transport::Channel {
    let tls = cluster_tls::NodeTls::load(config, as_node)
        .unwrap_or_else(|e| panic!("node {as_node}'s certificate: {e}"));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .expect("a valid endpoint");
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client)
            .expect("the test cluster's TLS settings");
    }
    endpoint.connect_lazy()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: what the builder writes reads back as exactly the sections it holds.
    #[test]
    fn a_written_file_reads_back_as_its_sections() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ConfigFile::new("round-trip")
            .with_free_nodes(3)
            .with_gateway_listen(free_addr())
            .with_demo_gateway("secret-\"quoted\"-token");
        file.raft = test_raft();
        file.booking = test_booking();
        file.nodes[1].metrics_addr = Some(free_addr());
        file.gateway.cluster_timeout_ms = 1_000;
        let config = file.write(&dir.path().join("cluster.toml")).unwrap();
        assert_eq!(config.cluster, file.cluster);
        assert_eq!(config.raft, file.raft);
        assert_eq!(config.booking, file.booking);
        assert_eq!(config.gateway, file.gateway);
        assert_eq!(config.auth, file.auth);
        assert_eq!(config.payments, file.payments);
        assert_eq!(config.tls, file.tls);
        assert_eq!(config.nodes, file.nodes);
        // TLS is on, and its files were made.
        assert!(config.tls_on());
        assert!(config.tls_files().ca_cert.exists());
        assert!(config.node_tls_files(3).1.exists());
    }

    // Goal: a file that would not validate is refused when it is written, naming the key.
    #[test]
    fn an_invalid_file_is_refused_at_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = ConfigFile::new("bad").with_nodes_from_port(31990, 1);
        file.raft.election_timeout_ms = [900, 800];
        let err = file
            .write(&dir.path().join("cluster.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("raft.election_timeout_ms"), "{err}");
    }
}
