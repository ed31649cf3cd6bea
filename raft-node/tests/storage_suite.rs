//! Goal: openraft's own storage conformance suite passes on the sled log and
//! state-machine stores.

// openraft's StorageError is large by design.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use raft_node::metrics::Counters;
use raft_node::store::{open_data_dir, LogStore, SmStore};
use raft_node::types::{StorageError, TypeConfig};
use raft_node::watch::WatchHub;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, SmStore, tempfile::TempDir> for SledBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, SmStore), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = open_data_dir(
            &dir.path().join("node-1"),
            "suite",
            1,
            Arc::new(WatchHub::default()),
            Arc::new(Counters::default()),
        )
        .expect("open a fresh data directory");
        // The suite purges logs of a store that never built a snapshot; a
        // node never purges past its newest durable snapshot.
        data.log.allow_purge_without_snapshot();
        Ok((dir, data.log, data.sm))
    }
}

#[test]
fn openraft_storage_suite_passes_on_sled_stores() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}
