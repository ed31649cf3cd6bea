//! In-process cluster harness for raft-node tests: each test gets its own
//! temporary data directory and its own loopback ports; conditions are waited
//! for with generous bounds, never fixed sleeps.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use cluster_config::{
    BookingSection, ClusterConfig, ClusterSection, GatewaySection, NodeSection, RaftSection,
};
use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use raft_node::NodeError;
use state_machine::{Command, Outcome, Query, QueryResult};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Upper bound for any awaited condition.
pub const WAIT: Duration = Duration::from_secs(30);

/// Cluster tests share two cores; running them one at a time keeps their
/// timing bounds meaningful.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

pub fn init_tracing() {
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

/// A free loopback port: bound with port 0, released, reused at once. The
/// OS does not hand the same ephemeral port out again immediately.
/// Never hands out the same port twice in one test process (the OS may).
pub fn free_addr() -> SocketAddr {
    static GIVEN: OnceLock<Mutex<std::collections::BTreeSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(Default::default()));
    for _ in 0..1000 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = l.local_addr().unwrap();
        if given
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr.port())
        {
            return addr;
        }
    }
    panic!("no fresh loopback port after 1000 tries");
}

pub struct RunningNode {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<Result<(), NodeError>>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// The config every node of the initial cluster runs with.
    pub config: ClusterConfig,
    /// Per-node config overrides (nodes added later know themselves).
    pub node_configs: BTreeMap<u64, ClusterConfig>,
    pub running: BTreeMap<u64, RunningNode>,
}

pub fn raft_section() -> RaftSection {
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

impl Cluster {
    /// Configures `n` nodes (ids 1..=n) without starting them.
    pub fn new(name: &str, n: u64, raft: RaftSection) -> Cluster {
        init_tracing();
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = (1..=n)
            .map(|id| NodeSection {
                id,
                addr: free_addr(),
                metrics_addr: None,
            })
            .collect();
        let config = ClusterConfig {
            cluster: ClusterSection {
                name: name.to_string(),
                data_dir: dir.path().join("data"),
            },
            raft,
            booking: BookingSection {
                hold_ttl_ms: 600_000,
                payment_window_ms: 120_000,
                expiry_sweep_ms: 100,
            },
            nodes,
            gateway: GatewaySection::default(),
            base_dir: dir.path().to_path_buf(),
        };
        Cluster {
            dir,
            config,
            node_configs: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    /// Starts every configured node; node 1 bootstraps.
    pub async fn start_all(name: &str, n: u64, raft: RaftSection) -> Cluster {
        let mut c = Cluster::new(name, n, raft);
        for id in 1..=n {
            c.start(id, id == 1);
        }
        c.wait_leader().await;
        c
    }

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
        self.config_of(id).node(id).expect("configured node").addr
    }

    /// Adds node `id` to the configuration that node `id` itself runs with.
    pub fn configure_extra_node(&mut self, id: u64) {
        let mut cfg = self.config.clone();
        cfg.nodes.push(NodeSection {
            id,
            addr: free_addr(),
            metrics_addr: None,
        });
        self.node_configs.insert(id, cfg);
    }

    pub fn start(&mut self, id: u64, bootstrap: bool) {
        let cfg = self.config_of(id);
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(raft_node::run_node(cfg, id, bootstrap, async move {
            let _ = rx.await;
        }));
        self.running.insert(
            id,
            RunningNode {
                stop: Some(tx),
                handle,
            },
        );
    }

    /// Stops node `id` gracefully and waits until it has released its data.
    pub async fn stop(&mut self, id: u64) -> Result<(), NodeError> {
        let mut n = self.running.remove(&id).expect("node is running");
        let _ = n.stop.take().expect("stop sender").send(());
        tokio::time::timeout(WAIT, n.handle)
            .await
            .expect("node stops within the bound")
            .expect("node task")
    }

    pub async fn stop_all(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            let _ = self.stop(id).await;
        }
    }

    pub async fn client(&self, id: u64) -> BookingClient<Channel> {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr(id)))
            .unwrap()
            .connect_lazy();
        BookingClient::new(ch).max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
    }

    pub async fn status(&self, id: u64) -> Option<pb::StatusResponse> {
        let mut c = self.client(id).await;
        let mut req = tonic::Request::new(pb::StatusRequest {});
        req.set_timeout(Duration::from_secs(2));
        c.status(req).await.ok().map(|r| r.into_inner())
    }

    /// Waits until all running nodes agree on one leader that is running.
    pub async fn wait_leader(&self) -> u64 {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        wait_for("a leader all running nodes agree on", || async {
            let mut leader = None;
            for id in &ids {
                let s = self.status(*id).await?;
                let l = s.leader_id?;
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
        wait_for("all nodes applied the same state", || async {
            let mut hash = None;
            for id in &ids {
                let s = self.status(*id).await?;
                if s.applied_index < index {
                    return None;
                }
                if hash.as_ref().is_some_and(|h| h != &s.state_hash) {
                    return None;
                }
                hash = Some(s.state_hash);
            }
            hash
        })
        .await
    }

    /// Submits through node `via`, following `not_leader` redirects and
    /// retrying `unavailable` (same request id: deduplicated). Bounded.
    pub async fn submit(
        &self,
        via: u64,
        client_id: u64,
        request_id: u64,
        command: &Command,
    ) -> (Outcome, u64) {
        let body = serde_json::to_vec(command).unwrap();
        let mut target = self.addr(via).to_string();
        for _ in 0..300 {
            let ch = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
                .unwrap()
                .connect_lazy();
            let mut c = BookingClient::new(ch);
            let mut req = tonic::Request::new(pb::SubmitRequest {
                client_id,
                request_id,
                command_json: body.clone(),
                first_send: false,
            });
            req.set_timeout(Duration::from_secs(15));
            match c.submit(req).await {
                Ok(r) => {
                    let r = r.into_inner();
                    return (
                        serde_json::from_slice(&r.outcome_json).expect("outcome json"),
                        r.log_index,
                    );
                }
                Err(s) => {
                    if let Some(addr) = s.metadata().get("booking-leader-addr") {
                        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
                        target = addr.to_str().unwrap().to_string();
                        continue;
                    }
                    assert!(
                        matches!(
                            s.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::DeadlineExceeded
                                | tonic::Code::Unknown
                        ),
                        "unexpected error: {s:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    // After a failure, ask the node we started from again.
                    target = self
                        .running
                        .keys()
                        .next()
                        .map(|id| self.addr(*id).to_string())
                        .unwrap_or(target);
                }
            }
        }
        panic!("submit did not succeed within its retry bound");
    }

    /// `submit`, asserting the command succeeded.
    pub async fn submit_ok(
        &self,
        via: u64,
        client_id: u64,
        request_id: u64,
        command: &Command,
    ) -> u64 {
        let (o, idx) = self.submit(via, client_id, request_id, command).await;
        assert!(o.is_ok(), "command {command:?} refused: {o:?}");
        idx
    }

    pub async fn read(
        &self,
        id: u64,
        consistency: pb::Consistency,
        query: &Query,
    ) -> Result<(QueryResult, u64), tonic::Status> {
        let mut c = self.client(id).await;
        let mut req = tonic::Request::new(pb::ReadRequest {
            consistency: consistency as i32,
            query_json: serde_json::to_vec(query).unwrap(),
        });
        req.set_timeout(Duration::from_secs(10));
        let r = c.read(req).await?.into_inner();
        Ok((
            serde_json::from_slice(&r.result_json).expect("result json"),
            r.applied_index,
        ))
    }
}

/// Polls `f` every 50 ms until it yields `Some`, up to `WAIT`.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {WAIT:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A small reserved-seating event: section A, rows 1..=rows of `seats` seats.
pub fn event_command(event_id: &str, rows: u32, seats: u32, hold_ttl_ms: u64) -> Command {
    let rows: Vec<serde_json::Value> = (1..=rows)
        .map(|r| serde_json::json!({"label": r.to_string(), "seats": seats}))
        .collect();
    let spec = serde_json::json!({
        "id": event_id,
        "name": "Test concert",
        "venue": "Hall",
        "starts_at": "2030-01-01T20:00:00Z",
        "hold_ttl_ms": hold_ttl_ms,
        "sections": [{"kind": "reserved", "id": "A", "name": "Stalls", "price_cents": 5000, "rows": rows}],
    });
    serde_json::from_value(serde_json::json!({ "create_event": spec })).expect("event spec json")
}

pub fn hold_command(event_id: &str, holder: &str, seats: &[&str]) -> Command {
    serde_json::from_value(serde_json::json!({
        "hold": {"event_id": event_id, "holder": holder, "selection": {"seats": seats}}
    }))
    .expect("hold json")
}

pub fn open_sale(event_id: &str) -> Command {
    Command::OpenSale {
        event_id: event_id.to_string(),
    }
}

/// (available, held, booked) of an event as `QueryResult::Event` reports it.
pub fn event_counts(r: &QueryResult) -> (u32, u32, u32) {
    match r {
        QueryResult::Event(Ok(v)) => (v.available, v.held, v.booked),
        other => panic!("expected an event view, got {other:?}"),
    }
}
