//! Nodes as tasks of the test process (feature `in-process`): each one is
//! `raft_node::run_node` on its own loopback port, with sled under a
//! temporary directory, real gRPC between the nodes and from the tests.
//!
//! Owns: [`Cluster`]: the config every node runs with (built by
//! [`ConfigFile`], so validated like a file), starting and stopping nodes,
//! per-node configs for nodes added later, waiting for a leader and for
//! convergence, and raw gRPC calls to one node (submit with redirects,
//! reads, status) for tests of the node's own API.
//!
//! Must not: be used by `bench` or the Jepsen harness (they drive processes
//! and never reach into a node's memory), or outlive its handle: dropping
//! it stops every node still running.
//!
//! Caveat: the nodes share the test's runtime; a test that blocks a worker
//! thread stalls them (use `multi_thread` runtimes with enough workers).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use cluster_config::{ClusterConfig, RaftSection};
use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use raft_node::NodeError;
use state_machine::{Command, Outcome, Query, QueryResult};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::config::{ensure_test_certs, node, test_booking};
use crate::{free_addr, wait_for, ConfigFile, WAIT};

/// Bound on one raw status call of a test.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one raw read of a test.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on one raw submit; the node's own bound on a proposal is 10 s.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts of [`Cluster::submit`] across redirects and unavailability.
const SUBMIT_ATTEMPTS_MAX: u32 = 300;
/// Pause after an unavailable node before the next attempt.
const SUBMIT_BACKOFF: Duration = Duration::from_millis(100);

/// Sets a `tracing` subscriber for the test process once: `RUST_LOG` or
/// `warn`, written through the test harness's capture.
fn init_tracing() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

struct RunningNode {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), NodeError>>,
}

/// In-process nodes over one temporary directory.
pub struct Cluster {
    /// The config every node of the initial cluster runs with; a test may
    /// change it before starting the nodes (a metrics address, say).
    pub config: ClusterConfig,
    /// Per-node configs (a node added later knows itself).
    node_configs: BTreeMap<u64, ClusterConfig>,
    running: BTreeMap<u64, RunningNode>,
    // Last: the data outlives the nodes' tasks being told to stop.
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Configures `n` nodes (ids 1..=n) on fresh loopback ports, data under
    /// a new temporary directory, without starting them.
    pub fn new(name: &str, n: u64, raft: RaftSection) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut file = ConfigFile::new(name)
            .with_free_nodes(n)
            .with_data_dir(dir.path().join("data"));
        file.raft = raft;
        file.booking = test_booking();
        let config = file
            .parse(&dir.path().join("cluster.toml"))
            .unwrap_or_else(|e| panic!("the test cluster's config is invalid: {e}"));
        ensure_test_certs(&config).unwrap_or_else(|e| panic!("{e}"));
        Cluster::with_dir(dir, config)
    }

    /// Another handle on the same `config` (the same data directories, which
    /// may exist already), with no node running.
    pub fn with_config(config: ClusterConfig) -> Cluster {
        Cluster::with_dir(tempfile::tempdir().expect("a temporary directory"), config)
    }

    fn with_dir(dir: tempfile::TempDir, config: ClusterConfig) -> Cluster {
        init_tracing();
        Cluster {
            config,
            node_configs: BTreeMap::new(),
            running: BTreeMap::new(),
            _dir: dir,
        }
    }

    /// Starts `n` nodes (node 1 bootstraps) and waits for a leader.
    pub async fn start_all(name: &str, n: u64, raft: RaftSection) -> Cluster {
        let mut c = Cluster::new(name, n, raft);
        for id in 1..=n {
            c.start(id, id == 1);
        }
        c.wait_leader().await;
        c
    }

    /// The config node `id` runs with.
    pub fn config_of(&self, id: u64) -> ClusterConfig {
        self.node_configs
            .get(&id)
            .cloned()
            .unwrap_or_else(|| self.config.clone())
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.config_of(id).node_data_dir(id)
    }

    pub fn addr(&self, id: u64) -> SocketAddr {
        self.config_of(id).node(id).expect("a configured node").addr
    }

    /// Ids of the initial cluster, in config order.
    pub fn node_ids(&self) -> Vec<u64> {
        self.config.node_ids()
    }

    /// Adds node `id`, on a fresh port, to the config that node `id` itself
    /// runs with (the others learn of it through membership changes).
    pub fn configure_extra_node(&mut self, id: u64) {
        let mut config = self.config.clone();
        config.nodes.push(node(id, free_addr()));
        // Its certificate, from the same CA (the others' are kept).
        ensure_test_certs(&config).unwrap_or_else(|e| panic!("{e}"));
        self.node_configs.insert(id, config);
    }

    /// Starts node `id` as a task of this runtime.
    pub fn start(&mut self, id: u64, bootstrap: bool) {
        let config = self.config_of(id);
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(raft_node::run_node(config, id, bootstrap, async move {
            let _ = stopped.await;
        }));
        self.running.insert(id, RunningNode { stop, handle });
    }

    /// Stops node `id` gracefully and waits until it has released its data.
    pub async fn stop(&mut self, id: u64) -> Result<(), NodeError> {
        let node = self.running.remove(&id).expect("the node is running");
        let _ = node.stop.send(());
        tokio::time::timeout(WAIT, node.handle)
            .await
            .expect("the node stops within the bound")
            .expect("the node's task")
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            let _ = self.stop(id).await;
        }
    }

    /// A lazily connected channel to `addr` ("host:port") presenting the
    /// admin certificate when TLS is on (tests of the node's own API call
    /// membership and snapshot RPCs too).
    pub fn channel_to(&self, addr: &str) -> Channel {
        let tls = crate::config::client_tls(&self.config, cluster_tls::TlsIdentity::Admin);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
            .expect("a valid endpoint");
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls.tonic_config())
                .expect("the test cluster's TLS settings");
        }
        endpoint.connect_lazy()
    }

    /// A raw gRPC client of node `id` (admin certificate when TLS is on).
    pub async fn client(&self, id: u64) -> BookingClient<Channel> {
        let channel = self.channel_to(&self.addr(id).to_string());
        BookingClient::new(channel).max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
    }

    /// Client options for this cluster: defaults, with the config's client
    /// certificate when TLS is on.
    pub fn client_tls(&self, identity: cluster_tls::TlsIdentity) -> Option<cluster_tls::ClientTls> {
        crate::config::client_tls(&self.config, identity)
    }

    /// Node `id`'s status, or `None` if it does not answer in time.
    pub async fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        let mut client = self.client(id).await;
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(STATUS_TIMEOUT);
        client.status(request).await.ok().map(|r| r.into_inner())
    }

    /// Waits until all running nodes agree on one leader that is running.
    pub async fn wait_leader(&self) -> u64 {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        wait_for("a leader all running nodes agree on", WAIT, || async {
            let mut leader = None;
            for id in &ids {
                let l = self.status(*id).await?.leader_id?;
                if leader.is_some_and(|x| x != l) {
                    return None;
                }
                leader = Some(l);
            }
            let l = leader?;
            (ids.contains(&l) && self.status(l).await?.role == "Leader").then_some(l)
        })
        .await
    }

    /// Waits until every running node applied at least `index` and all state
    /// hashes are equal; returns the hash.
    pub async fn wait_converged(&self, index: u64) -> Vec<u8> {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        wait_for("all nodes applied the same state", WAIT, || async {
            let mut hash = None;
            for id in &ids {
                let s = self.status(*id).await?;
                if s.applied_index < index || hash.as_ref().is_some_and(|h| h != &s.state_hash) {
                    return None;
                }
                hash = Some(s.state_hash);
            }
            hash
        })
        .await
    }

    /// Submits through node `via`, following `not_leader` redirects and
    /// retrying `unavailable` (same request id: deduplicated), at most
    /// [`SUBMIT_ATTEMPTS_MAX`] times. Returns the outcome and its log index.
    pub async fn submit(
        &self,
        via: u64,
        client_id: u64,
        request_id: u64,
        command: &Command,
    ) -> (Outcome, u64) {
        let body = serde_json::to_vec(command).expect("a command serialises");
        let mut target = self.addr(via).to_string();
        for _ in 0..SUBMIT_ATTEMPTS_MAX {
            let channel = self.channel_to(&target);
            let mut client = BookingClient::new(channel);
            let mut request = tonic::Request::new(pb::SubmitRequest {
                client_id,
                request_id,
                command_json: body.clone(),
                first_send: false,
                hot_command: None,
            });
            request.set_timeout(SUBMIT_TIMEOUT);
            match client.submit(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let outcome =
                        serde_json::from_slice(&r.outcome_json).expect("outcome json decodes");
                    return (outcome, r.log_index);
                }
                Err(status) => {
                    if let Some(addr) = status.metadata().get("booking-leader-addr") {
                        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
                        target = addr.to_str().expect("an ASCII address").to_string();
                        continue;
                    }
                    assert!(
                        matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::DeadlineExceeded
                                | tonic::Code::Unknown
                        ),
                        "unexpected error: {status:?}"
                    );
                    tokio::time::sleep(SUBMIT_BACKOFF).await;
                    // After a failure, ask the lowest running node again.
                    target = self
                        .running
                        .keys()
                        .next()
                        .map(|id| self.addr(*id).to_string())
                        .unwrap_or(target);
                }
            }
        }
        panic!("submit did not succeed within {SUBMIT_ATTEMPTS_MAX} attempts");
    }

    /// [`Cluster::submit`], asserting the command succeeded; returns its log index.
    pub async fn submit_ok(
        &self,
        via: u64,
        client_id: u64,
        request_id: u64,
        command: &Command,
    ) -> u64 {
        let (outcome, index) = self.submit(via, client_id, request_id, command).await;
        assert!(outcome.is_ok(), "command {command:?} refused: {outcome:?}");
        index
    }

    /// A read on node `id` with `consistency`; the result and the applied
    /// index it reflects.
    pub async fn read(
        &self,
        id: u64,
        consistency: pb::Consistency,
        query: &Query,
    ) -> Result<(QueryResult, u64), tonic::Status> {
        let mut client = self.client(id).await;
        let mut request = tonic::Request::new(pb::ReadRequest {
            consistency: consistency as i32,
            query_json: serde_json::to_vec(query).expect("a query serialises"),
        });
        request.set_timeout(READ_TIMEOUT);
        let r = client.read(request).await?.into_inner();
        Ok((
            serde_json::from_slice(&r.result_json).expect("result json decodes"),
            r.applied_index,
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, node) in std::mem::take(&mut self.running) {
            let _ = node.stop.send(());
            node.handle.abort();
        }
    }
}
