//! What a snapshot costs on a big state, and what the copy taken under the
//! node's state lock costs (`BookingState::saved_copy`), so the choice of
//! "copy, then encode off the lock" is made on measured numbers.
//!
//! The state: one event of 50 000 reserved seats, every seat held (long
//! TTL), and 1 000 000 remembered request outcomes (holds refused because
//! the seat is taken), like the end of a big flash sale. Each benchmark
//! reports the time for the whole state.

use criterion::{criterion_group, criterion_main, Criterion};
use state_machine::*;

const ROWS: u32 = 100;
const SEATS_PER_ROW: u32 = 500; // 50 000 reserved seats
const REMEMBERED: u64 = 1_000_000;
const BATCH: u64 = 1_000;

fn hold(client_id: u64, request_id: u64, seat: u64) -> Request {
    let seat = format!(
        "A-{}-{}",
        1 + seat / SEATS_PER_ROW as u64,
        1 + seat % SEATS_PER_ROW as u64
    );
    Request {
        client_id,
        request_id,
        command: Command::Hold {
            event_id: "arena".into(),
            holder: format!("fan{client_id}"),
            selection: Selection::Seats(vec![seat]),
        },
    }
}

fn big_state() -> BookingState {
    let spec = EventSpec {
        id: Some("arena".into()),
        name: "Arena".into(),
        venue: "Arena".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: 86_400_000,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections: vec![SectionSpec::Reserved {
            id: "A".into(),
            name: "Bowl".into(),
            price_cents: 5_000,
            rows: (1..=ROWS)
                .map(|r| RowSpec {
                    label: r.to_string(),
                    seats: SEATS_PER_ROW,
                })
                .collect(),
        }],
    };
    let mut state = BookingState::new();
    let mut index = 1;
    let open = vec![
        Request {
            client_id: 1,
            request_id: 1,
            command: Command::CreateEvent(spec),
        },
        Request {
            client_id: 1,
            request_id: 2,
            command: Command::OpenSale {
                event_id: "arena".into(),
            },
        },
    ];
    let out = state.apply(
        index,
        &Batch {
            stamp_ms: 1_000,
            requests: open,
        },
    );
    assert!(out.outcomes.iter().all(|o| o.is_ok()));
    let seats = (ROWS * SEATS_PER_ROW) as u64;
    let mut request_id = 0;
    while request_id < REMEMBERED {
        index += 1;
        let requests = (0..BATCH)
            .map(|_| {
                request_id += 1;
                let client_id = 2 + request_id % 20_000;
                hold(client_id, request_id, (request_id - 1) % seats)
            })
            .collect();
        state.apply(
            index,
            &Batch {
                stamp_ms: 1_000 + index,
                requests,
            },
        );
    }
    state
}

fn benches(c: &mut Criterion) {
    let state = big_state();
    let bytes = state.snapshot();
    eprintln!(
        "snapshot bench state: 50 000 seats held, {REMEMBERED} remembered outcomes, snapshot {} bytes",
        bytes.len()
    );
    assert_eq!(
        state.saved_copy().snapshot(),
        bytes,
        "the copy encodes as the state"
    );
    let mut g = c.benchmark_group("snapshot_50k_seats_1m_remembered");
    g.sample_size(10);
    g.bench_function("clone_whole_state", |b| b.iter(|| state.clone()));
    g.bench_function("saved_copy", |b| b.iter(|| state.saved_copy()));
    g.bench_function("snapshot_bytes", |b| b.iter(|| state.snapshot()));
    g.bench_function("state_hash", |b| b.iter(|| state.state_hash()));
    g.finish();
}

criterion_group!(snapshot, benches);
criterion_main!(snapshot);
