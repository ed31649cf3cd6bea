//! The read path: linearizable reads through coalesced ReadIndex rounds.
//!
//! Owns: the reader task (the first waiter starts a round; waiters that arrive
//! during it wait for the next one), the leader side of a round (leadership
//! confirmed by a quorum, `raft.get_read_log_id`), asking the leader for a read
//! index on a follower, and waiting for the local apply to catch up. Must not:
//! answer a read from a round that began before the reader asked, or use
//! leases (the Jepsen suite skews clocks).
//!
//! A leader that resumed its term at start (see [`ResumedLeadership`]) reads
//! at no less than the last log index it had when it started: openraft's
//! read index there is only `max(committed, first entry of the term)`, and
//! the committed index saved on disk may lag what followers had already
//! applied and served.
//!
//! Bounds: [`READ_QUEUE_MAX`] waiting readers (more are refused with
//! `overloaded`); a read waits [`READ_WAIT_MS`] for its round plus the local
//! apply.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{fatal_to_error, NodeCore};
use crate::error::NodeError;
use crate::metrics::Counters;
use crate::store::GroupId;
use crate::types::NodeId;

/// Readers waiting for a ReadIndex round.
pub const READ_QUEUE_MAX: usize = 16_384;
/// How long a linearizable read waits for its round plus the local apply.
pub const READ_WAIT_MS: u64 = 5_000;

type ReadReply = oneshot::Sender<Result<u64, NodeError>>;

/// A leadership this node resumed at start, in the term its saved vote names.
///
/// Why: openraft 0.9 restarts a node whose saved vote is its own committed
/// vote as leader of the same term, with no new blank entry, and its read
/// index is `max(committed, first entry of the term)`. After a crash or a
/// power cut the committed index read back from disk can lag: the leader
/// tells followers a new commit index before its own `save_committed`, and a
/// follower may have applied and served reads up to it. Reads at the stale
/// index would then go back in time (seen as a per-seat linearizability
/// failure of the `power-loss` nemesis). Every committed entry is in this
/// leader's log (a leader of the term counts itself only after its own
/// flush), so reads in this term wait for the whole log it started with,
/// which it re-commits in its own term. A leadership won later in a new
/// term has its own blank entry and needs no floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResumedLeadership {
    /// The term of the saved vote.
    pub term: u64,
    /// The last log index at start: reads in `term` wait at least for it.
    pub read_index_min: u64,
}

impl ResumedLeadership {
    /// From the saved vote and log: `Some` when the vote is this node's own
    /// committed vote (openraft will resume as leader), else `None`.
    pub async fn from_saved(
        node_id: NodeId,
        log: &mut crate::store::LogStore,
    ) -> Result<Option<ResumedLeadership>, NodeError> {
        use openraft::storage::RaftLogStorage;
        let storage = |e: openraft::StorageError<NodeId>| {
            NodeError::Storage(format!("reading the saved vote and log at start: {e}"))
        };
        let Some(vote) = log.read_vote().await.map_err(storage)? else {
            return Ok(None);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(node_id) {
            return Ok(None);
        }
        let last = log.get_log_state().await.map_err(storage)?.last_log_id;
        Ok(Some(ResumedLeadership {
            term: vote.leader_id().get_term(),
            read_index_min: last.map(|l| l.index).unwrap_or(0),
        }))
    }

    /// The least read index for a round this node ran as leader while its
    /// vote is `(term, leader)`: the floor in the resumed term, else 0.
    pub fn read_index_min(
        resumed: Option<&Self>,
        term: u64,
        leader: Option<NodeId>,
        me: NodeId,
    ) -> u64 {
        match resumed {
            Some(r) if r.term == term && leader == Some(me) => r.read_index_min,
            _ => 0,
        }
    }
}

/// One caller waiting for the next ReadIndex round.
pub(super) struct ReadWaiter {
    reply: ReadReply,
    /// Accept only a round this node ran as leader (the fast path of
    /// `submit_first_send`); a round asked of another node answers an error.
    leader_only: bool,
}

impl NodeCore {
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
    pub(super) async fn join_read_round(&self, leader_only: bool) -> Result<u64, NodeError> {
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
            Ok((read_log_id, _applied)) => {
                let index = read_log_id.map(|l| l.index).unwrap_or(0);
                // The vote now, not at the round's start: if leadership
                // moved to a new term meanwhile the floor does not apply,
                // and the round's own answer stands.
                let (term, leader) = {
                    let m = self.raft.metrics();
                    let m = m.borrow();
                    (
                        m.vote.leader_id().get_term(),
                        m.vote.leader_id().voted_for(),
                    )
                };
                let min =
                    ResumedLeadership::read_index_min(self.resumed.as_ref(), term, leader, self.id);
                Ok(index.max(min))
            }
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
            Some(l) if l == self.id => {
                // A quieted leader starts no round (its heartbeats would
                // renew the followers' leases during a handover).
                self.wait_not_quiet().await;
                (self.leader_read_index().await, true)
            }
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
                    group_id: GroupId::SOLE.0,
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

/// Runs ReadIndex rounds: the first waiter starts a round; waiters that arrive
/// during it wait for the next one (they must not be answered by a round that
/// began before they asked).
pub(super) async fn reader_task(
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
