//! The running node: the shared context every RPC handler uses
//! ([`NodeCore`]: leader and redirect answers), and its parts:
//! - `clock`: the stamp clock (log time follows cluster time), the leader's
//!   sampling of its peers' clocks (and their command sets), and the
//!   clock-offset hook;
//! - `command_sets`: the version handshake (which command sets the members
//!   apply; `upgrade_pending` for a command some member could not decode);
//! - `marzullo`: the interval most clocks agree on (pure);
//! - `proposer`: stamping and batching writes on the leader, the expiry `Tick`;
//! - `read`: linearizable reads through coalesced ReadIndex rounds;
//! - `fast_path`: refusals answered without a log write;
//! - `handover`: quieting a leader so another voter can win (leader transfer);
//! - `startup`: [`run_node`], wiring and shutdown.
//!
//! Owns (this file): [`NodeCore`], who leads, the redirect errors a client
//! sees, openraft's fatal errors as `NodeError`, role names. The module as a
//! whole owns every background task of a node and their bounds. Must not:
//! decide booking semantics (commands are opaque here) or hold the
//! state-machine lock across an `.await`.
//!
//! Bounds (what happens when full; each is declared in its submodule):
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

mod admission;
mod clock;
pub mod command_sets;
mod fast_path;
mod handover;
mod marzullo;
mod proposer;
mod read;
mod startup;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::ForwardToLeader;
use openraft::{BasicNode, ServerState};
use tokio::sync::mpsc;

use crate::error::NodeError;
use crate::metrics::Counters;
use crate::network::ChannelPool;
use crate::store::{LogStore, SmStore};
use crate::types::{NodeId, Raft};

pub use admission::{Admission, ADMISSION_POLL_MS};
pub use clock::{
    fault_offset_file, PeerSample, StampClock, CLOCK_AGREEMENT_FRESH_MS, CLOCK_OFFSET_FILE,
    CLOCK_OFFSET_REFRESH_MS, CLOCK_SAMPLE_INTERVAL_MS, CLOCK_SAMPLE_RTT_MAX_MS, CLOCK_TOLERANCE_MS,
    FAULT_CLOCK_DIR_ENV, FAULT_CLOCK_ENV,
};
pub use handover::{Handover, HANDOVER_PAUSE_MS_MAX};
pub use proposer::{
    request_bytes, COMMAND_BYTES_MAX, ENTRY_BYTES_MAX, PROPOSE_INFLIGHT_MAX, PROPOSE_QUEUE_BATCHES,
    PROPOSE_WAIT_MS,
};
pub use read::{READ_QUEUE_MAX, READ_WAIT_MS};
pub use startup::{run_node, SHUTDOWN_TASK_WAIT_MS};

use proposer::Pending;
use read::ReadWaiter;
pub use read::ResumedLeadership;

/// Everything a handler needs. Shared as `Arc<NodeCore>`.
pub struct NodeCore {
    pub id: NodeId,
    pub cluster_name: String,
    pub raft: Raft,
    pub sm: SmStore,
    pub log: LogStore,
    pub counters: Arc<Counters>,
    pub clock: StampClock,
    /// This node's command set and, on a leader, the members' (`command_sets`).
    pub command_sets: command_sets::CommandSets,
    pub pool: ChannelPool,
    /// Addresses from cluster.toml, a fallback for leader hints.
    pub config_addrs: BTreeMap<NodeId, String>,
    pub propose_batch_max: usize,
    pub rpc_timeout: Duration,
    /// Whether this data directory's incarnation may vote and acknowledge entries.
    pub admission: Arc<Admission>,
    /// The peers' incarnations this node saw hold entries (`store::witness`).
    pub witness: Arc<crate::store::witness::Witness>,
    /// Pauses asked by a leadership handover (`handover.rs`).
    pub handover: Handover,
    /// Entries proposed and not yet answered ([`PROPOSE_INFLIGHT_MAX`]
    /// permits): the proposer takes one per entry; a handover takes them all
    /// to know that every proposed entry was applied.
    propose_inflight: Arc<tokio::sync::Semaphore>,
    /// Set when this start resumes a leadership saved on disk (see
    /// [`ResumedLeadership`]): reads in that term wait for its whole log.
    pub resumed: Option<ResumedLeadership>,
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
}

pub(crate) fn fatal_to_error(e: openraft::error::Fatal<NodeId>) -> NodeError {
    match e {
        openraft::error::Fatal::Stopped => NodeError::ShuttingDown,
        other => NodeError::Storage(other.to_string()),
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
