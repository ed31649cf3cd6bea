//! The gateway workload's own checker, run after the heal on every
//! replica's final state: [`no_unrequested_holds`], and reading each hold
//! request back out of the raw history ([`requests_by_holder`]).
//!
//! Must not: run while the workload runs, or look at anything but the
//! history and the replicas' final states.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::booking::{
    BookingCall, BookingF, BookingOp, BookingResult, BookingRet, ReplicaState, SeatView,
};
use crate::checkers::{CheckResult, Finding};
use crate::history::{Event, EventType};

/// What one hold invocation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requested {
    Seats(BTreeSet<String>),
    BestAvailable(u64),
}

/// Each hold invoke's request, by holder, from the raw history (the
/// best-available count is not part of the decoded `HoldArgs`).
pub fn requests_by_holder(events: &[Event<BookingF, Value>]) -> BTreeMap<String, Requested> {
    let mut out = BTreeMap::new();
    for e in events {
        if e.f != BookingF::Hold || e.kind != EventType::Invoke {
            continue;
        }
        let Some(holder) = e.value.get("holder").and_then(Value::as_str) else {
            continue;
        };
        let requested = match e.value.get("best_available").and_then(Value::as_u64) {
            Some(n) => Requested::BestAvailable(n),
            None => Requested::Seats(
                e.value
                    .get("seats")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
        };
        out.insert(holder.to_string(), requested);
    }
    out
}

/// No replica shows a live hold or a booking that its user's requests cannot
/// explain. Each user of this workload makes exactly one hold request, so:
/// after an `ok` hold only the hold id it returned may be theirs; after an
/// `info` hold at most one hold; after a definite `fail` none; and a hold's
/// seats must be ones the user asked for (explicit) or no more than the
/// count asked for (best-available).
pub fn no_unrequested_holds(
    ops: &[BookingOp],
    requests: &BTreeMap<String, Requested>,
    replicas: &[ReplicaState],
) -> CheckResult {
    let mut hold_ops: BTreeMap<&str, &BookingOp> = BTreeMap::new();
    for op in ops {
        if let BookingCall::Hold(a) = &op.call {
            hold_ops.insert(a.holder.as_str(), op);
        }
    }
    let (mut findings, mut checked) = (Vec::new(), 0);
    for replica in replicas {
        // holder -> hold id -> seats, over live holds and bookings.
        let mut by_holder: BTreeMap<&str, BTreeMap<u64, Vec<&str>>> = BTreeMap::new();
        for (seat, view) in &replica.seats {
            let (hold_id, holder) = match view {
                SeatView::Held { hold_id, holder } => (*hold_id, holder),
                SeatView::Booked {
                    hold_id, holder, ..
                } => (*hold_id, holder),
                _ => continue,
            };
            by_holder
                .entry(holder.as_str())
                .or_default()
                .entry(hold_id)
                .or_default()
                .push(seat.as_str());
        }
        for (holder, holds) in &by_holder {
            checked += 1;
            let shown: Vec<String> = holds
                .iter()
                .map(|(h, seats)| format!("hold {h} {seats:?}"))
                .collect();
            let mut finding = |message: String, ops: Vec<usize>| {
                findings.push(Finding {
                    message: format!("node {}: {message}", replica.node),
                    ops,
                    seat: holds.values().flatten().next().map(|s| s.to_string()),
                    node: Some(replica.node.clone()),
                });
            };
            let Some(op) = hold_ops.get(holder) else {
                finding(
                    format!("user {holder:?} made no hold request but has {shown:?}"),
                    Vec::new(),
                );
                continue;
            };
            let explained = match &op.result {
                BookingResult::Ok(BookingRet::Held(h)) => holds.keys().all(|id| *id == h.hold_id),
                BookingResult::Unknown => holds.len() <= 1,
                _ => false,
            };
            if !explained {
                finding(
                    format!(
                        "user {holder:?} asked for one hold (op {}, {}) but has {shown:?}",
                        op.id,
                        describe_result(&op.result)
                    ),
                    vec![op.id],
                );
                continue;
            }
            for (hold_id, seats) in holds {
                let fits = match requests.get(*holder) {
                    Some(Requested::Seats(asked)) => seats.iter().all(|s| asked.contains(*s)),
                    Some(Requested::BestAvailable(n)) => seats.len() as u64 <= *n,
                    None => false,
                };
                if !fits {
                    finding(
                        format!(
                            "user {holder:?} has hold {hold_id} on {seats:?}, more than op {} asked for ({:?})",
                            op.id,
                            requests.get(*holder)
                        ),
                        vec![op.id],
                    );
                }
            }
        }
    }
    CheckResult::new("no_unrequested_holds", findings, checked, 0)
}

fn describe_result(r: &BookingResult) -> String {
    match r {
        BookingResult::Ok(BookingRet::Held(h)) => format!("ok: hold {}", h.hold_id),
        BookingResult::Ok(_) => "ok".into(),
        BookingResult::Refused(x) => format!("refused: {}", x.error),
        BookingResult::Failed => "failed".into(),
        BookingResult::Unknown => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::{Held, HoldArgs};

    fn hold_op(id: usize, holder: &str, result: BookingResult) -> BookingOp {
        BookingOp {
            id,
            process: 0,
            call: BookingCall::Hold(HoldArgs {
                seats: vec![],
                holder: holder.into(),
            }),
            result,
            invoke_ns: 0,
            complete_ns: Some(1),
            index: None,
            request_id: None,
        }
    }

    fn replica(views: &[(&str, SeatView)]) -> ReplicaState {
        ReplicaState {
            node: "n1".into(),
            seats: views
                .iter()
                .map(|(s, v)| (s.to_string(), v.clone()))
                .collect(),
            state_hash: "h".into(),
            event_missing: false,
        }
    }

    #[test]
    fn extra_hold_of_a_user_is_found_and_explained_ones_are_not() {
        // Goal: one ok request explains its own hold only; a definite fail explains none.
        let held = |hold_id| {
            BookingResult::Ok(BookingRet::Held(Held {
                hold_id,
                expires_at_ms: 10,
                at_ms: 0,
            }))
        };
        let ops = vec![
            hold_op(0, "u1", held(5)),
            hold_op(1, "u2", BookingResult::Unknown),
            hold_op(
                2,
                "u3",
                BookingResult::Refused(crate::booking::Refusal {
                    error: "seat_unavailable".into(),
                    at_ms: None,
                }),
            ),
        ];
        let mut requests = BTreeMap::new();
        requests.insert("u1".to_string(), Requested::BestAvailable(1));
        requests.insert("u2".to_string(), Requested::BestAvailable(1));
        requests.insert(
            "u3".to_string(),
            Requested::Seats(["A-1-3".to_string()].into()),
        );
        let h = |hold_id, holder: &str| SeatView::Held {
            hold_id,
            holder: holder.into(),
        };
        let fine = replica(&[("A-1-1", h(5, "u1")), ("A-1-2", h(7, "u2"))]);
        assert!(no_unrequested_holds(&ops, &requests, &[fine]).valid);
        let extra = replica(&[("A-1-1", h(5, "u1")), ("A-1-2", h(6, "u1"))]);
        let r = no_unrequested_holds(&ops, &requests, &[extra]);
        assert!(!r.valid);
        assert_eq!(r.offending_ops, vec![0]);
        let failed_but_held = replica(&[("A-1-3", h(8, "u3"))]);
        assert!(!no_unrequested_holds(&ops, &requests, &[failed_but_held]).valid);
        let unknown_twice = replica(&[("A-1-1", h(9, "u2")), ("A-1-2", h(10, "u2"))]);
        assert!(!no_unrequested_holds(&ops, &requests, &[unknown_twice]).valid);
    }
}
