//! The state-machine store: the in-memory `BookingState`, what it has
//! applied, and the glue that applies committed entries to it.
//!
//! Owns: [`SmStore`] (openraft's `RaftStateMachine`), the one lock over
//! [`SmState`] (a reader sees the booking state and its applied id together),
//! publishing each entry's seat changes to the watch hub, restoring the
//! newest snapshot at start and installing one sent by the leader, and the
//! state hash cached per applied index ([`SmStore::applied_and_hash`]). The
//! durable snapshot record itself is `snapshot.rs`.
//!
//! Off the apply path: apply takes the lock for writing, so nothing slow may
//! hold it. A snapshot or a state hash copies the saved fields under the
//! read lock ([`SmStore::saved_copy`], tens of ms on a big state) and
//! encodes or hashes the copy on a blocking thread after the lock is
//! released; a received snapshot is decoded, and a replaced state dropped,
//! outside the lock too.
//!
//! Must not: decide anything about bookings (`BookingState::apply` does), read
//! a clock or hold the lock across an `.await`. The one exception is the
//! deliberate bug `clock-in-apply`, marked at its site; the check is a
//! constant `false` in a normal build.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, OptionalSend, Snapshot};
use state_machine::{BookingState, SavedCopy};

use super::group::GroupId;
use super::snapshot::{Persisted, SnapshotFiles, SnapshotRecord};
use super::{sto_err, sto_read_err, TREE_SM};
use crate::bugs::Bug;
use crate::error::NodeError;
use crate::metrics::Counters;
use crate::types::{
    Entry, EntryResponse, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::watch::{ResyncReason, WatchHub};

/// What the state machine has applied. Guarded by one lock so a reader sees
/// the booking state and its applied id together.
pub struct SmState {
    pub booking: BookingState,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

/// The state machine and its durable snapshot. Cloning shares it (the clone is
/// also the snapshot builder).
#[derive(Clone)]
pub struct SmStore {
    pub(super) inner: Arc<SmInner>,
}

pub(super) struct SmInner {
    /// The sled directory (error messages; its parent is the data directory).
    pub(super) path: PathBuf,
    /// The durable snapshot files of the data directory.
    pub(super) snapshots: SnapshotFiles,
    state: RwLock<SmState>,
    /// Distinguishes snapshots built at the same log id.
    pub(super) snapshot_seq: AtomicU64,
    hub: Arc<WatchHub>,
    pub(super) counters: Arc<Counters>,
    /// The state hash at one applied index. An async mutex so concurrent
    /// callers (every `Status`: `/readyz`, `/v1/cluster`, `bookctl status`)
    /// wait for one hashing instead of each copying the state.
    hash: tokio::sync::Mutex<Option<HashAt>>,
}

/// A state hash and the applied index it was computed at.
pub type HashAt = (u64, [u8; 32]);

/// What a copy of the state was taken at ([`SmStore::saved_copy`]).
pub(super) struct CopyAt {
    pub(super) copy: SavedCopy,
    pub(super) last_applied: Option<LogId>,
    pub(super) last_membership: StoredMembership,
}

impl SmStore {
    /// Opens the state machine of `group` in the data directory `data_dir`
    /// (sled at `path`): restores its newest snapshot and publishes that
    /// snapshot's last log id on `floor`.
    pub(super) fn open(
        db: &sled::Db,
        path: &Path,
        data_dir: &Path,
        group: GroupId,
        hub: Arc<WatchHub>,
        counters: Arc<Counters>,
        floor: tokio::sync::watch::Sender<Option<LogId>>,
    ) -> Result<SmStore, NodeError> {
        let tree = db.open_tree(TREE_SM).map_err(|e| {
            NodeError::data_dir(path, format!("cannot open sled tree {TREE_SM:?}: {e}"))
        })?;
        let (snapshots, record) = SnapshotFiles::open(data_dir, group, tree, floor)
            .map_err(|e| NodeError::data_dir(data_dir, e))?;
        let mut state = SmState {
            booking: BookingState::new(),
            last_applied: None,
            last_membership: Default::default(),
        };
        if let Some(record) = record {
            state.booking = BookingState::restore(&record.data).map_err(|e| {
                NodeError::data_dir(
                    data_dir,
                    format!("snapshot {} does not restore: {e}", record.meta.snapshot_id),
                )
            })?;
            state.last_applied = record.meta.last_log_id;
            state.last_membership = record.meta.last_membership;
        }
        hub.reset(
            state.last_applied.map(|l| l.index).unwrap_or(0),
            ResyncReason::TooOld,
        );
        Ok(SmStore {
            inner: Arc::new(SmInner {
                path: path.to_path_buf(),
                snapshots,
                state: RwLock::new(state),
                snapshot_seq: AtomicU64::new(0),
                hub,
                counters,
                hash: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Read access to the applied state (stale reads, status, tick deadline).
    pub fn read(&self) -> RwLockReadGuard<'_, SmState> {
        // Poisoning means a panic inside apply: an invariant broke and the
        // process is going down anyway; reading what is there is no worse.
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SmState> {
        self.inner.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// BUG helper (fault-injection-bugs, clock-in-apply): this replica's wall
    /// clock plus the offset the clock nemesis wrote next to its data. Called
    /// only when that bug is active.
    fn local_clock_ms(&self) -> u64 {
        let offset_file = self
            .inner
            .path
            .parent()
            .and_then(crate::node::fault_offset_file);
        crate::node::StampClock::new(offset_file).now_ms()
    }

    /// A copy of the saved state and the log id it is at, taken under the
    /// read lock (how long is `booking_state_copy_lock_held_max_ms`); encode
    /// or hash it after, off the lock.
    pub(super) fn saved_copy(&self) -> CopyAt {
        let s = self.read();
        let started = Instant::now();
        let cpu_started = crate::metrics::thread_cpu_time();
        let copy = CopyAt {
            copy: s.booking.saved_copy(),
            last_applied: s.last_applied,
            last_membership: s.last_membership.clone(),
        };
        drop(s);
        let held_us = started.elapsed().as_micros() as u64;
        let cpu_us = crate::metrics::thread_cpu_time()
            .saturating_sub(cpu_started)
            .as_micros() as u64;
        let c = &self.inner.counters;
        // Two relaxed maxima, not one atomic pair: a racing copy may pair
        // a held time with the other's CPU time; good enough for a gauge.
        if c.state_copy_lock_held_max_us
            .fetch_max(held_us, std::sync::atomic::Ordering::Relaxed)
            < held_us
        {
            c.state_copy_cpu_of_max_us
                .store(cpu_us, std::sync::atomic::Ordering::Relaxed);
        }
        copy
    }

    /// The applied index and the state hash at it: from the cache when
    /// nothing was applied since it was computed, otherwise hashed from a
    /// copy on a blocking thread (the state lock is held only for the copy).
    pub async fn applied_and_hash(&self) -> Result<HashAt, NodeError> {
        let mut cache = self.inner.hash.lock().await;
        let applied = self.read().last_applied.map(|l| l.index).unwrap_or(0);
        if let Some(at) = *cache {
            if at.0 == applied {
                return Ok(at);
            }
        }
        let at = self.saved_copy();
        let index = at.last_applied.map(|l| l.index).unwrap_or(0);
        let hash = tokio::task::spawn_blocking(move || at.copy.state_hash())
            .await
            .map_err(|e| NodeError::Internal(format!("hashing the state: {e}")))?;
        *cache = Some((index, hash));
        Ok((index, hash))
    }

    /// Offers a hash computed elsewhere (a snapshot build) to the cache; kept
    /// when newer than what is cached and no one is hashing right now.
    pub(super) fn offer_hash(&self, at: HashAt) {
        if let Ok(mut cache) = self.inner.hash.try_lock() {
            if cache.is_none_or(|c| c.0 < at.0) {
                *cache = Some(at);
            }
        }
    }

    /// The last log id of the newest durable snapshot.
    pub fn snapshot_floor(&self) -> Option<LogId> {
        self.inner.snapshots.floor()
    }

    /// The watch hub this store publishes applied changes to.
    pub fn hub(&self) -> &Arc<WatchHub> {
        &self.inner.hub
    }
}

impl RaftStateMachine<TypeConfig> for SmStore {
    type SnapshotBuilder = SmStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let s = self.read();
        Ok((s.last_applied, s.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<EntryResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut responses = Vec::new();
        let mut published = Vec::new();
        let mut commands = 0u64;
        let waited;
        let locked_at;
        {
            let mut s = self.write();
            locked_at = Instant::now();
            waited = locked_at - started;
            for entry in entries {
                let index = entry.log_id.index;
                s.last_applied = Some(entry.log_id);
                let response = match entry.payload {
                    EntryPayload::Blank => EntryResponse::default(),
                    EntryPayload::Normal(batch) => {
                        // BUG (fault-injection-bugs, clock-in-apply): log time
                        // taken from this replica's clock (with the nemesis's
                        // offset) instead of the leader's stamp, so replicas
                        // diverge. Caught by the selftest's expiry x clock run:
                        // "replica_hashes_equal" (and "no_confirm_past_expiry").
                        let batch = if crate::bugs::active(Bug::ClockInApply) {
                            state_machine::Batch {
                                stamp_ms: self.local_clock_ms(),
                                ..batch
                            }
                        } else {
                            batch
                        };
                        let out = s.booking.apply(index, &batch);
                        assert_eq!(
                            out.outcomes.len(),
                            batch.requests.len(),
                            "state machine answered {} outcomes for {} requests at index {index}",
                            out.outcomes.len(),
                            batch.requests.len()
                        );
                        commands += batch.requests.len() as u64;
                        published.push((index, out.changes));
                        EntryResponse {
                            outcomes: out.outcomes,
                            indexes: out.indexes,
                        }
                    }
                    EntryPayload::Membership(m) => {
                        s.last_membership = StoredMembership::new(Some(entry.log_id), m);
                        EntryResponse::default()
                    }
                };
                responses.push(response);
            }
        }
        let c = &self.inner.counters;
        c.record_apply_lock(waited, locked_at.elapsed());
        Counters::add(&c.entries_applied, responses.len() as u64);
        Counters::add(&c.commands_applied, commands);
        Counters::add(&c.apply_time_us, started.elapsed().as_micros() as u64);
        for (index, changes) in published {
            self.inner.hub.publish(index, changes);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        // Verify before anything is replaced: a damaged transfer must not
        // become this node's state. Decoding a big snapshot takes a while:
        // on a blocking thread, so it stalls no runtime worker.
        let (data, restored) = tokio::task::spawn_blocking(move || {
            let restored = BookingState::restore(&data);
            (data, restored)
        })
        .await
        .map_err(|e| sto_read_err(format!("restoring a received snapshot: {e}")))?;
        let booking = restored.map_err(|e| {
            sto_read_err(format!(
                "snapshot {} received from the leader does not restore: {e}",
                meta.snapshot_id
            ))
        })?;
        // Durable first, then in memory: after a crash in between, start-up
        // restores this same snapshot. One older than the durable one (a
        // leader's snapshot that lost a race with a newer install) is not
        // written over it; the state still follows openraft.
        let record = SnapshotRecord {
            meta: meta.clone(),
            data,
        };
        if let Persisted::Superseded = self
            .inner
            .snapshots
            .persist(&record)
            .await
            .map_err(sto_err)?
        {
            tracing::warn!(snapshot = %meta.snapshot_id, "installed snapshot is not newer than the durable one; kept the durable one");
        }
        let replaced = {
            let mut s = self.write();
            s.last_applied = meta.last_log_id;
            s.last_membership = meta.last_membership.clone();
            std::mem::replace(&mut s.booking, booking)
        };
        // Freeing a big state takes time too: not under the lock, not on a
        // runtime worker.
        tokio::task::spawn_blocking(move || drop(replaced));
        Counters::add(&self.inner.counters.snapshots_installed, 1);
        self.inner.hub.reset(
            meta.last_log_id.map(|l| l.index).unwrap_or(0),
            ResyncReason::SnapshotInstalled,
        );
        tracing::info!(snapshot = %meta.snapshot_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let record = self
            .inner
            .snapshots
            .load_current()
            .await
            .map_err(sto_read_err)?;
        Ok(record.map(|r| Snapshot {
            meta: r.meta,
            snapshot: Box::new(Cursor::new(r.data)),
        }))
    }
}
