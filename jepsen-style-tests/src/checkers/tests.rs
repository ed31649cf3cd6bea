//! Handmade good and bad histories for each checker; those of the checkers
//! that came with the ±1 h clock nemesis are in `tests/clock_nemesis.rs`.

use super::*;
use crate::booking::{BookingRef, Cancelled, Confirmed, Held, HoldArgs, HoldRef};

/// Builds a history op by op; each op gets the next id and a distinct process.
#[derive(Default)]
struct H(Vec<BookingOp>);

impl H {
    fn push(
        &mut self,
        call: BookingCall,
        result: BookingResult,
        t: (u64, u64),
        index: Option<u64>,
    ) -> usize {
        let id = self.0.len();
        let known = !matches!(result, BookingResult::Unknown);
        self.0.push(BookingOp {
            id,
            process: id as u64,
            call,
            result,
            invoke_ns: t.0,
            complete_ns: known.then_some(t.1),
            index: if known { index } else { None },
            request_id: None,
        });
        id
    }

    fn hold(
        &mut self,
        seat: &str,
        holder: &str,
        hold_id: u64,
        expires_at_ms: u64,
        t: (u64, u64),
    ) -> usize {
        self.push(
            BookingCall::Hold(HoldArgs {
                seats: vec![seat.into()],
                holder: holder.into(),
            }),
            BookingResult::Ok(BookingRet::Held(Held {
                hold_id,
                expires_at_ms,
                at_ms: t.0,
            })),
            t,
            None,
        )
    }

    fn confirm(
        &mut self,
        seat: &str,
        holder: &str,
        hold_id: u64,
        result: BookingResult,
        t: (u64, u64),
        index: Option<u64>,
    ) -> usize {
        self.push(
            BookingCall::Confirm(HoldRef {
                hold_id,
                holder: holder.into(),
                seats: vec![seat.into()],
            }),
            result,
            t,
            index,
        )
    }

    fn cancel(
        &mut self,
        seat: &str,
        holder: &str,
        booking_id: u64,
        result: BookingResult,
        t: (u64, u64),
        index: Option<u64>,
    ) -> usize {
        self.push(
            BookingCall::Cancel(BookingRef {
                booking_id,
                holder: holder.into(),
                seats: vec![seat.into()],
            }),
            result,
            t,
            index,
        )
    }
}

fn confirmed(booking_id: u64, at_ms: u64, hold_expires_at_ms: Option<u64>) -> BookingResult {
    BookingResult::Ok(BookingRet::Confirmed(Confirmed {
        booking_id,
        hold_expires_at_ms,
        at_ms,
    }))
}

fn cancelled() -> BookingResult {
    BookingResult::Ok(BookingRet::Cancelled(Cancelled { at_ms: Some(0) }))
}

fn booked(booking_id: u64, hold_id: u64, holder: &str) -> SeatView {
    SeatView::Booked {
        booking_id,
        hold_id,
        holder: holder.into(),
    }
}

fn replica(node: &str, seats: &[(&str, SeatView)], hash: &str) -> ReplicaState {
    ReplicaState {
        node: node.into(),
        seats: seats
            .iter()
            .map(|(s, v)| (s.to_string(), v.clone()))
            .collect(),
        state_hash: hash.into(),
        event_missing: false,
    }
}

#[test]
fn double_sale_without_cancel_is_found_and_names_both_confirms() {
    // Goal: two acknowledged bookings of one seat are a violation naming both ops.
    let mut h = H::default();
    let a = h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    let b = h.confirm("S", "b", 2, confirmed(11, 6, None), (2, 3), Some(4));
    let r = no_seat_sold_twice(&h.0);
    assert!(!r.valid);
    assert_eq!(r.offending_ops, vec![a, b]);
    assert_eq!(r.findings[0].seat.as_deref(), Some("S"));
}

#[test]
fn resale_after_a_cancel_and_deduplicated_retries_are_not_double_sales() {
    // Goal: a cancel between two sales, or the same booking acknowledged twice, is fine.
    let mut h = H::default();
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 2), Some(3));
    h.cancel("S", "a", 10, cancelled(), (2, 3), Some(5));
    h.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), Some(6));
    assert!(no_seat_sold_twice(&h.0).valid);
}

#[test]
fn a_cancel_invoked_after_the_resale_does_not_excuse_it() {
    // Goal: a cancel invoked after the second sale completed cannot explain it.
    let mut h = H::default();
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    h.confirm("S", "b", 2, confirmed(11, 6, None), (2, 3), Some(4));
    h.cancel("S", "a", 10, cancelled(), (5, 6), Some(9));
    assert!(!no_seat_sold_twice(&h.0).valid);
}

#[test]
fn a_deduplicated_cancel_is_ordered_by_the_index_that_first_applied_it() {
    // Goal: a cancel retried across a kill completes after the resale it made
    // room for; its reply names the entry that first applied it (4, before the
    // resale at 5), so the resale is explained.
    let mut h = H::default();
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    h.cancel("S", "a", 10, cancelled(), (2, 9), Some(4));
    h.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), Some(5));
    assert!(no_seat_sold_twice(&h.0).valid);
}

#[test]
fn with_exact_indexes_a_cancel_logged_after_the_resale_does_not_excuse_it() {
    // Goal: indexes are exact, so overlapping real time no longer hides a
    // cancel that the log put after the resale; without indexes real time
    // still decides (and then it may excuse it).
    let mut h = H::default();
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    h.cancel("S", "a", 10, cancelled(), (2, 9), Some(9));
    h.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), Some(4));
    assert!(!no_seat_sold_twice(&h.0).valid);
    let mut h = H::default();
    h.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    h.cancel("S", "a", 10, cancelled(), (2, 9), None);
    h.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), Some(4));
    assert!(no_seat_sold_twice(&h.0).valid);
}

#[test]
fn an_info_cancel_may_explain_a_resale_but_a_failed_one_may_not() {
    // Goal: unknown cancels count as possibly happened; failed ones do not.
    let mut ok = H::default();
    ok.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), None);
    ok.cancel("S", "a", 10, BookingResult::Unknown, (2, 0), None);
    ok.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), None);
    assert!(no_seat_sold_twice(&ok.0).valid);
    let mut bad = H::default();
    bad.confirm("S", "a", 1, confirmed(10, 5, None), (0, 1), None);
    bad.cancel("S", "a", 10, BookingResult::Failed, (2, 3), None);
    bad.confirm("S", "b", 2, confirmed(11, 6, None), (4, 5), None);
    assert!(!no_seat_sold_twice(&bad.0).valid);
}

#[test]
fn acknowledged_booking_missing_on_one_replica_is_found() {
    // Goal: a lost booking on one replica is reported with that node; cancelled ones are skipped.
    let mut h = H::default();
    let a = h.confirm("S1", "a", 1, confirmed(10, 5, None), (0, 1), None);
    h.confirm("S2", "b", 2, confirmed(11, 6, None), (0, 1), None);
    h.cancel("S2", "b", 11, cancelled(), (2, 3), None);
    let good = replica(
        "n1",
        &[("S1", booked(10, 1, "a")), ("S2", SeatView::Available)],
        "h",
    );
    let lost = replica(
        "n2",
        &[("S1", SeatView::Available), ("S2", SeatView::Available)],
        "h",
    );
    assert!(acknowledged_bookings_present(&h.0, std::slice::from_ref(&good)).valid);
    let r = acknowledged_bookings_present(&h.0, &[good, lost]);
    assert!(!r.valid);
    assert_eq!(
        (r.offending_ops.clone(), r.findings[0].node.as_deref()),
        (vec![a], Some("n2"))
    );
    assert_eq!((r.checked, r.unjudged), (1, 1));
}

#[test]
fn booking_nobody_asked_for_is_found() {
    // Goal: a booked seat is fine if its booking was acknowledged or its hold was confirmed (even info), else phantom.
    let mut h = H::default();
    h.confirm("S1", "a", 1, confirmed(10, 5, None), (0, 1), None);
    h.confirm("S2", "b", 2, BookingResult::Unknown, (0, 0), None);
    h.confirm("S3", "c", 3, BookingResult::Failed, (0, 1), None);
    let r = |seats: &[(&str, SeatView)]| no_phantom_bookings(&h.0, &[replica("n1", seats, "h")]);
    assert!(r(&[("S1", booked(10, 1, "a")), ("S2", booked(12, 2, "b"))]).valid);
    // A failed confirm certainly did not happen.
    assert!(!r(&[("S3", booked(13, 3, "c"))]).valid);
    // A booking on a seat its hold never covered.
    let wrong_seat = r(&[("S4", booked(10, 1, "a"))]);
    assert!(!wrong_seat.valid);
    assert_eq!(wrong_seat.findings[0].seat.as_deref(), Some("S4"));
}

#[test]
fn confirm_at_or_after_expiry_is_found() {
    // Goal: log time at/after the hold's expiry is a violation; before it is fine; no expiry known is unjudged.
    let mut h = H::default();
    h.hold("S1", "a", 1, 1000, (0, 1));
    h.confirm("S1", "a", 1, confirmed(10, 999, None), (2, 3), None);
    h.hold("S2", "b", 2, 1000, (0, 1));
    let late = h.confirm("S2", "b", 2, confirmed(11, 1000, None), (2, 3), None);
    // An extension reported by the confirm wins over the hold's expiry.
    h.hold("S3", "c", 3, 1000, (0, 1));
    h.confirm("S3", "c", 3, confirmed(12, 1500, Some(2000)), (2, 3), None);
    h.confirm("S4", "d", 4, confirmed(13, 50, None), (2, 3), None);
    let r = no_confirm_past_expiry(&h.0);
    assert_eq!(r.offending_ops, vec![late]);
    assert_eq!((r.checked, r.unjudged), (3, 1));
}

#[test]
fn differing_state_hashes_are_found() {
    // Goal: one replica with another hash makes the check fail and names the groups.
    let same = [replica("n1", &[], "aa"), replica("n2", &[], "aa")];
    assert!(replica_hashes_equal(&same).valid);
    let differ = [
        replica("n1", &[], "aa"),
        replica("n2", &[], "aa"),
        replica("n3", &[], "bb"),
    ];
    let r = replica_hashes_equal(&differ);
    assert!(!r.valid);
    assert!(
        r.findings[0].message.contains("bb: n3"),
        "{}",
        r.findings[0].message
    );
}

#[test]
fn results_serialise_with_a_top_level_valid() {
    // Goal: results.json gets `valid` and the offending ops for each checker.
    let v = serde_json::to_value(replica_hashes_equal(&[])).unwrap();
    assert_eq!(v["valid"], serde_json::Value::Bool(true));
    assert!(v["offending_ops"].is_array());
}

#[test]
fn an_id_handed_out_twice_is_found_but_a_repeated_confirm_is_not() {
    // Goal: two holds acknowledged with one hold id, or one booking id for two
    // holds, are findings; confirming the same hold twice (same booking) is not.
    let mut h = H::default();
    let a = h.hold("S1", "a", 7, 1000, (0, 1));
    h.confirm("S1", "a", 7, confirmed(10, 5, None), (2, 3), Some(3));
    h.confirm("S1", "a", 7, confirmed(10, 5, None), (4, 5), Some(3));
    h.hold("S2", "b", 8, 1000, (6, 7));
    assert!(ids_issued_once(&h.0).valid);
    let b = h.hold("S2", "c", 7, 1000, (8, 9));
    let r = ids_issued_once(&h.0);
    assert!(!r.valid);
    assert_eq!(r.offending_ops, vec![a, b]);
    let mut h = H::default();
    let x = h.confirm("S1", "a", 1, confirmed(10, 5, None), (0, 1), Some(3));
    let y = h.confirm("S2", "b", 2, confirmed(10, 6, None), (2, 3), Some(9));
    let r = ids_issued_once(&h.0);
    assert!(!r.valid);
    assert_eq!(r.offending_ops, vec![x, y]);
}

#[test]
fn a_cancelled_booking_or_released_hold_shown_after_heal_is_found() {
    // Goal: a seat still booked by a booking whose cancel was acknowledged, or
    // held by a hold whose release/confirm was, is a finding; an unknown
    // cancel proves nothing.
    let mut h = H::default();
    h.confirm("S1", "a", 1, confirmed(10, 5, None), (0, 1), None);
    let c = h.cancel("S1", "a", 10, cancelled(), (2, 3), None);
    h.confirm("S2", "b", 2, confirmed(11, 6, None), (0, 1), None);
    h.cancel("S2", "b", 11, BookingResult::Unknown, (2, 0), None);
    let held_b = SeatView::Held {
        hold_id: 2,
        holder: "b".into(),
    };
    let fine = replica(
        "n1",
        &[("S1", SeatView::Available), ("S2", booked(11, 2, "b"))],
        "h",
    );
    assert!(no_resurrections(&h.0, std::slice::from_ref(&fine)).valid);
    let back = replica("n2", &[("S1", booked(10, 1, "a")), ("S2", held_b)], "h");
    let r = no_resurrections(&h.0, &[fine, back]);
    assert!(!r.valid);
    assert_eq!(r.findings.len(), 2, "{:?}", r.findings);
    assert!(r.offending_ops.contains(&c));
    assert!(r.findings.iter().all(|f| f.node.as_deref() == Some("n2")));
}

#[test]
fn a_replica_without_the_event_is_found() {
    // Goal: a replica that lost the acknowledged event creation is a finding.
    let fine = replica("n1", &[("S1", SeatView::Available)], "h");
    assert!(event_present(std::slice::from_ref(&fine)).valid);
    let gone = ReplicaState {
        event_missing: true,
        ..replica("n2", &[], "g")
    };
    let r = event_present(&[fine, gone]);
    assert!(!r.valid);
    assert_eq!(r.findings[0].node.as_deref(), Some("n2"));
}

fn expired() -> BookingResult {
    BookingResult::Refused(crate::booking::Refusal {
        error: "hold_expired".into(),
        at_ms: None,
    })
}

const MS: u64 = 1_000_000;

#[test]
fn a_hold_expired_before_its_ttl_is_found() {
    // Goal: a confirm refused hold_expired 1 s after a 10 s hold is an early expiry; 9 s after is within the 4 s allowance; a hold that may have been released is not judged.
    let mut h = H::default();
    let hold = h.hold("S1", "a", 1, 10_000, (0, MS));
    let early = h.confirm("S1", "a", 1, expired(), (MS, 1_000 * MS), None);
    h.hold("S2", "b", 2, 10_000, (0, MS));
    h.confirm("S2", "b", 2, expired(), (8_000 * MS, 9_000 * MS), None);
    h.hold("S3", "c", 3, 10_000, (0, MS));
    h.push(
        BookingCall::Release(HoldRef {
            hold_id: 3,
            holder: "c".into(),
            seats: vec!["S3".into()],
        }),
        BookingResult::Unknown,
        (2 * MS, 3 * MS),
        None,
    );
    h.confirm("S3", "c", 3, expired(), (4 * MS, 5 * MS), None);
    let r = no_early_expiry(&h.0, 10_000, EXPIRY_CLOCK_ALLOWANCE_MS, &[]);
    assert_eq!(r.offending_ops, vec![hold, early]);
    assert_eq!((r.checked, r.unjudged), (2, 1));
}

#[test]
fn log_time_running_ahead_of_real_time_is_found() {
    // Goal: two holds a second apart in real time but an hour apart in log time fail the check; the same a second apart in both pass.
    let mut h = H::default();
    // `H::hold` sets the log time to the invoke time in ns; scale to ms.
    let a = h.hold("S1", "a", 1, 10_000, (1_000, 2 * MS));
    h.0[a].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 1,
        expires_at_ms: 11_000,
        at_ms: 1_000,
    }));
    let b = h.hold("S2", "b", 2, 10_000, (1_000 * MS, 1_001 * MS));
    h.0[b].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 2,
        expires_at_ms: 12_000,
        at_ms: 2_000,
    }));
    assert!(log_time_follows_real_time(&h.0, EXPIRY_CLOCK_ALLOWANCE_MS, &[]).valid);
    h.0[b].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 2,
        expires_at_ms: 3_612_000,
        at_ms: 3_602_000,
    }));
    let r = log_time_follows_real_time(&h.0, EXPIRY_CLOCK_ALLOWANCE_MS, &[]);
    assert!(!r.valid);
    assert_eq!(r.offending_ops, vec![a, b]);
}

mod clock_nemesis;
