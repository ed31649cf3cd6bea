//! The durable snapshot: openraft's snapshot meta plus the bytes of
//! `BookingState::snapshot`, in the sled tree `sm` under the key `snapshot`,
//! followed by a blake3 of the whole record.
//!
//! Owns: writing a snapshot durably (flushed before openraft hears of it),
//! loading and checking it (checksum, decode), and building one from the
//! applied state ([`SmStore`] is openraft's `RaftSnapshotBuilder`). Must not:
//! restore a snapshot into the state (that is `sm.rs`, which verifies before
//! it replaces anything).

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::Ordering;

use openraft::{RaftSnapshotBuilder, Snapshot};
use serde::{Deserialize, Serialize};

use super::sm::SmStore;
use super::{encode, sto_err, strip_checksum, with_checksum, KEY_SNAPSHOT, TREE_SM};
use crate::metrics::Counters;
use crate::types::{SnapshotMeta, StorageError, TypeConfig};

/// The durable snapshot: openraft's meta plus `BookingState::snapshot` bytes
/// (which carry their own blake3); the whole record is followed by a blake3
/// so a damaged meta is caught too.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotRecord {
    pub(super) meta: SnapshotMeta,
    pub(super) data: Vec<u8>,
}

impl SmStore {
    /// Writes the snapshot record and flushes it; returns the data.
    pub(super) async fn persist_snapshot(
        &self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, StorageError> {
        let record = SnapshotRecord {
            meta: meta.clone(),
            data,
        };
        let bytes = with_checksum(encode(&record).map_err(sto_err)?);
        self.inner
            .tree
            .insert(KEY_SNAPSHOT, bytes)
            .map_err(|e| sto_err(format!("sled write of tree {TREE_SM}: {e}")))?;
        self.inner
            .db
            .flush_async()
            .await
            .map_err(|e| sto_err(format!("sled flush of {}: {e}", self.inner.path.display())))?;
        Ok(record.data)
    }
}

/// The stored snapshot record, checked, if there is one.
pub(super) fn load_snapshot(
    tree: &sled::Tree,
    path: &Path,
) -> Result<Option<SnapshotRecord>, String> {
    let Some(bytes) = tree
        .get(KEY_SNAPSHOT)
        .map_err(|e| format!("sled read of tree {TREE_SM}: {e}"))?
    else {
        return Ok(None);
    };
    let body = strip_checksum(&bytes)
        .map_err(|e| format!("{}: tree {TREE_SM}, key snapshot: {e}", path.display()))?;
    postcard::from_bytes(body).map(Some).map_err(|e| {
        format!(
            "{}: tree {TREE_SM}, key snapshot: does not decode: {e}",
            path.display()
        )
    })
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, meta) = {
            let s = self.read();
            let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match s.last_applied {
                Some(l) => format!(
                    "{}-{}-{}-{seq}",
                    l.leader_id.term, l.leader_id.node_id, l.index
                ),
                None => format!("none-{seq}"),
            };
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.last_membership.clone(),
                snapshot_id,
            };
            (s.booking.snapshot(), meta)
        };
        let data = self.persist_snapshot(&meta, data).await?;
        Counters::add(&self.inner.counters.snapshots_built, 1);
        tracing::info!(snapshot = %meta.snapshot_id, bytes = data.len(), "snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
