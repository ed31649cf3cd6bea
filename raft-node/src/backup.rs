//! Backups and restores (`bookctl snapshot save`, `booking restore`).
//!
//! Owns: on a live leader, the snapshot a backup is made of ([`backup_snapshot`]:
//! at or after a linearizable read index, so every write acknowledged before
//! the request is in it); offline, preparing the data directory of one node
//! of a *new* cluster from a backup's bytes ([`restore_data_dir`]).
//!
//! Must not: read or write the backup file's format (the client crate's
//! `backup` module owns it), or touch a directory that is not empty.
//!
//! A restored directory holds what a node that installed the snapshot would
//! hold: the snapshot file, the log purged up to its last log id, that id
//! committed, a vote of that term (so the first election is in a later term
//! and no entry of an earlier term can follow the snapshot's), an identity
//! record of the new cluster, admitted (the restore creates the cluster, as a
//! bootstrap does), and the membership of the new cluster's file: every node
//! of it a voter.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, Membership, StoredMembership, Vote};
use state_machine::BookingState;

use crate::error::NodeError;
use crate::metrics::Counters;
use crate::node::NodeCore;
use crate::store::{identity, open_data_dir};
use crate::types::{LogId, NodeId, SnapshotMeta};
use crate::watch::WatchHub;

/// How long a backup waits for the snapshot that covers its read index.
pub const BACKUP_SNAPSHOT_WAIT_MS: u64 = 60_000;

/// The snapshot a backup streams.
pub struct BackupSnapshot {
    pub last_log_id: LogId,
    /// `BookingState::snapshot` bytes.
    pub data: Vec<u8>,
    /// blake3 of the state they restore to.
    pub state_hash: [u8; 32],
}

/// Leader only: a durable snapshot that includes every entry committed
/// before the call (a linearizable read index); builds one when the newest
/// is older, waiting at most [`BACKUP_SNAPSHOT_WAIT_MS`].
pub async fn backup_snapshot(core: &Arc<NodeCore>) -> Result<BackupSnapshot, NodeError> {
    core.ensure_leader()?;
    let read_index = core.linearizable_barrier().await?;
    let covered = |core: &NodeCore| {
        core.sm
            .snapshot_floor()
            .is_some_and(|f| f.index >= read_index)
    };
    if !covered(core) {
        core.raft
            .trigger()
            .snapshot()
            .await
            .map_err(crate::node::fatal_to_error)?;
        let deadline = Instant::now() + Duration::from_millis(BACKUP_SNAPSHOT_WAIT_MS);
        while !covered(core) {
            if Instant::now() >= deadline {
                return Err(NodeError::OutcomeUnknown(format!(
                    "no snapshot covering index {read_index} within {BACKUP_SNAPSHOT_WAIT_MS} ms"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut sm = core.sm.clone();
    let snapshot = sm
        .get_current_snapshot()
        .await
        .map_err(|e| NodeError::Storage(e.to_string()))?
        .ok_or_else(|| NodeError::Internal("the snapshot floor has no snapshot".into()))?;
    let last_log_id = snapshot
        .meta
        .last_log_id
        .ok_or_else(|| NodeError::Internal("the current snapshot has no last log id".into()))?;
    let data = snapshot.snapshot.into_inner();
    // Restoring verifies the bytes' own checksum and gives the hash a
    // restored cluster must reproduce; CPU work, off the async workers.
    let (data, state_hash) = tokio::task::spawn_blocking(move || {
        let state = BookingState::restore(&data).map_err(|e| {
            NodeError::Internal(format!("the current snapshot does not restore: {e}"))
        })?;
        Ok::<_, NodeError>((data, state.state_hash()))
    })
    .await
    .map_err(|e| NodeError::Internal(format!("hashing the snapshot: {e}")))??;
    Ok(BackupSnapshot {
        last_log_id,
        data,
        state_hash,
    })
}

/// The snapshot a restore installs: its last log id and bytes.
pub struct RestoreFrom {
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub last_log_node: NodeId,
    pub data: Vec<u8>,
}

/// Prepares `path` (absent or empty) as node `node_id` of the new cluster
/// `cluster_name` whose voters are `voters` (id → gRPC address), holding the
/// backup's state. Returns the restored state's hash.
pub async fn restore_data_dir(
    path: &Path,
    cluster_name: &str,
    node_id: NodeId,
    voters: &BTreeMap<NodeId, String>,
    from: &RestoreFrom,
) -> Result<[u8; 32], NodeError> {
    if std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_some()) {
        return Err(NodeError::data_dir(
            path,
            "is not empty: a restore only prepares new data directories (move this one away first)"
                .to_string(),
        ));
    }
    if !voters.contains_key(&node_id) {
        return Err(NodeError::Config(format!(
            "node {node_id} is not in the new cluster's file"
        )));
    }
    let state = BookingState::restore(&from.data)
        .map_err(|e| NodeError::Config(format!("the backup's state does not restore: {e}")))?;
    std::fs::create_dir_all(path).map_err(|e| NodeError::data_dir(path, e.to_string()))?;
    let data = open_data_dir(
        path,
        cluster_name,
        node_id,
        Arc::new(WatchHub::default()),
        Arc::new(Counters::default()),
    )?;
    identity::mark_admitted(path)?;
    let log_id = LogId::new(
        CommittedLeaderId::new(from.last_log_term, from.last_log_node),
        from.last_log_index,
    );
    let nodes: BTreeMap<NodeId, BasicNode> = voters
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr.clone())))
        .collect();
    let voter_ids: BTreeSet<NodeId> = voters.keys().copied().collect();
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(
            Some(log_id),
            Membership::new(vec![voter_ids], nodes),
        ),
        snapshot_id: format!(
            "restored-{}-{}-{}",
            from.last_log_index, from.last_log_term, from.last_log_node
        ),
    };
    let storage = |e: openraft::StorageError<NodeId>| NodeError::data_dir(path, e.to_string());
    let mut sm = data.sm.clone();
    sm.install_snapshot(&meta, Box::new(Cursor::new(from.data.clone())))
        .await
        .map_err(storage)?;
    let mut log = data.log.clone();
    log.save_vote(&Vote::new(from.last_log_term, node_id))
        .await
        .map_err(storage)?;
    log.save_committed(Some(log_id)).await.map_err(storage)?;
    log.purge(log_id).await.map_err(storage)?;
    Ok(state.state_hash())
}
