//! openraft's type configuration for the booking node, and the aliases the
//! rest of the crate uses.
//!
//! Owns: the choice of log payload (`state_machine::Batch`: one leader stamp and
//! the commands it batched) and of the per-entry response (one `Outcome` per
//! request, same order). Must not: add fields that the state machine does not
//! need to decide; every replica applies exactly the entry payload.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The node's openraft types: log entries carry a `Batch`; nodes are known
    /// by `u64` ids and a gRPC address (`BasicNode::addr`, "host:port").
    pub TypeConfig:
        D = state_machine::Batch,
        R = EntryResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Raft node id.
pub type NodeId = u64;
/// Raft node description: its gRPC address.
pub type Node = openraft::BasicNode;
/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;

/// What applying one log entry answered: one `Outcome` per request of the
/// entry's batch, in order, and for each the log index of the entry that
/// decided it (this entry's, or for a deduplicated retry the entry that first
/// applied the request). Empty for blank and membership entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryResponse {
    pub outcomes: Vec<state_machine::Outcome>,
    #[serde(default)]
    pub indexes: Vec<u64>,
}
