//! The venue the apply and snapshot benchmarks and the `profile_apply`
//! example share: one event "arena" of 100 rows × 500 reserved seats
//! (50 000), optionally a general-admission floor, opened for sale at log
//! time 1 000 in entry 1; plus the benchmarks' fixed-seed generator.
//! Must not: time anything or pick the workload; each user does that.

// Each user takes part of this module (the snapshot bench has no floor and
// no generator), so the unused rest is expected.
#![allow(dead_code)]

use state_machine::*;

pub const ROWS: u32 = 100;
/// 100 rows × 500 = 50 000 reserved seats.
pub const SEATS_PER_ROW: u32 = 500;
/// The general-admission floor's capacity, when there is one.
pub const GA_CAPACITY: u32 = 100_000;

/// xorshift64*: fixed-seed, so every run measures the same workload.
pub struct Rng(pub u64);
impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// The arena's spec: section "A" (reserved) and, with `with_floor`, section
/// "GA" of [`GA_CAPACITY`].
pub fn arena_spec(hold_ttl_ms: u64, with_floor: bool) -> EventSpec {
    let mut sections = vec![SectionSpec::Reserved {
        id: "A".into(),
        name: "Bowl".into(),
        price_cents: 5_000,
        rows: (1..=ROWS)
            .map(|r| RowSpec {
                label: r.to_string(),
                seats: SEATS_PER_ROW,
            })
            .collect(),
    }];
    if with_floor {
        sections.push(SectionSpec::GeneralAdmission {
            id: "GA".into(),
            name: "Floor".into(),
            capacity: GA_CAPACITY,
            price_cents: 2_000,
        });
    }
    EventSpec {
        id: Some("arena".into()),
        name: "Arena".into(),
        venue: "Arena".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections,
    }
}

/// A state holding `spec` opened for sale (entry 1, log time 1 000), with
/// `settings` configured in the same entry when given.
pub fn opened_arena(spec: EventSpec, settings: Option<Settings>) -> BookingState {
    let mut requests = vec![
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
    if let Some(settings) = settings {
        requests.push(Request {
            client_id: 1,
            request_id: 3,
            command: Command::Configure(settings),
        });
    }
    let mut state = BookingState::new();
    let out = state.apply(
        1,
        &Batch {
            stamp_ms: 1_000,
            requests,
        },
    );
    assert!(out.outcomes.iter().all(|o| o.is_ok()), "{:?}", out.outcomes);
    state
}
