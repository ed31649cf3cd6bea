//! The time checkers: holds live their TTL (and payment-pending holds their
//! payment window) in real time, and log time never runs ahead of real time,
//! all up to the clock allowance and all only while a majority of clocks is
//! sane.
//!
//! Owns: [`no_early_expiry`], [`no_payment_pending_expiry`],
//! [`log_time_follows_real_time`], the allowance, and which stretches of a
//! run they skip ([`majority_clock_windows`]). Must not: do I/O; the harness
//! passes the fault windows in. Why the skip: when the nemesis moves a
//! majority's clocks, cluster time moves with them (a majority *is* the
//! cluster's idea of time), so a hold alive across such a window may expire
//! early, and log time may run an hour ahead; the store promises neither.

use std::collections::{HashMap, HashSet};

use super::{CheckResult, Finding};
use crate::booking::{
    BookingCall, BookingOp, BookingResult, BookingRet, HoldId, ReplicaState, SeatView,
};
use crate::harness::recorder::FaultWindow;

/// Real time a hold may lose to clocks while a majority of them is sane:
/// each end of its life may be stamped up to `2 × tolerance + round trip`
/// (2 × 500 + 500 ms) off real time (ARCHITECTURE.md "Time"), plus 1 s for
/// the harness's own scheduling.
pub const EXPIRY_CLOCK_ALLOWANCE_MS: u64 = 2 * (2 * 500 + 500) + 1_000;

/// How long after a majority's clocks are set right the skip goes on: the
/// nodes re-read their offsets every 100 ms and the leader samples clocks
/// every second, keeping an agreement up to 3 s (`node::clock`); until a
/// fresh one, stamps still run on from the insane stretch.
pub const MAJORITY_CLOCK_SETTLE_NS: u64 = 4_000_000_000;

/// Stretches of a run (harness ns, sorted, merged) in which a majority's
/// clocks were not sane; nothing whose real-time interval touches one is
/// judged.
pub type ClockWindows = Vec<(u64, u64)>;

/// The windows of faults that moved the clocks of a strict majority of
/// `nodes` nodes, each from its start to `settle_ns` after its end (an
/// open window runs to `run_end_ns`), merged where they overlap.
pub fn majority_clock_windows(
    faults: &[FaultWindow],
    nodes: usize,
    run_end_ns: u64,
    settle_ns: u64,
) -> ClockWindows {
    let mut windows: Vec<(u64, u64)> = faults
        .iter()
        .filter(|f| 2 * f.clocks_moved.len() > nodes)
        .map(|f| {
            (
                f.start_ns,
                f.end_ns.unwrap_or(run_end_ns).saturating_add(settle_ns),
            )
        })
        .collect();
    windows.sort_unstable();
    let mut merged: ClockWindows = Vec::new();
    for (start, end) in windows {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// Which sane stretch `[from_ns, to_ns]` lies in (the number of windows
/// before it), or `None` if it touches a window.
fn sane_stretch(windows: &[(u64, u64)], from_ns: u64, to_ns: u64) -> Option<usize> {
    let i = windows.partition_point(|w| w.1 < from_ns);
    match windows.get(i) {
        Some(w) if w.0 <= to_ns => None,
        _ => Some(i),
    }
}

/// Releases that may have happened, by hold (a released hold answers
/// `hold_expired` too, so an expiry after one proves nothing).
fn possible_releases(ops: &[BookingOp]) -> HashMap<HoldId, Vec<&BookingOp>> {
    let mut m: HashMap<HoldId, Vec<&BookingOp>> = HashMap::new();
    for op in ops {
        if let BookingCall::Release(r) = &op.call {
            if !matches!(op.result, BookingResult::Refused(_) | BookingResult::Failed) {
                m.entry(r.hold_id).or_default().push(op);
            }
        }
    }
    m
}

/// A confirm or release refused `hold_expired`: (the hold it named, the op).
fn expiry_refusals(ops: &[BookingOp]) -> impl Iterator<Item = (HoldId, &BookingOp)> {
    ops.iter().filter_map(|op| match (&op.call, &op.result) {
        (BookingCall::Confirm(r) | BookingCall::Release(r), BookingResult::Refused(f))
            if f.error == "hold_expired" =>
        {
            Some((r.hold_id, op))
        }
        _ => None,
    })
}

/// One judgement of a life: `from` (an op whose invoke starts the life,
/// e.g. the hold) to `refusal` (whose completion ends it at the latest)
/// must last `min_ms` unless a majority's clocks were off meanwhile or a
/// release may have ended it.
struct Life<'a> {
    from: &'a BookingOp,
    refusal: &'a BookingOp,
    hold_id: HoldId,
}

enum Judged {
    Early(u64),
    Fine,
    Unjudged,
}

fn judge_life(
    life: &Life,
    min_ms: u64,
    releases: &HashMap<HoldId, Vec<&BookingOp>>,
    insane: &[(u64, u64)],
) -> Judged {
    let Some(done_ns) = life.refusal.complete_ns else {
        return Judged::Unjudged;
    };
    let maybe_released = releases.get(&life.hold_id).is_some_and(|rs| {
        rs.iter()
            .any(|rel| rel.id != life.refusal.id && rel.invoke_ns <= done_ns)
    });
    if maybe_released || sane_stretch(insane, life.from.invoke_ns, done_ns).is_none() {
        return Judged::Unjudged;
    }
    let lived_ns = done_ns.saturating_sub(life.from.invoke_ns);
    if lived_ns < min_ms * 1_000_000 {
        Judged::Early(lived_ns / 1_000_000)
    } else {
        Judged::Fine
    }
}

/// Counts one judged `life` into a checker's tallies; an early expiry
/// becomes a finding naming both ops, worded by `message(lived_ms)`.
fn count_life(
    life: &Life,
    judged: Judged,
    findings: &mut Vec<Finding>,
    checked: &mut usize,
    unjudged: &mut usize,
    message: impl FnOnce(u64) -> String,
) {
    match judged {
        Judged::Unjudged => *unjudged += 1,
        Judged::Fine => *checked += 1,
        Judged::Early(lived_ms) => {
            *checked += 1;
            findings.push(Finding {
                message: message(lived_ms),
                ops: vec![life.from.id, life.refusal.id],
                seat: life.refusal.call.seats().first().cloned(),
                node: None,
            });
        }
    }
}

/// No hold expires early in real time: a confirm or release refused
/// `hold_expired` completed at most `c − h` after its hold was invoked
/// (`h`), so the hold lived at most that long; shorter than `hold_ttl_ms −
/// allowance_ms` is an early expiry (a clock moved log time). Holds with
/// another release that may have happened before, and lives that touch an
/// `insane` window, are not judged.
pub fn no_early_expiry(
    ops: &[BookingOp],
    hold_ttl_ms: u64,
    allowance_ms: u64,
    insane: &[(u64, u64)],
) -> CheckResult {
    let held: HashMap<HoldId, &BookingOp> = ops
        .iter()
        .filter_map(|op| match &op.result {
            BookingResult::Ok(BookingRet::Held(h)) => Some((h.hold_id, op)),
            _ => None,
        })
        .collect();
    let releases = possible_releases(ops);
    let min_ms = hold_ttl_ms.saturating_sub(allowance_ms);
    let (mut findings, mut checked, mut unjudged) = (Vec::new(), 0, 0);
    for (hold_id, refusal) in expiry_refusals(ops) {
        let Some(hold) = held.get(&hold_id) else {
            unjudged += 1;
            continue;
        };
        let life = Life {
            from: hold,
            refusal,
            hold_id,
        };
        let judged = judge_life(&life, min_ms, &releases, insane);
        count_life(
            &life,
            judged,
            &mut findings,
            &mut checked,
            &mut unjudged,
            |lived_ms| {
                format!(
                "hold {hold_id} (TTL {hold_ttl_ms} ms) was expired {lived_ms} ms after its hold was invoked, \
                 more than {allowance_ms} ms early"
            )
            },
        );
    }
    CheckResult::new("no_early_expiry", findings, checked, unjudged)
}

/// No payment-pending hold expires before its payment window: once a
/// begin-payment of a hold is acknowledged, the hold's expiry is at least
/// log time + `payment_window_ms`, so a confirm or release of it refused
/// `hold_expired` that completed less than `payment_window_ms −
/// allowance_ms` after the begin-payment was invoked is an early expiry.
/// Refusals that may precede the begin-payment (invoked before it
/// completed), lives that touch an `insane` window and holds a release may
/// have ended are not judged.
///
/// A confirm or release acknowledged after an acknowledged begin-payment
/// counts as a judged life (the hold was alive), so `checked` is the number
/// of payment-pending lives the run observed.
///
/// And a hold whose payment was begun, that no confirm or release may have
/// ended, is still held on every replica's final state (read by
/// `finals_read_ns`) when the window less the allowance had not passed by
/// then: an expiry nobody asked about is caught too.
pub fn no_payment_pending_expiry(
    ops: &[BookingOp],
    replicas: &[ReplicaState],
    finals_read_ns: u64,
    payment_window_ms: u64,
    allowance_ms: u64,
    insane: &[(u64, u64)],
) -> CheckResult {
    let mut begun: HashMap<HoldId, Vec<&BookingOp>> = HashMap::new();
    for op in ops {
        if let (BookingCall::BeginPayment(r), BookingResult::Ok(BookingRet::PaymentBegun(_))) =
            (&op.call, &op.result)
        {
            begun.entry(r.hold_id).or_default().push(op);
        }
    }
    let releases = possible_releases(ops);
    let min_ms = payment_window_ms.saturating_sub(allowance_ms);
    let (mut findings, mut checked, mut unjudged) = (Vec::new(), 0, 0);
    for (hold_id, refusal) in expiry_refusals(ops) {
        let Some(begins) = begun.get(&hold_id) else {
            continue;
        };
        // The earliest acknowledged begin-payment certainly before the refusal.
        let Some(begin) = begins
            .iter()
            .filter(|b| b.complete_ns.is_some_and(|c| c < refusal.invoke_ns))
            .min_by_key(|b| b.invoke_ns)
        else {
            unjudged += 1;
            continue;
        };
        let life = Life {
            from: begin,
            refusal,
            hold_id,
        };
        let judged = judge_life(&life, min_ms, &releases, insane);
        count_life(
            &life,
            judged,
            &mut findings,
            &mut checked,
            &mut unjudged,
            |lived_ms| {
                format!(
                "payment-pending hold {hold_id} (payment window {payment_window_ms} ms) was expired \
                 {lived_ms} ms after its payment was begun, more than {allowance_ms} ms early"
            )
            },
        );
    }
    // A confirm or release acknowledged after a begun payment saw the hold
    // alive: a judged life, fine by construction (an early expiry would have
    // refused it, above). Counted so `checked` says how many payment-pending
    // lives the run could have caught expiring.
    for op in ops {
        let hold_id = match (&op.call, &op.result) {
            (BookingCall::Confirm(r), BookingResult::Ok(BookingRet::Confirmed(_)))
            | (BookingCall::Release(r), BookingResult::Ok(BookingRet::Released(_))) => r.hold_id,
            _ => continue,
        };
        let (Some(begins), Some(done_ns)) = (begun.get(&hold_id), op.complete_ns) else {
            continue;
        };
        let begin = begins
            .iter()
            .filter(|b| b.complete_ns.is_some_and(|c| c < op.invoke_ns))
            .min_by_key(|b| b.invoke_ns);
        match begin {
            Some(b) if sane_stretch(insane, b.invoke_ns, done_ns).is_some() => checked += 1,
            _ => unjudged += 1,
        }
    }
    // Holds some confirm or release may have ended.
    let ended: HashSet<HoldId> = ops
        .iter()
        .filter_map(|op| match &op.call {
            BookingCall::Confirm(r) | BookingCall::Release(r) if op.may_have_happened() => {
                Some(r.hold_id)
            }
            _ => None,
        })
        .collect();
    let mut pending: Vec<(&HoldId, &BookingOp)> = begun
        .iter()
        .filter(|(hold_id, _)| !ended.contains(hold_id))
        .filter_map(|(hold_id, begins)| {
            begins
                .iter()
                .min_by_key(|b| b.invoke_ns)
                .map(|b| (hold_id, *b))
        })
        .collect();
    pending.sort_by_key(|(hold_id, _)| **hold_id);
    for (hold_id, begin) in pending {
        let young = finals_read_ns.saturating_sub(begin.invoke_ns) < min_ms * 1_000_000;
        if replicas.is_empty()
            || !young
            || sane_stretch(insane, begin.invoke_ns, finals_read_ns).is_none()
        {
            unjudged += 1;
            continue;
        }
        checked += 1;
        for replica in replicas {
            for seat in begin.call.seats() {
                match replica.seats.get(seat) {
                    Some(SeatView::Held { hold_id: h, .. }) if h == hold_id => {}
                    // Not reported (the scan did not reach it): no verdict.
                    None => {}
                    Some(other) => findings.push(Finding {
                        message: format!(
                            "payment-pending hold {hold_id} (begun op {}, {} ms before the final read) \
                             is gone from node {}'s seat {seat}: {other:?}",
                            begin.id,
                            finals_read_ns.saturating_sub(begin.invoke_ns) / 1_000_000,
                            replica.node
                        ),
                        ops: vec![begin.id],
                        seat: Some(seat.clone()),
                        node: Some(replica.node.clone()),
                    }),
                }
            }
        }
    }
    CheckResult::new("no_payment_pending_expiry", findings, checked, unjudged)
}

/// Log time never runs ahead of real time by more than the allowance: for
/// acknowledged holds A then B (A completed before B was invoked), B's log
/// time minus A's is at most the real time from A's invoke to B's completion
/// plus `allowance_ms`. Log time is each hold's `at_ms`; real time is the
/// harness's monotonic clock. A leader whose own clock leaps ahead and
/// stamps by it breaks this at once, even when no hold was alive to expire.
/// Only pairs within one sane stretch are compared: a hold that touches an
/// `insane` window is compared with nothing.
pub fn log_time_follows_real_time(
    ops: &[BookingOp],
    allowance_ms: u64,
    insane: &[(u64, u64)],
) -> CheckResult {
    // By sane stretch: (log time ms, invoke ms, complete ms, op id) of
    // acknowledged holds.
    type Hold = (i128, i128, i128, usize);
    let mut stretches: HashMap<usize, Vec<Hold>> = HashMap::new();
    let mut unjudged = 0;
    for op in ops {
        let (BookingResult::Ok(BookingRet::Held(h)), Some(done)) = (&op.result, op.complete_ns)
        else {
            continue;
        };
        match sane_stretch(insane, op.invoke_ns, done) {
            Some(s) => stretches.entry(s).or_default().push((
                h.at_ms as i128,
                (op.invoke_ns / 1_000_000) as i128,
                (done / 1_000_000) as i128,
                op.id,
            )),
            None => unjudged += 1,
        }
    }
    let mut findings = Vec::new();
    let mut checked = 0;
    let mut order: Vec<usize> = stretches.keys().copied().collect();
    order.sort_unstable();
    for s in order {
        let mut holds = stretches.remove(&s).unwrap_or_default();
        checked += holds.len();
        let mut by_complete = holds.clone();
        by_complete.sort_by_key(|h| h.2);
        holds.sort_by_key(|h| h.1);
        // Over the holds completed before B's invoke: the least `at − invoke`.
        let mut least: Option<(i128, usize)> = None;
        let mut next = 0;
        for b in &holds {
            while next < by_complete.len() && by_complete[next].2 < b.1 {
                let a = by_complete[next];
                let lead = a.0 - a.1;
                if least.is_none_or(|(l, _)| lead < l) {
                    least = Some((lead, a.3));
                }
                next += 1;
            }
            let Some((a_lead, a_id)) = least else {
                continue;
            };
            let ahead_ms = (b.0 - b.2) - a_lead;
            if ahead_ms > allowance_ms as i128 && findings.len() < 10 {
                findings.push(Finding {
                    message: format!(
                        "log time ran {ahead_ms} ms ahead of real time between op {a_id} and op {} \
                         (allowance {allowance_ms} ms)",
                        b.3
                    ),
                    ops: vec![a_id, b.3],
                    seat: None,
                    node: None,
                });
            }
        }
    }
    CheckResult::new("log_time_follows_real_time", findings, checked, unjudged)
}
