//! Our store under test: three `booking node` processes with fsync on (the
//! store always flushes before acknowledging; there is no switch to turn it
//! off) and one `booking gateway`, on free loopback ports, with a temp
//! cluster.toml and temp data directories; or an already running gateway
//! (`--target URL`).
//!
//! Owns: the bench's cluster description (names, ports, admin token) and
//! waiting until a leader exists and the gateway is ready. The processes,
//! their logs and the config file are `testkit`'s. Must not: reach into a
//! node (only processes, gRPC through `client`, and HTTP).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use client::{Client, ClientOptions, ClientTls, TlsIdentity};
use testkit::nodes::{GatewayProc, Launch, NodeProcs};
use testkit::{free_addr, ConfigFile};

/// How long three fresh nodes may take to elect a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(60);
/// How long one node may take to listen.
pub const NODE_WAIT: Duration = Duration::from_secs(30);
/// How long the gateway may take to answer `/readyz`.
pub const GATEWAY_WAIT: Duration = Duration::from_secs(30);
/// The admin token of the temp cluster (loopback only, so the default
/// development token would also be accepted; a distinct one avoids mixing up
/// clusters).
pub const ADMIN_TOKEN: &str = "bench-admin-token";
/// Nodes of the bench cluster.
const NODES: u64 = 3;

/// A running local cluster. Dropping it stops the gateway, then the nodes,
/// then deletes the directory.
pub struct LocalCluster {
    // Field order is drop order: gateway first, nodes next, the dir last.
    gateway: Option<GatewayProc>,
    nodes: NodeProcs,
    _dir: tempfile::TempDir,
    /// gRPC endpoints, `http://127.0.0.1:port`, node 1 first.
    pub endpoints: Vec<String>,
    /// The client certificate the bench presents (`None`: TLS off).
    pub client_tls: Option<ClientTls>,
    /// The gateway's base URL, `http://127.0.0.1:port`.
    pub gateway_url: String,
    pub admin_token: String,
    /// The nodes' `[raft] election_timeout_ms` range.
    pub election_timeout_ms: [u64; 2],
    /// The nodes' `[raft] snapshot_every_entries`.
    pub snapshot_every_entries: u64,
}

/// The default `booking` binary: `<repo>/target/release/booking`.
pub fn default_booking_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/booking")
}

impl LocalCluster {
    /// Starts three nodes (and the gateway if asked) and waits until they
    /// serve; mutual TLS on every gRPC port unless `tls_on` is false (the
    /// plaintext baseline `bench peers` measures TLS's cost against).
    pub async fn start(
        booking_bin: &Path,
        with_gateway: bool,
        tls_on: bool,
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with_env(booking_bin, with_gateway, tls_on, Vec::new()).await
    }

    /// [`LocalCluster::start`] with extra environment for every node (a
    /// deliberate bug of a `booking-fault-bugs` binary, for a "before" row).
    pub async fn start_with_env(
        booking_bin: &Path,
        with_gateway: bool,
        tls_on: bool,
        node_env: Vec<(String, String)>,
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_configured(booking_bin, with_gateway, tls_on, node_env, |_| ()).await
    }

    /// [`LocalCluster::start_with_env`] with `configure` applied to the
    /// cluster file before it is written (`bench flash-sale
    /// --snapshot-every` sets the snapshot policy here).
    pub async fn start_configured(
        booking_bin: &Path,
        with_gateway: bool,
        tls_on: bool,
        node_env: Vec<(String, String)>,
        configure: impl FnOnce(&mut ConfigFile),
    ) -> anyhow::Result<LocalCluster> {
        let dir = tempfile::Builder::new()
            .prefix("bench-cluster-")
            .tempdir()?;
        let mut file = ConfigFile::new("bench")
            .with_free_nodes(NODES)
            .with_gateway_listen(free_addr())
            .with_demo_gateway(ADMIN_TOKEN)
            .with_free_metrics();
        if !tls_on {
            file.tls.mode = cluster_config::TlsMode::Off;
        }
        configure(&mut file);
        let election_timeout_ms = file.raft.election_timeout_ms;
        let snapshot_every_entries = file.raft.snapshot_every_entries;
        let launch = Launch {
            env: node_env,
            ..Launch::logging("warn")
        };
        let mut nodes = NodeProcs::create(booking_bin, dir.path(), file, launch)?;
        for id in nodes.ids() {
            // Only the lowest id initialises the membership, as `booking up` does.
            nodes.start(id, id == 1)?;
            nodes.wait_listening(id, NODE_WAIT).await?;
        }
        let endpoints = nodes.endpoints();
        let client_tls = ClientTls::load(nodes.config(), TlsIdentity::Client)?;
        let options = ClientOptions {
            tls: client_tls.clone(),
            ..ClientOptions::default()
        };
        let client = Client::with_options(endpoints.clone(), options)?;
        client
            .wait_for_leader(LEADER_WAIT)
            .await
            .context("the bench cluster elected no leader")?;
        let gateway_section = nodes.file().gateway.clone();
        let mut cluster = LocalCluster {
            gateway: None,
            gateway_url: format!("http://{}", gateway_section.listen),
            admin_token: ADMIN_TOKEN.to_string(),
            endpoints,
            client_tls,
            nodes,
            _dir: dir,
            election_timeout_ms,
            snapshot_every_entries,
        };
        if with_gateway {
            let mut gateway = cluster
                .nodes
                .start_gateway("gateway", gateway_section, &[])?;
            gateway
                .wait_ready(&reqwest::Client::new(), GATEWAY_WAIT)
                .await?;
            cluster.gateway = Some(gateway);
        }
        Ok(cluster)
    }

    /// The nodes' Prometheus endpoints, node 1 first.
    pub fn metrics_urls(&self) -> Vec<String> {
        self.nodes
            .config()
            .nodes
            .iter()
            .filter_map(|n| n.metrics_addr.map(|m| format!("http://{m}/metrics")))
            .collect()
    }
}
