//! Counters the node keeps, and a Prometheus text endpoint that renders them
//! together with openraft's own metrics (term, leader, commit and applied index).
//!
//! Owns: the counter set and the `/metrics` HTTP handler. Must not: block the
//! apply path (counters are relaxed atomics). Caveat: hand-rolled text format
//! (a dozen series do not justify a metrics framework); names follow
//! Prometheus conventions with units in the name.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::types::Raft;

/// Monotonic counters updated by the proposer, the state machine and the
/// snapshot code.
#[derive(Debug, Default)]
pub struct Counters {
    pub entries_proposed: AtomicU64,
    pub commands_proposed: AtomicU64,
    pub entries_applied: AtomicU64,
    pub commands_applied: AtomicU64,
    pub apply_time_us: AtomicU64,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub reads_linearizable: AtomicU64,
    pub read_index_rounds: AtomicU64,
    pub reads_stale: AtomicU64,
    pub ticks_proposed: AtomicU64,
    pub proposals_rejected_full: AtomicU64,
    /// First sends answered from the applied state after a ReadIndex round,
    /// without a log write (refusals and remembered outcomes).
    pub answered_without_log_write: AtomicU64,
    /// First sends the local look called a refusal that, after the ReadIndex
    /// round, had to go through the log anyway.
    pub fast_path_fallbacks: AtomicU64,
    /// Durability steps after a sled flush (`store::durable`), and their
    /// total time: the fsync cost every acknowledged write pays.
    pub fsyncs: AtomicU64,
    pub fsync_time_us: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Renders every series in Prometheus text format 0.0.4.
pub fn render(node_id: u64, counters: &Counters, raft: &Raft, commit_index: u64) -> String {
    let m = raft.metrics().borrow().clone();
    let mut out = String::with_capacity(2048);
    let mut gauge = |name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node_id=\"{node_id}\"}} {v}"
        );
    };
    gauge(
        "booking_raft_term",
        "Current Raft term.",
        "gauge",
        m.current_term,
    );
    gauge(
        "booking_raft_leader_id",
        "Id of the known leader (0 if none).",
        "gauge",
        m.current_leader.unwrap_or(0),
    );
    gauge(
        "booking_raft_is_leader",
        "1 if this node is the leader.",
        "gauge",
        u64::from(m.current_leader == Some(node_id)),
    );
    gauge(
        "booking_raft_last_log_index",
        "Last index in the local log.",
        "gauge",
        m.last_log_index.unwrap_or(0),
    );
    gauge(
        "booking_raft_applied_index",
        "Last index applied to the state machine.",
        "gauge",
        m.last_applied.map(|l| l.index).unwrap_or(0),
    );
    gauge(
        "booking_raft_commit_index",
        "Last committed index this node saved.",
        "gauge",
        commit_index,
    );
    gauge(
        "booking_raft_snapshot_index",
        "Index of the newest snapshot.",
        "gauge",
        m.snapshot.map(|l| l.index).unwrap_or(0),
    );
    gauge(
        "booking_raft_purged_index",
        "Index up to which the log was purged.",
        "gauge",
        m.purged.map(|l| l.index).unwrap_or(0),
    );
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    gauge(
        "booking_entries_proposed_total",
        "Log entries (batches) proposed by this node.",
        "counter",
        c(&counters.entries_proposed),
    );
    gauge(
        "booking_commands_proposed_total",
        "Commands proposed by this node.",
        "counter",
        c(&counters.commands_proposed),
    );
    gauge(
        "booking_entries_applied_total",
        "Log entries applied here.",
        "counter",
        c(&counters.entries_applied),
    );
    gauge(
        "booking_commands_applied_total",
        "Commands applied here.",
        "counter",
        c(&counters.commands_applied),
    );
    gauge(
        "booking_apply_time_us_total",
        "Microseconds spent in state_machine apply.",
        "counter",
        c(&counters.apply_time_us),
    );
    gauge(
        "booking_snapshots_built_total",
        "Snapshots built here.",
        "counter",
        c(&counters.snapshots_built),
    );
    gauge(
        "booking_snapshots_installed_total",
        "Snapshots received and installed.",
        "counter",
        c(&counters.snapshots_installed),
    );
    gauge(
        "booking_fsyncs_total",
        "Durability steps (blob and directory fsyncs, fdatasync of sled's db) after a flush.",
        "counter",
        c(&counters.fsyncs),
    );
    gauge(
        "booking_fsync_time_us_total",
        "Time spent in those durability steps, in microseconds.",
        "counter",
        c(&counters.fsync_time_us),
    );
    gauge(
        "booking_reads_linearizable_total",
        "Linearizable reads served.",
        "counter",
        c(&counters.reads_linearizable),
    );
    gauge(
        "booking_read_index_rounds_total",
        "ReadIndex rounds run (reads are coalesced).",
        "counter",
        c(&counters.read_index_rounds),
    );
    gauge(
        "booking_reads_stale_total",
        "Stale reads served.",
        "counter",
        c(&counters.reads_stale),
    );
    gauge(
        "booking_ticks_proposed_total",
        "Expiry ticks proposed.",
        "counter",
        c(&counters.ticks_proposed),
    );
    gauge(
        "booking_proposals_rejected_full_total",
        "Commands refused because the proposer queue was full.",
        "counter",
        c(&counters.proposals_rejected_full),
    );
    gauge(
        "booking_answered_without_log_write_total",
        "Submits answered from the applied state after a ReadIndex round, without a log write.",
        "counter",
        c(&counters.answered_without_log_write),
    );
    gauge(
        "booking_fast_path_fallbacks_total",
        "Submits that looked like refusals but were proposed after the ReadIndex round.",
        "counter",
        c(&counters.fast_path_fallbacks),
    );
    out
}
