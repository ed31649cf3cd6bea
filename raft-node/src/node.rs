//! The running node: the shared context every RPC handler uses, the proposer
//! (stamping and batching writes on the leader), the ReadIndex coalescer, the
//! expiry `Tick` proposer, the stamp clock, and `run_node`.
//!
//! Owns: every background task of a node and their bounds; the decision of
//! which errors a client sees. Must not: decide booking semantics (commands are
//! opaque here) or hold the state-machine lock across an `.await`.
//!
//! Bounds (what happens when full):
//! - proposer queue `propose_batch_max * PROPOSE_QUEUE_BATCHES` commands:
//!   a submit that does not fit is refused with `overloaded`
//!   (RESOURCE_EXHAUSTED, not applied); a `SubmitBatch` fits whole or not at all.
//! - entries in flight (proposed, not yet answered) `PROPOSE_INFLIGHT_MAX`: the
//!   proposer waits, so the queue fills and submits are refused as above.
//! - one entry carries at most `propose_batch_max` commands; it lingers at
//!   most `propose_linger_us` for more (below 1 ms: one scheduler yield, since
//!   tokio timers have millisecond resolution).
//! - a write waits `PROPOSE_WAIT_MS` for its entry to apply, then answers
//!   `outcome_unknown` (the entry may still commit; a retry is deduplicated).
//! - read waiters `READ_QUEUE_MAX`: more are refused with `overloaded`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cluster_config::ClusterConfig;
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use state_machine::{Batch, Command, Outcome, Request};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;

use crate::error::NodeError;
use crate::metrics::Counters;
use crate::network::{ChannelPool, NetworkFactory, SNAPSHOT_CHUNK_BYTES};
use crate::store::{open_data_dir, LogStore, SmStore};
use crate::types::{EntryResponse, NodeId, Raft};
use crate::watch::{ResyncReason, WatchHub};

/// Queue depth of the proposer, in batches of `propose_batch_max` commands.
pub const PROPOSE_QUEUE_BATCHES: usize = 8;
/// Entries proposed and not yet answered.
pub const PROPOSE_INFLIGHT_MAX: usize = 64;
/// How long a write waits for its entry to be applied.
pub const PROPOSE_WAIT_MS: u64 = 10_000;
/// Readers waiting for a ReadIndex round.
pub const READ_QUEUE_MAX: usize = 16_384;
/// How long a linearizable read waits for its round plus the local apply.
pub const READ_WAIT_MS: u64 = 5_000;
/// How often the clock-offset file is re-read when fault injection is on.
pub const CLOCK_OFFSET_REFRESH_MS: u64 = 100;
/// How long shutdown waits for each background task before aborting it.
pub const SHUTDOWN_TASK_WAIT_MS: u64 = 5_000;
/// Name of the clock-offset file in a node's data directory.
pub const CLOCK_OFFSET_FILE: &str = "clock-offset-ms";
/// Environment variable that enables the clock-offset hook (`1`).
pub const FAULT_CLOCK_ENV: &str = "BOOKING_FAULT_CLOCK";

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The leader's clock for stamps: wall time plus an injected offset (fault
/// tests only), never going backwards.
pub struct StampClock {
    last_stamp_ms: Mutex<u64>,
    offset_ms: AtomicI64,
    /// `Some` only with `BOOKING_FAULT_CLOCK=1`: the file to read the offset from.
    offset_file: Option<PathBuf>,
}

impl StampClock {
    pub fn new(offset_file: Option<PathBuf>) -> StampClock {
        let clock = StampClock {
            last_stamp_ms: Mutex::new(0),
            offset_ms: AtomicI64::new(0),
            offset_file,
        };
        clock.refresh_offset();
        clock
    }

    /// Re-reads the offset file (missing or unparsable: offset 0).
    pub fn refresh_offset(&self) {
        let Some(path) = &self.offset_file else {
            return;
        };
        let offset = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Wall clock plus the injected offset, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        (wall_ms() as i64)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .max(0) as u64
    }

    /// The stamp [`StampClock::stamp`] would give now, without taking it.
    pub fn peek(&self, floor_ms: u64) -> u64 {
        let last = *self.last_stamp_ms.lock().unwrap_or_else(|p| p.into_inner());
        self.now_ms().max(last).max(floor_ms)
    }

    /// `max(now_ms + clock_offset_ms, last_stamp_ms, floor_ms)` (DESIGN §3):
    /// `floor_ms` is the state machine's clock, so a new leader whose clock is
    /// behind never stamps below the log time already reached.
    pub fn stamp(&self, floor_ms: u64) -> u64 {
        let mut last = self.last_stamp_ms.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.now_ms().max(*last).max(floor_ms);
        *last = s;
        s
    }
}

type WriteReply = oneshot::Sender<Result<(Outcome, u64), NodeError>>;

struct Pending {
    request: Request,
    reply: WriteReply,
}

type ReadReply = oneshot::Sender<Result<u64, NodeError>>;

/// One caller waiting for the next ReadIndex round.
struct ReadWaiter {
    reply: ReadReply,
    /// Accept only a round this node ran as leader (the fast path of
    /// `submit_first_send`); a round asked of another node answers an error.
    leader_only: bool,
}

/// Everything a handler needs. Shared as `Arc<NodeCore>`.
pub struct NodeCore {
    pub id: NodeId,
    pub cluster_name: String,
    pub raft: Raft,
    pub sm: SmStore,
    pub log: LogStore,
    pub counters: Arc<Counters>,
    pub clock: StampClock,
    pub pool: ChannelPool,
    /// Addresses from cluster.toml, a fallback for leader hints.
    pub config_addrs: BTreeMap<NodeId, String>,
    pub propose_batch_max: usize,
    pub rpc_timeout: Duration,
    propose_tx: mpsc::Sender<Pending>,
    read_tx: mpsc::Sender<ReadWaiter>,
}

impl NodeCore {
    /// The address of `id`: from the membership, else from the config.
    pub fn addr_of(&self, id: NodeId) -> Option<String> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        m.membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
            .or_else(|| self.config_addrs.get(&id).cloned())
    }

    /// The known leader, if any.
    pub fn current_leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// The error to answer when this node is not the leader.
    pub fn not_leader(&self, leader: Option<NodeId>) -> NodeError {
        match leader {
            Some(l) if l != self.id => match self.addr_of(l) {
                Some(addr) => NodeError::NotLeader {
                    leader_id: l,
                    leader_addr: addr,
                },
                None => NodeError::NoLeader,
            },
            _ => NodeError::NoLeader,
        }
    }

    fn forward_err(&self, f: &ForwardToLeader<NodeId, BasicNode>) -> NodeError {
        match (f.leader_id, &f.leader_node) {
            (Some(id), Some(n)) if id != self.id => NodeError::NotLeader {
                leader_id: id,
                leader_addr: n.addr.clone(),
            },
            (Some(id), None) => self.not_leader(Some(id)),
            _ => NodeError::NoLeader,
        }
    }

    /// Ok if this node is the leader; the redirect error otherwise.
    pub fn ensure_leader(&self) -> Result<(), NodeError> {
        match self.current_leader() {
            Some(l) if l == self.id => Ok(()),
            other => Err(self.not_leader(other)),
        }
    }

    /// Proposes `requests` (one or more entries, batched with other callers'
    /// commands) and answers each one's outcome and log index, in order.
    pub async fn submit(&self, requests: Vec<Request>) -> Result<Vec<(Outcome, u64)>, NodeError> {
        if requests.is_empty() {
            return Err(NodeError::InvalidArgument("empty batch".into()));
        }
        self.ensure_leader()?;
        // Reserve room for the whole batch first, so it is queued whole or
        // refused whole (never half proposed).
        let mut permits = Vec::with_capacity(requests.len());
        for _ in 0..requests.len() {
            match self.propose_tx.try_reserve() {
                Ok(p) => permits.push(p),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    Counters::add(
                        &self.counters.proposals_rejected_full,
                        requests.len() as u64,
                    );
                    return Err(NodeError::Overloaded("proposer queue is full".into()));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(NodeError::ShuttingDown),
            }
        }
        let mut replies = Vec::with_capacity(requests.len());
        for (permit, request) in permits.into_iter().zip(requests) {
            let (tx, rx) = oneshot::channel();
            permit.send(Pending { request, reply: tx });
            replies.push(rx);
        }
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.map_err(|_| NodeError::ShuttingDown)??);
        }
        Ok(out)
    }

    /// A client's first send of a request id (see `SubmitRequest.first_send`):
    /// a refusal the leader can prove current is answered without a log write
    /// (`true` in the answer, with the applied index it reflects); anything
    /// else is proposed exactly as [`NodeCore::submit`] does.
    pub async fn submit_first_send(
        &self,
        request: Request,
    ) -> Result<(Outcome, u64, bool), NodeError> {
        if let Some((outcome, applied)) = self.answer_without_log_write(&request).await {
            Counters::add(&self.counters.answered_without_log_write, 1);
            return Ok((outcome, applied, true));
        }
        let (outcome, index) = self
            .submit(vec![request])
            .await?
            .pop()
            .expect("one answer per request");
        Ok((outcome, index, false))
    }

    /// The fast path. Safe only because every step holds (ARCHITECTURE.md,
    /// "Refusals without a log write"):
    /// 1. this node leads; a follower never answers a write (no leases either:
    ///    leadership is confirmed by a quorum round, never by a clock);
    /// 2. a ReadIndex round started after the request arrived, and the local
    ///    apply reached its index, so the state reflects every write
    ///    acknowledged before the request (the answer is linearizable at the
    ///    applied index);
    /// 3. no deadline (expiry, lapse, scheduled opening, admission) is due by
    ///    the stamp a proposal would carry now, so the log would not
    ///    first change the state this answer reads;
    /// 4. `BookingState::precheck` answers: a hold refusal or a remembered
    ///    outcome, decided by the same code as `apply`.
    ///
    /// A cheap look at the local state first means only likely refusals pay
    /// for the ReadIndex round; successes go straight to the proposer. Any
    /// doubt (round failed, leadership moved, state changed) returns `None`:
    /// the log then answers, which is always correct.
    async fn answer_without_log_write(&self, request: &Request) -> Option<(Outcome, u64)> {
        if self.current_leader() != Some(self.id) {
            return None;
        }
        if self.sm.read().booking.precheck(request).is_none() {
            return None;
        }
        let read_index = self.join_read_round(true).await.ok()?;
        self.wait_applied(read_index, Duration::from_millis(READ_WAIT_MS))
            .await
            .ok()?;
        if self.current_leader() != Some(self.id) {
            return None;
        }
        let s = self.sm.read();
        // The stamp a proposal would carry now (ahead of the wall clock after
        // a clock step back).
        let stamp_ms = self.clock.peek(s.booking.clock_ms());
        let applied = s.last_applied.map(|l| l.index).unwrap_or(0);
        let answer = if applied < read_index
            || s.booking
                .next_deadline_ms()
                .is_some_and(|due| due <= stamp_ms)
        {
            None
        } else {
            s.booking
                .precheck(request)
                .map(|outcome| (outcome, applied))
        };
        drop(s);
        if answer.is_none() {
            Counters::add(&self.counters.fast_path_fallbacks, 1);
        }
        answer
    }

    /// Waits until a linearizable read may be served from local state:
    /// one coalesced ReadIndex round (on the leader, or asked of it), then
    /// the local apply catching up. Returns the read index.
    pub async fn linearizable_barrier(&self) -> Result<u64, NodeError> {
        let index = self.read_index_coalesced().await?;
        self.wait_applied(index, Duration::from_millis(READ_WAIT_MS))
            .await?;
        Counters::add(&self.counters.reads_linearizable, 1);
        Ok(index)
    }

    /// Joins the next ReadIndex round (see `reader_task`) and returns its index.
    pub async fn read_index_coalesced(&self) -> Result<u64, NodeError> {
        self.join_read_round(false).await
    }

    /// Joins the next ReadIndex round; with `leader_only`, a round that ran on
    /// another node (leadership moved meanwhile) is an error (the fast path of
    /// `submit_first_send` needs a round this node ran as leader).
    async fn join_read_round(&self, leader_only: bool) -> Result<u64, NodeError> {
        let (tx, rx) = oneshot::channel();
        match self.read_tx.try_send(ReadWaiter {
            reply: tx,
            leader_only,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(NodeError::Overloaded("read queue is full".into()))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(NodeError::ShuttingDown),
        }
        tokio::time::timeout(Duration::from_millis(READ_WAIT_MS), rx)
            .await
            .map_err(|_| NodeError::OutcomeUnknown("read index round timed out".into()))?
            .map_err(|_| NodeError::ShuttingDown)?
    }

    /// Waits until the local state machine applied `index`.
    pub async fn wait_applied(&self, index: u64, wait: Duration) -> Result<(), NodeError> {
        if self.sm.read().last_applied.map(|l| l.index).unwrap_or(0) >= index {
            return Ok(());
        }
        self.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| NodeError::OutcomeUnknown(format!("waiting to apply index {index}: {e}")))
    }

    /// The leader side of a ReadIndex round: confirm leadership with a quorum,
    /// return the index reads must wait for.
    async fn leader_read_index(&self) -> Result<u64, NodeError> {
        Counters::add(&self.counters.read_index_rounds, 1);
        match self.raft.get_read_log_id().await {
            Ok((read_log_id, _applied)) => Ok(read_log_id.map(|l| l.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                Err(self.forward_err(&f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => Err(
                NodeError::OutcomeUnknown(format!("leadership not confirmed: {e}")),
            ),
            Err(RaftError::Fatal(e)) => Err(fatal_to_error(e)),
        }
    }

    /// One ReadIndex round for every waiter queued: locally on the leader, by
    /// RPC to the leader on a follower. Also says whether this node ran it as
    /// leader.
    async fn read_round(&self) -> (Result<u64, NodeError>, bool) {
        match self.current_leader() {
            Some(l) if l == self.id => (self.leader_read_index().await, true),
            other => (self.read_round_remote(other).await, false),
        }
    }

    async fn read_round_remote(&self, leader: Option<NodeId>) -> Result<u64, NodeError> {
        match leader {
            Some(l) => {
                let addr = self.addr_of(l).ok_or(NodeError::NoLeader)?;
                let channel = self.pool.get(&addr).map_err(NodeError::Internal)?;
                let mut client = proto::raft::raft_client::RaftClient::new(channel);
                let mut req = tonic::Request::new(proto::raft::ReadIndexRequest {
                    cluster_name: self.cluster_name.clone(),
                    from_node_id: self.id,
                    to_node_id: l,
                });
                req.set_timeout(self.rpc_timeout);
                match client.read_index(req).await {
                    Ok(r) => Ok(r.into_inner().read_index),
                    Err(s) => Err(status_to_read_error(&s)),
                }
            }
            None => Err(NodeError::NoLeader),
        }
    }
}

/// A leader's refusal of a ReadIndex RPC, as this node should report it.
fn status_to_read_error(s: &tonic::Status) -> NodeError {
    let md = s.metadata();
    let get = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    match (
        get(crate::error::META_LEADER_ID).and_then(|v| v.parse().ok()),
        get(crate::error::META_LEADER_ADDR),
    ) {
        (Some(leader_id), Some(leader_addr)) => NodeError::NotLeader {
            leader_id,
            leader_addr,
        },
        _ if s.code() == tonic::Code::Unavailable || s.code() == tonic::Code::DeadlineExceeded => {
            NodeError::NoLeader
        }
        _ => NodeError::OutcomeUnknown(format!(
            "read index from leader: {}: {}",
            s.code(),
            s.message()
        )),
    }
}

pub(crate) fn fatal_to_error(e: openraft::error::Fatal<NodeId>) -> NodeError {
    match e {
        openraft::error::Fatal::Stopped => NodeError::ShuttingDown,
        other => NodeError::Storage(other.to_string()),
    }
}

/// Answers every caller of one entry.
fn answer_entry(
    core: &NodeCore,
    replies: Vec<WriteReply>,
    result: Result<
        Result<
            openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
            ClientWriteError<NodeId, BasicNode>,
        >,
        NodeError,
    >,
) {
    match result {
        Ok(Ok(resp)) => {
            let EntryResponse { outcomes, indexes } = resp.data;
            assert_eq!(
                outcomes.len(),
                replies.len(),
                "entry {} answered {} outcomes for {} requests",
                resp.log_id.index,
                outcomes.len(),
                replies.len()
            );
            for (i, (reply, outcome)) in replies.into_iter().zip(outcomes).enumerate() {
                // A deduplicated retry answers with the index of the entry
                // that first applied it, not this one.
                let index = indexes.get(i).copied().unwrap_or(resp.log_id.index);
                let _ = reply.send(Ok((outcome, index)));
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            // Rejected before append, or appended and then truncated by a new
            // leader: either way it can never commit.
            for reply in replies {
                let _ = reply.send(Err(core.forward_err(&f)));
            }
        }
        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
            for reply in replies {
                let _ = reply.send(Err(NodeError::Internal(format!(
                    "unexpected membership error on a write: {e}"
                ))));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let class_unknown = matches!(e, NodeError::OutcomeUnknown(_));
            for reply in replies {
                let _ = reply.send(Err(if class_unknown {
                    NodeError::OutcomeUnknown(text.clone())
                } else {
                    NodeError::ShuttingDown
                }));
            }
        }
    }
}

/// Collects queued commands into entries and proposes them in queue order.
async fn proposer_task(
    core: Arc<NodeCore>,
    mut rx: mpsc::Receiver<Pending>,
    linger: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let inflight = Arc::new(Semaphore::new(PROPOSE_INFLIGHT_MAX));
    let max = core.propose_batch_max.max(1);
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => break },
            _ = stop.changed() => break,
        };
        let mut batch = vec![first];
        let drain = |rx: &mut mpsc::Receiver<Pending>, batch: &mut Vec<Pending>| {
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        };
        drain(&mut rx, &mut batch);
        if batch.len() < max && !linger.is_zero() {
            if linger >= Duration::from_millis(1) {
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(p)) => {
                            batch.push(p);
                            drain(&mut rx, &mut batch);
                        }
                        _ => break,
                    }
                }
            } else {
                tokio::task::yield_now().await;
                drain(&mut rx, &mut batch);
            }
        }
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        // Callers that gave up (client hung up) are still proposed: a retry of
        // theirs is deduplicated, and dropping here would not save much.
        let (requests, replies): (Vec<Request>, Vec<WriteReply>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let floor_ms = core.sm.read().booking.clock_ms();
        let stamp_ms = core.clock.stamp(floor_ms);
        Counters::add(&core.counters.entries_proposed, 1);
        Counters::add(&core.counters.commands_proposed, requests.len() as u64);
        // `client_write_ff` only enqueues into openraft, in order, so entries
        // reach the log in stamp order; the wait for the outcome is spawned.
        let rx_result = core
            .raft
            .client_write_ff(Batch { stamp_ms, requests })
            .await;
        let core2 = core.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match rx_result {
                Err(fatal) => Err(fatal_to_error(fatal)),
                Ok(rx) => {
                    match tokio::time::timeout(Duration::from_millis(PROPOSE_WAIT_MS), rx).await {
                        Err(_) => Err(NodeError::OutcomeUnknown(format!(
                            "entry not applied within {PROPOSE_WAIT_MS} ms"
                        ))),
                        Ok(Err(_)) => Err(NodeError::ShuttingDown),
                        Ok(Ok(r)) => Ok(r),
                    }
                }
            };
            answer_entry(&core2, replies, result);
        });
    }
}

/// Runs ReadIndex rounds: the first waiter starts a round; waiters that arrive
/// during it wait for the next one (they must not be answered by a round that
/// began before they asked).
async fn reader_task(
    core: Arc<NodeCore>,
    mut rx: mpsc::Receiver<ReadWaiter>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            r = rx.recv() => match r { Some(r) => r, None => break },
            _ = stop.changed() => break,
        };
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let (result, as_leader) = core.read_round().await;
        for w in waiters {
            let _ = w.reply.send(match &result {
                Ok(_) if w.leader_only && !as_leader => Err(NodeError::OutcomeUnknown(
                    "the read index round ran on another node".into(),
                )),
                Ok(i) => Ok(*i),
                Err(e) => Err(clone_read_error(e)),
            });
        }
    }
}

fn clone_read_error(e: &NodeError) -> NodeError {
    match e {
        NodeError::NotLeader {
            leader_id,
            leader_addr,
        } => NodeError::NotLeader {
            leader_id: *leader_id,
            leader_addr: leader_addr.clone(),
        },
        NodeError::NoLeader => NodeError::NoLeader,
        NodeError::ShuttingDown => NodeError::ShuttingDown,
        NodeError::Overloaded(s) => NodeError::Overloaded(s.clone()),
        other => NodeError::OutcomeUnknown(other.to_string()),
    }
}

/// On the leader, every `expiry_sweep_ms`: if a deadline has passed, propose
/// one `Tick` (at most one in flight; dropped when the queue is full, since a
/// lost tick changes nothing a client asked for).
async fn tick_task(core: Arc<NodeCore>, sweep: Duration, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(sweep.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        if core.current_leader() != Some(core.id) {
            continue;
        }
        let due = core.sm.read().booking.next_deadline_ms();
        let Some(due) = due else { continue };
        if due > core.clock.now_ms() {
            continue;
        }
        let tick = Request {
            client_id: 0,
            request_id: 0,
            command: Command::Tick,
        };
        Counters::add(&core.counters.ticks_proposed, 1);
        match core.submit(vec![tick]).await {
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "tick not applied"),
        }
    }
}

async fn clock_task(core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(CLOCK_OFFSET_REFRESH_MS));
    loop {
        tokio::select! {
            _ = interval.tick() => core.clock.refresh_offset(),
            _ = stop.changed() => break,
        }
    }
}

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
        ..Default::default()
    };
    c.validate()
        .map_err(|e| NodeError::Config(format!("[raft]: {e}")))
}

/// Runs one node until `shutdown` resolves. `bootstrap` initialises the
/// membership from the config's `[[node]]` list only when this node has never
/// been initialised (empty data directory). Set `BOOKING_FAULT_CLOCK=1` to let
/// `<data dir>/clock-offset-ms` (signed ms) shift the leader's stamp clock.
pub async fn run_node(
    config: ClusterConfig,
    node_id: u64,
    bootstrap: bool,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    // Before anything touches storage: the deliberate bugs (if any) change how
    // the data directory is opened.
    crate::fault_bugs::select_from_env().map_err(NodeError::Config)?;
    let me = config
        .node(node_id)
        .ok_or_else(|| {
            NodeError::Config(format!("node id {node_id} is not a [[node]] in the config"))
        })?
        .clone();
    let data_dir = config.node_data_dir(node_id);
    let raft_config = Arc::new(openraft_config(&config)?);
    let counters = Arc::new(Counters::default());
    let hub = Arc::new(WatchHub::default());
    let data = open_data_dir(
        &data_dir,
        &config.cluster.name,
        node_id,
        hub.clone(),
        counters.clone(),
    )?;
    let pool = ChannelPool::default();
    let network = NetworkFactory {
        cluster_name: config.cluster.name.clone(),
        self_id: node_id,
        pool: pool.clone(),
        rpc_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
        snapshot_timeout: Duration::from_millis(config.raft.install_snapshot_timeout_ms),
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

    let fault_clock = std::env::var(FAULT_CLOCK_ENV)
        .map(|v| v == "1")
        .unwrap_or(false);
    let offset_file = fault_clock.then(|| data_dir.join(CLOCK_OFFSET_FILE));
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
        pool,
        config_addrs: config
            .nodes
            .iter()
            .map(|n| (n.id, n.addr.to_string()))
            .collect(),
        propose_batch_max: config.raft.propose_batch_max.max(1),
        rpc_timeout: Duration::from_millis(config.raft.rpc_timeout_ms),
        propose_tx,
        read_tx,
    });
    drop(data);

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
        let server = crate::server::router(core.clone());
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
                    crate::metrics::render(c.id, &c.counters, &c.raft, c.log.committed_index())
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

/// The role name for `Status`.
pub fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}
