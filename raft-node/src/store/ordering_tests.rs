//! Goal: snapshot and purge ordering hold in the two races openraft 0.9 can
//! produce (issue 12 item 2): a snapshot build that read the state before a
//! newer install finished never replaces the newer snapshot, and a purge that
//! arrives before the snapshot covering it is durable never reaches the disk
//! first, so a crash in between leaves a directory that still starts.

use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, RaftSnapshotBuilder};
use state_machine::BookingState;

use super::snapshot::{Persisted, SnapshotRecord};
use super::{open_data_dir, DataDir};
use crate::metrics::Counters;
use crate::types::{LogId, SnapshotMeta};
use crate::watch::WatchHub;

fn open(dir: &Path) -> DataDir {
    open_data_dir(
        &dir.join("node-1"),
        "ordering",
        1,
        Arc::new(WatchHub::default()),
        Arc::new(Counters::default()),
    )
    .expect("the data directory opens")
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn record(index: u64) -> SnapshotRecord {
    SnapshotRecord {
        meta: SnapshotMeta {
            last_log_id: Some(log_id(index)),
            last_membership: Default::default(),
            snapshot_id: format!("test-{index}"),
        },
        data: BookingState::new().snapshot(),
    }
}

/// Runs the task until it waits on something it cannot get by itself.
async fn let_it_run() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Goal: the build/install race. An install made snapshot 10 durable and has
/// not swapped the state yet; a build running meanwhile reads the state (still
/// at nothing applied) and persists: snapshot 10 must stay, and the build must
/// hand back snapshot 10, not an older one. Before this fix the build wrote
/// its older record over the newer one unconditionally.
#[tokio::test(flavor = "current_thread")]
async fn a_build_never_replaces_a_newer_installed_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = open(tmp.path());
    let installed = data.sm.inner.snapshots.persist(&record(10)).await.unwrap();
    assert!(matches!(installed, Persisted::Written));

    let mut builder = data.sm.clone();
    let built = builder.build_snapshot().await.unwrap();
    assert_eq!(
        built.meta.last_log_id,
        Some(log_id(10)),
        "the build returned an older snapshot"
    );
    assert_eq!(data.sm.snapshot_floor(), Some(log_id(10)));

    // An older install (or build) after a newer one is not written either.
    let late = data.sm.inner.snapshots.persist(&record(7)).await.unwrap();
    assert!(matches!(late, Persisted::Superseded));

    drop(builder);
    drop(data);
    let reopened = open(tmp.path());
    assert_eq!(reopened.sm.snapshot_floor(), Some(log_id(10)));
    let mut sm = reopened.sm.clone();
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(
        applied,
        Some(log_id(10)),
        "restart restored an older snapshot"
    );
    let snapshot_files = std::fs::read_dir(tmp.path().join("node-1"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().starts_with("snapshot-")
        })
        .count();
    assert_eq!(snapshot_files, 1, "superseded snapshot files are removed");
}

/// Goal: purge before snapshot. openraft purges the log up to an installed
/// snapshot right after handing the snapshot to the state machine, so the
/// purge can run first. It must wait for the snapshot: a crash while it
/// waits leaves no purge point past the snapshot (the directory starts), and
/// once the snapshot is durable the purge completes.
#[tokio::test(flavor = "current_thread")]
async fn a_purge_waits_for_the_durable_snapshot_that_covers_it() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let data = open(tmp.path());
        let mut log = data.log.clone();
        let purge = tokio::spawn(async move { log.purge(log_id(8)).await });
        let_it_run().await;
        assert!(!purge.is_finished(), "the purge ran before any snapshot");
        let mut log = data.log.clone();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, None);
        // A crash here: the purge never reached the disk.
        purge.abort();
        let _ = purge.await;
    }
    let data = open(tmp.path());
    let mut log = data.log.clone();
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, None);

    // This time the install finishes: the waiting purge then completes.
    let mut purging = data.log.clone();
    let purge = tokio::spawn(async move { purging.purge(log_id(8)).await });
    let_it_run().await;
    assert!(!purge.is_finished());
    let mut sm = data.sm.clone();
    let r = record(8);
    sm.install_snapshot(&r.meta, Box::new(std::io::Cursor::new(r.data)))
        .await
        .unwrap();
    purge.await.unwrap().unwrap();
    assert_eq!(
        log.get_log_state().await.unwrap().last_purged_log_id,
        Some(log_id(8))
    );
    drop((log, sm, data));
    let reopened = open(tmp.path());
    assert_eq!(reopened.sm.snapshot_floor(), Some(log_id(8)));
}
