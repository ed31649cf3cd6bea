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

mod common;
use common::{arena_spec, opened_arena, ROWS, SEATS_PER_ROW};

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
    let mut state = opened_arena(arena_spec(86_400_000, false), None);
    let mut index = 1;
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
