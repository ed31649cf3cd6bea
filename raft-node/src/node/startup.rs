//! Starting and stopping a node: [`run_node`] wires the data directory,
//! openraft, the gRPC server, the metrics endpoint and the background tasks
//! together, initialises a fresh cluster when asked, and shuts everything
//! down in order.
//!
//! Owns: the openraft configuration from `cluster.toml` (validated), the
//! choice of the deliberate bug at start, the order of start-up and shutdown,
//! and the bound on shutdown ([`SHUTDOWN_TASK_WAIT_MS`] per task). Must not:
//! hold request logic (that is the proposer, the read path and `server`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::ClusterConfig;
use openraft::{BasicNode, SnapshotPolicy};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::clock::{clock_task, cluster_time_task, fault_offset_file, StampClock};
use super::proposer::{proposer_task, tick_task, PROPOSE_QUEUE_BATCHES};
use super::read::{reader_task, ResumedLeadership, READ_QUEUE_MAX};
use super::{fatal_to_error, Admission, NodeCore};
use crate::error::NodeError;
use crate::metrics::Counters;
use crate::network::{
    ChannelPool, NetworkFactory, APPEND_ENTRIES_ENTRIES_MAX, SNAPSHOT_CHUNK_BYTES,
};
use crate::store::open_data_dir;
use crate::types::{NodeId, Raft};
use crate::watch::{ResyncReason, WatchHub};

/// How long shutdown waits for each background task before aborting it.
pub const SHUTDOWN_TASK_WAIT_MS: u64 = 5_000;

fn openraft_config(config: &ClusterConfig) -> Result<openraft::Config, NodeError> {
    let r = &config.raft;
    let c = openraft::Config {
        cluster_name: config.cluster.name.clone(),
        heartbeat_interval: r.heartbeat_interval_ms,
        election_timeout_min: r.election_timeout_ms[0],
        election_timeout_max: r.election_timeout_ms[1],
        install_snapshot_timeout: r.install_snapshot_timeout_ms,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(r.snapshot_every_entries.max(1)),
        max_in_snapshot_log_to_keep: r.max_in_snapshot_log_to_keep,
        snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES as u64,
        max_payload_entries: APPEND_ENTRIES_ENTRIES_MAX,
        ..Default::default()
    };
    c.validate()
        .map_err(|e| NodeError::Config(format!("[raft]: {e}")))
}

/// Runs one node until `shutdown` resolves. `bootstrap` initialises the
/// membership from the config's `[[node]]` list only when this node has never
/// been initialised (empty data directory). Set `BOOKING_FAULT_CLOCK=1` to let
/// `<data dir>/clock-offset-ms` (signed ms; or the file
/// [`fault_offset_file`] names under `BOOKING_FAULT_CLOCK_DIR`) shift the
/// leader's stamp clock.
pub async fn run_node(
    config: ClusterConfig,
    node_id: u64,
    bootstrap: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    // Before anything touches storage: the deliberate bugs (if any) change how
    // the data directory is opened.
    crate::bugs::select_from_env().map_err(NodeError::Config)?;
    let me = config
        .node(node_id)
        .ok_or_else(|| {
            NodeError::Config(format!("node id {node_id} is not a [[node]] in the config"))
        })?
        .clone();
    // Before anything touches storage: a node without its certificates
    // refuses to start, naming the missing file (no silent plaintext).
    let tls = cluster_tls::NodeTls::load(&config, node_id)
        .map_err(|e| NodeError::Config(e.to_string()))?;
    if tls.is_none() {
        tracing::warn!(
            node_id,
            addr = %me.addr,
            "[tls] mode = \"off\": gRPC is plaintext and unauthenticated; anyone who reaches \
             this port can change membership or submit holds (experiments on loopback only)"
        );
    }
    let data_dir = config.node_data_dir(node_id);
    let raft_config = Arc::new(openraft_config(&config)?);
    let counters = Arc::new(Counters::default());
    // openraft 0.9 bounds each AppendEntries by the heartbeat interval, the
    // follower's fsync included: warn when a durability step takes half of it.
    counters.fsync_warn_us.store(
        config.raft.heartbeat_interval_ms.saturating_mul(1000) / 2,
        std::sync::atomic::Ordering::Relaxed,
    );
    let hub = Arc::new(WatchHub::default());
    let data = open_data_dir(
        &data_dir,
        &config.cluster.name,
        node_id,
        hub.clone(),
        counters.clone(),
    )?;
    // Read before openraft starts: a committed vote of this node's own
    // resumes its leadership in the same term, without a new blank entry.
    let resumed = ResumedLeadership::from_saved(node_id, &mut data.log.clone()).await?;
    let pool = ChannelPool::new(tls.as_ref().map(|t| t.client.clone()));
    let network = NetworkFactory {
        cluster_name: config.cluster.name.clone(),
        self_id: node_id,
        pool: pool.clone(),
        rpc_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
        snapshot_timeout: Duration::from_millis(config.raft.install_snapshot_timeout_ms),
        counters: counters.clone(),
        incarnation: data.identity.incarnation.clone(),
        witness: data.witness.clone(),
    };
    let raft = Raft::new(
        node_id,
        raft_config,
        network,
        data.log.clone(),
        data.sm.clone(),
    )
    .await
    .map_err(|e| {
        NodeError::Storage(format!(
            "{}: openraft could not start: {e}",
            data_dir.display()
        ))
    })?;

    // A directory created by this start is admitted at once only when it
    // bootstraps the cluster; otherwise the admission task decides.
    if bootstrap && data.identity.created {
        crate::store::identity::mark_admitted(&data_dir)?;
    }
    let admission = Arc::new(Admission::new(
        data.identity.incarnation.clone(),
        data.identity.admitted || (bootstrap && data.identity.created),
        data_dir.clone(),
    ));
    let offset_file = fault_offset_file(&data_dir);
    let command_sets = super::command_sets::CommandSets::from_env(&data_dir)?;
    let fault_clock = offset_file.is_some();
    let (propose_tx, propose_rx) =
        mpsc::channel(config.raft.propose_batch_max.max(1) * PROPOSE_QUEUE_BATCHES);
    let (read_tx, read_rx) = mpsc::channel(READ_QUEUE_MAX);
    let core = Arc::new(NodeCore {
        id: node_id,
        cluster_name: config.cluster.name.clone(),
        raft: raft.clone(),
        sm: data.sm.clone(),
        log: data.log.clone(),
        counters: counters.clone(),
        clock: StampClock::new(offset_file),
        command_sets,
        pool,
        config_addrs: config
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.to_string()))
            .collect(),
        propose_batch_max: config.raft.propose_batch_max.max(1),
        rpc_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
        admission,
        witness: data.witness.clone(),
        handover: Default::default(),
        propose_inflight: Arc::new(tokio::sync::Semaphore::new(super::PROPOSE_INFLIGHT_MAX)),
        resumed,
        propose_tx,
        read_tx,
    });
    drop(data);
    if !core.admission.is_admitted() {
        tracing::warn!(node_id, incarnation = %core.admission.incarnation, "new data directory: not voting or acknowledging entries until admitted (asking the peers)");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let incoming = tonic::transport::server::TcpIncoming::bind(me.addr)
        .map_err(|e| NodeError::Io {
            what: format!("binding gRPC address {}", me.addr),
            source: e,
        })?
        .with_nodelay(Some(true));
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    {
        let mut stop = stop_rx.clone();
        let server = crate::server::router(
            core.clone(),
            tls.map(|t| t.server),
            cluster_tls::Authorizer::from_config(&config),
        )?;
        tasks.push(tokio::spawn(async move {
            let signal = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, signal).await {
                tracing::error!(error = %e, "gRPC server failed");
            }
        }));
    }
    if let Some(addr) = me.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| NodeError::Io {
                what: format!("binding metrics address {addr}"),
                source: e,
            })?;
        let c = core.clone();
        let mut stop = stop_rx.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let c = c.clone();
                async move {
                    let mut text =
                        crate::metrics::render(c.id, &c.counters, &c.raft, c.log.committed_index());
                    let leads = c.current_leader() == Some(c.id);
                    crate::metrics::render_clock(
                        &mut text,
                        c.id,
                        leads && c.clock.cluster_time_agreed(),
                        leads && c.clock.own_clock_agrees(),
                        if leads { c.clock.skew_ms() } else { 0 },
                    );
                    crate::metrics::render_command_sets(
                        &mut text,
                        c.id,
                        c.command_sets.own(),
                        if leads { c.command_set_floor().set } else { 0 },
                    );
                    text
                }
            }),
        );
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
    }
    let linger = Duration::from_micros(config.raft.propose_linger_us);
    tasks.push(tokio::spawn(proposer_task(
        core.clone(),
        propose_rx,
        linger,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(reader_task(
        core.clone(),
        read_rx,
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(tick_task(
        core.clone(),
        Duration::from_millis(config.booking.expiry_sweep_ms),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::leader_log::leader_log_task(
        core.raft.clone(),
        node_id,
        stop_rx.clone(),
    )));
    if !core.admission.is_admitted() {
        tasks.push(tokio::spawn(super::admission::admission_task(
            core.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(cluster_time_task(
        core.clone(),
        stop_rx.clone(),
    )));
    if fault_clock {
        tasks.push(tokio::spawn(clock_task(core.clone(), stop_rx.clone())));
    }

    if bootstrap && !raft.is_initialized().await.map_err(fatal_to_error)? {
        let members: BTreeMap<NodeId, BasicNode> = config
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id,
                    BasicNode {
                        addr: n.addr.to_string(),
                    },
                )
            })
            .collect();
        tracing::info!(node_id, members = ?members.keys().collect::<BTreeSet<_>>(), "initialising the cluster");
        if let Err(e) = raft.initialize(members).await {
            tracing::warn!(error = %e, "initialise refused (already initialised elsewhere?)");
        }
    }
    tracing::info!(node_id, addr = %me.addr, data_dir = %data_dir.display(), "node running");

    // Run until asked to stop, or until openraft stops on its own (a storage
    // error): then report it.
    let mut metrics = raft.metrics();
    let died = async move {
        loop {
            if let Err(e) = &metrics.borrow().running_state {
                return Some(e.to_string());
            }
            if metrics.changed().await.is_err() {
                return None;
            }
        }
    };
    let outcome = tokio::select! {
        _ = shutdown => None,
        d = died => d,
    };
    tracing::info!(node_id, "node stopping");
    // Watch streams end first, or the gRPC server's graceful stop would wait on them.
    core.sm.hub().reset(
        core.sm.read().last_applied.map(|l| l.index).unwrap_or(0),
        ResyncReason::Shutdown,
    );
    let _ = stop_tx.send(true);
    for mut t in tasks {
        // Bounded: a peer holding a connection open must not stall shutdown.
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_TASK_WAIT_MS), &mut t)
            .await
            .is_err()
        {
            t.abort();
        }
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "openraft shutdown");
    }
    let log = core.log.clone();
    drop(core);
    log.flush_all().await.map_err(NodeError::Storage)?;
    match outcome {
        None => Ok(()),
        Some(e) => Err(NodeError::Storage(format!("openraft stopped: {e}"))),
    }
}
