//! Profiling harness: applies 2 000 000 holds of one kind (`seat`, `hot`, `ga`,
//! `best`) to a 50 000-seat venue and prints CPU and wall time per command.
//! Run under `perf record` to see where apply spends its time:
//! `cargo run -p state-machine --release --example profile_apply -- seat`.

use state_machine::*;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{arena_spec, opened_arena, Rng, ROWS, SEATS_PER_ROW};

/// The nodes' allocator (`src/main.rs`), so the profile shows what a node pays.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
fn main() {
    let kind = std::env::args().nth(1).unwrap_or("seat".into());
    let mut s = opened_arena(arena_spec(1_000, true), None);
    let mut rng = Rng(7);
    let mut rid = 0u64;
    let n_batches = 2000;
    let batches: Vec<Batch> = (0..n_batches)
        .map(|i| Batch {
            stamp_ms: 1100 + i * 100,
            requests: (0..1000)
                .map(|_| {
                    rid += 1;
                    let c = 2 + rid % 10_000;
                    let selection = match kind.as_str() {
                        "ga" => Selection::GeneralAdmission {
                            section: "GA".into(),
                            count: 2,
                        },
                        "best" => Selection::BestAvailable {
                            count: 2,
                            section: None,
                            allow_non_adjacent: false,
                        },
                        "hot" => Selection::Seats(vec!["A-1-250".into()]),
                        _ => Selection::Seats(vec![format!(
                            "A-{}-{}",
                            1 + rng.below(ROWS as u64),
                            1 + rng.below(SEATS_PER_ROW as u64)
                        )]),
                    };
                    Request {
                        client_id: c,
                        request_id: rid,
                        command: Command::Hold {
                            event_id: "arena".into(),
                            holder: format!("fan{c}"),
                            selection,
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let t = cpu_ns();
    let w = std::time::Instant::now();
    let mut ok = 0;
    for (i, b) in batches.iter().enumerate() {
        ok += s
            .apply(i as u64 + 2, b)
            .outcomes
            .iter()
            .filter(|o| o.is_ok())
            .count();
    }
    let cpu = cpu_ns() - t;
    println!(
        "{kind}: {} commands, ok {ok}, cpu {:.3} us/cmd ({:.0} cmd/s), wall {:.3} us/cmd",
        n_batches * 1000,
        cpu as f64 / (n_batches as f64 * 1000.0) / 1000.0,
        (n_batches as f64 * 1000.0) / (cpu as f64 / 1e9),
        w.elapsed().as_nanos() as f64 / (n_batches as f64 * 1000.0) / 1000.0
    );
}
