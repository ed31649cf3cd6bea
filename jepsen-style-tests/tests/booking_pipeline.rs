//! The path the harness will take: record booking events, write
//! `history.jsonl`, read it back, decode, and run the seat linearizability
//! check and every booking checker.

use jepsen_style_tests::booking::{
    self, BookingCall, BookingEvent, BookingF, BookingRet, Confirmed, Held, HoldArgs, HoldRef,
    ReadArgs, Refusal, ReplicaState, SeatRead, SeatView,
};
use jepsen_style_tests::checkers::{self, CheckResult};
use jepsen_style_tests::history::{self, Event, EventType};
use jepsen_style_tests::linearizability::{Budget, Verdict};
use jepsen_style_tests::models::seat;
use serde_json::Value;

/// Records events the way a workload would, with a fake monotonic clock.
#[derive(Default)]
struct Recorder {
    events: Vec<BookingEvent>,
    now_ns: u64,
}

impl Recorder {
    fn event(
        &mut self,
        process: u64,
        kind: EventType,
        f: BookingF,
        value: Value,
        index: Option<u64>,
    ) {
        self.now_ns += 1_000;
        self.events.push(Event {
            process,
            kind,
            f,
            value,
            time_ns: self.now_ns,
            index,
        });
    }
    fn invoke(&mut self, process: u64, call: &BookingCall) {
        self.event(process, EventType::Invoke, call.f(), call.to_value(), None);
    }
    fn ok(&mut self, process: u64, f: BookingF, ret: BookingRet, index: u64) {
        self.event(process, EventType::Ok, f, ret.to_value(), Some(index));
    }
    fn refused(&mut self, process: u64, f: BookingF, code: &str, at_ms: u64) {
        let value = serde_json::to_value(Refusal {
            error: code.into(),
            at_ms: Some(at_ms),
        })
        .unwrap();
        self.event(process, EventType::Fail, f, value, None);
    }
}

fn hold(seat: &str, holder: &str) -> BookingCall {
    BookingCall::Hold(HoldArgs {
        seats: vec![seat.into()],
        holder: holder.into(),
    })
}
fn confirm(seat: &str, holder: &str, hold_id: u64) -> BookingCall {
    BookingCall::Confirm(HoldRef {
        hold_id,
        holder: holder.into(),
        seats: vec![seat.into()],
    })
}
fn held(hold_id: u64, at_ms: u64) -> BookingRet {
    BookingRet::Held(Held {
        hold_id,
        expires_at_ms: at_ms + 60_000,
        at_ms,
    })
}
fn confirmed(booking_id: u64, at_ms: u64, hold_expires_at_ms: u64) -> BookingRet {
    BookingRet::Confirmed(Confirmed {
        booking_id,
        hold_expires_at_ms: Some(hold_expires_at_ms),
        at_ms,
    })
}
fn booked(booking_id: u64, hold_id: u64, holder: &str) -> SeatView {
    SeatView::Booked {
        booking_id,
        hold_id,
        holder: holder.into(),
    }
}

/// A sale of A-1-1 to p1, a refused rival, a read, and a hold of A-1-2 whose reply was lost.
fn good_run(r: &mut Recorder) {
    r.invoke(1, &hold("A-1-1", "p1-1"));
    r.invoke(2, &hold("A-1-1", "p2-1"));
    r.ok(1, BookingF::Hold, held(1, 1_000), 10);
    r.refused(2, BookingF::Hold, seat::SEAT_UNAVAILABLE, 1_001);
    r.invoke(1, &confirm("A-1-1", "p1-1", 1));
    r.ok(1, BookingF::Confirm, confirmed(7, 2_000, 61_000), 12);
    r.invoke(
        3,
        &BookingCall::Read(ReadArgs {
            seat: "A-1-1".into(),
        }),
    );
    r.ok(
        3,
        BookingF::Read,
        BookingRet::Read(SeatRead {
            seat: booked(7, 1, "p1-1"),
            at_ms: Some(2_100),
        }),
        13,
    );
    r.invoke(2, &hold("A-1-2", "p2-2"));
    r.event(
        2,
        EventType::Info,
        BookingF::Hold,
        Value::String("timed out".into()),
        None,
    );
}

fn replica(node: &str, a11: SeatView, hash: &str) -> ReplicaState {
    let a12 = SeatView::Held {
        hold_id: 2,
        holder: "p2-2".into(),
    };
    ReplicaState {
        node: node.into(),
        seats: [("A-1-1".to_owned(), a11), ("A-1-2".to_owned(), a12)]
            .into_iter()
            .collect(),
        state_hash: hash.into(),
        event_missing: false,
    }
}

/// Through a real file, as the report directory will hold it.
fn round_trip(events: &[BookingEvent]) -> Vec<booking::BookingOp> {
    let dir = std::env::temp_dir().join(format!(
        "jepsen-pipeline-{}-{}",
        std::process::id(),
        events.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.jsonl");
    history::write_jsonl(std::fs::File::create(&path).unwrap(), events).unwrap();
    let back: Vec<BookingEvent> = history::read_jsonl_file(&path).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(back, events);
    booking::decode(back).unwrap()
}

fn all_checkers(ops: &[booking::BookingOp], replicas: &[ReplicaState]) -> Vec<CheckResult> {
    vec![
        checkers::no_seat_sold_twice(ops),
        checkers::acknowledged_bookings_present(ops, replicas),
        checkers::no_phantom_bookings(ops, replicas),
        checkers::no_confirm_past_expiry(ops),
        checkers::replica_hashes_equal(replicas),
    ]
}

#[test]
fn a_correct_run_passes_every_checker() {
    // Goal: a clean history (with a refusal and a lost reply) is valid end to end.
    let mut r = Recorder::default();
    good_run(&mut r);
    let ops = round_trip(&r.events);
    assert_eq!(
        seat::check_seats(&ops, &Budget::default()).overall(),
        Verdict::Linearizable
    );
    let replicas: Vec<_> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| replica(n, booked(7, 1, "p1-1"), "abc"))
        .collect();
    for result in all_checkers(&ops, &replicas) {
        assert!(result.valid, "{result:?}");
    }
}

#[test]
fn a_double_sale_is_caught_by_every_checker_that_should() {
    // Goal: reselling a booked seat fails linearizability, the double-sale, lost-booking and hash checks.
    let mut r = Recorder::default();
    good_run(&mut r);
    r.invoke(4, &hold("A-1-1", "p4-1"));
    r.ok(4, BookingF::Hold, held(3, 3_000), 14);
    r.invoke(4, &confirm("A-1-1", "p4-1", 3));
    r.ok(4, BookingF::Confirm, confirmed(8, 3_100, 63_000), 15);
    let ops = round_trip(&r.events);

    let lin = seat::check_seats(&ops, &Budget::default());
    let (seat_id, evidence) = lin.violations().next().expect("A-1-1 is not linearizable");
    assert_eq!(seat_id, "A-1-1");
    assert!(evidence.candidates.contains(&evidence.blocked));

    let mut replicas: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| replica(n, booked(7, 1, "p1-1"), "abc"))
        .collect();
    replicas.push(replica("n3", booked(8, 3, "p4-1"), "def"));
    let results = all_checkers(&ops, &replicas);
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.valid)
        .map(|r| r.checker)
        .collect();
    assert_eq!(
        failed,
        [
            "no_seat_sold_twice",
            "acknowledged_bookings_present",
            "replica_hashes_equal"
        ]
    );
}
