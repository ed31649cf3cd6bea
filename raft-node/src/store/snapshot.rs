//! The durable snapshot: a file in the node's data directory holding
//! openraft's snapshot meta plus the bytes of `BookingState::snapshot`,
//! followed by a blake3 of the whole record.
//!
//! Owns: [`SnapshotFiles`] (writing one durably, finding the newest at start,
//! reading it back), building a snapshot from the applied state ([`SmStore`]
//! is openraft's `RaftSnapshotBuilder`), and the *snapshot floor*: the last
//! log id of the newest durable snapshot, which the log store waits for
//! before it purges (`log.rs`).
//!
//! Files: `snapshot-<index, 20 digits>-<term>-<leader node>.snap`, named by
//! their last log id so names sort by index (group 0; a group N > 0 would
//! prefix `group-<N>-`, see `group.rs`, and see only its own files). Writing one: `<name>.tmp`,
//! written and fsynced, renamed to `<name>`, the directory fsynced; only then
//! is it the current snapshot and is the previous file removed, so a power
//! cut at any point leaves the previous snapshot or the new one, whole.
//!
//! Ordering: one snapshot is written at a time (an async mutex over the
//! current one), and a snapshot whose last log id is not newer than the
//! current durable one is not written at all (a build that read the state
//! before an install of a newer snapshot finished, for example): the newer
//! one stays. Older data directories kept the snapshot in the sled tree `sm`
//! under the key `snapshot`; it is read when no file exists and removed once
//! a file supersedes it.
//!
//! Must not: restore a snapshot into the state (that is `sm.rs`, which
//! verifies before it replaces anything).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use openraft::{RaftSnapshotBuilder, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex};

use super::group::GroupId;
use super::sm::SmStore;
use super::{encode, sto_err, sto_read_err, strip_checksum, with_checksum, KEY_SNAPSHOT, TREE_SM};
use crate::metrics::Counters;
use crate::types::{LogId, SnapshotMeta, StorageError, TypeConfig};

const SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// The durable snapshot: openraft's meta plus `BookingState::snapshot` bytes
/// (which carry their own blake3); the whole record is followed by a blake3
/// so a damaged meta is caught too.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotRecord {
    pub(super) meta: SnapshotMeta,
    pub(super) data: Vec<u8>,
}

/// Where the current durable snapshot is.
#[derive(Clone, Debug)]
enum Location {
    File(PathBuf),
    /// An older data directory's record in the sled tree `sm`.
    Legacy,
}

#[derive(Clone, Debug)]
struct Current {
    last_log_id: Option<LogId>,
    location: Location,
}

/// The snapshot files of one Raft group in a data directory.
pub(super) struct SnapshotFiles {
    dir: PathBuf,
    /// What this group's file names start with (`snapshot-` for group 0).
    prefix: String,
    /// The sled tree `sm` of older directories (legacy snapshot record).
    legacy: sled::Tree,
    /// This group's key of the legacy record in `legacy`.
    legacy_key: Vec<u8>,
    /// The newest durable snapshot; held while one is written.
    current: Mutex<Option<Current>>,
    /// The newest durable snapshot's last log id, for the log store's purge.
    floor: watch::Sender<Option<LogId>>,
}

/// What [`SnapshotFiles::persist`] did.
pub(super) enum Persisted {
    /// The snapshot is durable and current.
    Written,
    /// A snapshot at least as new was already durable; nothing written.
    Superseded,
}

fn file_name(prefix: &str, last_log_id: Option<LogId>) -> String {
    match last_log_id {
        Some(l) => format!(
            "{prefix}{:020}-{}-{}{SUFFIX}",
            l.index, l.leader_id.term, l.leader_id.node_id
        ),
        None => format!("{prefix}{:020}-none{SUFFIX}", 0),
    }
}

fn decode_record(bytes: &[u8], what: &str) -> Result<SnapshotRecord, String> {
    let body = strip_checksum(bytes).map_err(|e| format!("{what}: {e}"))?;
    postcard::from_bytes(body).map_err(|e| format!("{what}: does not decode: {e}"))
}

impl SnapshotFiles {
    /// Finds `group`'s newest snapshot in `dir` (removing leftovers of its
    /// interrupted writes and its superseded files; other groups' files are
    /// not looked at) and returns it with the store. A newest file that is
    /// damaged refuses to start, naming it.
    pub(super) fn open(
        dir: &Path,
        group: GroupId,
        legacy: sled::Tree,
        floor: watch::Sender<Option<LogId>>,
    ) -> Result<(SnapshotFiles, Option<SnapshotRecord>), String> {
        let prefix = group.snapshot_file_prefix();
        let legacy_key = group.record_key(KEY_SNAPSHOT);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(TMP_SUFFIX) {
                // An interrupted write: never renamed, so never current.
                std::fs::remove_file(entry.path())
                    .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            } else if name.starts_with(&prefix) && name.ends_with(SUFFIX) {
                names.push(name);
            }
        }
        names.sort();
        let (record, current) = match names.pop() {
            Some(newest) => {
                let path = dir.join(&newest);
                let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let record = decode_record(&bytes, &path.display().to_string())?;
                // Superseded by the newest, which is durable (renamed and
                // its directory fsynced before anything else happened).
                for old in names {
                    let _ = std::fs::remove_file(dir.join(old));
                }
                let current = Current {
                    last_log_id: record.meta.last_log_id,
                    location: Location::File(path),
                };
                (Some(record), Some(current))
            }
            None => {
                let bytes = legacy
                    .get(&legacy_key)
                    .map_err(|e| format!("sled read of tree {TREE_SM}: {e}"))?;
                match bytes {
                    None => (None, None),
                    Some(bytes) => {
                        let what = format!("{}: tree {TREE_SM}, key snapshot", dir.display());
                        let record = decode_record(&bytes, &what)?;
                        let current = Current {
                            last_log_id: record.meta.last_log_id,
                            location: Location::Legacy,
                        };
                        (Some(record), Some(current))
                    }
                }
            }
        };
        floor.send_replace(current.as_ref().and_then(|c| c.last_log_id));
        Ok((
            SnapshotFiles {
                dir: dir.to_path_buf(),
                prefix,
                legacy,
                legacy_key,
                current: Mutex::new(current),
                floor,
            },
            record,
        ))
    }

    /// Writes `record` durably unless a snapshot at least as new already is.
    pub(super) async fn persist(&self, record: &SnapshotRecord) -> Result<Persisted, String> {
        let mut current = self.current.lock().await;
        if let Some(c) = &*current {
            if record.meta.last_log_id <= c.last_log_id {
                return Ok(Persisted::Superseded);
            }
        }
        let bytes = with_checksum(encode(record)?);
        let name = file_name(&self.prefix, record.meta.last_log_id);
        let dir = self.dir.clone();
        let path = tokio::task::spawn_blocking(move || super::write_durably(&dir, &name, &bytes))
            .await
            .map_err(|e| format!("the snapshot write task failed: {e}"))?
            .map_err(|e| format!("{}: writing a snapshot: {e}", self.dir.display()))?;
        let previous = current.replace(Current {
            last_log_id: record.meta.last_log_id,
            location: Location::File(path),
        });
        self.floor.send_replace(record.meta.last_log_id);
        // The new one is durable: the previous one may go now.
        match previous.map(|p| p.location) {
            Some(Location::File(old)) => {
                if let Err(e) = std::fs::remove_file(&old) {
                    tracing::warn!(file = %old.display(), "could not remove a superseded snapshot: {e}");
                }
            }
            Some(Location::Legacy) => {
                self.legacy
                    .remove(&self.legacy_key)
                    .map_err(|e| format!("sled write of tree {TREE_SM}: {e}"))?;
            }
            None => {}
        }
        Ok(Persisted::Written)
    }

    /// The current durable snapshot, read back and checked.
    pub(super) async fn load_current(&self) -> Result<Option<SnapshotRecord>, String> {
        let current = self.current.lock().await;
        let Some(c) = &*current else {
            return Ok(None);
        };
        match &c.location {
            Location::File(path) => {
                let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                decode_record(&bytes, &path.display().to_string()).map(Some)
            }
            Location::Legacy => {
                let bytes = self
                    .legacy
                    .get(&self.legacy_key)
                    .map_err(|e| format!("sled read of tree {TREE_SM}: {e}"))?
                    .ok_or_else(|| format!("tree {TREE_SM}: the snapshot vanished"))?;
                decode_record(&bytes, &format!("tree {TREE_SM}, key snapshot")).map(Some)
            }
        }
    }

    /// The last log id of the newest durable snapshot.
    pub(super) fn floor(&self) -> Option<LogId> {
        *self.floor.borrow()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SmStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Copy under the state lock (cheap: no encoding), encode off it on a
        // blocking thread, so apply never waits for the encoding (`sm.rs`).
        let at = self.saved_copy();
        let seq = self.inner.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match at.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: at.last_applied,
            last_membership: at.last_membership,
            snapshot_id,
        };
        let copy = at.copy;
        let (data, hash) = tokio::task::spawn_blocking(move || copy.snapshot_and_hash())
            .await
            .map_err(|e| sto_err(format!("encoding the snapshot: {e}")))?;
        self.offer_hash((meta.last_log_id.map(|l| l.index).unwrap_or(0), hash));
        let record = SnapshotRecord { meta, data };
        let files = &self.inner.snapshots;
        match files.persist(&record).await.map_err(sto_err)? {
            Persisted::Written => {
                let counters = &self.inner.counters;
                Counters::add(&counters.snapshots_built, 1);
                let bytes = record.data.len() as u64;
                counters.snapshot_bytes_last.store(bytes, Ordering::Relaxed);
                Counters::raise_max(&counters.snapshot_bytes_max, bytes);
                tracing::info!(snapshot = %record.meta.snapshot_id, bytes = record.data.len(), "snapshot built");
                Ok(Snapshot {
                    meta: record.meta,
                    snapshot: Box::new(Cursor::new(record.data)),
                })
            }
            Persisted::Superseded => {
                // An install of a newer snapshot finished while this one was
                // being built: the newer one stays, and is what was "built".
                tracing::info!(snapshot = %record.meta.snapshot_id, "snapshot build superseded by a newer durable snapshot");
                let newer = files
                    .load_current()
                    .await
                    .map_err(sto_read_err)?
                    .ok_or_else(|| sto_read_err("the superseding snapshot vanished".into()))?;
                Ok(Snapshot {
                    meta: newer.meta,
                    snapshot: Box::new(Cursor::new(newer.data)),
                })
            }
        }
    }
}
