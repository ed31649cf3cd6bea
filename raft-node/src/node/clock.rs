//! The leader's stamp clock: log time that follows cluster time, and the
//! clock-offset hook of the Jepsen suite's clock nemesis.
//!
//! Owns: [`StampClock`] (the stamp rule below), the leader's sampling of its
//! peers' wall clocks ([`cluster_time_task`], the `Clock` peer RPC's client
//! side, whose replies also carry each member's command set for
//! `command_sets.rs`), the skew it reports, and the task that re-reads the offset file
//! every [`CLOCK_OFFSET_REFRESH_MS`] when `BOOKING_FAULT_CLOCK=1`. Must not:
//! be read by the state machine (log time comes from the stamps in the log),
//! let one node's wall clock move log time, or read the offset file unless
//! `BOOKING_FAULT_CLOCK=1`.
//!
//! The stamp rule (ARCHITECTURE.md "Time"): every [`CLOCK_SAMPLE_INTERVAL_MS`]
//! the leader asks each voter for its wall clock; a reply bounds that clock
//! by the round trip, widened by [`CLOCK_TOLERANCE_MS`] on each side, and the
//! leader's own clock is one more such interval. Marzullo's algorithm
//! (`marzullo.rs`) finds the stretch most of them share. If a strict
//! majority of the voters share one (unambiguous) stretch, that is cluster
//! time, carried forward by the monotonic clock for at most
//! [`CLOCK_AGREEMENT_FRESH_MS`]: a stamp is the leader's own wall clock
//! pulled into that stretch (unchanged when the leader agrees with the
//! majority). Otherwise a stamp is the previous stamp plus the monotonic
//! time since it. Either way a stamp never goes below the previous one nor
//! the state's clock, and a new term starts from the state's clock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::marzullo::{agreement, Interval};
use super::NodeCore;
use crate::types::NodeId;

/// How often the clock-offset file is re-read when fault injection is on.
pub const CLOCK_OFFSET_REFRESH_MS: u64 = 100;
/// Name of the clock-offset file in a node's data directory.
pub const CLOCK_OFFSET_FILE: &str = "clock-offset-ms";
/// Environment variable that enables the clock-offset hook (`1`).
pub const FAULT_CLOCK_ENV: &str = "BOOKING_FAULT_CLOCK";
/// Environment variable naming a directory that holds the offset files
/// instead (`<dir>/<data dir's name>.clock-offset-ms`, e.g.
/// `node-2.clock-offset-ms`). The Jepsen suite sets it so its control files
/// live outside a data directory that a simulated power cut rolls back.
pub const FAULT_CLOCK_DIR_ENV: &str = "BOOKING_FAULT_CLOCK_DIR";

/// The clock-offset file of the node whose data directory is `data_dir`, or
/// `None` unless `BOOKING_FAULT_CLOCK=1`.
pub fn fault_offset_file(data_dir: &std::path::Path) -> Option<PathBuf> {
    if !std::env::var(FAULT_CLOCK_ENV).is_ok_and(|v| v == "1") {
        return None;
    }
    match std::env::var_os(FAULT_CLOCK_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            let name = data_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "node".into());
            Some(PathBuf::from(dir).join(format!("{name}.{CLOCK_OFFSET_FILE}")))
        }
        _ => Some(data_dir.join(CLOCK_OFFSET_FILE)),
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Time between the leader's samples of its peers' clocks.
pub const CLOCK_SAMPLE_INTERVAL_MS: u64 = 1_000;
/// A sample whose round trip takes longer is dropped (the RPC's deadline):
/// it would bound the peer's clock too loosely to help.
pub const CLOCK_SAMPLE_RTT_MAX_MS: u64 = 500;
/// How far two clocks may disagree and still count as agreeing: each clock
/// is taken as `reading ± CLOCK_TOLERANCE_MS` (plus its round trip).
pub const CLOCK_TOLERANCE_MS: u64 = 500;
/// An agreement older than this (by the monotonic clock) is not used: log
/// time then runs on the monotonic clock until a new round agrees.
pub const CLOCK_AGREEMENT_FRESH_MS: u64 = 3 * CLOCK_SAMPLE_INTERVAL_MS;
/// How often a leader without a fresh agreement samples again (a new
/// leader's first round starts within this).
pub const CLOCK_RESAMPLE_MS: u64 = 100;
/// At the start of its term a leader holds its first entry up to this long
/// for a first agreement: the state's clock may be far behind real time (an
/// idle log, a new cluster), and stamps run on from it by the monotonic
/// clock until cluster time is known; a hold stamped from such a lagging
/// clock would expire early when the next stamp catches up.
pub const CLOCK_FIRST_AGREEMENT_WAIT_MS: u64 = 2 * CLOCK_SAMPLE_INTERVAL_MS;

/// One peer's answer to the `Clock` RPC, timed by the leader's monotonic
/// clock (ms since the node started).
#[derive(Clone, Copy, Debug)]
pub struct PeerSample {
    pub sent_mono_ms: u64,
    pub received_mono_ms: u64,
    pub wall_ms: u64,
}

/// Cluster time as last agreed: at monotonic `mono_ms` it lay in
/// `[lower_ms, upper_ms]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Agreed {
    mono_ms: u64,
    lower_ms: u64,
    upper_ms: u64,
}

/// What the stamp rule remembers between stamps.
#[derive(Clone, Debug, Default)]
struct StampState {
    /// The term the last stamp was given in; a new term starts afresh.
    term: u64,
    last_stamp_ms: u64,
    last_mono_ms: u64,
    agreed: Option<Agreed>,
}

impl StampState {
    /// The stamp at monotonic `now_mono_ms`, with this node's wall clock at
    /// `own_wall_ms`, the state's clock `floor_ms`, in `term`. Pure, so the
    /// rule is unit-tested without clocks; `commit` records it as given.
    fn next(
        &mut self,
        now_mono_ms: u64,
        own_wall_ms: u64,
        floor_ms: u64,
        term: u64,
        commit: bool,
    ) -> u64 {
        let (mut last_stamp, mut last_mono) = (self.last_stamp_ms, self.last_mono_ms);
        if term != self.term {
            // A new leader starts from the state's clock, not from whatever
            // it stamped in an older term.
            (last_stamp, last_mono) = (floor_ms, now_mono_ms);
        }
        let fresh = self.agreed.filter(|a| {
            now_mono_ms >= a.mono_ms && now_mono_ms - a.mono_ms <= CLOCK_AGREEMENT_FRESH_MS
        });
        let candidate = match fresh {
            Some(a) => {
                let moved = now_mono_ms - a.mono_ms;
                own_wall_ms.clamp(a.lower_ms + moved, a.upper_ms + moved)
            }
            None => last_stamp + now_mono_ms.saturating_sub(last_mono),
        };
        let stamp = candidate.max(last_stamp).max(floor_ms);
        if commit {
            self.term = term;
            self.last_stamp_ms = stamp;
            self.last_mono_ms = now_mono_ms;
        }
        stamp
    }
}

/// `max(own clock, last stamp, state clock)`: the `unbounded-stamp` bug.
fn unbounded_stamp(state: &StampState, own_wall_ms: u64, floor_ms: u64) -> u64 {
    own_wall_ms.max(state.last_stamp_ms).max(floor_ms)
}

/// The leader's clock for stamps (see the module doc for the rule), with the
/// injected offset of the fault hook.
pub struct StampClock {
    state: Mutex<StampState>,
    /// The monotonic origin: `Instant` never jumps with the wall clock, and
    /// the fault hook's offset never reaches it.
    started: Instant,
    offset_ms: AtomicI64,
    /// `Some` only with `BOOKING_FAULT_CLOCK=1`: the file to read the offset from.
    offset_file: Option<PathBuf>,
    /// This node's wall clock minus the middle of the agreed cluster time,
    /// at the last agreeing round (0 before one).
    skew_ms: AtomicI64,
    /// Whether the last round found a majority agreement that includes this
    /// node's own clock ("in sync"), and whether it found one at all.
    own_clock_agrees: AtomicBool,
    agreement: AtomicBool,
    /// The last term whose first entry waited for an agreement.
    waited_term: AtomicU64,
}

impl StampClock {
    pub fn new(offset_file: Option<PathBuf>) -> StampClock {
        let clock = StampClock {
            state: Mutex::new(StampState::default()),
            started: Instant::now(),
            offset_ms: AtomicI64::new(0),
            offset_file,
            skew_ms: AtomicI64::new(0),
            own_clock_agrees: AtomicBool::new(true),
            agreement: AtomicBool::new(false),
            waited_term: AtomicU64::new(0),
        };
        clock.refresh_offset();
        clock
    }

    /// Re-reads the offset file (missing or unparsable: offset 0).
    pub fn refresh_offset(&self) {
        let Some(path) = &self.offset_file else {
            return;
        };
        let offset = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Wall clock plus the injected offset, in ms since the epoch: what this
    /// node answers to the `Clock` RPC.
    pub fn now_ms(&self) -> u64 {
        (wall_ms() as i64)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .max(0) as u64
    }

    /// Milliseconds since this node started, by the monotonic clock.
    pub fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StampState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stamp [`StampClock::stamp`] would give now, without taking it.
    pub fn peek(&self, floor_ms: u64, term: u64) -> u64 {
        let now = self.mono_ms();
        let mut state = self.lock();
        if crate::bugs::active(crate::bugs::Bug::UnboundedStamp) {
            return unbounded_stamp(&state, self.now_ms(), floor_ms);
        }
        state.next(now, self.now_ms(), floor_ms, term, false)
    }

    /// The next stamp (module doc): `floor_ms` is the state machine's clock,
    /// so a new leader whose clock is behind never stamps below the log time
    /// already reached.
    pub fn stamp(&self, floor_ms: u64, term: u64) -> u64 {
        let now = self.mono_ms();
        let mut state = self.lock();
        // BUG (fault-injection-bugs, unbounded-stamp): the old rule, one
        // clock with no bound. Caught by the selftest's register workload
        // under the clock-leap nemesis: "no_early_expiry".
        if crate::bugs::active(crate::bugs::Bug::UnboundedStamp) {
            let stamp = unbounded_stamp(&state, self.now_ms(), floor_ms);
            state.last_stamp_ms = stamp;
            return stamp;
        }
        state.next(now, self.now_ms(), floor_ms, term, true)
    }

    /// Folds one sampling round into cluster time: this node's own clock now
    /// and its peers' answers, out of `voters` voters (this node included).
    /// Returns whether a majority agreed.
    pub fn record_round(&self, peers: &[PeerSample], voters: usize) -> bool {
        let now_mono = self.mono_ms();
        let own = self.now_ms() as i64;
        let tol = CLOCK_TOLERANCE_MS as i64;
        let mut claims = vec![Interval {
            lower_ms: own - tol,
            upper_ms: own + tol,
        }];
        for p in peers {
            if p.received_mono_ms < p.sent_mono_ms
                || p.received_mono_ms - p.sent_mono_ms > CLOCK_SAMPLE_RTT_MAX_MS
                || p.received_mono_ms > now_mono
            {
                continue;
            }
            // At `received` the peer's clock read between `wall` and `wall +
            // round trip`; carried forward to now by the monotonic clock.
            let w = p.wall_ms as i64;
            claims.push(Interval {
                lower_ms: w + (now_mono - p.received_mono_ms) as i64 - tol,
                upper_ms: w + (now_mono - p.sent_mono_ms) as i64 + tol,
            });
        }
        let agreed = agreement(&claims).filter(|a| 2 * a.sources > voters && !a.ambiguous);
        let mut state = self.lock();
        match agreed {
            Some(a) => {
                state.agreed = Some(Agreed {
                    mono_ms: now_mono,
                    lower_ms: a.lower_ms.max(0) as u64,
                    upper_ms: a.upper_ms.max(0) as u64,
                });
                let middle = (a.lower_ms + a.upper_ms) / 2;
                let skew = own - middle;
                self.skew_ms.store(skew, Ordering::Relaxed);
                self.agreement.store(true, Ordering::Relaxed);
                let agrees = (a.lower_ms..=a.upper_ms).contains(&own);
                let was = self.own_clock_agrees.swap(agrees, Ordering::Relaxed);
                if !agrees && was {
                    tracing::warn!(
                        skew_ms = skew,
                        tolerance_ms = CLOCK_TOLERANCE_MS,
                        "this leader's clock disagrees with the majority; stamping cluster time, not its own clock"
                    );
                } else if agrees && !was {
                    tracing::info!(
                        skew_ms = skew,
                        "this leader's clock agrees with the majority again"
                    );
                }
                true
            }
            None => {
                state.agreed = None;
                let was = self.agreement.swap(false, Ordering::Relaxed);
                if was {
                    tracing::warn!(
                        voters,
                        answered = peers.len(),
                        "no majority of clocks agrees; log time runs on the monotonic clock"
                    );
                }
                false
            }
        }
    }

    /// Whether an agreement recent enough to stamp by exists now.
    pub fn agreement_fresh(&self) -> bool {
        let now = self.mono_ms();
        self.lock()
            .agreed
            .is_some_and(|a| now >= a.mono_ms && now - a.mono_ms <= CLOCK_AGREEMENT_FRESH_MS)
    }

    /// Before the first stamp of `term`: waits (bounded by
    /// [`CLOCK_FIRST_AGREEMENT_WAIT_MS`], once per term) for a fresh
    /// agreement, so a new leader does not stamp from a lagging state clock
    /// when cluster time is about to be known.
    pub async fn await_first_agreement(&self, term: u64) {
        if self.waited_term.swap(term, Ordering::Relaxed) == term {
            return;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(CLOCK_FIRST_AGREEMENT_WAIT_MS);
        while !self.agreement_fresh() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// This node's clock minus cluster time at the last agreeing round, ms.
    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }

    /// Whether the last sampling round found a majority agreement.
    pub fn cluster_time_agreed(&self) -> bool {
        self.agreement.load(Ordering::Relaxed)
    }

    /// Whether this node's own clock was inside that agreement.
    pub fn own_clock_agrees(&self) -> bool {
        self.own_clock_agrees.load(Ordering::Relaxed)
    }
}

/// On the leader, every [`CLOCK_SAMPLE_INTERVAL_MS`] (every
/// [`CLOCK_RESAMPLE_MS`] while it has no fresh agreement): ask every other
/// voter for its clock (each call bounded by [`CLOCK_SAMPLE_RTT_MAX_MS`])
/// and fold the answers into cluster time. A follower does nothing.
pub(super) async fn cluster_time_task(core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(CLOCK_RESAMPLE_MS));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_round_mono_ms: Option<u64> = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        if core.current_leader() != Some(core.id) {
            last_round_mono_ms = None;
            continue;
        }
        let now = core.clock.mono_ms();
        let due = match last_round_mono_ms {
            None => true,
            Some(at) => {
                now.saturating_sub(at) >= CLOCK_SAMPLE_INTERVAL_MS || !core.clock.agreement_fresh()
            }
        };
        if !due {
            continue;
        }
        last_round_mono_ms = Some(now);
        let (voters, members): (Vec<NodeId>, Vec<NodeId>) = {
            let metrics = core.raft.metrics().borrow().membership_config.clone();
            let membership = metrics.membership();
            (
                membership.voter_ids().collect(),
                membership.nodes().map(|(id, _)| *id).collect(),
            )
        };
        // Every member, learners too: the same reply carries its command set
        // (`command_sets.rs`), and learners apply the same log. Only the
        // voters' clocks make cluster time.
        let core_ref: &NodeCore = &core;
        let asks = members
            .iter()
            .filter(|id| **id != core.id)
            .map(|&peer| async move { (peer, sample_peer(core_ref, peer).await) });
        let mut samples = Vec::with_capacity(voters.len());
        for (peer, answer) in futures::future::join_all(asks).await {
            let Some((sample, command_set)) = answer else {
                continue;
            };
            core.command_sets.record(peer, command_set);
            if voters.contains(&peer) {
                samples.push(sample);
            }
        }
        core.clock.record_round(&samples, voters.len());
    }
}

/// One `Clock` call to `peer` and the command set it reported, or `None`
/// (unreachable, refused, too slow).
async fn sample_peer(core: &NodeCore, peer: NodeId) -> Option<(PeerSample, u32)> {
    let addr = core.addr_of(peer)?;
    let channel = core.pool.get(&addr).ok()?;
    let mut client = proto::raft::raft_client::RaftClient::new(channel);
    let mut req = tonic::Request::new(proto::raft::ClockRequest {
        cluster_name: core.cluster_name.clone(),
        from_node_id: core.id,
        to_node_id: peer,
    });
    req.set_timeout(Duration::from_millis(CLOCK_SAMPLE_RTT_MAX_MS));
    let sent_mono_ms = core.clock.mono_ms();
    let reply = client.clock(req).await.ok()?.into_inner();
    let sample = PeerSample {
        sent_mono_ms,
        received_mono_ms: core.clock.mono_ms(),
        wall_ms: reply.wall_ms,
    };
    Some((sample, reply.command_set))
}

pub(super) async fn clock_task(core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(CLOCK_OFFSET_REFRESH_MS));
    loop {
        tokio::select! {
            _ = interval.tick() => core.clock.refresh_offset(),
            _ = stop.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: u64 = 3_600_000;
    const T0: u64 = 1_764_000_000_000;

    fn agreed_at(mono_ms: u64, middle_ms: u64) -> Option<Agreed> {
        Some(Agreed {
            mono_ms,
            lower_ms: middle_ms - CLOCK_TOLERANCE_MS,
            upper_ms: middle_ms + CLOCK_TOLERANCE_MS,
        })
    }

    // Goal: with a fresh agreement a sane leader stamps its own clock, and a leader an hour fast or slow is pulled into cluster time instead of moving log time by its error.
    #[test]
    fn a_skewed_leader_stamps_cluster_time() {
        let mut st = StampState {
            term: 1,
            last_stamp_ms: T0,
            last_mono_ms: 1_000,
            agreed: agreed_at(1_000, T0),
        };
        assert_eq!(st.next(1_100, T0 + 100, 0, 1, true), T0 + 100);
        let fast = st.next(1_200, T0 + 200 + HOUR_MS, 0, 1, true);
        assert_eq!(
            fast,
            T0 + 200 + CLOCK_TOLERANCE_MS,
            "an hour fast is capped"
        );
        let slow = st.next(1_300, T0 + 300 - HOUR_MS, 0, 1, true);
        assert_eq!(slow, fast, "an hour slow never takes log time back");
    }

    // Goal: without a fresh agreement log time advances only by the monotonic clock, whatever the leader's wall clock says.
    #[test]
    fn without_agreement_log_time_runs_on_the_monotonic_clock() {
        let mut st = StampState {
            term: 1,
            last_stamp_ms: T0,
            last_mono_ms: 1_000,
            agreed: agreed_at(1_000, T0),
        };
        let later = 1_000 + CLOCK_AGREEMENT_FRESH_MS + 1;
        assert_eq!(st.next(later, T0 + HOUR_MS, 0, 1, true), T0 + later - 1_000);
        st.agreed = None;
        assert_eq!(
            st.next(later + 500, T0 - HOUR_MS, 0, 1, true),
            T0 + later - 1_000 + 500
        );
    }

    // Goal: a new term starts from the state's clock, and no stamp is ever below it or below the previous stamp.
    #[test]
    fn a_new_term_starts_from_the_state_clock() {
        let mut st = StampState {
            term: 1,
            last_stamp_ms: T0 + HOUR_MS,
            last_mono_ms: 0,
            agreed: None,
        };
        assert_eq!(
            st.next(10, 0, T0, 2, true),
            T0,
            "term 2 starts at the floor"
        );
        assert_eq!(st.next(20, 0, T0, 2, true), T0 + 10);
        assert_eq!(st.next(30, 0, T0 + 5_000, 2, true), T0 + 5_000);
        let peeked = st.next(40, 0, 0, 2, false);
        assert_eq!(peeked, T0 + 5_010);
        assert_eq!(st.last_stamp_ms, T0 + 5_000, "a peek records nothing");
    }

    fn sample(clock: &StampClock, wall_ms: u64) -> PeerSample {
        let now = clock.mono_ms();
        PeerSample {
            sent_mono_ms: now,
            received_mono_ms: now,
            wall_ms,
        }
    }

    // Goal: a sampling round finds the majority's time, says whether this node's own clock is in it, and with no majority records no agreement.
    #[test]
    fn rounds_find_the_majority() {
        let clock = StampClock::new(None);
        let own = clock.now_ms();
        // One peer sane, one an hour ahead: this node and the sane peer agree.
        assert!(clock.record_round(
            &[sample(&clock, own + 50), sample(&clock, own + HOUR_MS)],
            3
        ));
        assert!(clock.own_clock_agrees());
        assert!(clock.skew_ms().abs() <= 100, "{}", clock.skew_ms());
        // Both peers an hour ahead: this node is the one that is wrong.
        assert!(clock.record_round(
            &[
                sample(&clock, own + HOUR_MS),
                sample(&clock, own + HOUR_MS + 10)
            ],
            3
        ));
        assert!(!clock.own_clock_agrees());
        assert!(
            clock.skew_ms() < -(HOUR_MS as i64) + 1_000,
            "{}",
            clock.skew_ms()
        );
        // Nobody answers: one clock of three is no majority.
        assert!(!clock.record_round(&[], 3));
        assert!(!clock.cluster_time_agreed());
    }
}
