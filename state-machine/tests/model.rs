//! Property tests: random command sequences (time jumping forward and back,
//! duplicate request ids, several commands per entry) against a small
//! reference model of seats, holds and bookings.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use state_machine::*;

const ROWS: usize = 2;
const SEATS: usize = 6;
const GA: u32 = 4;
const TTL: u64 = 10_000;
const PAYMENT_WINDOW: u64 = 120_000;

#[derive(Clone, Debug)]
enum Op {
    Seats { c: usize, seats: Vec<usize> },
    Best { c: usize, count: u32, any: bool },
    Ga { c: usize, count: u32 },
    Release { c: usize, h: u64 },
    Pay { c: usize, h: u64 },
    Confirm { c: usize, h: u64 },
    Cancel { c: usize, b: u64 },
    Extend { c: usize, h: u64 },
    Tick,
}

#[derive(Clone, Debug)]
enum Step {
    Entry {
        delta_ms: i64,
        ops: Vec<Op>,
    },
    /// Re-send the k-th earlier request (mod the number sent) in its own entry.
    Duplicate {
        delta_ms: i64,
        k: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..4usize;
    prop_oneof![
        4 => (c.clone(), prop::collection::vec(0..ROWS * SEATS, 1..4)).prop_map(|(c, seats)| Op::Seats { c, seats }),
        2 => (c.clone(), 1..4u32, any::<bool>()).prop_map(|(c, count, any)| Op::Best { c, count, any }),
        1 => (c.clone(), 1..4u32).prop_map(|(c, count)| Op::Ga { c, count }),
        2 => (c.clone(), 1..14u64).prop_map(|(c, h)| Op::Release { c, h }),
        2 => (c.clone(), 1..14u64).prop_map(|(c, h)| Op::Pay { c, h }),
        3 => (c.clone(), 1..14u64).prop_map(|(c, h)| Op::Confirm { c, h }),
        1 => (c.clone(), 1..6u64).prop_map(|(c, b)| Op::Cancel { c, b }),
        1 => (c.clone(), 1..14u64).prop_map(|(c, h)| Op::Extend { c, h }),
        1 => Just(Op::Tick),
    ]
}

/// Clock jumps: mostly random (backwards too), often exact fractions of the
/// TTL so that expiry boundaries (clock == expires_at) are hit.
fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => -4_000i64..9_000,
        1 => Just(TTL as i64),
        1 => Just(TTL as i64 / 2),
        1 => Just(0i64),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (delta(), prop::collection::vec(op(), 1..4)).prop_map(|(delta_ms, ops)| Step::Entry { delta_ms, ops }),
        1 => (delta(), any::<usize>()).prop_map(|(delta_ms, k)| Step::Duplicate { delta_ms, k }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum MSeat {
    Free,
    Held(u64),
    Booked(u64),
}

#[derive(Clone, Debug)]
struct MHold {
    owner: usize,
    seats: Vec<usize>,
    ga: u32,
    created: u64,
    expires: u64,
    status: HoldStatus,
}

#[derive(Clone, Debug)]
struct MBooking {
    owner: usize,
    seats: Vec<usize>,
    ga: u32,
    cancelled: bool,
}

#[derive(Clone, Debug)]
struct Model {
    clock: u64,
    seats: Vec<MSeat>,
    ga_held: u32,
    ga_sold: u32,
    holds: BTreeMap<u64, MHold>,
    next_hold: u64,
    bookings: BTreeMap<u64, MBooking>,
    next_booking: u64,
}

fn seat_name(i: usize) -> String {
    format!("A-{}-{}", i / SEATS + 1, i % SEATS + 1)
}

fn seat_index(name: &str) -> usize {
    let parts: Vec<usize> = name
        .split('-')
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    (parts[0] - 1) * SEATS + parts[1] - 1
}

impl Model {
    fn new() -> Model {
        Model {
            clock: 0,
            seats: vec![MSeat::Free; ROWS * SEATS],
            ga_held: 0,
            ga_sold: 0,
            holds: BTreeMap::new(),
            next_hold: 1,
            bookings: BTreeMap::new(),
            next_booking: 1,
        }
    }

    fn advance(&mut self, stamp: u64) {
        self.clock = self.clock.max(stamp);
        let due: Vec<u64> = self
            .holds
            .iter()
            .filter(|(_, h)| h.status.is_live() && h.expires <= self.clock)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.end(id, HoldStatus::Expired);
        }
    }

    fn end(&mut self, id: u64, status: HoldStatus) {
        let h = self.holds.get_mut(&id).unwrap();
        h.status = status;
        for &s in &h.seats {
            self.seats[s] = MSeat::Free;
        }
        self.ga_held -= h.ga;
    }

    fn new_hold(&mut self, owner: usize, seats: Vec<usize>, ga: u32) -> u64 {
        let id = self.next_hold;
        self.next_hold += 1;
        for &s in &seats {
            assert_eq!(self.seats[s], MSeat::Free, "model: seat {s} taken twice");
            self.seats[s] = MSeat::Held(id);
        }
        self.ga_held += ga;
        self.holds.insert(
            id,
            MHold {
                owner,
                seats,
                ga,
                created: self.clock,
                expires: self.clock + TTL,
                status: HoldStatus::Active,
            },
        );
        id
    }

    /// The refusal code for a hold command on `h` by `c`, if any.
    fn hold_check(&self, c: usize, h: u64) -> Result<&MHold, &'static str> {
        let hold = self.holds.get(&h).ok_or("unknown_hold")?;
        if hold.owner != c {
            return Err("not_owner");
        }
        match hold.status {
            HoldStatus::Confirmed => Err("already_confirmed"),
            HoldStatus::Released | HoldStatus::Expired => Err("hold_expired"),
            _ => Ok(hold),
        }
    }

    fn longest_run(&self, row: usize) -> usize {
        let (mut best, mut run) = (0, 0);
        for i in 0..SEATS {
            if self.seats[row * SEATS + i] == MSeat::Free {
                run += 1;
                best = best.max(run);
            } else {
                run = 0;
            }
        }
        best
    }

    /// Predicts and applies one command; `actual` is the SUT's outcome
    /// (used for best-available, whose seat choice the model only validates).
    fn step(&mut self, op: &Op, actual: &Outcome) -> Result<(), String> {
        let code = |o: &Outcome| match o {
            Ok(_) => "ok".to_string(),
            Err(e) => e.code().to_string(),
        };
        let expect = |want: &str| {
            if code(actual) == want {
                Ok(())
            } else {
                Err(format!("{op:?}: model expects {want}, got {actual:?}"))
            }
        };
        match op {
            Op::Seats { c, seats } => {
                let mut sorted = seats.clone();
                sorted.sort();
                sorted.dedup();
                if sorted.len() != seats.len() {
                    return expect("invalid_request");
                }
                if seats.iter().any(|&s| self.seats[s] != MSeat::Free) {
                    return expect("seat_unavailable");
                }
                expect("ok")?;
                let id = self.new_hold(*c, seats.clone(), 0);
                match actual {
                    Ok(Reply::Held { hold_id, .. }) if *hold_id == id => Ok(()),
                    _ => Err(format!("hold id: model {id}, got {actual:?}")),
                }
            }
            Op::Best { c, count, any } => {
                let free = self.seats.iter().filter(|s| **s == MSeat::Free).count();
                let adjacent_possible = (0..ROWS).any(|r| self.longest_run(r) >= *count as usize);
                let possible = adjacent_possible || (*any && free >= *count as usize);
                if !possible {
                    return expect("not_enough_seats");
                }
                expect("ok")?;
                let Ok(Reply::Held { seats, .. }) = actual else {
                    unreachable!()
                };
                let idx: Vec<usize> = seats.iter().map(|s| seat_index(s)).collect();
                if idx.len() != *count as usize || idx.iter().any(|&s| self.seats[s] != MSeat::Free)
                {
                    return Err(format!(
                        "best-available chose taken or wrong seats {seats:?}"
                    ));
                }
                let adjacent = idx.windows(2).all(|w| w[1] == w[0] + 1)
                    && idx[0] / SEATS == idx[idx.len() - 1] / SEATS;
                if adjacent_possible && !adjacent {
                    return Err(format!(
                        "best-available chose non-adjacent {seats:?} though a block was free"
                    ));
                }
                self.new_hold(*c, idx, 0);
                Ok(())
            }
            Op::Ga { c, count } => {
                if GA - self.ga_held - self.ga_sold < *count {
                    return expect("not_enough_seats");
                }
                expect("ok")?;
                self.new_hold(*c, Vec::new(), *count);
                Ok(())
            }
            Op::Release { c, h } => match self.hold_check(*c, *h) {
                Err(e) => expect(e),
                Ok(_) => {
                    expect("ok")?;
                    self.end(*h, HoldStatus::Released);
                    Ok(())
                }
            },
            Op::Pay { c, h } => match self.hold_check(*c, *h) {
                Err(e) => expect(e),
                Ok(hold) if hold.status == HoldStatus::PaymentPending => expect("hold_not_active"),
                Ok(_) => {
                    expect("ok")?;
                    let clock = self.clock;
                    let hold = self.holds.get_mut(h).unwrap();
                    hold.status = HoldStatus::PaymentPending;
                    hold.expires = hold.expires.max(clock + PAYMENT_WINDOW);
                    Ok(())
                }
            },
            Op::Extend { c, h } => match self.hold_check(*c, *h) {
                Err(e) => expect(e),
                Ok(hold) if hold.status == HoldStatus::PaymentPending => expect("hold_not_active"),
                Ok(hold) => {
                    let new = (self.clock + TTL).min(hold.created + 2 * TTL);
                    if new <= hold.expires {
                        return expect("extend_limit_reached");
                    }
                    expect("ok")?;
                    self.holds.get_mut(h).unwrap().expires = new;
                    Ok(())
                }
            },
            Op::Confirm { c, h } => match self.hold_check(*c, *h) {
                Err(e) => expect(e),
                Ok(_) => {
                    expect("ok")?;
                    let b = self.next_booking;
                    self.next_booking += 1;
                    let hold = self.holds.get_mut(h).unwrap();
                    hold.status = HoldStatus::Confirmed;
                    let (seats, ga) = (hold.seats.clone(), hold.ga);
                    for &s in &seats {
                        self.seats[s] = MSeat::Booked(b);
                    }
                    self.ga_held -= ga;
                    self.ga_sold += ga;
                    self.bookings.insert(
                        b,
                        MBooking {
                            owner: *c,
                            seats,
                            ga,
                            cancelled: false,
                        },
                    );
                    Ok(())
                }
            },
            Op::Cancel { c, b } => {
                let Some(booking) = self.bookings.get_mut(b) else {
                    return expect("unknown_booking");
                };
                if booking.owner != *c {
                    return expect("not_owner");
                }
                if booking.cancelled {
                    return expect("booking_cancelled");
                }
                expect("ok")?;
                booking.cancelled = true;
                for &s in &booking.seats {
                    self.seats[s] = MSeat::Free;
                }
                self.ga_sold -= booking.ga;
                Ok(())
            }
            Op::Tick => expect("ok"),
        }
    }

    /// The whole observable state must agree with the SUT.
    fn compare(&self, sut: &BookingState) -> Result<(), String> {
        let QueryResult::Availability(Ok(a)) = sut.query(&Query::Availability {
            event_id: "ev".into(),
        }) else {
            return Err("no availability".into());
        };
        for r in 0..ROWS {
            let want: String = (0..SEATS)
                .map(|i| match self.seats[r * SEATS + i] {
                    MSeat::Free => '.',
                    MSeat::Held(_) => 'H',
                    MSeat::Booked(_) => 'B',
                })
                .collect();
            if a.sections[0].rows[r].states != want {
                return Err(format!(
                    "row {}: model {want}, sut {}",
                    r + 1,
                    a.sections[0].rows[r].states
                ));
            }
        }
        let ga = &a.sections[1];
        if (ga.held, ga.booked) != (self.ga_held, self.ga_sold)
            || ga.held + ga.booked + ga.available != ga.capacity
        {
            return Err(format!(
                "GA: model held={} sold={}, sut {ga:?}",
                self.ga_held, self.ga_sold
            ));
        }
        let reserved = &a.sections[0];
        if reserved.held + reserved.booked + reserved.available != reserved.capacity {
            return Err("reserved: held + booked + available != capacity".into());
        }
        for (id, h) in &self.holds {
            let QueryResult::Hold(Ok(v)) = sut.query(&Query::Hold { hold_id: *id }) else {
                return Err(format!("hold {id} missing"));
            };
            let seats: Vec<String> = h.seats.iter().map(|&s| seat_name(s)).collect();
            if v.status != h.status
                || v.expires_at_ms != h.expires
                || v.seats != seats
                || v.holder != format!("c{}", h.owner)
            {
                return Err(format!("hold {id}: model {h:?}, sut {v:?}"));
            }
        }
        for (id, b) in &self.bookings {
            let QueryResult::Booking(Ok(v)) = sut.query(&Query::Booking { booking_id: *id }) else {
                return Err(format!("booking {id} missing"));
            };
            let want = if b.cancelled {
                BookingStatus::Cancelled
            } else {
                BookingStatus::Confirmed
            };
            if v.holder != format!("c{}", b.owner) || v.status != want {
                return Err(format!(
                    "booking {id} changed owner or status: model {b:?}, sut {v:?}"
                ));
            }
        }
        Ok(())
    }
}

fn command(op: &Op) -> Command {
    let holder = |c: &usize| format!("c{c}");
    let event_id = "ev".to_string();
    match op {
        Op::Seats { c, seats } => Command::Hold {
            event_id,
            holder: holder(c),
            selection: Selection::Seats(seats.iter().map(|&s| seat_name(s)).collect()),
        },
        Op::Best { c, count, any } => Command::Hold {
            event_id,
            holder: holder(c),
            selection: Selection::BestAvailable {
                count: *count,
                section: Some("A".into()),
                allow_non_adjacent: *any,
            },
        },
        Op::Ga { c, count } => Command::Hold {
            event_id,
            holder: holder(c),
            selection: Selection::GeneralAdmission {
                section: "GA".into(),
                count: *count,
            },
        },
        Op::Release { c, h } => Command::Release {
            hold_id: *h,
            holder: holder(c),
        },
        Op::Pay { c, h } => Command::BeginPayment {
            hold_id: *h,
            holder: holder(c),
        },
        Op::Confirm { c, h } => Command::Confirm {
            hold_id: *h,
            holder: holder(c),
            payment_ref: "p".into(),
        },
        Op::Cancel { c, b } => Command::CancelBooking {
            booking_id: *b,
            holder: holder(c),
        },
        Op::Extend { c, h } => Command::ExtendHold {
            hold_id: *h,
            holder: holder(c),
        },
        Op::Tick => Command::Tick,
    }
}

fn run(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut sut = BookingState::new();
    let mut spec = std_spec("ev", ROWS as u32, SEATS as u32, GA, TTL);
    spec.max_seats_per_hold = 4;
    let setup = Batch {
        stamp_ms: 1_000,
        requests: vec![
            Request {
                client_id: 99,
                request_id: 1,
                command: Command::CreateEvent(spec),
            },
            Request {
                client_id: 99,
                request_id: 2,
                command: Command::OpenSale {
                    event_id: "ev".into(),
                },
            },
        ],
    };
    apply_checked(&mut sut, 1, &setup);
    let mut model = Model::new();
    model.advance(1_000);
    let mut stamp: i64 = 1_000;
    let mut index = 1;
    let mut sent: Vec<(Request, Outcome)> = Vec::new();
    let mut next_request = [0u64; 5];
    for step in steps {
        index += 1;
        match step {
            Step::Entry { delta_ms, ops } => {
                stamp = (stamp + delta_ms).max(0);
                let requests: Vec<Request> = ops
                    .iter()
                    .map(|op| {
                        let c = match op {
                            Op::Seats { c, .. }
                            | Op::Best { c, .. }
                            | Op::Ga { c, .. }
                            | Op::Release { c, .. }
                            | Op::Pay { c, .. } => *c,
                            Op::Confirm { c, .. } | Op::Cancel { c, .. } | Op::Extend { c, .. } => {
                                *c
                            }
                            Op::Tick => 4,
                        };
                        next_request[c] += 1;
                        Request {
                            client_id: c as u64 + 1,
                            request_id: next_request[c],
                            command: command(op),
                        }
                    })
                    .collect();
                let out = apply_checked(
                    &mut sut,
                    index,
                    &Batch {
                        stamp_ms: stamp as u64,
                        requests: requests.clone(),
                    },
                );
                model.advance(stamp as u64);
                for ((op, outcome), req) in ops.iter().zip(&out.outcomes).zip(requests) {
                    model.step(op, outcome).map_err(TestCaseError::fail)?;
                    sent.push((req, outcome.clone()));
                }
            }
            Step::Duplicate { delta_ms, k } => {
                if sent.is_empty() {
                    continue;
                }
                stamp = (stamp + delta_ms).max(0);
                let (req, first) = sent[k % sent.len()].clone();
                if matches!(req.command, Command::Tick) {
                    continue; // Ticks are never deduplicated, by design.
                }
                let mut twin = sut.clone();
                twin.apply(
                    index,
                    &Batch {
                        stamp_ms: stamp as u64,
                        requests: Vec::new(),
                    },
                );
                let out = apply_checked(
                    &mut sut,
                    index,
                    &Batch {
                        stamp_ms: stamp as u64,
                        requests: vec![req],
                    },
                );
                model.advance(stamp as u64);
                prop_assert_eq!(
                    &out.outcomes[0],
                    &first,
                    "a duplicate returns the first outcome"
                );
                prop_assert!(
                    twin == sut,
                    "a duplicate changes nothing but the clock and index"
                );
            }
        }
        model.compare(&sut).map_err(TestCaseError::fail)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn state_machine_agrees_with_model(steps in prop::collection::vec(step(), 1..60)) {
        // Goal: random sequences keep the SUT equal to the model: no double holds or bookings,
        // counts add up, owners never change, expiry frees seats, duplicates apply once.
        run(&steps)?;
    }

    #[test]
    fn snapshot_mid_run_changes_nothing(steps in prop::collection::vec(step(), 1..40), cut in 0usize..40) {
        // Goal: snapshot → restore at a random point yields the same outcomes and hash afterwards.
        let mut spec = std_spec("ev", ROWS as u32, SEATS as u32, GA, TTL);
        spec.max_seats_per_hold = 4;
        let mut batches = vec![Batch { stamp_ms: 1_000, requests: vec![
            Request { client_id: 99, request_id: 1, command: Command::CreateEvent(spec) },
            Request { client_id: 99, request_id: 2, command: Command::OpenSale { event_id: "ev".into() } },
        ] }];
        let mut stamp: i64 = 1_000;
        let mut rid = 0;
        for s in &steps {
            if let Step::Entry { delta_ms, ops } = s {
                stamp = (stamp + delta_ms).max(0);
                batches.push(Batch { stamp_ms: stamp as u64, requests: ops.iter().map(|op| { rid += 1; Request { client_id: 1 + rid % 3, request_id: rid / 2, command: command(op) } }).collect() });
            }
        }
        let cut = cut.min(batches.len());
        let mut a = BookingState::new();
        let mut b = BookingState::new();
        for (i, batch) in batches.iter().enumerate() {
            if i == cut {
                b = BookingState::restore(&b.snapshot()).unwrap();
            }
            let oa = a.apply(i as u64 + 1, batch);
            let ob = b.apply(i as u64 + 1, batch);
            prop_assert_eq!(oa, ob);
        }
        prop_assert_eq!(a.state_hash(), b.state_hash());
    }
}
