//! Goal: `BookingState::precheck` never disagrees with `apply`. Whenever it
//! answers (a hold refusal or a remembered outcome), applying the same request
//! on a clone in an entry stamped at the same log time answers the same, and
//! changes nothing an empty entry at that time would not (the dedupe record
//! aside, which the leader's fast path deliberately does not write).

mod common;

use common::*;
use proptest::prelude::*;
use state_machine::*;

const USERS: usize = 4;
/// Small request-id space, so remembered outcomes are hit often.
const REQUEST_IDS: u64 = 24;

#[derive(Clone, Debug)]
enum Op {
    /// Seat indexes into `seat_name`; index 99 names a seat that does not exist.
    Seats {
        event: usize,
        user: usize,
        seats: Vec<usize>,
    },
    Best {
        event: usize,
        user: usize,
        count: u32,
        any: bool,
        section: bool,
    },
    Ga {
        user: usize,
        count: u32,
    },
    Release {
        user: usize,
        hold: u64,
    },
    Pay {
        user: usize,
        hold: u64,
    },
    Confirm {
        user: usize,
        hold: u64,
    },
    Join {
        user: usize,
    },
    Leave {
        user: usize,
    },
    Configure {
        dedupe_ttl_ms: u64,
        hold_retention_ms: u64,
    },
    Tick,
}

/// Events: "e" open, "w" open with a waiting room, "c" never opened, "x" unknown.
const EVENTS: [&str; 4] = ["e", "w", "c", "x"];

fn seat_name(i: usize) -> String {
    if i == 99 {
        "A-9-9".into()
    } else {
        format!("A-{}-{}", i / 5 + 1, i % 5 + 1)
    }
}

fn user(i: usize) -> String {
    format!("u{i}")
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let ev =
        prop_oneof![6 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize), 1 => Just(3usize)];
    let seat = prop_oneof![10 => 0..10usize, 1 => Just(99usize)];
    prop_oneof![
        6 => (ev.clone(), u.clone(), prop::collection::vec(seat, 0..3)).prop_map(|(event, user, seats)| Op::Seats { event, user, seats }),
        3 => (ev, u.clone(), 0..5u32, any::<bool>(), any::<bool>()).prop_map(|(event, user, count, any, section)| Op::Best { event, user, count, any, section }),
        2 => (u.clone(), 0..6u32).prop_map(|(user, count)| Op::Ga { user, count }),
        2 => (u.clone(), 1..16u64).prop_map(|(user, hold)| Op::Release { user, hold }),
        1 => (u.clone(), 1..16u64).prop_map(|(user, hold)| Op::Pay { user, hold }),
        2 => (u.clone(), 1..16u64).prop_map(|(user, hold)| Op::Confirm { user, hold }),
        2 => u.clone().prop_map(|user| Op::Join { user }),
        1 => u.prop_map(|user| Op::Leave { user }),
        1 => (state_machine::limits::DEDUPE_TTL_MS_MIN..state_machine::limits::DEDUPE_TTL_MS_MIN + 30_000u64, 0..30_000u64).prop_map(|(dedupe_ttl_ms, hold_retention_ms)| Op::Configure { dedupe_ttl_ms, hold_retention_ms }),
        1 => Just(Op::Tick),
    ]
}

fn command(op: &Op) -> Command {
    match op {
        Op::Seats {
            event,
            user: u,
            seats,
        } if EVENTS[*event] == "w" => Command::HoldQueued {
            event_id: "w".into(),
            holder: user(*u),
            selection: Selection::Seats(seats.iter().map(|&s| seat_name(s)).collect()),
            // Each user shows one token: position u + 1 (handed out once a
            // block covers it).
            queue_position: *u as u64 + 1,
        },
        Op::Seats {
            event,
            user: u,
            seats,
        } => Command::Hold {
            event_id: EVENTS[*event].into(),
            holder: user(*u),
            selection: Selection::Seats(seats.iter().map(|&s| seat_name(s)).collect()),
        },
        Op::Best {
            event,
            user: u,
            count,
            any,
            section,
        } => Command::Hold {
            event_id: EVENTS[*event].into(),
            holder: user(*u),
            selection: Selection::BestAvailable {
                count: *count,
                section: section.then(|| "A".to_string()),
                allow_non_adjacent: *any,
            },
        },
        Op::Ga { user: u, count } => Command::Hold {
            event_id: "e".into(),
            holder: user(*u),
            selection: Selection::GeneralAdmission {
                section: "GA".into(),
                count: *count,
            },
        },
        Op::Release { user: u, hold } => Command::Release {
            hold_id: *hold,
            holder: user(*u),
        },
        Op::Pay { user: u, hold } => Command::BeginPayment {
            hold_id: *hold,
            holder: user(*u),
        },
        Op::Confirm { user: u, hold } => Command::Confirm {
            hold_id: *hold,
            holder: user(*u),
            payment_ref: "pay".into(),
        },
        // A gateway reserving a block (the size varies with the user drawn).
        Op::Join { user: u } => Command::ReserveQueueBlock {
            event_id: "w".into(),
            count: *u as u32 + 1,
        },
        Op::Leave { user: u } => Command::LeaveQueue {
            event_id: "w".into(),
            user: user(*u),
        },
        Op::Configure {
            dedupe_ttl_ms,
            hold_retention_ms,
        } => Command::Configure(Settings {
            dedupe_ttl_ms: *dedupe_ttl_ms,
            hold_retention_ms: *hold_retention_ms,
            ..Settings::default()
        }),
        Op::Tick => Command::Tick,
    }
}

/// (client id 0..=2, request id, op): client 0 is never deduplicated.
type Req = (u64, u64, Op);

fn req() -> impl Strategy<Value = Req> {
    (0..3u64, 1..=REQUEST_IDS, op())
}

fn request((client_id, request_id, op): &Req) -> Request {
    Request {
        client_id: *client_id,
        request_id: *request_id,
        command: command(op),
    }
}

fn setup() -> (BookingState, u64) {
    let mut state = BookingState::new();
    let mut w = std_spec("w", 1, 5, 0, 10_000);
    w.waiting_room = Some(WaitingRoomSpec {
        enabled: true,
        admit_batch: 2,
    });
    let commands = vec![
        Command::CreateEvent(std_spec("e", 2, 5, 4, 10_000)),
        Command::CreateEvent(w),
        Command::CreateEvent(std_spec("c", 2, 5, 0, 10_000)),
        Command::OpenSale {
            event_id: "e".into(),
        },
        Command::OpenSale {
            event_id: "w".into(),
        },
    ];
    let batch = Batch {
        stamp_ms: 1_000_000,
        requests: commands
            .into_iter()
            .map(|command| Request {
                client_id: 0,
                request_id: 0,
                command,
            })
            .collect(),
    };
    let out = state.apply(1, &batch);
    assert!(out.outcomes.iter().all(|o| o.is_ok()), "{:?}", out.outcomes);
    (state, 1)
}

/// The property for one probe at the current state; counts what it saw.
fn check_probe(state: &BookingState, index: u64, probe: &Request, answered: &mut u32) {
    let Some(fast) = state.precheck(probe) else {
        return;
    };
    *answered += 1;
    let stamp_ms = state.clock_ms();
    let mut with = state.clone();
    let out = with.apply(
        index + 1,
        &Batch {
            stamp_ms,
            requests: vec![probe.clone()],
        },
    );
    assert_eq!(
        out.outcomes,
        vec![fast.clone()],
        "precheck and apply disagree on {probe:?}"
    );
    assert!(
        out.changes.is_empty(),
        "precheck answered {probe:?} but apply changed seats: {:?}",
        out.changes
    );
    let mut without = state.clone();
    let empty = without.apply(
        index + 1,
        &Batch {
            stamp_ms,
            requests: Vec::new(),
        },
    );
    assert!(
        empty.changes.is_empty(),
        "precheck answered while housekeeping was due: {:?}",
        empty.changes
    );
    // A fresh refusal under a dedupe key is remembered by apply (the fast
    // path does not write it); the same request without a key must then
    // change nothing. Anything else must leave the state exactly as an empty
    // entry does.
    if with != without {
        assert!(
            probe.client_id != 0 && fast.is_err(),
            "apply of {probe:?} (answered {fast:?} by precheck) changed the state"
        );
        let mut keyless = probe.clone();
        keyless.client_id = 0;
        let mut with_keyless = state.clone();
        let out = with_keyless.apply(
            index + 1,
            &Batch {
                stamp_ms,
                requests: vec![keyless],
            },
        );
        assert_eq!(out.outcomes, vec![fast.clone()]);
        assert_eq!(
            with_keyless, without,
            "apply of {probe:?} without its key changed more than the dedupe table"
        );
    }
    if fast.is_ok() {
        assert_ne!(
            probe.client_id, 0,
            "only a remembered outcome may be a success"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn precheck_answers_only_what_apply_would(
        entries in prop::collection::vec(
            (-3_000i64..15_000, prop::collection::vec(req(), 1..4), prop::collection::vec(req(), 1..6)),
            1..30,
        )
    ) {
        let (mut state, mut index) = setup();
        let mut stamp_ms: i64 = 1_000_000;
        let mut answered = 0u32;
        for (delta_ms, reqs, probes) in &entries {
            stamp_ms = (stamp_ms + delta_ms).max(0);
            index += 1;
            let batch = Batch {
                stamp_ms: stamp_ms as u64,
                requests: reqs.iter().map(request).collect(),
            };
            state.apply(index, &batch);
            for p in probes {
                check_probe(&state, index, &request(p), &mut answered);
            }
        }
        // Not an assertion on counts (proptest shrinks toward tiny cases);
        // the refusal paths are exercised in `refusals_are_answered` below.
        let _ = answered;
    }
}

#[test]
fn refusals_are_answered() {
    // Goal: the common refusals of a flash sale are answered by precheck, and a
    // hold that would succeed is not.
    let (mut state, index) = setup();
    let hold = |request_id: u64, event: &str, holder: &str, seat: &str| Request {
        client_id: 7,
        request_id,
        command: Command::Hold {
            event_id: event.into(),
            holder: holder.into(),
            selection: Selection::Seats(vec![seat.to_string()]),
        },
    };
    assert_eq!(state.precheck(&hold(1, "e", "u0", "A-1-1")), None);
    let out = state.apply(
        index + 1,
        &Batch {
            stamp_ms: 1_000_500,
            requests: vec![hold(1, "e", "u0", "A-1-1")],
        },
    );
    assert!(out.outcomes[0].is_ok());
    let refusal = |r: &Request| match state.precheck(r) {
        Some(Err(e)) => e.code(),
        other => panic!("{r:?}: expected a refusal, got {other:?}"),
    };
    assert_eq!(refusal(&hold(2, "e", "u1", "A-1-1")), "seat_unavailable");
    assert_eq!(refusal(&hold(3, "x", "u1", "A-1-2")), "unknown_event");
    assert_eq!(refusal(&hold(4, "c", "u1", "A-1-2")), "sale_not_open");
    assert_eq!(refusal(&hold(5, "e", "u1", "Z-1-2")), "unknown_seat");
    assert_eq!(refusal(&hold(6, "w", "u1", "A-1-2")), "not_admitted");
    // A free seat: only the log may answer.
    assert_eq!(state.precheck(&hold(7, "e", "u1", "A-1-2")), None);
    // The same (client, request) as the applied hold: its remembered success.
    assert_eq!(
        state.precheck(&hold(1, "e", "u0", "A-1-1")),
        Some(out.outcomes[0].clone())
    );
}
