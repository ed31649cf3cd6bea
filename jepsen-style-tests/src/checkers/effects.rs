//! Exactly-once, as the history shows it: no request took effect twice.
//!
//! Owns: [`no_duplicate_effects`]. Must not: do I/O. It relies on the
//! workloads' contract (`booking.rs`): a hold request names a holder no
//! other request uses, and every same-id retry of an operation carries the
//! operation's request id, so a holder seen on two holds, or one request id
//! answered with two hold ids or two booking ids, is one request applied
//! twice: a retry the exactly-once table forgot too early (or never knew).

use std::collections::{BTreeMap, BTreeSet};

use super::{CheckResult, Finding};
use crate::booking::{
    BookingCall, BookingId, BookingOp, BookingResult, BookingRet, HoldId, ReplicaState, SeatView,
};

/// What one request id was acknowledged with: hold ids, booking ids, and
/// the operations that carried it.
type Effects = (BTreeSet<HoldId>, BTreeSet<BookingId>, Vec<usize>);

/// No request's effect is observed twice:
/// - one request id acknowledged with two different hold ids, or two
///   different booking ids;
/// - one hold request (its holder) behind two different hold ids, counting
///   the acknowledged reply and every hold or booking a final state shows
///   for that holder (a retried hold that created a second hold);
/// - one hold behind two different bookings on the final states (a
///   retried confirm that booked the hold twice).
pub fn no_duplicate_effects(ops: &[BookingOp], replicas: &[ReplicaState]) -> CheckResult {
    let mut findings = Vec::new();
    // Request id -> (hold ids, booking ids) it was acknowledged with, and the ops.
    let mut by_request: BTreeMap<&str, Effects> = BTreeMap::new();
    // Holder of a hold request -> hold ids seen for it, and the hold op.
    let mut by_holder: BTreeMap<&str, (BTreeSet<HoldId>, Vec<usize>)> = BTreeMap::new();
    for op in ops {
        if let BookingCall::Hold(args) = &op.call {
            let entry = by_holder.entry(&args.holder).or_default();
            entry.1.push(op.id);
            if let BookingResult::Ok(BookingRet::Held(h)) = &op.result {
                entry.0.insert(h.hold_id);
            }
        }
        let Some(request_id) = op.request_id.as_deref() else {
            continue;
        };
        let entry = by_request.entry(request_id).or_default();
        entry.2.push(op.id);
        match &op.result {
            BookingResult::Ok(BookingRet::Held(h)) => {
                entry.0.insert(h.hold_id);
            }
            BookingResult::Ok(BookingRet::Confirmed(c)) => {
                entry.1.insert(c.booking_id);
            }
            _ => {}
        }
    }
    for (request_id, (holds, bookings, op_ids)) in &by_request {
        if holds.len() > 1 || bookings.len() > 1 {
            findings.push(Finding {
                message: format!(
                    "request {request_id} took effect more than once: holds {holds:?}, bookings {bookings:?}"
                ),
                ops: op_ids.clone(),
                seat: None,
                node: None,
            });
        }
    }
    // What the final states show, per holder and per hold.
    let mut bookings_of_hold: BTreeMap<HoldId, BTreeSet<BookingId>> = BTreeMap::new();
    for replica in replicas {
        for view in replica.seats.values() {
            let (hold_id, holder) = match view {
                SeatView::Held { hold_id, holder } => (*hold_id, holder),
                SeatView::Booked {
                    booking_id,
                    hold_id,
                    holder,
                } => {
                    bookings_of_hold
                        .entry(*hold_id)
                        .or_default()
                        .insert(*booking_id);
                    (*hold_id, holder)
                }
                _ => continue,
            };
            if let Some(entry) = by_holder.get_mut(holder.as_str()) {
                entry.0.insert(hold_id);
            }
        }
    }
    for (holder, (holds, op_ids)) in &by_holder {
        if holds.len() > 1 {
            findings.push(Finding {
                message: format!(
                    "the hold request of holder {holder} took effect more than once: holds {holds:?}"
                ),
                ops: op_ids.clone(),
                seat: None,
                node: None,
            });
        }
    }
    for (hold_id, bookings) in &bookings_of_hold {
        if bookings.len() > 1 {
            findings.push(Finding {
                message: format!("hold {hold_id} was booked more than once: bookings {bookings:?}"),
                ops: Vec::new(),
                seat: None,
                node: None,
            });
        }
    }
    let checked = by_request.len() + by_holder.len();
    CheckResult::new("no_duplicate_effects", findings, checked, 0)
}
