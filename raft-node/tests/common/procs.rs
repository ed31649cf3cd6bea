//! Real `booking node` processes for the raft-node tests that must stop
//! (SIGSTOP), kill or restart a node, which the in-process cluster cannot:
//! the binary's path, a [`NodeCluster`] (the processes in their own
//! temporary directory, and the in-process harness's gRPC helpers aimed at
//! them), and the wait for a leader of every voter.
//!
//! Must not: build the binary (a test without it skips, or fails under
//! `CI=true`), start processes other than through `testkit::nodes`, or wait
//! other than by a bounded poll.
//!
//! On a panic the processes are killed, the tail of every node's log is
//! printed, and the directory (logs, data) is kept and named, so a failure
//! that happened once can be read afterwards.

use std::path::{Path, PathBuf};

use testkit::nodes::{Launch, NodeProcs};
use testkit::{wait_for, ConfigFile, WAIT};

use super::Cluster;

/// Lines of each node's log printed when a test panics.
const LOG_TAIL_LINES: usize = 40;

/// `$BOOKING_BIN`, else `<repo>/target/release/booking`, if that file
/// exists; otherwise skips `test` (a failure under `CI=true`) and answers
/// `None`, and the caller returns.
pub fn booking_bin_or_skip(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("BOOKING_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/booking")
        });
    if path.is_file() {
        return Some(path);
    }
    testkit::skip_or_fail(
        test,
        "no booking binary: build it (cargo build --release --bin booking) or set BOOKING_BIN",
    );
    None
}

/// Node processes of one cluster, and gRPC helpers aimed at them.
pub struct NodeCluster {
    pub nodes: NodeProcs,
    /// Only for its raw gRPC helpers (status, submit, read); starts no node.
    pub rpc: Cluster,
    dir: tempfile::TempDir,
}

impl NodeCluster {
    /// Writes `file` (its data directories moved into a new temporary
    /// directory) and starts every node, logging at `info`; the lowest id
    /// bootstraps. Does not wait for anything.
    pub fn start(bin: &Path, file: ConfigFile) -> NodeCluster {
        NodeCluster::start_with(bin, file, Launch::logging("info"))
    }

    /// [`NodeCluster::start`] with the nodes launched as `launch` says (an
    /// extra environment, such as a fault hook).
    pub fn start_with(bin: &Path, file: ConfigFile, launch: Launch) -> NodeCluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = file.with_data_dir(dir.path().join("data"));
        let mut nodes = NodeProcs::create(bin, dir.path(), file, launch)
            .expect("the cluster's file and log directory");
        let rpc = Cluster::with_config(nodes.config().clone());
        nodes.start_all().expect("every node starts");
        NodeCluster { nodes, rpc, dir }
    }

    /// Waits until node 1 names a leader that says it leads `voters`
    /// voters; returns its id.
    pub async fn wait_leader_of(&self, voters: usize) -> u64 {
        wait_for(&format!("a leader of {voters} voters"), WAIT, || async {
            let l = self.rpc.status(1).await?.leader_id?;
            let s = self.rpc.status(l).await?;
            (s.role == "Leader" && s.members.iter().filter(|m| m.voter).count() == voters)
                .then_some(l)
        })
        .await
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // Dead processes write no more: the tails and the kept logs are final.
        self.nodes.kill_all();
        self.dir.disable_cleanup(true);
        eprintln!(
            "{}\nkept for reading: {}",
            self.nodes.logs_tail(LOG_TAIL_LINES),
            self.dir.path().display()
        );
    }
}
