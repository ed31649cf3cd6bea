//! Unit tests of the command surface not covered by scenario files: wire
//! shapes, error codes, bounds, and refusals that need many entries.

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

fn one(state: &mut BookingState, stamp_ms: u64, command: Command) -> Outcome {
    let index = state.applied_index() + 1;
    let out = apply_checked(
        state,
        index,
        &Batch {
            stamp_ms,
            requests: vec![req(9, index, command)],
        },
    );
    out.outcomes.into_iter().next().unwrap()
}

fn open_std(state: &mut BookingState, id: &str) {
    one(
        state,
        1_000,
        Command::CreateEvent(std_spec(id, 3, 10, 5, 10_000)),
    )
    .unwrap();
    one(
        state,
        1_000,
        Command::OpenSale {
            event_id: id.into(),
        },
    )
    .unwrap();
}

#[test]
fn event_spec_json_shape_is_internally_tagged() {
    // Goal: the POST /v1/events JSON parses with defaults, and postcard round-trips the same spec.
    let json = r#"{"name":"Gig","venue":"Hall","starts_at":"2030-01-01T20:00:00Z",
        "waiting_room":{"enabled":true},
        "sections":[{"id":"A","name":"Stalls","kind":"reserved","price_cents":100,"rows":[{"label":"12","seats":20}]},
                    {"id":"GA","name":"Floor","kind":"general_admission","capacity":50,"price_cents":10}]}"#;
    let spec: EventSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec.hold_ttl_ms, 600_000);
    assert_eq!(spec.max_seats_per_hold, 8);
    assert_eq!(spec.waiting_room.as_ref().unwrap().admit_batch, 100);
    let back: serde_json::Value = serde_json::to_value(&spec).unwrap();
    assert_eq!(back["sections"][1]["kind"], "general_admission");
    let batch = Batch {
        stamp_ms: 5,
        requests: vec![req(1, 1, Command::CreateEvent(spec.clone()))],
    };
    let bytes = postcard::to_stdvec(&batch).unwrap();
    assert_eq!(postcard::from_bytes::<Batch>(&bytes).unwrap(), batch);
    let json = serde_json::to_string(&batch).unwrap();
    assert_eq!(serde_json::from_str::<Batch>(&json).unwrap(), batch);
    assert!(serde_json::from_str::<EventSpec>(
        r#"{"name":"x","venue":"v","starts_at":"s","sections":[],"bogus":1}"#
    )
    .is_err());
}

#[test]
fn every_outcome_round_trips_through_postcard_and_json() {
    // Goal: outcomes and queries cross the Raft log and the wire unchanged.
    let batches = random_batches(11, 200);
    let mut state = BookingState::new();
    for (i, b) in batches.iter().enumerate() {
        let out = state.apply(i as u64 + 1, b);
        let bytes = postcard::to_stdvec(&out).unwrap();
        assert_eq!(postcard::from_bytes::<ApplyOutput>(&bytes).unwrap(), out);
        let json = serde_json::to_string(&out).unwrap();
        assert_eq!(serde_json::from_str::<ApplyOutput>(&json).unwrap(), out);
    }
    for q in [
        Query::Events,
        Query::Event {
            event_id: "gig".into(),
        },
        Query::Availability {
            event_id: "gig".into(),
        },
        Query::Hold { hold_id: 1 },
        Query::Booking { booking_id: 1 },
        Query::Ticket { ticket_id: 1 },
        Query::WaitingRoom {
            event_id: "queued".into(),
        },
        Query::Outbox { limit: 5 },
        Query::Status,
    ] {
        let r = state.query(&q);
        assert_eq!(
            postcard::from_bytes::<QueryResult>(&postcard::to_stdvec(&r).unwrap()).unwrap(),
            r
        );
        assert_eq!(
            serde_json::from_str::<QueryResult>(&serde_json::to_string(&r).unwrap()).unwrap(),
            r
        );
    }
}

#[test]
fn error_codes_are_stable_and_classified() {
    // Goal: code() equals the serde tag, and only capacity limits are not the client's fault.
    let errors = vec![
        BookingError::SeatUnavailable {
            seats: vec!["A-1-1".into()],
        },
        BookingError::HoldExpired { hold_id: 1 },
        BookingError::NotOwner,
        BookingError::QueueFull {
            event_id: "e".into(),
        },
        BookingError::TooManyEvents { max: 1 },
        BookingError::AlreadyCheckedIn {
            ticket_id: 1,
            checked_in_at_ms: 2,
        },
    ];
    for e in &errors {
        let v = serde_json::to_value(e).unwrap();
        let tag = v
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| v.as_object().unwrap().keys().next().unwrap().clone());
        assert_eq!(tag, e.code());
    }
    assert!(errors[0].is_client_error() && errors[1].is_client_error());
    assert!(!errors[3].is_client_error() && !errors[4].is_client_error());
    assert_eq!(errors[0].to_string(), "seats unavailable: A-1-1");
}

#[test]
fn queries_answer_and_refuse() {
    // Goal: each query answers from the applied state and refuses unknown ids with the right code.
    let mut s = BookingState::new();
    open_std(&mut s, "gig");
    let Ok(Reply::Held { hold_id, .. }) = one(
        &mut s,
        2_000,
        Command::Hold {
            event_id: "gig".into(),
            holder: "ann".into(),
            selection: Selection::Seats(vec!["A-2-3".into()]),
        },
    ) else {
        panic!()
    };
    let QueryResult::Availability(Ok(a)) = s.query(&Query::Availability {
        event_id: "gig".into(),
    }) else {
        panic!()
    };
    assert_eq!((a.applied_index, a.clock_ms), (3, 2_000));
    assert_eq!(a.sections[0].rows[1].states, "..H.......");
    assert_eq!(
        (
            a.sections[0].available,
            a.sections[0].held,
            a.sections[1].capacity
        ),
        (29, 1, 5)
    );
    let QueryResult::Hold(Ok(h)) = s.query(&Query::Hold { hold_id }) else {
        panic!()
    };
    assert_eq!(
        (h.holder.as_str(), h.seats.clone(), h.status),
        ("ann", vec!["A-2-3".to_string()], HoldStatus::Active)
    );
    let QueryResult::Events(ev) = s.query(&Query::Events) else {
        panic!()
    };
    assert_eq!((ev.len(), ev[0].capacity, ev[0].available), (1, 35, 34));
    let QueryResult::Event(Ok(e)) = s.query(&Query::Event {
        event_id: "gig".into(),
    }) else {
        panic!()
    };
    assert_eq!(
        (e.sale, e.held, e.queue_waiting),
        (SaleState::Open, 1, None)
    );
    assert_eq!(
        s.query(&Query::Event {
            event_id: "x".into()
        }),
        QueryResult::Event(Err(BookingError::UnknownEvent {
            event_id: "x".into()
        }))
    );
    assert!(matches!(
        s.query(&Query::Hold { hold_id: 9 }),
        QueryResult::Hold(Err(BookingError::UnknownHold { .. }))
    ));
    assert!(matches!(
        s.query(&Query::Booking { booking_id: 9 }),
        QueryResult::Booking(Err(BookingError::UnknownBooking { .. }))
    ));
    assert!(matches!(
        s.query(&Query::Ticket { ticket_id: 9 }),
        QueryResult::Ticket(Err(BookingError::UnknownTicket { .. }))
    ));
    let QueryResult::Status(st) = s.query(&Query::Status) else {
        panic!()
    };
    assert_eq!(
        (st.applied_index, st.holds_live, st.next_deadline_ms),
        (3, 1, Some(12_000))
    );
}

#[test]
fn queue_blocks_are_bounded_and_bad_names_are_refused() {
    // Goal: a block is 1..=queue_block_max positions (else invalid_request,
    // nothing reserved), blocks do not overlap, the retired JoinQueue and bad
    // user names are invalid requests.
    let mut s = BookingState::new();
    let mut spec = std_spec("q", 1, 5, 0, 10_000);
    spec.waiting_room = Some(WaitingRoomSpec {
        enabled: true,
        admit_batch: 1,
    });
    one(&mut s, 1_000, Command::CreateEvent(spec)).unwrap();
    one(
        &mut s,
        1_000,
        Command::Configure(Settings {
            queue_block_max: 2,
            ..Settings::default()
        }),
    )
    .unwrap();
    let block = |count| Command::ReserveQueueBlock {
        event_id: "q".into(),
        count,
    };
    for bad in [0, 3] {
        let e = one(&mut s, 1_000, block(bad)).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
    }
    let firsts: Vec<u64> = (0..3)
        .map(|_| match one(&mut s, 1_000, block(2)).unwrap() {
            Reply::QueueBlock {
                first_position,
                count: 2,
                opened: false,
                ..
            } => first_position,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(firsts, vec![1, 3, 5]);
    for user in ["a", ""] {
        let e = one(
            &mut s,
            1_000,
            Command::JoinQueue {
                event_id: "q".into(),
                user: user.into(),
            },
        )
        .unwrap_err();
        assert_eq!(e.code(), "invalid_request");
    }
    let e = one(
        &mut s,
        1_000,
        Command::Hold {
            event_id: "q".into(),
            holder: "x".repeat(200),
            selection: Selection::Seats(vec![]),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "invalid_request");
}

#[test]
fn too_many_events_is_refused() {
    // Goal: the event count bound holds and is reported as a system limit.
    let mut s = BookingState::new();
    let requests: Vec<Request> = (0..limits::MAX_EVENTS as u64 + 1)
        .map(|i| {
            let mut spec = std_spec(&format!("e{i}"), 1, 1, 0, 10_000);
            spec.sections.truncate(1);
            req(1, i + 1, Command::CreateEvent(spec))
        })
        .collect();
    let out = s.apply(
        1,
        &Batch {
            stamp_ms: 1,
            requests,
        },
    );
    assert!(out.outcomes[..limits::MAX_EVENTS].iter().all(|o| o.is_ok()));
    assert_eq!(
        out.outcomes[limits::MAX_EVENTS]
            .as_ref()
            .unwrap_err()
            .code(),
        "too_many_events"
    );
}

#[test]
fn forgotten_holds_still_answer_hold_expired() {
    // Goal: after hold_retention_ms a finished hold is dropped from memory, yet confirm still says hold_expired.
    let mut s = BookingState::new();
    open_std(&mut s, "gig");
    one(
        &mut s,
        1_000,
        Command::Configure(Settings {
            hold_retention_ms: 1_000,
            ..Settings::default()
        }),
    )
    .unwrap();
    one(
        &mut s,
        2_000,
        Command::Hold {
            event_id: "gig".into(),
            holder: "a".into(),
            selection: Selection::Seats(vec!["A-1-1".into()]),
        },
    )
    .unwrap();
    one(
        &mut s,
        3_000,
        Command::Release {
            hold_id: 1,
            holder: "a".into(),
        },
    )
    .unwrap();
    one(&mut s, 4_000, Command::Tick).unwrap();
    assert!(matches!(
        s.query(&Query::Hold { hold_id: 1 }),
        QueryResult::Hold(Err(_))
    ));
    let e = one(
        &mut s,
        4_100,
        Command::Confirm {
            hold_id: 1,
            holder: "a".into(),
            payment_ref: "p".into(),
        },
    )
    .unwrap_err();
    assert_eq!(e.code(), "hold_expired");
}

#[test]
fn outbox_is_bounded() {
    // Goal: a full outbox drops its oldest message and counts it, so confirmations never stop.
    let mut s = BookingState::new();
    open_std(&mut s, "gig");
    one(
        &mut s,
        1_000,
        Command::Configure(Settings {
            outbox_max_entries: 2,
            ..Settings::default()
        }),
    )
    .unwrap();
    for n in 1..=3u64 {
        one(
            &mut s,
            2_000,
            Command::Hold {
                event_id: "gig".into(),
                holder: "a".into(),
                selection: Selection::Seats(vec![format!("A-1-{n}")]),
            },
        )
        .unwrap();
        one(
            &mut s,
            2_000,
            Command::Confirm {
                hold_id: n,
                holder: "a".into(),
                payment_ref: "p".into(),
            },
        )
        .unwrap();
    }
    let QueryResult::Outbox(m) = s.query(&Query::Outbox { limit: 10 }) else {
        panic!()
    };
    assert_eq!(
        m.iter().map(|m| m.booking_id).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(m[0].text.contains("A-1-2"));
    let QueryResult::Status(st) = s.query(&Query::Status) else {
        panic!()
    };
    assert_eq!(st.outbox_dropped, 1);
}

#[test]
fn tick_is_droppable_and_not_deduplicated() {
    // Goal: only Tick may be dropped by the leader, and ticks with client 0 are never remembered.
    assert!(Command::Tick.is_read_only_safe_to_drop());
    assert!(!Command::OpenSale {
        event_id: "e".into()
    }
    .is_read_only_safe_to_drop());
    let mut s = BookingState::new();
    s.apply(
        1,
        &Batch {
            stamp_ms: 5,
            requests: vec![req(0, 0, Command::Tick), req(0, 0, Command::Tick)],
        },
    );
    let QueryResult::Status(st) = s.query(&Query::Status) else {
        panic!()
    };
    assert_eq!(st.dedupe_entries, 0);
    // Empty entries (blank, membership) advance the index, never the clock.
    s.apply(2, &Batch::default());
    assert_eq!((s.applied_index(), s.clock_ms()), (2, 5));
}

#[test]
#[should_panic(expected = "applied twice or out of order")]
fn applying_an_old_index_is_a_programmer_error() {
    // Goal: raft-node applying an entry twice crashes loudly instead of diverging.
    let mut s = BookingState::new();
    s.apply(5, &Batch::default());
    s.apply(5, &Batch::default());
}
