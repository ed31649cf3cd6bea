//! A real 3-node cluster in this test process (`testkit`'s in-process
//! cluster: `raft_node::run_node` per node on its own loopback port, sled
//! under a temporary directory, real gRPC), seen the way a gateway sees it.
//!
//! Owns: the clients the gateway tests use (one that knows every node, one
//! per node) and changing the replicated settings. Must not: reach into a
//! node's memory (tests see the cluster only through `client::Client` and
//! the gateway), or outlive its handle (dropping it stops every node).

use testkit::config::test_raft;
use testkit::in_process::Cluster;

/// Three in-process nodes; dropping this stops them and deletes their data.
pub struct RealCluster {
    nodes: Cluster,
}

impl RealCluster {
    /// Starts three nodes (node 1 bootstraps) and waits for a leader.
    pub async fn start() -> RealCluster {
        RealCluster {
            nodes: Cluster::start_all("gw-test", 3, test_raft()).await,
        }
    }

    /// A client that knows every node (what a gateway uses).
    pub fn client(&self) -> client::Client {
        client::Client::from_config(&self.nodes.config, client::ClientOptions::default())
            .expect("a valid config")
    }

    /// A client that knows only node `id`: its stale reads answer from that
    /// node's own applied state.
    pub fn node_client(&self, id: u64) -> client::Client {
        let options = client::ClientOptions {
            tls: self.nodes.client_tls(client::TlsIdentity::Client),
            ..client::ClientOptions::default()
        };
        client::Client::with_options([self.nodes.addr(id).to_string()], options)
            .expect("a valid address")
    }

    pub fn node_ids(&self) -> Vec<u64> {
        self.nodes.node_ids()
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
