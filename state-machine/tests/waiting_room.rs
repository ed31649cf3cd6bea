//! The waiting room built for crowds: position blocks, the pre-queue's keyed
//! order, the admission watermark, one admission per user at hold time,
//! lapses, and a replicated size that does not grow with the fans who joined.

mod common;

use common::*;
use proptest::prelude::*;
use state_machine::*;

fn req(client_id: u64, request_id: u64, command: Command) -> Request {
    Request {
        client_id,
        request_id,
        command,
    }
}

fn one(state: &mut BookingState, stamp_ms: u64, command: Command) -> Outcome {
    one_as(9, state, stamp_ms, command)
}

/// `client_id` 0: not remembered by the exactly-once table.
fn one_as(client_id: u64, state: &mut BookingState, stamp_ms: u64, command: Command) -> Outcome {
    let index = state.applied_index() + 1;
    let out = apply_checked(
        state,
        index,
        &Batch {
            stamp_ms,
            requests: vec![req(client_id, index, command)],
        },
    );
    out.outcomes.into_iter().next().unwrap()
}

fn queued_event(id: &str, rows: u32, seats: u32, admit_batch: u32) -> Command {
    let mut spec = std_spec(id, rows, seats, 0, 10_000);
    spec.waiting_room = Some(WaitingRoomSpec {
        enabled: true,
        admit_batch,
    });
    Command::CreateEvent(spec)
}

fn block(event: &str, count: u32) -> Command {
    Command::ReserveQueueBlock {
        event_id: event.into(),
        count,
    }
}

fn room(state: &BookingState, event: &str) -> WaitingRoomView {
    match state.query(&Query::WaitingRoom {
        event_id: event.into(),
    }) {
        QueryResult::WaitingRoom(Ok(view)) => view,
        other => panic!("{other:?}"),
    }
}

fn qhold(event: &str, user: &str, position: u64, seat: &str) -> Command {
    Command::HoldQueued {
        event_id: event.into(),
        holder: user.into(),
        selection: Selection::Seats(vec![seat.into()]),
        queue_position: position,
    }
}

/// A state with one queued event "e" (one row of 10 seats, `admit_batch`
/// admitted per round) opened at log time 1 000, and one block of
/// `block_len` positions handed out then.
fn opened_room(admit_batch: u32, block_len: u32) -> BookingState {
    let mut s = BookingState::new();
    one(&mut s, 1_000, queued_event("e", 1, 10, admit_batch)).unwrap();
    let open = Command::OpenSale {
        event_id: "e".into(),
    };
    one(&mut s, 1_000, open).unwrap();
    one(&mut s, 1_000, block("e", block_len)).unwrap();
    s
}

#[test]
fn a_million_joins_leave_the_replicated_state_the_same_size() {
    // Goal: the snapshot after 1 000 000 positions handed out (before and
    // after the opening) is within a few bytes of the one after 1 000: the
    // replicated state does not grow with the crowd. (The blocks go as client
    // 0 so the exactly-once table, one entry per block for its TTL, stays
    // out of the measure.)
    let mut s = BookingState::new();
    one(&mut s, 1_000, queued_event("big", 10, 50, 100)).unwrap();
    one_as(0, &mut s, 1_000, block("big", 1_000)).unwrap();
    let small = s.snapshot().len();
    for _ in 0..499 {
        one_as(0, &mut s, 1_000, block("big", 1_000)).unwrap();
    }
    one(
        &mut s,
        2_000,
        Command::OpenSale {
            event_id: "big".into(),
        },
    )
    .unwrap();
    // (Inside the first round's grace, so it is the only round.)
    for _ in 0..500 {
        one_as(0, &mut s, 2_500, block("big", 1_000)).unwrap();
    }
    let view = room(&s, "big");
    assert_eq!(view.next_position, 1_000_001);
    assert_eq!(view.pre_count, 500_000);
    assert_eq!(view.admitted_places, 100, "one batch admitted");
    let big = s.snapshot().len();
    // The difference: the key (32 bytes), one round and varint widths.
    assert!(
        big <= small + 128,
        "snapshot grew from {small} to {big} bytes"
    );
}

#[test]
fn the_pre_queue_order_is_uniform_and_independent_of_join_order() {
    // Goal: with a fixed key, the pre-queue places of 20 000 positions
    // (handed out in join order) are a permutation, and the first tenth
    // admitted draws evenly from every tenth of the join order (chi-square,
    // 9 degrees of freedom, below its 99.9% quantile 27.88).
    let n = 20_000u64;
    let seed = *blake3::hash(b"fixed test key").as_bytes();
    let places: Vec<u64> = (0..n).map(|i| pre_queue_place(&seed, n, i + 1)).collect();
    let mut sorted = places.clone();
    sorted.sort_unstable();
    assert!(sorted.iter().copied().eq(0..n), "not a permutation");
    let chi2 = |counts: &[u64], expected: f64| -> f64 {
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    };
    // Join order and place are uncorrelated (Spearman's rho; its standard
    // deviation here is 1/sqrt(n) = 0.007).
    let mean = (n - 1) as f64 / 2.0;
    let (mut cov, mut var) = (0.0, 0.0);
    for (i, &p) in places.iter().enumerate() {
        cov += (i as f64 - mean) * (p as f64 - mean);
        var += (i as f64 - mean).powi(2);
    }
    let rho = cov / var;
    assert!(
        rho.abs() < 0.035,
        "join order and place correlate: rho {rho:.4}"
    );
    // The fans of the first tenth of places, by their tenth of join order.
    let mut by_join = [0u64; 10];
    let mut first = 0;
    for (i, &p) in places.iter().enumerate() {
        if p < n / 10 {
            by_join[i * 10 / n as usize] += 1;
            first += 1;
        }
    }
    let c2 = chi2(&by_join, first as f64 / 10.0);
    assert_eq!(first, n / 10);
    assert!(
        c2 < 27.88,
        "early joiners favoured: chi2 {c2:.1} {by_join:?}"
    );
    // Over 20 000 keys, each of 10 positions is first in line about as
    // often as any other: the draw is uniform, not just scrambled.
    let mut first_in_line = [0u64; 10];
    for k in 0u32..20_000 {
        let key = *blake3::hash(&k.to_le_bytes()).as_bytes();
        let winner = (1..=10)
            .find(|&pos| pre_queue_place(&key, 10, pos) == 0)
            .unwrap();
        first_in_line[winner as usize - 1] += 1;
    }
    let c3 = chi2(&first_in_line, 2_000.0);
    assert!(
        c3 < 27.88,
        "first place not uniform: chi2 {c3:.1} {first_in_line:?}"
    );
    // Another key, another order: most fans move.
    let other = *blake3::hash(b"another key").as_bytes();
    let same = (0..n)
        .filter(|&i| pre_queue_place(&other, n, i + 1) == places[i as usize])
        .count();
    assert!(same < 50, "{same} fans kept their place under another key");
}

#[test]
fn one_admission_per_user_is_enforced_at_hold_time() {
    // Goal: a user with two admitted positions shops under one admission:
    // after confirming, neither position admits them again until it lapses;
    // positions never handed out admit nobody.
    let mut s = opened_room(3, 5);
    assert_eq!(room(&s, "e").admitted_places, 3);
    let e = one(&mut s, 1_100, qhold("e", "amy", 99, "A-1-1")).unwrap_err();
    assert_eq!(e.code(), "not_admitted", "a position no block handed out");
    let held = one(&mut s, 1_200, qhold("e", "amy", 1, "A-1-1")).unwrap();
    let Reply::Held { hold_id, .. } = held else {
        panic!("{held:?}")
    };
    // Her second admitted position is the same admission: holds work.
    one(&mut s, 1_300, qhold("e", "amy", 2, "A-1-2")).unwrap();
    one(
        &mut s,
        1_400,
        Command::Confirm {
            hold_id,
            holder: "amy".into(),
            payment_ref: "p".into(),
        },
    )
    .unwrap();
    for position in [1, 2, 3] {
        let e = one(&mut s, 1_500, qhold("e", "amy", position, "A-1-5")).unwrap_err();
        assert_eq!(e.code(), "not_admitted");
    }
    // Somebody else's admitted position still admits them.
    one(&mut s, 1_600, qhold("e", "bob", 3, "A-1-5")).unwrap();
    // After the window, amy's record is gone: her later position (4, admitted
    // by the next rounds) may admit her again; position 1 has lapsed.
    one(&mut s, 11_000, Command::Tick).unwrap();
    let e = one(&mut s, 11_100, qhold("e", "amy", 1, "A-1-6")).unwrap_err();
    assert_eq!(e.code(), "admission_lapsed");
    assert!(room(&s, "e").admitted_places >= 4);
    one(&mut s, 11_200, qhold("e", "amy", 4, "A-1-6")).unwrap();
}

#[test]
fn places_nobody_uses_hold_the_line_for_the_grace_only() {
    // Goal: admitted places whose fans do not hold count as shopping for a
    // tenth of the hold window (the leader's deadline names its end), then
    // the next places are admitted; the first fans keep the whole window.
    let mut s = opened_room(2, 10);
    assert_eq!(room(&s, "e").admitted_places, 2);
    one(&mut s, 1_999, Command::Tick).unwrap();
    assert_eq!(room(&s, "e").admitted_places, 2);
    assert_eq!(s.next_deadline_ms(), Some(2_000));
    one(&mut s, 2_000, Command::Tick).unwrap();
    assert_eq!(room(&s, "e").admitted_places, 4);
    one(&mut s, 10_999, qhold("e", "late", 1, "A-1-1")).unwrap();
    let e = one(&mut s, 11_000, qhold("e", "later", 2, "A-1-2")).unwrap_err();
    assert_eq!(e.code(), "admission_lapsed");
}

#[derive(Clone, Debug)]
enum Op {
    Block(u32),
    Hold { user: u8, position: u64 },
    Confirm { hold: u64, user: u8 },
    Leave { user: u8 },
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1..20u32).prop_map(Op::Block),
        6 => (0..12u8, 1..40u64).prop_map(|(user, position)| Op::Hold { user, position }),
        3 => (1..30u64, 0..12u8).prop_map(|(hold, user)| Op::Confirm { hold, user }),
        1 => (0..12u8).prop_map(|user| Op::Leave { user }),
        2 => (1..15_000u64).prop_map(Op::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn admission_never_passes_the_batch_or_the_inventory(
        pre in 0..30u32,
        ops in prop::collection::vec(op(), 1..80),
    ) {
        // Goal: whatever fans do, a round raised by housekeeping leaves at
        // most admit_batch places shopping and never more than the unsold
        // seats (fans who act after their round's grace may add to it later:
        // the rule's documented slack); once every seat is sold the watermark
        // stops; no seat is sold twice (the invariant check after every entry).
        let mut s = BookingState::new();
        let mut clock = 1_000;
        one(&mut s, clock, queued_event("e", 1, 6, 3)).unwrap();
        if pre > 0 {
            one(&mut s, clock, block("e", pre)).unwrap();
        }
        one(&mut s, clock, Command::OpenSale { event_id: "e".into() }).unwrap();
        for op in ops {
            let before = room(&s, "e");
            let command = match op {
                Op::Block(n) => block("e", n),
                Op::Hold { user, position } => {
                    qhold("e", &format!("u{user}"), position, &format!("A-1-{}", 1 + user % 6))
                }
                Op::Confirm { hold, user } => Command::Confirm {
                    hold_id: hold,
                    holder: format!("u{user}"),
                    payment_ref: "p".into(),
                },
                Op::Leave { user } => Command::LeaveQueue {
                    event_id: "e".into(),
                    user: format!("u{user}"),
                },
                Op::Tick(dt) => {
                    clock += dt;
                    Command::Tick
                }
            };
            let is_tick = matches!(command, Command::Tick);
            let _ = one(&mut s, clock, command);
            let after = room(&s, "e");
            let available = match s.query(&Query::Event { event_id: "e".into() }) {
                QueryResult::Event(Ok(ev)) => ev.available,
                other => panic!("{other:?}"),
            };
            if is_tick && after.admitted_places > before.admitted_places {
                prop_assert!(after.shopping <= 3, "shopping {} > batch", after.shopping);
                prop_assert!(after.shopping <= available.max(before.shopping),
                    "admitted past the unsold seats: shopping {} available {available}", after.shopping);
            }
            if is_tick && available == 0 && before.shopping == 0 {
                prop_assert_eq!(after.admitted_places, before.admitted_places);
            }
        }
    }
}
