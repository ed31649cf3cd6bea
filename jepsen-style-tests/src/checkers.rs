//! The booking suite's safety checkers, besides linearizability per seat
//! (`models::seat::check_seats`).
//!
//! Owns: pure functions over a decoded history (`booking::BookingOp`) and the
//! replicas' final states (`booking::ReplicaState`), each returning a
//! [`CheckResult`] with `valid` and the findings that prove a violation:
//! - [`no_seat_sold_twice`]: two acknowledged confirms of one seat to
//!   different bookings, with no cancel that could lie between them;
//! - [`acknowledged_bookings_present`]: every acknowledged booking is on
//!   every replica's final state (unless a cancel of it may have happened);
//! - [`no_phantom_bookings`]: every booked seat in a final state comes from a
//!   confirm someone made (its booking id came back in an `ok`, or its hold id
//!   was the target of a confirm that may have happened), for that seat;
//! - [`no_confirm_past_expiry`]: no confirm acknowledged at a log time at or
//!   after its hold's expiry;
//! - [`no_early_expiry`]: no hold expired sooner in real time (the
//!   harness's monotonic clock) than its TTL minus the clock allowance;
//! - [`no_payment_pending_expiry`]: no payment-pending hold expired before
//!   its payment window (less the allowance) had passed;
//! - [`log_time_follows_real_time`]: log time never runs ahead of the
//!   harness's real time by more than the clock allowance;
//!   (these three, in `checkers/clock.rs`, judge nothing that overlaps a
//!   window in which the nemesis moved a majority's clocks: the store
//!   promises them only while a majority of clocks is sane);
//! - [`no_duplicate_effects`] (`checkers/effects.rs`): no request id took
//!   effect twice (two holds for one hold request, two bookings for one
//!   hold);
//! - [`replica_hashes_equal`]: all replicas' state hashes agree;
//! - [`no_resurrections`]: no replica shows a booking whose cancel, or a
//!   hold whose release or confirm, was acknowledged;
//! - [`event_present`]: every replica knows the event the setup created;
//! - [`ids_issued_once`]: no hold id acknowledged to two holds, no booking id
//!   to two holds (ids reused after acknowledged log entries were lost).
//!
//! Each checker errs towards *valid* where the history cannot decide (an
//! `info` cancel may have happened; without log indexes, real-time order is
//! used and overlapping operations may be in either order), and counts what
//! it could not judge in `unjudged`. Must not: do I/O or talk to nodes; the
//! harness gathers the final states and passes them in.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::booking::{
    is_expired, BookingCall, BookingId, BookingOp, BookingResult, BookingRet, HoldId, ReplicaState,
    SeatId, SeatView,
};

/// One violation, with what proves it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub message: String,
    /// Ids (`BookingOp::id`) of the operations involved.
    pub ops: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seat: Option<SeatId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A checker's answer, shaped for `results.json`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub checker: &'static str,
    /// No finding.
    pub valid: bool,
    pub findings: Vec<Finding>,
    /// Every operation named by a finding, sorted, once each.
    pub offending_ops: Vec<usize>,
    /// How many items (bookings, seats, replicas) were judged.
    pub checked: usize,
    /// Items the history could not decide either way (not violations).
    pub unjudged: usize,
}

impl CheckResult {
    pub fn new(
        checker: &'static str,
        findings: Vec<Finding>,
        checked: usize,
        unjudged: usize,
    ) -> Self {
        let mut offending_ops: Vec<usize> = findings
            .iter()
            .flat_map(|f| f.ops.iter().copied())
            .collect();
        offending_ops.sort_unstable();
        offending_ops.dedup();
        CheckResult {
            checker,
            valid: findings.is_empty(),
            findings,
            offending_ops,
            checked,
            unjudged,
        }
    }
}

/// An acknowledged confirm.
struct Confirm<'a> {
    op: &'a BookingOp,
    booking_id: BookingId,
    hold_id: HoldId,
    seats: &'a [SeatId],
    at_ms: u64,
    hold_expires_at_ms: Option<u64>,
}

fn acknowledged_confirms(ops: &[BookingOp]) -> Vec<Confirm<'_>> {
    ops.iter()
        .filter_map(|op| match (&op.call, &op.result) {
            (BookingCall::Confirm(r), BookingResult::Ok(BookingRet::Confirmed(c))) => {
                Some(Confirm {
                    op,
                    booking_id: c.booking_id,
                    hold_id: r.hold_id,
                    seats: &r.seats,
                    at_ms: c.at_ms,
                    hold_expires_at_ms: c.hold_expires_at_ms,
                })
            }
            _ => None,
        })
        .collect()
}

/// Cancels that may have happened (ok or unknown), by booking.
fn possible_cancels(ops: &[BookingOp]) -> HashMap<BookingId, Vec<&BookingOp>> {
    let mut cancels: HashMap<BookingId, Vec<&BookingOp>> = HashMap::new();
    for op in ops {
        if let BookingCall::Cancel(b) = &op.call {
            if op.may_have_happened() {
                cancels.entry(b.booking_id).or_default().push(op);
            }
        }
    }
    cancels
}

/// Could `a` have taken effect before `b`? When both replies carry a log
/// index, the log decides: the store answers every request, a deduplicated
/// retry included, with the index of the entry that first applied it, so the
/// indexes are the order in which the ops took effect. Otherwise real time
/// decides: yes unless `b` completed before `a` was invoked (an unknown
/// completion is +infinity).
fn may_precede(a: &BookingOp, b: &BookingOp) -> bool {
    match (a.index, b.index) {
        (Some(ia), Some(ib)) => ia < ib,
        _ => a.invoke_ns <= b.complete_ns.unwrap_or(u64::MAX),
    }
}

/// No seat is sold to two bookings without a cancel between the two sales.
pub fn no_seat_sold_twice(ops: &[BookingOp]) -> CheckResult {
    let confirms = acknowledged_confirms(ops);
    let cancels = possible_cancels(ops);
    let mut by_seat: BTreeMap<&SeatId, Vec<&Confirm>> = BTreeMap::new();
    for c in &confirms {
        for seat in c.seats {
            by_seat.entry(seat).or_default().push(c);
        }
    }
    // Sold to `first`, then resold to `second`: fine only if a cancel of
    // `first`'s booking of this seat may lie between the two.
    let resale_explained = |seat: &SeatId, first: &Confirm, second: &Confirm| {
        may_precede(first.op, second.op)
            && cancels.get(&first.booking_id).is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.call.seats().contains(seat)
                        && may_precede(first.op, c)
                        && may_precede(c, second.op)
                })
            })
    };
    let mut findings = Vec::new();
    for (seat, sales) in &by_seat {
        for (i, a) in sales.iter().enumerate() {
            for b in &sales[i + 1..] {
                // The same booking acknowledged twice is a deduplicated retry.
                if a.booking_id == b.booking_id {
                    continue;
                }
                if !resale_explained(seat, a, b) && !resale_explained(seat, b, a) {
                    findings.push(Finding {
                        message: format!(
                            "seat {seat} sold to booking {} (op {}) and to booking {} (op {}) with no cancel between",
                            a.booking_id, a.op.id, b.booking_id, b.op.id
                        ),
                        ops: vec![a.op.id, b.op.id],
                        seat: Some((*seat).clone()),
                        node: None,
                    });
                }
            }
        }
    }
    CheckResult::new("no_seat_sold_twice", findings, by_seat.len(), 0)
}

/// Every acknowledged booking is present on every replica after heal, unless
/// a cancel of it may have happened.
pub fn acknowledged_bookings_present(ops: &[BookingOp], replicas: &[ReplicaState]) -> CheckResult {
    let cancels = possible_cancels(ops);
    let (mut findings, mut checked, mut unjudged) = (Vec::new(), 0, 0);
    for c in acknowledged_confirms(ops) {
        if cancels.contains_key(&c.booking_id) {
            unjudged += 1;
            continue;
        }
        checked += 1;
        for replica in replicas {
            for seat in c.seats {
                let problem = match replica.seats.get(seat) {
                    Some(SeatView::Booked { booking_id, .. }) if *booking_id == c.booking_id => {
                        continue
                    }
                    Some(other) => format!("shows {other:?}"),
                    None => "does not report the seat".to_owned(),
                };
                findings.push(Finding {
                    message: format!(
                        "booking {} of seat {seat} was acknowledged (op {}) but node {} {problem}",
                        c.booking_id, c.op.id, replica.node
                    ),
                    ops: vec![c.op.id],
                    seat: Some(seat.clone()),
                    node: Some(replica.node.clone()),
                });
            }
        }
    }
    CheckResult::new("acknowledged_bookings_present", findings, checked, unjudged)
}

/// No replica shows a booking that no client asked for.
pub fn no_phantom_bookings(ops: &[BookingOp], replicas: &[ReplicaState]) -> CheckResult {
    let mut acknowledged: HashSet<(&SeatId, BookingId)> = HashSet::new();
    for c in acknowledged_confirms(ops) {
        acknowledged.extend(c.seats.iter().map(|s| (s, c.booking_id)));
    }
    // Holds some client asked to confirm, by a confirm that may have happened.
    let mut asked: HashSet<(&SeatId, HoldId)> = HashSet::new();
    for op in ops {
        if let BookingCall::Confirm(r) = &op.call {
            if op.may_have_happened() {
                asked.extend(r.seats.iter().map(|s| (s, r.hold_id)));
            }
        }
    }
    let (mut findings, mut checked) = (Vec::new(), 0);
    for replica in replicas {
        for (seat, view) in &replica.seats {
            let SeatView::Booked {
                booking_id,
                hold_id,
                holder,
            } = view
            else {
                continue;
            };
            checked += 1;
            if !acknowledged.contains(&(seat, *booking_id)) && !asked.contains(&(seat, *hold_id)) {
                findings.push(Finding {
                    message: format!(
                        "node {} shows seat {seat} booked (booking {booking_id}, hold {hold_id}, holder {holder:?}) \
                         but no confirm of that hold for that seat may have happened",
                        replica.node
                    ),
                    ops: Vec::new(),
                    seat: Some(seat.clone()),
                    node: Some(replica.node.clone()),
                });
            }
        }
    }
    CheckResult::new("no_phantom_bookings", findings, checked, 0)
}

/// No confirm was acknowledged at or after its hold's expiry, in log time.
///
/// The expiry is the one the confirm's reply reports (`hold_expires_at_ms`,
/// after any extension); failing that, the latest one the hold's reply or an
/// acknowledged begin-payment of it reported. A confirm with neither, or
/// past that expiry while a begin-payment of unknown outcome may have moved
/// it, is counted in `unjudged`.
pub fn no_confirm_past_expiry(ops: &[BookingOp]) -> CheckResult {
    // The latest expiry a reply reported (a begun payment moves it later),
    // and the holds a begin-payment of unknown outcome may have moved.
    let mut hold_expiry: HashMap<HoldId, u64> = HashMap::new();
    let mut maybe_moved: HashSet<HoldId> = HashSet::new();
    for op in ops {
        match (&op.call, &op.result) {
            (_, BookingResult::Ok(BookingRet::Held(h))) => {
                let e = hold_expiry.entry(h.hold_id).or_insert(h.expires_at_ms);
                *e = (*e).max(h.expires_at_ms);
            }
            (BookingCall::BeginPayment(r), BookingResult::Ok(BookingRet::PaymentBegun(p))) => {
                let e = hold_expiry.entry(r.hold_id).or_insert(p.expires_at_ms);
                *e = (*e).max(p.expires_at_ms);
            }
            (BookingCall::BeginPayment(r), BookingResult::Unknown) => {
                maybe_moved.insert(r.hold_id);
            }
            _ => {}
        }
    }
    let (mut findings, mut checked, mut unjudged) = (Vec::new(), 0, 0);
    for c in acknowledged_confirms(ops) {
        let Some(expires_at_ms) = c
            .hold_expires_at_ms
            .or_else(|| hold_expiry.get(&c.hold_id).copied())
        else {
            unjudged += 1;
            continue;
        };
        let past = is_expired(expires_at_ms, c.at_ms);
        if past && c.hold_expires_at_ms.is_none() && maybe_moved.contains(&c.hold_id) {
            unjudged += 1;
            continue;
        }
        checked += 1;
        if past {
            findings.push(Finding {
                message: format!(
                    "hold {} confirmed as booking {} at log time {} ms, but it expired at {} ms",
                    c.hold_id, c.booking_id, c.at_ms, expires_at_ms
                ),
                ops: vec![c.op.id],
                seat: c.seats.first().cloned(),
                node: None,
            });
        }
    }
    CheckResult::new("no_confirm_past_expiry", findings, checked, unjudged)
}

/// The store never hands one id to two requests: each hold id comes back in
/// at most one acknowledged hold (every hold invocation is its own request;
/// a same-id retry stays inside its operation), and each booking id comes
/// from one hold only. A store that loses acknowledged log entries and
/// reuses their positions (a kill of every node after an acknowledgement
/// that was only in memory) hands the lost ids out again, which per-seat
/// linearizability can miss when the lost stretch left each seat as it found
/// it.
pub fn ids_issued_once(ops: &[BookingOp]) -> CheckResult {
    let mut holds: BTreeMap<HoldId, &BookingOp> = BTreeMap::new();
    let mut bookings: BTreeMap<BookingId, (HoldId, &BookingOp)> = BTreeMap::new();
    let mut findings = Vec::new();
    for op in ops {
        match (&op.call, &op.result) {
            (BookingCall::Hold(_), BookingResult::Ok(BookingRet::Held(h))) => {
                if let Some(first) = holds.insert(h.hold_id, op) {
                    findings.push(Finding {
                        message: format!(
                            "hold id {} acknowledged to two holds: op {} and op {}",
                            h.hold_id, first.id, op.id
                        ),
                        ops: vec![first.id, op.id],
                        seat: None,
                        node: None,
                    });
                }
            }
            (BookingCall::Confirm(r), BookingResult::Ok(BookingRet::Confirmed(c))) => {
                match bookings.get(&c.booking_id) {
                    Some((hold_id, first)) if *hold_id != r.hold_id => {
                        findings.push(Finding {
                            message: format!(
                                "booking id {} acknowledged for hold {} (op {}) and for hold {} (op {})",
                                c.booking_id, hold_id, first.id, r.hold_id, op.id
                            ),
                            ops: vec![first.id, op.id],
                            seat: None,
                            node: None,
                        });
                    }
                    Some(_) => {}
                    None => {
                        bookings.insert(c.booking_id, (r.hold_id, op));
                    }
                }
            }
            _ => {}
        }
    }
    CheckResult::new("ids_issued_once", findings, holds.len() + bookings.len(), 0)
}

/// What an acknowledged write removed stays removed: after heal, no replica
/// shows a booking whose cancel was acknowledged, nor a seat held by a hold
/// whose release or confirm was acknowledged. Ids are never reused and
/// neither a cancelled booking nor a released or confirmed hold can come
/// back, so each such seat proves an acknowledged write was lost (the
/// counterpart of [`acknowledged_bookings_present`] for cancels and
/// releases).
pub fn no_resurrections(ops: &[BookingOp], replicas: &[ReplicaState]) -> CheckResult {
    let mut cancelled: BTreeMap<BookingId, usize> = BTreeMap::new();
    let mut hold_done: BTreeMap<HoldId, usize> = BTreeMap::new();
    for op in ops {
        match (&op.call, &op.result) {
            (BookingCall::Cancel(b), BookingResult::Ok(BookingRet::Cancelled(_))) => {
                cancelled.insert(b.booking_id, op.id);
            }
            (BookingCall::Release(r), BookingResult::Ok(BookingRet::Released(_)))
            | (BookingCall::Confirm(r), BookingResult::Ok(BookingRet::Confirmed(_))) => {
                hold_done.insert(r.hold_id, op.id);
            }
            _ => {}
        }
    }
    let mut findings = Vec::new();
    for replica in replicas {
        for (seat, view) in &replica.seats {
            let (what, op) = match view {
                SeatView::Booked { booking_id, .. } => match cancelled.get(booking_id) {
                    Some(&op) => (format!("booked by booking {booking_id}"), op),
                    None => continue,
                },
                SeatView::Held { hold_id, .. } => match hold_done.get(hold_id) {
                    Some(&op) => (format!("held by hold {hold_id}"), op),
                    None => continue,
                },
                _ => continue,
            };
            findings.push(Finding {
                message: format!(
                    "node {} shows seat {seat} {what}, which op {op} had acknowledged removing",
                    replica.node
                ),
                ops: vec![op],
                seat: Some(seat.clone()),
                node: Some(replica.node.clone()),
            });
        }
    }
    CheckResult::new(
        "no_resurrections",
        findings,
        cancelled.len() + hold_done.len(),
        0,
    )
}

/// Every replica knows the run's event: its creation was acknowledged before
/// the workload began, so a replica without it lost acknowledged writes.
pub fn event_present(replicas: &[ReplicaState]) -> CheckResult {
    let findings = replicas
        .iter()
        .filter(|r| r.event_missing)
        .map(|r| Finding {
            message: format!(
                "node {} does not know the run's event, whose creation was acknowledged at setup",
                r.node
            ),
            ops: Vec::new(),
            seat: None,
            node: Some(r.node.clone()),
        })
        .collect();
    CheckResult::new("event_present", findings, replicas.len(), 0)
}

/// All replicas report the same state hash.
pub fn replica_hashes_equal(replicas: &[ReplicaState]) -> CheckResult {
    let mut by_hash: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in replicas {
        by_hash.entry(&r.state_hash).or_default().push(&r.node);
    }
    let findings = if by_hash.len() > 1 {
        let groups: Vec<String> = by_hash
            .iter()
            .map(|(h, nodes)| format!("{h}: {}", nodes.join(", ")))
            .collect();
        vec![Finding {
            message: format!("replicas disagree on the state hash: {}", groups.join("; ")),
            ops: Vec::new(),
            seat: None,
            node: None,
        }]
    } else {
        Vec::new()
    };
    CheckResult::new("replica_hashes_equal", findings, replicas.len(), 0)
}

mod clock;
mod effects;

pub use clock::{
    log_time_follows_real_time, majority_clock_windows, no_early_expiry, no_payment_pending_expiry,
    ClockWindows, EXPIRY_CLOCK_ALLOWANCE_MS, MAJORITY_CLOCK_SETTLE_NS,
};
pub use effects::no_duplicate_effects;

#[cfg(test)]
mod tests;
