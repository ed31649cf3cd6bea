//! The Raft log store: entries, the vote, the committed id and the last
//! purged id of one Raft group, in the sled trees `log` and `meta` under
//! that group's keys (`group.rs`).
//!
//! Owns: [`LogStore`] (openraft's `RaftLogStorage` and `RaftLogReader`), the
//! check of every log record at start (decodes, no gaps, leftovers of an
//! interrupted purge removed), and the durability promise: entries, the vote,
//! truncations and purges are flushed and then made
//! durable across a power cut ([`DiskSync`]) before openraft hears they are
//! stored (the committed id is written and rides the next flush: it may lag
//! after a power cut, which is safe, see `save_committed`); and the purge rule: the log is never purged past
//! the newest *durable* snapshot (a purge waits up to
//! [`PURGE_WAIT_SNAPSHOT_MS`] for the snapshot that covers it, then purges
//! only what a durable snapshot covers).
//!
//! Must not: interpret entries (commands are opaque here), or acknowledge
//! anything not yet flushed. The one exception is the deliberate bug
//! `ack-without-flush`, which lives in `write_back.rs` and is called at each
//! step unconditionally (a no-op in a normal build).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogState, OptionalSend, RaftLogReader, StorageIOError};
use serde::{Deserialize, Serialize};

use super::durable::DiskSync;
use super::group::GroupId;
use super::write_back::WriteBack;
use super::{
    encode, sto_err, sto_read_err, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, TREE_LOG, TREE_META,
};
use crate::error::NodeError;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// How long a purge waits for a durable snapshot that covers it. openraft
/// purges right after handing an installed snapshot to the state machine,
/// so the purge may arrive while that snapshot is still being written.
pub const PURGE_WAIT_SNAPSHOT_MS: u64 = 10_000;

/// The Raft log, vote and committed id in sled. Cloning shares the trees
/// (the clone is the log reader openraft hands to replication tasks).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<LogInner>,
}

struct LogInner {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    /// Whose entries and records these are: every key read or written goes
    /// through its naming, so no scan or purge reaches another group's keys.
    group: GroupId,
    path: PathBuf,
    /// Makes flushed bytes survive a power cut.
    disk: Arc<DiskSync>,
    /// The last log id of the newest durable snapshot (`snapshot.rs`).
    snapshot_floor: tokio::sync::watch::Receiver<Option<LogId>>,
    /// `false` only for openraft's conformance suite, which purges logs
    /// without any snapshot (see [`LogStore::allow_purge_without_snapshot`]).
    purge_needs_snapshot: AtomicBool,
    /// Last committed index saved, for metrics and `Status` (0 if none).
    committed_index: AtomicU64,
    /// BUG (fault-injection-bugs, ack-without-flush): holds appended entries
    /// and the committed id in this process when that bug is active; does
    /// nothing otherwise (see `write_back.rs`).
    write_back: WriteBack,
}

impl LogStore {
    pub(super) fn open(
        db: sled::Db,
        path: &Path,
        group: GroupId,
        disk: Arc<DiskSync>,
        snapshot_floor: tokio::sync::watch::Receiver<Option<LogId>>,
    ) -> Result<LogStore, NodeError> {
        let tree = |name: &str| {
            db.open_tree(name).map_err(|e| {
                NodeError::data_dir(path, format!("cannot open sled tree {name:?}: {e}"))
            })
        };
        let log = tree(TREE_LOG)?;
        let meta = tree(TREE_META)?;
        let store = LogStore {
            inner: Arc::new(LogInner {
                write_back: WriteBack::new(&log, &meta, group),
                log,
                meta,
                group,
                db: db.clone(),
                path: path.to_path_buf(),
                disk,
                snapshot_floor,
                purge_needs_snapshot: AtomicBool::new(true),
                committed_index: AtomicU64::new(0),
            }),
        };
        store.validate()?;
        Ok(store)
    }

    /// Decodes every record once at start so damage is reported now, with the
    /// path, rather than as a storage error in the middle of replication.
    fn validate(&self) -> Result<(), NodeError> {
        let path = &self.inner.path;
        let bad = |what: String| NodeError::data_dir(path, what);
        self.read_meta::<Vote>(KEY_VOTE).map_err(&bad)?;
        let committed = self.read_meta::<LogId>(KEY_COMMITTED).map_err(&bad)?;
        let purged = self.read_meta::<LogId>(KEY_LAST_PURGED).map_err(&bad)?;
        self.inner
            .committed_index
            .store(committed.map(|l| l.index).unwrap_or(0), Ordering::Relaxed);
        // Entries at or below the purge point may survive a crash in the
        // middle of `purge` (the purge point is written first); drop them.
        let group = self.inner.group;
        if let Some(p) = purged {
            let leftovers = group.log_range(Bound::Unbounded, Bound::Included(p.index));
            for item in self.inner.log.range(leftovers) {
                let (k, _) = item.map_err(|e| bad(format!("sled read of tree {TREE_LOG}: {e}")))?;
                self.inner
                    .log
                    .remove(k)
                    .map_err(|e| bad(format!("sled remove in tree {TREE_LOG}: {e}")))?;
            }
        }
        let mut prev: Option<u64> = purged.map(|p| p.index);
        let whole = group.log_range(Bound::Unbounded, Bound::Unbounded);
        for item in self.inner.log.range(whole) {
            let (k, v) = item.map_err(|e| bad(format!("sled read of tree {TREE_LOG}: {e}")))?;
            let key_index = group.log_index(&k).ok_or_else(|| {
                bad(format!(
                    "tree {TREE_LOG}: a key of {} bytes is not a log index of {group}",
                    k.len()
                ))
            })?;
            let entry: Entry = postcard::from_bytes(&v).map_err(|e| {
                bad(format!(
                    "tree {TREE_LOG}: entry at index {key_index} does not decode: {e}"
                ))
            })?;
            if entry.log_id.index != key_index {
                return Err(bad(format!(
                    "tree {TREE_LOG}: key {key_index} holds the entry of index {}",
                    entry.log_id.index
                )));
            }
            if let Some(p) = prev {
                if key_index != p + 1 {
                    return Err(bad(format!(
                        "tree {TREE_LOG}: gap in the log between index {p} and {key_index}"
                    )));
                }
            }
            prev = Some(key_index);
        }
        Ok(())
    }

    /// Reads this group's record `name` of the tree `meta`.
    fn read_meta<T: for<'de> Deserialize<'de>>(&self, name: &[u8]) -> Result<Option<T>, String> {
        let tree_name = TREE_META;
        let Some(v) = self
            .inner
            .meta
            .get(self.inner.group.record_key(name))
            .map_err(|e| format!("sled read of tree {tree_name}: {e}"))?
        else {
            return Ok(None);
        };
        postcard::from_bytes(&v).map(Some).map_err(|e| {
            format!(
                "tree {tree_name}: {} record {:?} does not decode: {e}",
                self.inner.group,
                String::from_utf8_lossy(name)
            )
        })
    }

    /// Writes this group's record `name` of the tree `meta`, flushed and
    /// synced.
    async fn write_meta<T: Serialize>(&self, name: &[u8], v: &T) -> Result<(), String> {
        self.inner
            .meta
            .insert(self.inner.group.record_key(name), encode(v)?)
            .map_err(|e| format!("sled write: {e}"))?;
        self.flush().await
    }

    /// sled's flush, then the durability step: what follows may be
    /// acknowledged.
    async fn flush(&self) -> Result<(), String> {
        self.inner.disk.flush_and_sync(&self.inner.db).await
    }

    /// The last purged log id on disk.
    pub fn last_purged(&self) -> Result<Option<LogId>, String> {
        self.read_meta::<LogId>(KEY_LAST_PURGED)
    }

    /// Lets `purge` go past the newest durable snapshot. Only for openraft's
    /// conformance suite, which purges logs of a store that has no snapshot;
    /// a node never calls it.
    pub fn allow_purge_without_snapshot(&self) {
        self.inner
            .purge_needs_snapshot
            .store(false, Ordering::Relaxed);
    }

    /// How far `purge(log_id)` may go: `log_id` once a durable snapshot
    /// covers it (waiting up to [`PURGE_WAIT_SNAPSHOT_MS`]), otherwise the
    /// newest durable snapshot's last log id, or nothing.
    async fn purge_bound(&self, log_id: LogId) -> Option<LogId> {
        if !self.inner.purge_needs_snapshot.load(Ordering::Relaxed) {
            return Some(log_id);
        }
        let mut floor = self.inner.snapshot_floor.clone();
        let covered = |f: &Option<LogId>| f.is_some_and(|f| f.index >= log_id.index);
        let waited = tokio::time::timeout(
            Duration::from_millis(PURGE_WAIT_SNAPSHOT_MS),
            floor.wait_for(covered),
        )
        .await;
        if let Ok(Ok(_)) = waited {
            return Some(log_id);
        }
        let f = *self.inner.snapshot_floor.borrow();
        tracing::warn!(
            purge_index = log_id.index,
            snapshot_index = f.map(|f| f.index),
            "no durable snapshot covers the purge; purging only what one covers"
        );
        f.filter(|f| f.index <= log_id.index)
    }

    /// Flushes every tree of the node's sled `Db` (shutdown).
    pub async fn flush_all(&self) -> Result<(), String> {
        // BUG (fault-injection-bugs, ack-without-flush): a clean shutdown
        // writes the buffer back.
        self.inner.write_back.write_back(true)?;
        self.flush().await
    }

    /// The last committed index this node saved (0 if none).
    pub fn committed_index(&self) -> u64 {
        self.inner.committed_index.load(Ordering::Relaxed)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        // BUG (fault-injection-bugs, ack-without-flush): the buffer is the
        // newest part of the log.
        if let Some(buffered) = self.inner.write_back.last_entry_id()? {
            return Ok(Some(buffered));
        }
        let whole = self
            .inner
            .group
            .log_range(Bound::Unbounded, Bound::Unbounded);
        let Some((k, v)) = self
            .inner
            .log
            .range(whole)
            .next_back()
            .transpose()
            .map_err(|e| sto_read_err(format!("sled read: {e}")))?
        else {
            return Ok(None);
        };
        let entry: Entry = postcard::from_bytes(&v).map_err(|e| {
            sto_read_err(format!(
                "{}: tree {TREE_LOG}: entry {:?} does not decode: {e}",
                self.inner.path.display(),
                k
            ))
        })?;
        Ok(Some(entry.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let keys = self
            .inner
            .group
            .log_range(range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in self.inner.log.range(keys) {
            let (k, v) =
                item.map_err(|e| sto_read_err(format!("sled read of tree {TREE_LOG}: {e}")))?;
            let entry: Entry = postcard::from_bytes(&v).map_err(|e| {
                sto_read_err(format!(
                    "{}: tree {TREE_LOG}: entry at key {:?} does not decode: {e}",
                    self.inner.path.display(),
                    k
                ))
            })?;
            out.push(entry);
        }
        // BUG (fault-injection-bugs, ack-without-flush): reads see the buffer
        // (it holds the entries after sled's, or replaces them).
        self.inner.write_back.overlay(out, &range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self
            .read_meta::<LogId>(KEY_LAST_PURGED)
            .map_err(sto_read_err)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_meta(KEY_VOTE, vote)
            .await
            .map_err(|e| StorageError::IO {
                source: StorageIOError::write_vote(AnyError::error(e)),
            })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(KEY_VOTE).map_err(|e| StorageError::IO {
            source: StorageIOError::read_vote(AnyError::error(e)),
        })
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // BUG (fault-injection-bugs, ack-without-flush): the committed id
        // waits in the buffer with the entries it covers.
        if self.inner.write_back.keep_committed(committed) {
            self.inner
                .committed_index
                .store(committed.map(|l| l.index).unwrap_or(0), Ordering::Relaxed);
            return self.inner.write_back.write_back(false).map_err(sto_err);
        }
        match committed {
            // Written, not flushed: it reaches the disk with the next flush
            // (every append's, or sled's own every 500 ms). openraft 0.9 runs
            // this inline in RaftCore before each apply, so a flush and an
            // fsync here stalled every commit round (on the leader, 4 in 10
            // of all fsyncs). A committed id that lags after a power cut is
            // safe and already handled: openraft re-applies less at start and
            // the leader re-commits the rest; a resumed leader reads at its
            // whole log (`node/read.rs`, `ResumedLeadership`). It never runs
            // ahead of the durable log: RaftCore awaits each append's flush
            // callback (`append_to_log`) before it runs a commit covering it.
            Some(c) => {
                self.inner
                    .meta
                    .insert(
                        self.inner.group.record_key(KEY_COMMITTED),
                        encode(&c).map_err(sto_err)?,
                    )
                    .map_err(|e| sto_err(format!("sled write: {e}")))?;
            }
            None => {
                self.inner
                    .meta
                    .remove(self.inner.group.record_key(KEY_COMMITTED))
                    .map_err(|e| sto_err(format!("sled write: {e}")))?;
                self.flush().await.map_err(sto_err)?;
            }
        }
        self.inner
            .committed_index
            .store(committed.map(|l| l.index).unwrap_or(0), Ordering::Relaxed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        // BUG (fault-injection-bugs, ack-without-flush): a buffered
        // committed id is the newest.
        if let Some(buffered) = self.inner.write_back.committed() {
            return Ok(buffered);
        }
        self.read_meta(KEY_COMMITTED).map_err(sto_read_err)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry).map_err(|e| StorageError::IO {
                source: StorageIOError::write_log_entry(entry.log_id, AnyError::error(e)),
            })?;
            encoded.push((entry.log_id.index, bytes));
        }
        // BUG (fault-injection-bugs, ack-without-flush): the entries go to the
        // in-process buffer and openraft hears "stored" at once; sled gets
        // them at the next period boundary. Caught by the selftest's register
        // x kill run (kill -9 of every node): acknowledged writes gone after
        // the restart ("linearizable per seat", acknowledged_bookings_present,
        // replica_hashes_equal).
        let Some(encoded) = self.inner.write_back.keep_entries(encoded) else {
            callback.log_io_completed(Ok(()));
            return self.inner.write_back.write_back(false).map_err(sto_err);
        };
        let mut batch = sled::Batch::default();
        for (index, bytes) in encoded {
            batch.insert(self.inner.group.log_key(index), bytes);
        }
        self.inner
            .log
            .apply_batch(batch)
            .map_err(|e| sto_err(format!("sled write of tree {TREE_LOG}: {e}")))?;
        // Durable before openraft counts it: the callback is the promise.
        let flushed = self.flush().await;
        match flushed {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(sto_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // BUG (fault-injection-bugs, ack-without-flush): buffered entries too.
        self.inner.write_back.truncate(log_id.index);
        let mut batch = sled::Batch::default();
        let keys = self
            .inner
            .group
            .log_range(Bound::Included(log_id.index), Bound::Unbounded);
        for item in self.inner.log.range(keys) {
            let (k, _) = item.map_err(|e| sto_read_err(format!("sled read: {e}")))?;
            batch.remove(k);
        }
        self.inner
            .log
            .apply_batch(batch)
            .map_err(|e| sto_err(format!("sled write: {e}")))?;
        self.flush().await.map_err(sto_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Never past the newest durable snapshot: a restart needs the snapshot
        // or the entries, and after a crash nothing else is left.
        let Some(log_id) = self.purge_bound(log_id).await else {
            return Ok(());
        };
        if self
            .last_purged()
            .map_err(sto_read_err)?
            .is_some_and(|p| p.index >= log_id.index)
        {
            return Ok(());
        }
        // The purge point first: after a crash between the two steps, start-up
        // removes the leftovers (see `validate`).
        self.write_meta(KEY_LAST_PURGED, &log_id)
            .await
            .map_err(sto_err)?;
        // BUG (fault-injection-bugs, ack-without-flush): buffered entries too.
        self.inner.write_back.purge(log_id.index);
        let mut batch = sled::Batch::default();
        let keys = self
            .inner
            .group
            .log_range(Bound::Unbounded, Bound::Included(log_id.index));
        for item in self.inner.log.range(keys) {
            let (k, _) = item.map_err(|e| sto_read_err(format!("sled read: {e}")))?;
            batch.remove(k);
        }
        self.inner
            .log
            .apply_batch(batch)
            .map_err(|e| sto_err(format!("sled write: {e}")))?;
        self.flush().await.map_err(sto_err)
    }
}
