//! Handmade histories for what the ±1 h clock nemesis brought: the majority
//! windows the time checkers skip, payment-pending expiry, duplicate
//! effects, and a begun payment's later expiry in `no_confirm_past_expiry`.

use super::*;
use crate::booking::PaymentBegun;
use crate::harness::recorder::FaultWindow;

const S: u64 = 1_000 * MS;

fn clock_window(start_s: u64, end_s: Option<u64>, moved: &[u64]) -> FaultWindow {
    FaultWindow {
        kind: "clock-bump".into(),
        detail: String::new(),
        start_ns: start_s * S,
        end_ns: end_s.map(|e| e * S),
        clocks_moved: moved.to_vec(),
    }
}

fn hold_ref(seat: &str, holder: &str, hold_id: u64) -> HoldRef {
    HoldRef {
        hold_id,
        holder: holder.into(),
        seats: vec![seat.into()],
    }
}

fn begin_payment(h: &mut H, seat: &str, holder: &str, hold_id: u64, t: (u64, u64)) -> usize {
    h.push(
        BookingCall::BeginPayment(hold_ref(seat, holder, hold_id)),
        BookingResult::Ok(BookingRet::PaymentBegun(PaymentBegun {
            expires_at_ms: 200_000,
        })),
        t,
        None,
    )
}

#[test]
fn only_faults_that_moved_a_majoritys_clocks_make_windows_merged_and_settled() {
    // Goal: of 3 nodes, one moved clock is no window; two are, from the start to the settle after the end (an open one to the run's end); overlapping windows merge.
    let faults = [
        clock_window(1, Some(5), &[2]),
        clock_window(10, Some(12), &[1, 3]),
        clock_window(13, Some(20), &[1, 2]),
        clock_window(30, None, &[1, 2, 3]),
    ];
    let w = majority_clock_windows(&faults, 3, 40 * S, 2 * S);
    assert_eq!(w, vec![(10 * S, 22 * S), (30 * S, 42 * S)]);
    assert!(majority_clock_windows(&faults[..1], 3, 40 * S, 2 * S).is_empty());
}

#[test]
fn an_early_expiry_across_a_majority_clock_window_is_not_judged() {
    // Goal: a hold expired 1 s into its 10 s TTL is found in a sane stretch, and left unjudged when a majority's clocks leapt meanwhile.
    let mut h = H::default();
    h.hold("S1", "a", 1, 10_000, (0, MS));
    h.confirm("S1", "a", 1, expired(), (MS, S), None);
    let sane = no_early_expiry(&h.0, 10_000, EXPIRY_CLOCK_ALLOWANCE_MS, &[]);
    assert!(!sane.valid);
    let leapt = no_early_expiry(
        &h.0,
        10_000,
        EXPIRY_CLOCK_ALLOWANCE_MS,
        &[(500 * MS, 5 * S)],
    );
    assert!(leapt.valid);
    assert_eq!((leapt.checked, leapt.unjudged), (0, 1));
}

#[test]
fn log_time_an_hour_ahead_is_excused_only_across_a_majority_window() {
    // Goal: two holds 10 s apart in real time and an hour apart in log time fail the check in one sane stretch and pass when a majority window lies between them; a window elsewhere excuses nothing.
    let mut h = H::default();
    let a = h.hold("S1", "a", 1, 10_000, (0, MS));
    h.0[a].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 1,
        expires_at_ms: 10_000,
        at_ms: 0,
    }));
    let b = h.hold("S2", "b", 2, 10_000, (10 * S, 10 * S + MS));
    h.0[b].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 2,
        expires_at_ms: 3_620_000,
        at_ms: 3_610_000,
    }));
    let elsewhere = [(20 * S, 30 * S)];
    let r = log_time_follows_real_time(&h.0, EXPIRY_CLOCK_ALLOWANCE_MS, &elsewhere);
    assert_eq!(r.offending_ops, vec![a, b]);
    let between = [(2 * S, 6 * S)];
    let r = log_time_follows_real_time(&h.0, EXPIRY_CLOCK_ALLOWANCE_MS, &between);
    assert!(r.valid, "{:?}", r.findings);
}

#[test]
fn a_payment_pending_hold_expired_inside_its_window_is_found() {
    // Goal: with a 120 s payment window, a confirm refused hold_expired 5 s after the begin-payment is found; 119 s after is within the 4 s allowance; a refusal that may precede the begin, a hold without a begun payment and a majority window are not judged.
    let window_ms = 120_000;
    let mut h = H::default();
    h.hold("S1", "a", 1, 10_000, (0, MS));
    let begin = begin_payment(&mut h, "S1", "a", 1, (S, S + MS));
    let early = h.confirm("S1", "a", 1, expired(), (5 * S, 6 * S), None);
    h.hold("S2", "b", 2, 10_000, (0, MS));
    begin_payment(&mut h, "S2", "b", 2, (S, S + MS));
    h.confirm("S2", "b", 2, expired(), (119 * S, 120 * S), None);
    h.hold("S3", "c", 3, 10_000, (0, MS));
    begin_payment(&mut h, "S3", "c", 3, (S, 3 * S));
    h.confirm("S3", "c", 3, expired(), (2 * S, 4 * S), None);
    h.hold("S4", "d", 4, 10_000, (0, MS));
    h.confirm("S4", "d", 4, expired(), (11 * S, 12 * S), None);
    let r = no_payment_pending_expiry(&h.0, &[], 0, window_ms, EXPIRY_CLOCK_ALLOWANCE_MS, &[]);
    assert_eq!(r.offending_ops, vec![begin, early]);
    // Unjudged: the refusal that may precede its begin, and the three begun
    // holds no confirm or release ended, with no final state to look at.
    assert_eq!((r.checked, r.unjudged), (2, 4));
    let r = no_payment_pending_expiry(
        &h.0,
        &[],
        0,
        window_ms,
        EXPIRY_CLOCK_ALLOWANCE_MS,
        &[(2 * S, 3 * S)],
    );
    assert!(r.valid, "{:?}", r.findings);
}

#[test]
fn a_payment_pending_hold_gone_from_a_final_state_is_found() {
    // Goal: a hold whose payment was begun 10 s before the final read, with no confirm or release, must still be held on every replica: a replica showing the seat free is found; one showing it held passes; a majority window between, or a begin older than the window, is not judged.
    let mut h = H::default();
    h.hold("S1", "a", 1, 10_000, (0, MS));
    let begin = begin_payment(&mut h, "S1", "a", 1, (S, S + MS));
    let held = SeatView::Held {
        hold_id: 1,
        holder: "a".into(),
    };
    let good = [replica("n1", &[("S1", held.clone())], "x")];
    let gone = [
        replica("n1", &[("S1", held)], "x"),
        replica("n2", &[("S1", SeatView::Available)], "x"),
    ];
    let run = |replicas: &[ReplicaState], read_s: u64, insane: &[(u64, u64)]| {
        no_payment_pending_expiry(
            &h.0,
            replicas,
            read_s * S,
            120_000,
            EXPIRY_CLOCK_ALLOWANCE_MS,
            insane,
        )
    };
    assert!(run(&good, 11, &[]).valid);
    let r = run(&gone, 11, &[]);
    assert_eq!(r.offending_ops, vec![begin]);
    assert_eq!(r.findings[0].node.as_deref(), Some("n2"));
    let r = run(&gone, 11, &[(5 * S, 6 * S)]);
    assert!(r.valid && r.unjudged == 1);
    assert!(run(&gone, 200, &[]).valid);
}

#[test]
fn a_begun_payment_moves_the_expiry_no_confirm_past_expiry_judges_by() {
    // Goal: a confirm at log time 15 s of a hold that expired at 10 s is past expiry, unless an acknowledged begin-payment moved the expiry to 200 s; an unknown begin-payment leaves it unjudged.
    let confirm_at_15s = || confirmed(7, 15_000, None);
    let mut h = H::default();
    h.hold("S1", "a", 1, 10_000, (0, MS));
    h.confirm("S1", "a", 1, confirm_at_15s(), (S, 2 * S), None);
    assert!(!no_confirm_past_expiry(&h.0).valid);
    let mut paid = H::default();
    paid.hold("S1", "a", 1, 10_000, (0, MS));
    begin_payment(&mut paid, "S1", "a", 1, (MS, 2 * MS));
    paid.confirm("S1", "a", 1, confirm_at_15s(), (S, 2 * S), None);
    assert!(no_confirm_past_expiry(&paid.0).valid);
    let mut maybe = H::default();
    maybe.hold("S1", "a", 1, 10_000, (0, MS));
    maybe.push(
        BookingCall::BeginPayment(hold_ref("S1", "a", 1)),
        BookingResult::Unknown,
        (MS, 2 * MS),
        None,
    );
    maybe.confirm("S1", "a", 1, confirm_at_15s(), (S, 2 * S), None);
    let r = no_confirm_past_expiry(&maybe.0);
    assert!(r.valid);
    assert_eq!((r.checked, r.unjudged), (0, 1));
}

#[test]
fn one_request_answered_with_two_holds_is_a_duplicate_effect() {
    // Goal: two operations with one request id acknowledged with different hold ids fail; the same request id with the same hold id (a deduplicated retry) passes.
    let mut h = H::default();
    let a = h.hold("S1", "a", 1, 10_000, (0, MS));
    h.0[a].request_id = Some("9:1".into());
    let b = h.hold("S1", "a", 1, 10_000, (2 * MS, 3 * MS));
    h.0[b].request_id = Some("9:1".into());
    assert!(no_duplicate_effects(&h.0, &[]).valid);
    h.0[b].result = BookingResult::Ok(BookingRet::Held(Held {
        hold_id: 2,
        expires_at_ms: 10_000,
        at_ms: 2,
    }));
    let r = no_duplicate_effects(&h.0, &[]);
    assert!(!r.valid);
    assert_eq!(r.offending_ops, vec![a, b]);
}

#[test]
fn a_retried_hold_that_made_a_second_hold_is_a_duplicate_effect() {
    // Goal: holder "a"'s one hold request was acknowledged as hold 1, but a final state shows a's seat held by hold 2 (its retry applied again): found; the final state showing hold 1, or hold 1 booked once, passes; one hold booked twice is found.
    let mut h = H::default();
    let hold = h.hold("S1", "a", 1, 10_000, (0, MS));
    let held_by = |hold_id| SeatView::Held {
        hold_id,
        holder: "a".into(),
    };
    let good = [replica("n1", &[("S1", held_by(1))], "x")];
    assert!(no_duplicate_effects(&h.0, &good).valid);
    let twice = [replica(
        "n1",
        &[("S1", held_by(1)), ("S2", held_by(2))],
        "x",
    )];
    let r = no_duplicate_effects(&h.0, &twice);
    assert_eq!(r.offending_ops, vec![hold]);
    let booked_once = [replica("n1", &[("S1", booked(5, 1, "a"))], "x")];
    assert!(no_duplicate_effects(&h.0, &booked_once).valid);
    let booked_twice = [
        replica("n1", &[("S1", booked(5, 1, "a"))], "x"),
        replica("n2", &[("S1", booked(6, 1, "a"))], "x"),
    ];
    assert!(!no_duplicate_effects(&h.0, &booked_twice).valid);
}

#[test]
fn a_payment_pending_hold_confirmed_later_counts_as_a_judged_life() {
    // Goal: a confirm acknowledged after an acknowledged begin-payment is a
    // judged (fine) life; one whose life crosses a majority clock window, or
    // that may precede its begin, is unjudged; a confirm of a hold with no
    // begun payment is not this checker's.
    let mut h = H::default();
    h.hold("S1", "a", 1, 10_000, (0, MS));
    begin_payment(&mut h, "S1", "a", 1, (S, S + MS));
    h.confirm(
        "S1",
        "a",
        1,
        confirmed(1, 0, None),
        (12 * S, 12 * S + MS),
        None,
    );
    h.hold("S2", "b", 2, 10_000, (0, MS));
    begin_payment(&mut h, "S2", "b", 2, (S, 3 * S));
    h.confirm("S2", "b", 2, confirmed(2, 0, None), (2 * S, 4 * S), None);
    h.hold("S3", "c", 3, 10_000, (0, MS));
    h.confirm("S3", "c", 3, confirmed(3, 0, None), (2 * S, 3 * S), None);
    let r = no_payment_pending_expiry(&h.0, &[], 0, 120_000, EXPIRY_CLOCK_ALLOWANCE_MS, &[]);
    assert!(r.valid, "{:?}", r.findings);
    assert_eq!((r.checked, r.unjudged), (1, 1));
    let r = no_payment_pending_expiry(
        &h.0,
        &[],
        0,
        120_000,
        EXPIRY_CLOCK_ALLOWANCE_MS,
        &[(5 * S, 6 * S)],
    );
    assert_eq!((r.checked, r.unjudged), (0, 2));
}
