//! Apply speed of the pure state machine (DESIGN §10 "apply speed").
//!
//! Every benchmark applies whole log entries to one long-lived state and
//! reports throughput in commands. Stamps advance 100 ms per entry with a
//! 1 s hold TTL, so holds expire continuously and the venue stays in a
//! steady state (expiry work is included in the numbers). Requests are built
//! outside the timed section. Targets: >= 1 000 000 simple holds/s on one
//! core; best-available <= 20 us per request at 50 000 seats.
//!
//! Steady state: the exactly-once table is kept at its steady size by a
//! `ForgetRequests` every 100 entries with the shortest TTL (before
//! 2026-12-01 it grew without bound, so a long run reached
//! `dedupe_max_entries` and then measured cheap `overloaded` refusals
//! instead of holds, and a short one measured a growing table).
//!
//! Allocator: mimalloc, as on a node (before 2026-12-01 this bench ran
//! under glibc malloc; figures from before are not comparable one to one).
//!
//! Criterion measures wall time, so on a shared machine the numbers include
//! time stolen by other processes; `examples/profile_apply.rs` reports
//! this thread's CPU time over two million commands for a per-core figure.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use state_machine::*;

/// The nodes' allocator (the `booking` binary sets it in `src/main.rs`):
/// apply allocates a few small strings per command (replies, seat changes),
/// and glibc's malloc would make those a larger share here than on a node.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod common;
use common::{arena_spec, opened_arena, Rng, ROWS, SEATS_PER_ROW};

const BATCH: usize = 1_000;

fn venue(hold_ttl_ms: u64) -> BookingState {
    // The shortest exactly-once TTL, so the table's steady size (60 s of log
    // time at 10 000 requests per second: 600 000) is reached early and
    // `ForgetRequests` keeps it there.
    let settings = Settings {
        dedupe_ttl_ms: state_machine::limits::DEDUPE_TTL_MS_MIN,
        ..Settings::default()
    };
    opened_arena(arena_spec(hold_ttl_ms, true), Some(settings))
}

/// Builds entries: stamps advance 100 ms per entry, request ids never repeat.
struct Gen {
    stamp_ms: u64,
    request_id: u64,
    rng: Rng,
}

/// The long-lived state the entries are applied to.
struct Replica {
    state: BookingState,
    index: u64,
}

fn driver(hold_ttl_ms: u64) -> (Gen, Replica) {
    (
        Gen {
            stamp_ms: 1_000,
            request_id: 0,
            rng: Rng(0x9E37_79B9_7F4A_7C15),
        },
        Replica {
            state: venue(hold_ttl_ms),
            index: 1,
        },
    )
}

impl Gen {
    fn batch(&mut self, n: usize, mut command: impl FnMut(&mut Rng, u64) -> Command) -> Batch {
        self.stamp_ms += 100;
        let requests = (0..n)
            .map(|_| {
                self.request_id += 1;
                let client_id = 2 + self.request_id % 10_000;
                Request {
                    client_id,
                    request_id: self.request_id,
                    command: command(&mut self.rng, client_id),
                }
            })
            .collect();
        Batch {
            stamp_ms: self.stamp_ms,
            requests,
        }
    }
}

/// Every this many entries the replica applies a `ForgetRequests`, as a
/// leader's tick task does, so the exactly-once table stays at its steady
/// size (`dedupe_ttl_ms` of requests) however long criterion runs.
const FORGET_EVERY_ENTRIES: u64 = 100;

impl Replica {
    fn apply(&mut self, batch: &Batch) -> ApplyOutput {
        self.index += 1;
        let out = self.state.apply(self.index, batch);
        if self.index.is_multiple_of(FORGET_EVERY_ENTRIES) {
            self.index += 1;
            let forget = Batch {
                stamp_ms: batch.stamp_ms,
                requests: vec![Request {
                    client_id: 1,
                    request_id: 1_000_000_000 + self.index,
                    command: Command::ForgetRequests {
                        before_ms: batch.stamp_ms,
                    },
                }],
            };
            self.state.apply(self.index, &forget);
        }
        out
    }
}

fn hold_seat(seat: String, client_id: u64) -> Command {
    Command::Hold {
        event_id: "arena".into(),
        holder: format!("fan{client_id}"),
        selection: Selection::Seats(vec![seat]),
    }
}

fn random_seat(rng: &mut Rng) -> String {
    format!(
        "A-{}-{}",
        1 + rng.below(ROWS as u64),
        1 + rng.below(SEATS_PER_ROW as u64)
    )
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(BATCH as u64));

    let (mut g_, mut r) = driver(1_000);
    g.bench_function("hold_uniform_random_seat_x1000", |b| {
        b.iter_batched_ref(
            || g_.batch(BATCH, |rng, client| hold_seat(random_seat(rng), client)),
            |batch| r.apply(batch),
            BatchSize::SmallInput,
        )
    });

    let (mut g_, mut r) = driver(1_000);
    g.bench_function("hold_hot_seat_x1000", |b| {
        b.iter_batched_ref(
            || g_.batch(BATCH, |_, client| hold_seat("A-1-250".into(), client)),
            |batch| r.apply(batch),
            BatchSize::SmallInput,
        )
    });

    let (mut g_, mut r) = driver(1_000);
    g.bench_function("best_available_2_x1000", |b| {
        b.iter_batched_ref(
            || {
                g_.batch(BATCH, |_, client| Command::Hold {
                    event_id: "arena".into(),
                    holder: format!("fan{client}"),
                    selection: Selection::BestAvailable {
                        count: 2,
                        section: None,
                        allow_non_adjacent: false,
                    },
                })
            },
            |batch| r.apply(batch),
            BatchSize::SmallInput,
        )
    });

    let (mut g_, mut r) = driver(1_000);
    g.bench_function("general_admission_2_x1000", |b| {
        b.iter_batched_ref(
            || {
                g_.batch(BATCH, |_, client| Command::Hold {
                    event_id: "arena".into(),
                    holder: format!("fan{client}"),
                    selection: Selection::GeneralAdmission {
                        section: "GA".into(),
                        count: 2,
                    },
                })
            },
            |batch| r.apply(batch),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // One request per entry: per-entry overhead and single-request latency.
    let mut g = c.benchmark_group("apply_single");
    g.throughput(Throughput::Elements(1));
    let (mut g_, mut r) = driver(1_000);
    g.bench_function("hold_uniform_random_seat", |b| {
        b.iter_batched_ref(
            || g_.batch(1, |rng, client| hold_seat(random_seat(rng), client)),
            |batch| r.apply(batch),
            BatchSize::SmallInput,
        )
    });

    // Best-available in a fragmented house: 90% of the seats held at random
    // (long TTL, so they stay), each request holds 4 adjacent seats and the
    // next entry releases them, so the state does not drift.
    let (mut g_, mut r) = driver(86_400_000);
    let mut filled = 0;
    while filled < (ROWS * SEATS_PER_ROW) as usize * 9 / 10 {
        let batch = g_.batch(BATCH, |rng, client| hold_seat(random_seat(rng), client));
        filled += r
            .apply(&batch)
            .outcomes
            .iter()
            .filter(|o| o.is_ok())
            .count();
    }
    g.bench_function("best_available_4_fragmented_90pct", |b| {
        b.iter_batched_ref(
            || {
                g_.batch(1, |_, client| Command::Hold {
                    event_id: "arena".into(),
                    holder: format!("fan{client}"),
                    selection: Selection::BestAvailable {
                        count: 4,
                        section: None,
                        allow_non_adjacent: true,
                    },
                })
            },
            |batch| {
                let out = r.apply(batch);
                if let Ok(Reply::Held { hold_id, .. }) = &out.outcomes[0] {
                    let req = &batch.requests[0];
                    let holder = format!("fan{}", req.client_id);
                    let release = Batch {
                        stamp_ms: batch.stamp_ms,
                        requests: vec![Request {
                            client_id: req.client_id,
                            request_id: req.request_id + 1_000_000_000,
                            command: Command::Release {
                                hold_id: *hold_id,
                                holder,
                            },
                        }],
                    };
                    r.apply(&release);
                }
                out
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(apply, benches);
criterion_main!(apply);
