//! The client's own view types: what `status`, `watch` and the membership
//! calls return, and the read consistency. Built from protobuf messages in
//! the `client` module so no caller sees a generated type. (A write's answer,
//! [`crate::Submitted`], lives with the write in `client/write.rs`.)
//!
//! Must not: hold behaviour beyond small accessors.

use serde::Serialize;
use state_machine::SeatChange;

/// Read consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read started (ReadIndex).
    #[default]
    Linearizable,
    /// The answering node's local state, possibly behind; the returned
    /// applied index says how far.
    Stale,
}

/// One member in a node's view of the membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub node_id: u64,
    /// gRPC address `host:port` as recorded in the membership.
    pub addr: String,
    /// True for a voter, false for a learner.
    pub voter: bool,
}

/// One node's view of the cluster (its `Status` answer).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    pub node_id: u64,
    pub cluster_name: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    /// The leader's `host:port`, empty when unknown.
    pub leader_addr: String,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub members: Vec<Member>,
    /// Leader only: `(node_id, matched index)` per peer.
    pub replication: Vec<(u64, Option<u64>)>,
    /// Hex of the state machine's blake3 hash.
    pub state_hash: String,
    /// Submits this node answered without a log write since it started.
    pub answered_without_log_write: u64,
    /// "admitted", "pending" or "refused" (a new data directory under the id
    /// of a voter: its disk was emptied or replaced; remove and re-add it).
    pub admission: String,
    /// Hex id of the node's data directory incarnation.
    pub incarnation: String,
    /// Leader only: whether a majority of the voters' clocks agreed on
    /// cluster time at the last sampling, and whether this node's own clock
    /// was part of that agreement.
    pub cluster_time_agreed: bool,
    pub own_clock_agrees: bool,
    /// Leader only: this node's wall clock minus cluster time, ms.
    pub clock_skew_ms: i64,
    /// The highest command set this node's build applies (0: a build from
    /// before the version handshake).
    pub command_set: u32,
    /// Leader only (0 elsewhere): the lowest command set among the members;
    /// commands of a higher set are refused as `upgrade_pending`.
    pub cluster_command_set: u32,
}

impl NodeStatus {
    /// True when this node says it is the leader.
    pub fn is_leader(&self) -> bool {
        self.role.eq_ignore_ascii_case("leader")
    }
}

/// One endpoint's answer to `Status`, or why it gave none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointStatus {
    /// The endpoint asked (`http://host:port`).
    pub endpoint: String,
    /// Its answer, or the error text when it did not answer in time.
    pub status: Result<NodeStatus, String>,
}

/// Every known endpoint's view, and the leader they point at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// One entry per endpoint asked, in the client's endpoint order.
    pub endpoints: Vec<EndpointStatus>,
    /// The status of the node that says it is leader with the highest term.
    pub leader: Option<NodeStatus>,
}

impl ClusterStatus {
    /// The leader's id, if some node says it leads.
    pub fn leader_id(&self) -> Option<u64> {
        self.leader.as_ref().map(|s| s.node_id)
    }
}

/// The result of a membership change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MembershipChange {
    /// Log index of the membership entry (0 when nothing changed).
    pub log_index: u64,
    /// The membership after the change.
    pub members: Vec<Member>,
}

/// Why a watch stream ended with a resync.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    Unspecified,
    /// `from_index` is older than the node's ring of recent changes.
    TooOld,
    /// The subscriber did not keep up and was dropped.
    SlowSubscriber,
    /// The node installed a snapshot; changes were skipped.
    SnapshotInstalled,
    /// The node is shutting down.
    Shutdown,
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// The watched event's seat changes from one applied log entry.
    Changes {
        log_index: u64,
        changes: Vec<SeatChange>,
    },
    /// The stream cannot continue without a gap; always the last item. Read
    /// the availability (with its applied index) and watch again from
    /// `applied_index + 1`.
    Resync {
        reason: ResyncReason,
        oldest_index: u64,
        applied_index: u64,
    },
}
