//! The witness record (`peer-incarnations.json`): for each peer, the last
//! incarnation of its data directory that this node saw hold log entries
//! past the new-cluster prefix (as a leader whose entries this node
//! accepted, or as a follower that acknowledged this node's entries).
//!
//! Why: a node whose disk was emptied comes back under its old id with a new
//! incarnation. If an earlier incarnation helped commit entries, some peer
//! saw it do so: the leader of that commit (which recorded the follower's
//! acknowledgement) or, when it led, every follower that accepted its
//! entries. `node/admission.rs` asks the peers for these records, so the
//! verdict survives a leader restart (openraft's match indexes do not).
//!
//! Rule every caller follows: a sighting is recorded durably *before* it
//! counts: a follower records the leader before handing its AppendEntries
//! or snapshot to openraft; a leader records a follower before handing its
//! acknowledgement to openraft.
//!
//! Owns: the file (atomic rewrite: temporary file, sync, rename, sync of the
//! directory), its in-memory copy, and the bound on its size. Must not:
//! decide admission, or record anything for this node itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::NodeError;

/// File name of the witness record in a node's data directory.
pub const WITNESS_FILE: &str = "peer-incarnations.json";
/// Most peers the record holds (node ids are a cluster's members; a
/// sighting past this bound fails the RPC that carried it, so nothing is
/// acknowledged unrecorded).
pub const WITNESS_PEERS_MAX: usize = 1_024;
/// Longest incarnation id accepted from a peer (ours are 32 hex digits).
pub const INCARNATION_CHARS_MAX: usize = 64;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    /// Peer node id → hex incarnation id.
    peers: BTreeMap<u64, String>,
}

/// The witness record of one data directory.
pub struct Witness {
    dir: PathBuf,
    /// Whether the record covers the directory's whole life (false for a
    /// directory an older build created: it saw peers before it kept one).
    pub since_creation: bool,
    seen: Mutex<BTreeMap<u64, String>>,
    /// Serialises rewrites of the file (rare: one per new peer incarnation).
    write: tokio::sync::Mutex<()>,
}

/// Whether `inc` is a well-formed incarnation id (empty: a peer of an older
/// build that sends none).
pub fn valid_incarnation(inc: &str) -> bool {
    !inc.is_empty()
        && inc.len() <= INCARNATION_CHARS_MAX
        && inc.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Witness {
    /// Opens `dir`'s record, creating it empty when missing. A missing file is
    /// refused only where it must have existed: a directory that keeps a
    /// record from creation and was admitted (a pending directory has
    /// answered no Raft RPC, so it saw nothing).
    pub fn open(
        dir: &Path,
        since_creation: bool,
        admitted: bool,
    ) -> Result<Arc<Witness>, NodeError> {
        let path = dir.join(WITNESS_FILE);
        let seen = if path.exists() {
            let bytes = std::fs::read(&path).map_err(|e| {
                NodeError::data_dir(&path, format!("cannot read the witness record: {e}"))
            })?;
            let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::data_dir(&path, format!("witness record does not decode: {e}"))
            })?;
            if let Some((id, inc)) = record.peers.iter().find(|(_, i)| !valid_incarnation(i)) {
                return Err(NodeError::data_dir(
                    &path,
                    format!("witness record holds a malformed incarnation {inc:?} for node {id}"),
                ));
            }
            record.peers
        } else if since_creation && admitted {
            return Err(NodeError::data_dir(
                &path,
                "the witness record is missing from an admitted directory that keeps one \
                 (deleted by hand?): restore it, or remove the node and add it back",
            ));
        } else {
            write_record(dir, &Record::default())?;
            BTreeMap::new()
        };
        Ok(Arc::new(Witness {
            dir: dir.to_path_buf(),
            since_creation,
            seen: Mutex::new(seen),
            write: tokio::sync::Mutex::new(()),
        }))
    }

    /// Every peer's last incarnation seen holding entries.
    pub fn seen(&self) -> BTreeMap<u64, String> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn knows(&self, peer: u64, inc: &str) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&peer)
            .is_some_and(|have| have == inc)
    }

    /// Records durably that `peer`'s incarnation `inc` holds entries; returns
    /// once the file says so (at once when it already did). A malformed id
    /// or a full record is an error: the caller fails the RPC.
    ///
    /// The write runs as its own task, so a caller that gives up (an RPC
    /// cancelled at its deadline) does not abandon it half done: on a slow
    /// disk the two fsyncs outlast the heartbeat-long AppendEntries timeout,
    /// and a write dropped at every timeout would never finish (seen with
    /// 50 ms fsyncs: replication stalled; the dropped writes also raced on
    /// the temporary file).
    pub async fn record(self: &Arc<Self>, peer: u64, inc: &str) -> Result<(), String> {
        if self.knows(peer, inc) {
            return Ok(());
        }
        if !valid_incarnation(inc) {
            return Err(format!("node {peer} sent a malformed incarnation {inc:?}"));
        }
        let this = self.clone();
        let inc = inc.to_string();
        tokio::spawn(async move { this.record_now(peer, &inc).await })
            .await
            .map_err(|e| format!("witness record writer: {e}"))?
    }

    async fn record_now(&self, peer: u64, inc: &str) -> Result<(), String> {
        let _writing = self.write.lock().await;
        if self.knows(peer, inc) {
            return Ok(());
        }
        let mut next = self.seen();
        if !next.contains_key(&peer) && next.len() >= WITNESS_PEERS_MAX {
            return Err(format!(
                "the witness record already holds {WITNESS_PEERS_MAX} peers; not recording node {peer}"
            ));
        }
        next.insert(peer, inc.to_string());
        let dir = self.dir.clone();
        let record = Record { peers: next };
        let record =
            tokio::task::spawn_blocking(move || write_record(&dir, &record).map(|_| record))
                .await
                .map_err(|e| format!("witness record writer: {e}"))?
                .map_err(|e| e.to_string())?;
        tracing::info!(
            peer,
            incarnation = inc,
            "recorded a peer incarnation holding entries"
        );
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = record.peers;
        Ok(())
    }
}

/// Writes `record` to `dir`'s witness file: temporary name, sync, rename,
/// sync of the directory, so a crash leaves the old record or the new one.
fn write_record(dir: &Path, record: &Record) -> Result<(), NodeError> {
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|e| NodeError::Internal(e.to_string()))?;
    super::write_durably(dir, WITNESS_FILE, &bytes)
        .map(|_| ())
        .map_err(|e| {
            NodeError::data_dir(
                dir.join(WITNESS_FILE),
                format!("cannot write the witness record: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sightings_survive_a_reopen_and_bad_files_are_named() {
        // Goal: a recorded sighting is on disk when `record` returns; a
        // damaged or missing-when-required file refuses, naming the file.
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::open(dir.path(), true, false).unwrap();
        w.record(2, "00ff").await.unwrap();
        w.record(3, "abcd").await.unwrap();
        w.record(2, "0a0b").await.unwrap();
        assert!(w.record(4, "not hex").await.is_err());
        drop(w);
        let w = Witness::open(dir.path(), true, true).unwrap();
        let seen = w.seen();
        assert_eq!(seen.get(&2).map(String::as_str), Some("0a0b"));
        assert_eq!(seen.get(&3).map(String::as_str), Some("abcd"));
        assert_eq!(seen.len(), 2);

        std::fs::write(dir.path().join(WITNESS_FILE), b"{not json").unwrap();
        let e = Witness::open(dir.path(), true, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(WITNESS_FILE), "{e}");
        std::fs::remove_file(dir.path().join(WITNESS_FILE)).unwrap();
        let e = Witness::open(dir.path(), true, true)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(WITNESS_FILE) && e.contains("missing"), "{e}");
        // An older build's directory, or a pending one, starts an empty record.
        assert!(Witness::open(dir.path(), false, true)
            .unwrap()
            .seen()
            .is_empty());
    }

    #[tokio::test]
    async fn a_record_whose_caller_gives_up_still_completes() {
        // Goal: an RPC cancelled at its deadline does not abandon the write
        // (on a slow disk every attempt would be dropped and none finish).
        let dir = tempfile::tempdir().unwrap();
        let w = Witness::open(dir.path(), true, false).unwrap();
        // The caller polls its call once and drops it, as a cancelled RPC
        // does. (A zero timeout raced: the timer rounds its deadline up to
        // the next ms tick, so on a fast disk the write could finish first.)
        use futures::FutureExt;
        assert!(
            w.record(2, "abcd").now_or_never().is_none(),
            "the caller gave up before the write"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !w.knows(2, "abcd") {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never finished"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(w);
        let reopened = Witness::open(dir.path(), true, true).unwrap();
        assert_eq!(reopened.seen().get(&2).map(String::as_str), Some("abcd"));
    }
}
