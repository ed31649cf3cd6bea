//! Shared test helpers: the standard event definition of scenario files and
//! unit tests, an apply that checks every invariant, and a deterministic
//! random workload.
#![allow(dead_code)]

use state_machine::*;

/// The standard layout of scenario files and unit tests: reserved section `A`
/// with `rows` rows labelled 1..=rows of `seats` seats at 5000 cents, and a
/// general-admission section `GA` of `ga` places at 2000 cents.
pub fn std_spec(id: &str, rows: u32, seats: u32, ga: u32, ttl_ms: u64) -> EventSpec {
    let mut sections = vec![SectionSpec::Reserved {
        id: "A".into(),
        name: "Stalls".into(),
        price_cents: 5000,
        rows: (1..=rows)
            .map(|r| RowSpec {
                label: r.to_string(),
                seats,
            })
            .collect(),
    }];
    if ga > 0 {
        sections.push(SectionSpec::GeneralAdmission {
            id: "GA".into(),
            name: "Standing".into(),
            capacity: ga,
            price_cents: 2000,
        });
    }
    EventSpec {
        id: Some(id.into()),
        name: format!("Event {id}"),
        venue: "Hall".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: ttl_ms,
        max_seats_per_hold: 8,
        waiting_room: None,
        sections,
    }
}

/// Applies and checks every invariant afterwards.
pub fn apply_checked(state: &mut BookingState, index: u64, batch: &Batch) -> ApplyOutput {
    let out = state.apply(index, batch);
    if let Err(e) = state.check_invariants() {
        panic!("invariant broken after entry {index}: {e}");
    }
    assert_eq!(
        out.outcomes.len(),
        batch.requests.len(),
        "one outcome per request"
    );
    out
}

/// xorshift64*: a fixed-seed generator for test workloads (the crate itself
/// has no randomness).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A mixed workload over every command kind: two events (one with a waiting
/// room), clock jumps forward and back, duplicate request ids. Deterministic
/// for a seed. A private replica runs alongside so that most hold, booking
/// and ticket commands name real ids with the right owner.
pub fn random_batches(seed: u64, entries: usize) -> Vec<Batch> {
    let mut rng = Rng(seed | 1);
    let mut queued = std_spec("queued", 3, 8, 6, 20_000);
    queued.waiting_room = Some(WaitingRoomSpec {
        enabled: true,
        admit_batch: 3,
    });
    let mut batches = vec![Batch {
        stamp_ms: 1_000,
        requests: vec![
            Request {
                client_id: 100,
                request_id: 1,
                command: Command::CreateEvent(std_spec("gig", 4, 10, 8, 10_000)),
            },
            Request {
                client_id: 100,
                request_id: 2,
                command: Command::CreateEvent(queued),
            },
            Request {
                client_id: 100,
                request_id: 3,
                command: Command::JoinQueue {
                    event_id: "queued".into(),
                    user: "u1".into(),
                },
            },
            Request {
                client_id: 100,
                request_id: 4,
                command: Command::JoinQueue {
                    event_id: "queued".into(),
                    user: "u2".into(),
                },
            },
            Request {
                client_id: 100,
                request_id: 5,
                command: Command::OpenSale {
                    event_id: "gig".into(),
                },
            },
            Request {
                client_id: 100,
                request_id: 6,
                command: Command::OpenSale {
                    event_id: "queued".into(),
                },
            },
        ],
    }];
    let mut replica = BookingState::new();
    let first = replica.apply(1, &batches[0]);
    let mut holds: Vec<(u64, String)> = Vec::new();
    let mut bookings: Vec<(u64, String, Vec<u64>)> = Vec::new();
    let learn = |out: &ApplyOutput,
                 batch: &Batch,
                 holds: &mut Vec<(u64, String)>,
                 bookings: &mut Vec<(u64, String, Vec<u64>)>| {
        for (o, r) in out.outcomes.iter().zip(&batch.requests) {
            match (o, &r.command) {
                (Ok(Reply::Held { hold_id, .. }), Command::Hold { holder, .. }) => {
                    holds.push((*hold_id, holder.clone()))
                }
                (Ok(Reply::Confirmed(b)), _) => bookings.push((
                    b.booking_id,
                    b.holder.clone(),
                    b.tickets.iter().map(|t| t.ticket_id).collect(),
                )),
                _ => {}
            }
        }
    };
    learn(&first, &batches[0].clone(), &mut holds, &mut bookings);
    let mut stamp: u64 = 1_000;
    let mut sent: Vec<Request> = Vec::new();
    let mut next_req = [0u64; 8];
    for e in 0..entries {
        let jump = rng.below(9_000) as i64 - 2_000;
        stamp = (stamp as i64 + jump).max(0) as u64;
        let n = 1 + rng.below(4) as usize;
        let mut requests = Vec::new();
        for _ in 0..n {
            if !sent.is_empty() && rng.below(8) == 0 {
                requests.push(sent[rng.below(sent.len() as u64) as usize].clone());
                continue;
            }
            let mut c = rng.below(8) as usize;
            let event_id = if rng.below(3) == 0 { "queued" } else { "gig" }.to_string();
            // Mostly a recent real hold with its owner; sometimes anything.
            let (hold_id, hold_owner) = match holds.len() {
                n if n > 0 && rng.below(5) != 0 => {
                    holds[n - 1 - rng.below(n.min(6) as u64) as usize].clone()
                }
                _ => (1 + rng.below(40), format!("u{c}")),
            };
            let (booking_id, booking_owner, tickets) = match bookings.len() {
                n if n > 0 && rng.below(4) != 0 => bookings[rng.below(n as u64) as usize].clone(),
                _ => (1 + rng.below(10), format!("u{c}"), vec![1 + rng.below(20)]),
            };
            let mut holder = format!("u{c}");
            let kind = rng.below(16);
            if (6..=11).contains(&kind) && kind != 10 {
                holder = hold_owner;
            } else if kind == 10 {
                holder = booking_owner;
            }
            if let Some(n) = holder
                .strip_prefix('u')
                .and_then(|n| n.parse::<usize>().ok())
            {
                c = n % 8;
            }
            next_req[c] += 1;
            let command = match kind {
                0..=3 => {
                    let k = 1 + rng.below(3);
                    let seats = (0..k)
                        .map(|_| format!("A-{}-{}", 1 + rng.below(3), 1 + rng.below(8)))
                        .collect();
                    Command::Hold {
                        event_id,
                        holder,
                        selection: Selection::Seats(seats),
                    }
                }
                4 => Command::Hold {
                    event_id,
                    holder,
                    selection: Selection::BestAvailable {
                        count: 1 + rng.below(4) as u32,
                        section: None,
                        allow_non_adjacent: rng.below(2) == 0,
                    },
                },
                5 => Command::Hold {
                    event_id,
                    holder,
                    selection: Selection::GeneralAdmission {
                        section: "GA".into(),
                        count: 1 + rng.below(3) as u32,
                    },
                },
                6 => Command::Release { hold_id, holder },
                7 => Command::BeginPayment { hold_id, holder },
                8 | 9 => Command::Confirm {
                    hold_id,
                    holder,
                    payment_ref: format!("p{hold_id}"),
                },
                10 => Command::CancelBooking { booking_id, holder },
                11 => Command::ExtendHold { hold_id, holder },
                // The waiting room: a gateway's block, or a hold presenting
                // a position (admitted or not).
                12 if c.is_multiple_of(2) => Command::ReserveQueueBlock {
                    event_id: "queued".into(),
                    count: 1 + c as u32,
                },
                12 => Command::HoldQueued {
                    event_id: "queued".into(),
                    holder,
                    selection: Selection::Seats(vec![format!("A-1-{}", 1 + c % 8)]),
                    queue_position: 1 + c as u64,
                },
                13 => Command::CheckIn {
                    ticket_id: tickets[rng.below(tickets.len() as u64) as usize],
                },
                14 => Command::RecordWebhook {
                    webhook_id: format!("w{}", rng.below(10)),
                },
                _ => Command::AckOutbox {
                    up_to: rng.below(10),
                },
            };
            let req = Request {
                client_id: c as u64 + 1,
                request_id: next_req[c],
                command,
            };
            sent.push(req.clone());
            requests.push(req);
        }
        if rng.below(10) == 0 {
            requests.push(Request {
                client_id: 0,
                request_id: 0,
                command: Command::Tick,
            });
        }
        let batch = Batch {
            stamp_ms: stamp,
            requests,
        };
        let out = replica.apply(e as u64 + 2, &batch);
        learn(&out, &batch, &mut holds, &mut bookings);
        batches.push(batch);
    }
    batches
}
