//! Counters the node keeps, and a Prometheus text endpoint that renders them
//! together with openraft's own metrics (term, leader, commit and applied index).
//!
//! Owns: the counter set and the `/metrics` HTTP handler. Must not: block the
//! apply path (counters are relaxed atomics). Caveat: hand-rolled text format
//! (a dozen series do not justify a metrics framework); names follow
//! Prometheus conventions with units in the name.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// Bytes of the newest snapshot this node built (the whole encoded
    /// replicated state: header, postcard payload, checksum), and the
    /// largest since start: how big the replicated state got.
    pub snapshot_bytes_last: AtomicU64,
    pub snapshot_bytes_max: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub reads_linearizable: AtomicU64,
    pub read_index_rounds: AtomicU64,
    pub reads_stale: AtomicU64,
    pub ticks_proposed: AtomicU64,
    pub proposals_rejected_full: AtomicU64,
    /// Requests refused as `overloaded` because the exactly-once table was
    /// full of live outcomes (before proposing, or by apply).
    pub dedupe_full_refusals: AtomicU64,
    /// `ForgetRequests` entries this node proposed as leader.
    pub forgets_proposed: AtomicU64,
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
    /// Durability steps per latency bucket (`FSYNC_BUCKETS_SECONDS`, not
    /// cumulative here; rendered cumulative): `booking_fsync_duration_seconds`.
    pub fsync_buckets: [AtomicU64; FSYNC_BUCKETS_SECONDS.len()],
    /// A durability step at least this long logs a warning (0: never). Set at
    /// start to half the heartbeat interval: openraft 0.9 bounds a whole
    /// AppendEntries (the follower's fsync included) by the heartbeat.
    pub fsync_warn_us: AtomicU64,
    /// Slow steps seen, and the count at the last warning (warnings are
    /// logged for the 1st, 2nd, 4th, 8th, ... slow step, so a slow disk
    /// cannot flood the log).
    pub fsyncs_slow: AtomicU64,
    /// AppendEntries this node did not send, or a peer refused, as too large:
    /// each one made openraft retry with fewer entries (`network.rs`).
    pub append_entries_too_large: AtomicU64,
    /// Apply batches that took the state lock, and the total time they
    /// waited for it (`sm.rs`): a snapshot or a reader holding the lock
    /// stalls apply, and this is how long.
    pub apply_lock_waits: AtomicU64,
    pub apply_lock_wait_us: AtomicU64,
    /// The longest wait for the state lock of one apply batch, in µs.
    pub apply_lock_wait_max_us: AtomicU64,
    /// Waits per bucket (`PAUSE_BUCKETS_SECONDS`, rendered cumulative):
    /// `booking_apply_lock_wait_seconds`.
    pub apply_lock_wait_buckets: [AtomicU64; PAUSE_BUCKETS_SECONDS.len()],
    /// The longest time one apply batch held the state lock, in µs.
    pub apply_lock_held_max_us: AtomicU64,
    /// The longest time a copy of the state (for a snapshot or the state
    /// hash, `sm.rs`) held the state lock, in µs.
    pub state_copy_lock_held_max_us: AtomicU64,
    /// The CPU time of the copy that held the lock longest (its thread's
    /// own CPU time): the rest of that hold was the thread waiting for a
    /// core, which a loaded machine adds.
    pub state_copy_cpu_of_max_us: AtomicU64,
}

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`); zero if the
/// clock cannot be read.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the
    // call; the clock id is a constant the kernel supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Upper bounds of `booking_apply_lock_wait_seconds`'s buckets (plus `+Inf`).
pub const PAUSE_BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Upper bounds of `booking_fsync_duration_seconds`'s buckets (plus `+Inf`).
pub const FSYNC_BUCKETS_SECONDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises `max` to `us` if it is larger.
    pub fn raise_max(max: &AtomicU64, us: u64) {
        max.fetch_max(us, Ordering::Relaxed);
    }

    /// Records one apply batch: how long it waited for the state lock and
    /// how long it held it.
    pub fn record_apply_lock(&self, waited: Duration, held: Duration) {
        let us = waited.as_micros() as u64;
        Self::add(&self.apply_lock_waits, 1);
        Self::add(&self.apply_lock_wait_us, us);
        Self::raise_max(&self.apply_lock_wait_max_us, us);
        Self::raise_max(&self.apply_lock_held_max_us, held.as_micros() as u64);
        let secs = waited.as_secs_f64();
        if let Some(i) = PAUSE_BUCKETS_SECONDS.iter().position(|&le| secs <= le) {
            Self::add(&self.apply_lock_wait_buckets[i], 1);
        }
    }

    /// Records one durability step of `elapsed`: the counters, the histogram,
    /// and a warning when it nears the heartbeat interval.
    pub fn record_fsync(&self, elapsed: Duration) {
        let us = elapsed.as_micros() as u64;
        Self::add(&self.fsyncs, 1);
        Self::add(&self.fsync_time_us, us);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = FSYNC_BUCKETS_SECONDS.iter().position(|&le| secs <= le) {
            Self::add(&self.fsync_buckets[i], 1);
        }
        let warn_us = self.fsync_warn_us.load(Ordering::Relaxed);
        if warn_us > 0 && us >= warn_us {
            let n = self.fsyncs_slow.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    fsync_ms = us / 1000,
                    warn_threshold_ms = warn_us / 1000,
                    slow_fsyncs = n,
                    "slow disk: a durability step took at least half the heartbeat interval; \
                     openraft bounds each AppendEntries (the follower's fsync included) by the \
                     heartbeat, so raise [raft] heartbeat_interval_ms (and the election timeout) \
                     or replication will time out"
                );
            }
        }
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
        "booking_snapshot_bytes",
        "Size of the newest snapshot built here, in bytes (the encoded replicated state).",
        "gauge",
        c(&counters.snapshot_bytes_last),
    );
    gauge(
        "booking_snapshot_bytes_max",
        "Largest snapshot built here since start, in bytes.",
        "gauge",
        c(&counters.snapshot_bytes_max),
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
    render_histogram(
        &mut out,
        node_id,
        Histogram {
            name: "booking_fsync_duration_seconds",
            help: "Latency of one durability step (fsyncs after a sled flush).",
            bounds_seconds: &FSYNC_BUCKETS_SECONDS,
            buckets: &counters.fsync_buckets,
            count: c(&counters.fsyncs),
            sum_us: c(&counters.fsync_time_us),
        },
    );
    render_histogram(
        &mut out,
        node_id,
        Histogram {
            name: "booking_apply_lock_wait_seconds",
            help: "How long one apply batch waited for the state lock (a snapshot or a reader holding it).",
            bounds_seconds: &PAUSE_BUCKETS_SECONDS,
            buckets: &counters.apply_lock_wait_buckets,
            count: c(&counters.apply_lock_waits),
            sum_us: c(&counters.apply_lock_wait_us),
        },
    );
    let mut gauge = |name: &str, help: &str, kind: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node_id=\"{node_id}\"}} {v}"
        );
    };
    gauge(
        "booking_apply_pause_max_ms",
        "Longest time one apply batch waited for the state lock since start, in ms (rounded up).",
        "gauge",
        c(&counters.apply_lock_wait_max_us).div_ceil(1000),
    );
    gauge(
        "booking_apply_lock_held_max_ms",
        "Longest time one apply batch held the state lock since start, in ms (rounded up).",
        "gauge",
        c(&counters.apply_lock_held_max_us).div_ceil(1000),
    );
    gauge(
        "booking_state_copy_lock_held_max_ms",
        "Longest time copying the state for a snapshot or the state hash held the state lock since start, in ms (rounded up).",
        "gauge",
        c(&counters.state_copy_lock_held_max_us).div_ceil(1000),
    );
    gauge(
        "booking_state_copy_cpu_of_max_ms",
        "CPU time of the copy that held the state lock longest, in ms (rounded up); the rest was waiting for a core.",
        "gauge",
        c(&counters.state_copy_cpu_of_max_us).div_ceil(1000),
    );
    gauge(
        "booking_append_entries_too_large_total",
        "AppendEntries over the payload byte cap (or refused as too large), retried with fewer entries.",
        "counter",
        c(&counters.append_entries_too_large),
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
        "booking_dedupe_full_refusals_total",
        "Requests refused as overloaded because the exactly-once table was full of live outcomes.",
        "counter",
        c(&counters.dedupe_full_refusals),
    );
    gauge(
        "booking_forgets_proposed_total",
        "ForgetRequests entries proposed (the exactly-once table forgetting outcomes a TTL old).",
        "counter",
        c(&counters.forgets_proposed),
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
    gauge(
        "booking_process_cpu_ms_total",
        "CPU time this process used since start (user + system), in ms: divided by the requests served, the cost of a request, which a busy machine distorts less than latency.",
        "counter",
        cpu_time::ProcessTime::try_now().map_or(0, |t| t.as_duration().as_millis() as u64),
    );
    out
}

/// The leader's view of its clock against cluster time (`node::clock`);
/// zeros on a follower, which does not sample clocks.
pub fn render_clock(out: &mut String, node_id: u64, agreed: bool, agrees: bool, skew_ms: i64) {
    let mut line = |name: &str, help: &str, v: i64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{node_id=\"{node_id}\"}} {v}"
        );
    };
    line(
        "booking_clock_skew_ms",
        "Leader only: this node's wall clock minus the cluster time a majority of clocks agreed on, in ms.",
        skew_ms,
    );
    line(
        "booking_cluster_time_agreed",
        "Leader only: 1 when the last sampling found a majority of clocks agreeing.",
        agreed as i64,
    );
    line(
        "booking_own_clock_agrees",
        "Leader only: 1 when this node's own clock was inside that agreement.",
        agrees as i64,
    );
}

/// The version handshake (`node::command_sets`): this node's command set
/// and, on the leader, the members' floor (0 on a follower). An alert on
/// `booking_cluster_command_set < booking_command_set` on the leader means
/// a rolling upgrade is unfinished and the newer commands are refused.
pub fn render_command_sets(out: &mut String, node_id: u64, own: u32, cluster: u32) {
    for (name, help, v) in [
        (
            "booking_command_set",
            "The highest command set this node's build applies.",
            own,
        ),
        (
            "booking_cluster_command_set",
            "Leader only: the lowest command set among the members; commands of a higher set are refused as upgrade_pending.",
            cluster,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{node_id=\"{node_id}\"}} {v}"
        );
    }
}

/// One Prometheus histogram's series: per-bucket counts (not cumulative),
/// the total count and the sum in µs.
struct Histogram<'a> {
    name: &'a str,
    help: &'a str,
    bounds_seconds: &'a [f64],
    buckets: &'a [AtomicU64],
    count: u64,
    sum_us: u64,
}

/// Renders `h` in Prometheus text format (cumulative buckets, `_sum`,
/// `_count`).
fn render_histogram(out: &mut String, node_id: u64, h: Histogram<'_>) {
    let Histogram {
        name,
        help,
        bounds_seconds,
        buckets,
        count,
        sum_us,
    } = h;
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let mut cumulative = 0;
    for (le, bucket) in bounds_seconds.iter().zip(buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{node_id=\"{node_id}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let sum_seconds = sum_us as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}_bucket{{node_id=\"{node_id}\",le=\"+Inf\"}} {count}\n{name}_sum{{node_id=\"{node_id}\"}} {sum_seconds}\n{name}_count{{node_id=\"{node_id}\"}} {count}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: fsync latencies land in the right buckets and render cumulatively.
    #[test]
    fn fsync_histogram_is_cumulative() {
        let c = Counters::default();
        c.record_fsync(Duration::from_micros(300));
        c.record_fsync(Duration::from_millis(40));
        c.record_fsync(Duration::from_secs(5));
        let mut out = String::new();
        render_histogram(
            &mut out,
            7,
            Histogram {
                name: "booking_fsync_duration_seconds",
                help: "",
                bounds_seconds: &FSYNC_BUCKETS_SECONDS,
                buckets: &c.fsync_buckets,
                count: c.fsyncs.load(Ordering::Relaxed),
                sum_us: c.fsync_time_us.load(Ordering::Relaxed),
            },
        );
        assert!(
            out.contains("booking_fsync_duration_seconds_bucket{node_id=\"7\",le=\"0.0005\"} 1\n")
        );
        assert!(
            out.contains("booking_fsync_duration_seconds_bucket{node_id=\"7\",le=\"0.025\"} 1\n")
        );
        assert!(
            out.contains("booking_fsync_duration_seconds_bucket{node_id=\"7\",le=\"0.05\"} 2\n")
        );
        assert!(out.contains("booking_fsync_duration_seconds_bucket{node_id=\"7\",le=\"2.5\"} 2\n"));
        assert!(
            out.contains("booking_fsync_duration_seconds_bucket{node_id=\"7\",le=\"+Inf\"} 3\n")
        );
        assert!(out.contains("booking_fsync_duration_seconds_count{node_id=\"7\"} 3"));
    }

    // Goal: an apply batch's wait for the state lock shows as the pause
    // maximum (rounded up to ms) and lands in its histogram bucket.
    #[test]
    fn apply_lock_wait_is_recorded() {
        let c = Counters::default();
        c.record_apply_lock(Duration::from_micros(50), Duration::from_micros(10));
        c.record_apply_lock(Duration::from_micros(30_200), Duration::from_millis(2));
        c.record_apply_lock(Duration::from_micros(700), Duration::from_millis(1));
        assert_eq!(c.apply_lock_wait_max_us.load(Ordering::Relaxed), 30_200);
        assert_eq!(c.apply_lock_held_max_us.load(Ordering::Relaxed), 2_000);
        let mut out = String::new();
        render_histogram(
            &mut out,
            3,
            Histogram {
                name: "booking_apply_lock_wait_seconds",
                help: "",
                bounds_seconds: &PAUSE_BUCKETS_SECONDS,
                buckets: &c.apply_lock_wait_buckets,
                count: c.apply_lock_waits.load(Ordering::Relaxed),
                sum_us: c.apply_lock_wait_us.load(Ordering::Relaxed),
            },
        );
        assert!(
            out.contains("booking_apply_lock_wait_seconds_bucket{node_id=\"3\",le=\"0.0001\"} 1\n")
        );
        assert!(
            out.contains("booking_apply_lock_wait_seconds_bucket{node_id=\"3\",le=\"0.001\"} 2\n")
        );
        assert!(
            out.contains("booking_apply_lock_wait_seconds_bucket{node_id=\"3\",le=\"0.025\"} 2\n")
        );
        assert!(
            out.contains("booking_apply_lock_wait_seconds_bucket{node_id=\"3\",le=\"0.05\"} 3\n")
        );
        assert!(out.contains("booking_apply_lock_wait_seconds_count{node_id=\"3\"} 3"));
    }
}
