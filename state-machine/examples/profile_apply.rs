//! Profiling harness: applies 2 000 000 holds of one kind (`seat`, `hot`, `ga`,
//! `best`) to a 50 000-seat venue and prints CPU and wall time per command.
//! Run under `perf record` to see where apply spends its time:
//! `cargo run -p state-machine --release --example profile_apply -- seat`.

use state_machine::*;

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
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
fn main() {
    let kind = std::env::args().nth(1).unwrap_or("seat".into());
    let spec = EventSpec {
        id: Some("arena".into()),
        name: "A".into(),
        venue: "A".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: 1000,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections: vec![
            SectionSpec::Reserved {
                id: "A".into(),
                name: "B".into(),
                price_cents: 1,
                rows: (1..=100)
                    .map(|r| RowSpec {
                        label: r.to_string(),
                        seats: 500,
                    })
                    .collect(),
            },
            SectionSpec::GeneralAdmission {
                id: "GA".into(),
                name: "F".into(),
                capacity: 100_000,
                price_cents: 1,
            },
        ],
    };
    let mut s = BookingState::new();
    s.apply(
        1,
        &Batch {
            stamp_ms: 1000,
            requests: vec![
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
            ],
        },
    );
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
                            1 + rng.below(100),
                            1 + rng.below(500)
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
