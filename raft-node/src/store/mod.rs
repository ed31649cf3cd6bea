//! The sled-backed stores openraft runs on, and the data directory that holds
//! them.
//!
//! Owns: opening a node's data directory ([`open_data_dir`]: identity check,
//! one sled `Db`, every record decoded once), the names of its sled trees and
//! keys, and the encoding helpers every store shares (postcard, blake3
//! checksums, storage errors).
//!
//! Layout of `<data_dir>/node-<id>/` (the one Raft group a node runs, group
//! 0; [`group`] names where a group N > 0 would go, in the same trees and
//! directory):
//! - `booking-node.meta`: JSON identity record (format, cluster name, node id),
//!   written on first start; a directory for another cluster or node refuses to
//!   start ([`identity`]).
//! - `peer-incarnations.json`: JSON witness record, peer id → the last
//!   incarnation seen holding entries ([`witness`]).
//! - `sled/`: one sled `Db` with trees `log` (big-endian index → postcard
//!   `Entry`), `meta` (`vote`, `committed`, `last_purged`: postcard) and `sm`
//!   (empty; older directories kept their snapshot there under `snapshot`).
//! - `snapshot-<index>-<term>-<node>.snap`: the newest durable snapshot,
//!   postcard `SnapshotRecord` followed by its blake3 (`snapshot`).
//!
//! Submodules:
//! - [`group`]: [`GroupId`] and the per-group names of keys and snapshot
//!   files (group 0 is exactly the layout above).
//! - [`identity`]: the identity record.
//! - [`witness`]: which incarnation of each peer this node saw hold entries
//!   (`peer-incarnations.json`, read by the admission of emptied disks).
//! - [`log`]: [`LogStore`], the Raft log, vote and committed id.
//! - `durable`: [`DiskSync`](durable::DiskSync), what makes a flush survive a
//!   power cut (fsync of new blobs and of changed directories, fdatasync of
//!   sled's `db` file).
//! - `write_back`: the deliberate bug `ack-without-flush` the log store calls
//!   (compiled only with the feature `fault-injection-bugs`; a no-op type
//!   otherwise).
//! - [`sm`]: [`SmStore`], the in-memory `BookingState` and its apply glue.
//! - `snapshot`: the durable snapshot record, building and loading it.
//!
//! Durability: entries, the vote, truncations and purges are flushed (sled's
//! flush) and synced (`durable`) before openraft hears they are stored (the
//! committed id is written and becomes durable with the next flush; a lagging
//! one is safe, see `LogStore::save_committed`); snapshots are files written
//! tmp → fsync → rename →
//! fsync of the directory. The log is never purged past the newest durable
//! snapshot, and a directory whose purge point is past its snapshot (written
//! by an older build) refuses to start. The state
//! machine itself lives in memory; its durable form is the newest snapshot, and
//! a restart restores it and re-applies the committed log after it (openraft
//! does that, using `read_committed`). So `applied_state` reports the
//! snapshot's log id after a restart, never an id whose effects were lost.
//! (The deliberate bug `ack-without-flush` breaks exactly this promise: see
//! `write_back`.)
//!
//! Must not: interpret commands (that is `state_machine`). Caveat: sled's own
//! flush uses `sync_file_range` on Linux, which survives a process kill but
//! not a power loss (sled issue #1452): hence `durable`.

mod durable;
pub mod group;
pub mod identity;
pub mod log;
pub mod sm;
mod snapshot;
pub mod witness;
mod write_back;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, StorageIOError};
use serde::Serialize;

use crate::error::NodeError;
use crate::metrics::Counters;
use crate::types::StorageError;
use crate::watch::WatchHub;

pub use group::GroupId;
pub use identity::{FORMAT_VERSION, IDENTITY_FILE};
pub use log::LogStore;
pub use sm::{SmState, SmStore};

const TREE_LOG: &str = "log";
const TREE_META: &str = "meta";
const TREE_SM: &str = "sm";
// Record names; a group's key for one is `GroupId::record_key(name)`.
const KEY_VOTE: &[u8] = b"vote";
const KEY_COMMITTED: &[u8] = b"committed";
const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_SNAPSHOT: &[u8] = b"snapshot";
const CHECKSUM_BYTES: usize = 32;

fn sto_err(msg: String) -> StorageError {
    StorageError::IO {
        source: StorageIOError::write(AnyError::error(msg)),
    }
}

fn sto_read_err(msg: String) -> StorageError {
    StorageError::IO {
        source: StorageIOError::read(AnyError::error(msg)),
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(v).map_err(|e| format!("encode: {e}"))
}

/// Writes `bytes` to `dir/name` so that a crash or power cut leaves the old
/// file or the new one: a temporary file, fsync, rename, fsync of the
/// directory. The identity record, the witness record and snapshots use it.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

fn with_checksum(mut bytes: Vec<u8>) -> Vec<u8> {
    let sum = blake3::hash(&bytes);
    bytes.extend_from_slice(sum.as_bytes());
    bytes
}

fn strip_checksum(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < CHECKSUM_BYTES {
        return Err(format!(
            "record of {} bytes is shorter than its checksum",
            bytes.len()
        ));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    if blake3::hash(body).as_bytes() != sum {
        return Err("checksum mismatch (blake3)".to_string());
    }
    Ok(body)
}

/// An opened node data directory: the identity checked, sled opened, every
/// record decoded once.
pub struct DataDir {
    pub path: PathBuf,
    pub log: LogStore,
    pub sm: SmStore,
    /// This directory's incarnation and admission (`booking-node.meta`).
    pub identity: identity::IdentityInfo,
    /// The peers' incarnations this directory saw hold entries.
    pub witness: Arc<witness::Witness>,
}

/// Opens (creating on first start) `path` for `cluster_name`/`node_id`.
/// Refuses a foreign or damaged directory with an error naming the file.
pub fn open_data_dir(
    path: &Path,
    cluster_name: &str,
    node_id: u64,
    hub: Arc<WatchHub>,
    counters: Arc<Counters>,
) -> Result<DataDir, NodeError> {
    let identity = identity::check_identity(path, cluster_name, node_id)?;
    let witness =
        witness::Witness::open(path, identity.witnessed_since_creation, identity.admitted)?;
    let sled_path = path.join("sled");
    let db = open_sled(&sled_path)?;
    let disk = Arc::new(
        durable::DiskSync::open(&sled_path, counters.clone())
            .map_err(|e| NodeError::data_dir(&sled_path, e))?,
    );
    let (floor_tx, floor_rx) = tokio::sync::watch::channel(None);
    let group = GroupId::SOLE;
    let sm = SmStore::open(&db, &sled_path, path, group, hub, counters, floor_tx)?;
    let log = LogStore::open(db, &sled_path, group, disk, floor_rx)?;
    // An older build could purge the log before the snapshot that covers it
    // was durable; such a directory can no longer rebuild its state.
    let purged = log
        .last_purged()
        .map_err(|e| NodeError::data_dir(&sled_path, e))?;
    let snapshot = sm.snapshot_floor();
    if let Some(p) = purged {
        if snapshot.is_none_or(|s| s.index < p.index) {
            return Err(NodeError::data_dir(
                path,
                format!(
                    "the log is purged up to index {} but the newest snapshot ends at index {}: \
                     the entries between are gone; restore this node from a backup or \
                     remove it and add it back with an empty directory",
                    p.index,
                    snapshot.map_or("none (no snapshot)".to_string(), |s| s.index.to_string())
                ),
            ));
        }
    }
    Ok(DataDir {
        path: path.to_path_buf(),
        log,
        sm,
        identity,
        witness,
    })
}

/// How long to wait for another holder of the sled lock to let go (a node of
/// the same process still shutting down), in 100 ms steps.
const SLED_LOCK_WAIT_STEPS: u32 = 100;

fn open_sled(sled_path: &Path) -> Result<sled::Db, NodeError> {
    let mut attempt = 0;
    loop {
        let config = sled::Config::new().path(sled_path);
        match config.open() {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock") =>
            {
                attempt += 1;
                if attempt >= SLED_LOCK_WAIT_STEPS {
                    return Err(NodeError::data_dir(
                        sled_path,
                        format!("the database is locked by another process (is this node already running?): {e}"),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(NodeError::data_dir(
                    sled_path,
                    format!("sled could not open the database: {e}"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_round_trip_and_detects_a_flipped_bit() {
        let b = with_checksum(vec![1, 2, 3]);
        assert_eq!(strip_checksum(&b).unwrap(), &[1, 2, 3]);
        let mut bad = b.clone();
        bad[0] ^= 1;
        assert!(strip_checksum(&bad).is_err());
    }

    /// Goal: the committed id costs no flush of its own (openraft 0.9 runs
    /// `save_committed` inline before every apply, and a flush there stalled
    /// every commit round), is read back at once, the vote still syncs, and a
    /// reopened directory reads the id back. (Closing the store flushes too,
    /// so the reopen does not show which flush carried it; that it survives a
    /// power cut is the `power-loss` nemesis's to show.)
    #[tokio::test(flavor = "current_thread")]
    async fn the_committed_id_rides_the_next_flush() {
        use openraft::storage::RaftLogStorage;
        use std::sync::atomic::Ordering::Relaxed;

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node-1");
        let counters = Arc::new(Counters::default());
        let open = |counters: Arc<Counters>| {
            open_data_dir(
                &dir,
                "committed",
                1,
                Arc::new(crate::watch::WatchHub::default()),
                counters,
            )
            .expect("the data directory opens")
        };
        let data = open(counters.clone());
        let mut log = data.log.clone();
        let committed = crate::types::LogId::new(openraft::CommittedLeaderId::new(1, 1), 3);

        let fsyncs = counters.fsyncs.load(Relaxed);
        log.save_committed(Some(committed)).await.unwrap();
        assert_eq!(
            counters.fsyncs.load(Relaxed),
            fsyncs,
            "save_committed ran a flush and fsync of its own"
        );
        assert_eq!(log.read_committed().await.unwrap(), Some(committed));

        log.save_vote(&crate::types::Vote::new(1, 1)).await.unwrap();
        assert_eq!(
            counters.fsyncs.load(Relaxed),
            fsyncs + 1,
            "the vote is no longer synced before it is acknowledged"
        );
        drop(log);
        drop(data);
        let mut log = open(Arc::new(Counters::default())).log.clone();
        assert_eq!(log.read_committed().await.unwrap(), Some(committed));
    }
}

#[cfg(test)]
mod ordering_tests;
