//! A real 3-node cluster in this test process: `raft_node::run_node` for
//! each node on its own loopback port, sled under a temporary directory,
//! real gRPC between the nodes and from the clients.
//!
//! Owns: the cluster config used by the gateway tests, starting the nodes,
//! waiting for a leader, and stopping them. Must not: reach into a node's
//! memory (tests see the cluster only through `client::Client` and the
//! gateway), or outlive its handle (dropping it stops every node).

use std::net::SocketAddr;
use std::time::Duration;

use cluster_config::{
    BookingSection, ClusterConfig, ClusterSection, GatewaySection, NodeSection, RaftSection,
};
use tokio::sync::oneshot;

/// Bound on the first election.
const LEADER_WAIT: Duration = Duration::from_secs(30);

/// Three in-process nodes; dropping this stops them and deletes their data.
pub struct RealCluster {
    pub config: ClusterConfig,
    stops: Vec<oneshot::Sender<()>>,
    nodes: Vec<tokio::task::JoinHandle<Result<(), raft_node::NodeError>>>,
    // Last: the data outlives the nodes' tasks being told to stop.
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("a bound port")
}

impl RealCluster {
    /// Starts three nodes (node 1 bootstraps) and waits for a leader.
    pub async fn start() -> RealCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = ClusterConfig {
            cluster: ClusterSection {
                name: "gw-test".into(),
                data_dir: dir.path().join("data"),
            },
            raft: RaftSection {
                heartbeat_interval_ms: 50,
                election_timeout_ms: [400, 800],
                snapshot_every_entries: 10_000,
                max_in_snapshot_log_to_keep: 100,
                install_snapshot_timeout_ms: 5_000,
                rpc_timeout_ms: 1_000,
                propose_batch_max: 256,
                propose_linger_us: 200,
            },
            booking: BookingSection {
                hold_ttl_ms: 600_000,
                payment_window_ms: 120_000,
                expiry_sweep_ms: 100,
            },
            nodes: (1..=3)
                .map(|id| NodeSection {
                    id,
                    addr: free_addr(),
                    metrics_addr: None,
                })
                .collect(),
            gateway: GatewaySection::default(),
            base_dir: dir.path().to_path_buf(),
        };
        let mut stops = Vec::new();
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            let (tx, rx) = oneshot::channel::<()>();
            nodes.push(tokio::spawn(raft_node::run_node(
                config.clone(),
                id,
                id == 1,
                async move {
                    let _ = rx.await;
                },
            )));
            stops.push(tx);
        }
        let cluster = RealCluster {
            config,
            stops,
            nodes,
            _dir: dir,
        };
        cluster
            .client()
            .wait_for_leader(LEADER_WAIT)
            .await
            .expect("a leader within 30 s");
        cluster
    }

    /// A client that knows every node (what a gateway uses).
    pub fn client(&self) -> client::Client {
        client::Client::from_config(&self.config, client::ClientOptions::default())
            .expect("a valid config")
    }

    /// A client that knows only node `id`: its stale reads answer from that
    /// node's own applied state.
    pub fn node_client(&self, id: u64) -> client::Client {
        let node = self.config.node(id).expect("a node of the config");
        client::Client::connect([node.addr.to_string()]).expect("a valid address")
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.config.nodes.iter().map(|n| n.id).collect()
    }

    /// Changes the replicated settings (e.g. a short payment window).
    pub async fn configure(&self, settings: state_machine::Settings) {
        let outcome = self
            .client()
            .submit(
                client::Ids::New,
                state_machine::Command::Configure(settings),
            )
            .await
            .expect("configure reaches the cluster")
            .outcome;
        outcome.expect("the settings are valid");
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for node in &self.nodes {
            node.abort();
        }
    }
}
