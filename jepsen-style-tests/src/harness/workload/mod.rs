//! The workloads: client processes that issue booking operations through the
//! client library and record each one (invoke, then `ok`/`fail`/`info`).
//!
//! Owns: the test event (created once per run), the three workloads
//! ([`WorkloadKind`]), which node a read goes to, and the translation of
//! client results into history values in the shapes of `booking.rs`:
//! - a store refusal (`Ok(Err(BookingError))`) is `fail {"error": code}`;
//! - a client error the classifier calls definite is `fail {"client_error"}`;
//! - any other client error is `info` (the write may have applied).
//!
//! A write's invoke value carries its `request_id` (`client:request`),
//! which every same-id retry of it resends (for `no_duplicate_effects`).
//!
//! What the store does not report, the workload derives or leaves out, and
//! says so: a hold's `at_ms` is `expires_at_ms - hold_ttl_ms` (exact: the
//! store sets the expiry from the apply's clock and the event's TTL); a
//! confirm's `at_ms` is the booking's `created_at_ms`; releases and cancels
//! carry no log time; a read is a linearizable read of the availability map,
//! which shows a seat as free, held or booked but not by whom
//! (`held_unnamed`/`booked_unnamed`), with the map's `clock_ms` as `at_ms`.
//!
//! Must not: judge results, or run unbounded: every process stops at the
//! deadline, on `stop`, or when the run's operation budget is spent, and each
//! call is bounded by the client's retry budget.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Client, ClientError, Consistency, Ids};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use state_machine::{
    BookingError, Command, EventSpec, Query, QueryResult, Reply, RowSpec, SectionSpec,
};

use super::recorder::Recorder;

mod loops;
use crate::booking::{
    BookingCall, BookingRef, BookingRet, Cancelled, Confirmed, Held, HoldArgs, HoldRef,
    PaymentBegun, ReadArgs, Released, SeatRead, SeatView,
};
use crate::history::EventType;

/// The one event every workload books seats of.
pub const EVENT_ID: &str = "jepsen";
/// The one reserved section: seats `A-1-1` ... `A-1-<seats>`.
const SECTION: &str = "A";
const ROW: &str = "1";

/// Which workload a run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// Per-seat register: hold, begin payment, confirm, release, cancel and
    /// linearizable reads on a few seats, many holds per seat over a run.
    Register,
    /// Many clients, few seats; half of them retry unknown outcomes with the
    /// same request id.
    Sellout,
    /// Short TTLs: hold, wait around the TTL, then confirm; run it under clock skew.
    Expiry,
    /// Fans race for seats through a `booking gateway` process over HTTP
    /// (see `gateway_workload`); this module only creates its event.
    Gateway,
}

impl WorkloadKind {
    pub const ALL: [&'static str; 4] = ["register", "sellout", "expiry", "gateway-sellout"];

    pub fn parse(s: &str) -> Option<WorkloadKind> {
        Some(match s {
            "register" => WorkloadKind::Register,
            "sellout" | "sell-out" => WorkloadKind::Sellout,
            "expiry" => WorkloadKind::Expiry,
            "gateway-sellout" | "gateway" => WorkloadKind::Gateway,
            _ => return None,
        })
    }

    /// (client processes, seats, hold TTL in ms) by default.
    pub fn defaults(self) -> (u64, u32, u64) {
        match self {
            WorkloadKind::Register => (8, 6, 10_000),
            WorkloadKind::Sellout => (24, 4, 30_000),
            WorkloadKind::Expiry => (8, 16, 1_500),
            // Holds outlive any run, so a hold nobody asked for is still
            // there to see after the heal.
            WorkloadKind::Gateway => (16, 200, 600_000),
        }
    }
}

/// One run's workload parameters.
#[derive(Clone, Debug, Serialize)]
pub struct WorkloadConfig {
    pub kind: WorkloadKind,
    pub processes: u64,
    pub seats: u32,
    pub hold_ttl_ms: u64,
    /// Operation budget of the whole run (all processes together).
    pub ops_max: u64,
    pub seed: u64,
}

impl WorkloadConfig {
    pub fn seat_ids(&self) -> Vec<String> {
        (1..=self.seats)
            .map(|n| format!("{SECTION}-{ROW}-{n}"))
            .collect()
    }
}

/// Creates the event and opens its sale; tolerant of a retry that finds the
/// event already there. Bounded by `deadline`.
pub async fn setup_event(
    client: &Client,
    cfg: &WorkloadConfig,
    deadline: Duration,
) -> Result<(), String> {
    let spec = EventSpec {
        id: Some(EVENT_ID.into()),
        name: "Jepsen".into(),
        venue: "The bridge".into(),
        starts_at: "2030-01-01T20:00:00Z".into(),
        sale_opens_at: None,
        hold_ttl_ms: cfg.hold_ttl_ms,
        max_seats_per_hold: 4,
        waiting_room: None,
        sections: vec![SectionSpec::Reserved {
            id: SECTION.into(),
            name: "Section A".into(),
            price_cents: 1_000,
            rows: vec![RowSpec {
                label: ROW.into(),
                seats: cfg.seats,
            }],
        }],
    };
    let commands = [
        Command::CreateEvent(spec),
        Command::OpenSale {
            event_id: EVENT_ID.into(),
        },
    ];
    let started = Instant::now();
    for command in commands {
        loop {
            match client
                .submit(Ids::New, command.clone())
                .await
                .map(|s| s.outcome)
            {
                Ok(Ok(_)) | Ok(Err(BookingError::EventExists { .. })) => break,
                Ok(Err(e)) => return Err(format!("{}: refused: {e}", command.name())),
                Err(e) if started.elapsed() < deadline => {
                    tracing_note(&format!("setup {}: {e}; retrying", command.name()));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("{}: {e}", command.name())),
            }
        }
    }
    Ok(())
}

fn tracing_note(message: &str) {
    eprintln!("jepsen: {message}");
}

/// Shared by every process of a run.
pub struct Shared {
    pub client: Client,
    /// One client per node, each knowing only that node. The register
    /// workload sends half its reads through a random one of them, so a
    /// follower's linearizable read (a ReadIndex asked of the leader) is
    /// checked too, not only the leader's; empty: every read goes through
    /// `client`.
    pub node_clients: Vec<Client>,
    pub recorder: Arc<Recorder>,
    pub cfg: WorkloadConfig,
    pub deadline: Instant,
    /// Operations started so far, against `cfg.ops_max`.
    pub ops_started: AtomicU64,
    pub stop: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    fn go_on(&self) -> bool {
        Instant::now() < self.deadline
            && !*self.stop.borrow()
            && self.ops_started.fetch_add(1, Ordering::Relaxed) < self.cfg.ops_max
    }
}

/// A write's result as the workload needs it.
enum Written {
    /// Boxed: a reply is large and most results are refusals.
    Ok(Box<Reply>),
    Refused,
    /// Definitely not applied (client-side).
    Failed,
    Unknown,
}

fn client_error_value(e: &ClientError) -> Value {
    json!({"client_error": e.code(), "message": e.to_string()})
}

/// One logical process: sequential operations, recorded.
struct Proc {
    id: u64,
    shared: Arc<Shared>,
    rng: StdRng,
    holds_invoked: u64,
}

impl Proc {
    fn holder(&mut self) -> String {
        self.holds_invoked += 1;
        format!("p{}-{}", self.id, self.holds_invoked)
    }

    /// Issues one write, retrying an unknown outcome up to `same_id_retries`
    /// times with the same request id (the operation stays open meanwhile).
    async fn write(
        &mut self,
        call: BookingCall,
        command: Command,
        same_id_retries: u32,
    ) -> Written {
        let rec = &self.shared.recorder;
        let f = call.f();
        let client = &self.shared.client;
        let ids = client.mint_ids();
        // The request id beside the arguments, for `no_duplicate_effects`.
        let mut value = call.to_value();
        if let Value::Object(fields) = &mut value {
            fields.insert(
                "request_id".into(),
                Value::String(format!("{}:{}", ids.client_id, ids.request_id)),
            );
        }
        rec.invoke(self.id, f, value);
        // The first send of new ids may be refused without a log write;
        // the same-id retries below always go through the log.
        let mut result = client.submit(Ids::FirstSend(ids), command.clone()).await;
        // Whether an earlier call of this operation ended unknown: then a
        // retry's own "nothing was applied" says nothing about that earlier
        // call, which may still commit; only an outcome from the store (the
        // dedupe table answers a retry with the first outcome) settles it.
        let mut unknown_before = false;
        for _ in 0..same_id_retries {
            match &result {
                Err(e) if !e.is_definite() => {
                    unknown_before = true;
                    result = client.submit(Ids::Resend(ids), command.clone()).await
                }
                _ => break,
            }
        }
        match result {
            Ok(submitted) => match submitted.outcome {
                Ok(reply) => match self.ret_of(&call, &reply) {
                    Some(ret) => {
                        rec.complete(
                            self.id,
                            EventType::Ok,
                            f,
                            ret.to_value(),
                            Some(submitted.log_index),
                        );
                        Written::Ok(Box::new(reply))
                    }
                    None => {
                        // A reply of the wrong kind: the command's effect is not
                        // known, so the history must not claim either way.
                        let value = json!({"unexpected_reply": format!("{reply:?}")});
                        rec.complete(
                            self.id,
                            EventType::Info,
                            f,
                            value,
                            Some(submitted.log_index),
                        );
                        Written::Unknown
                    }
                },
                Err(refusal) => {
                    let code = refusal.code();
                    rec.complete(
                        self.id,
                        EventType::Fail,
                        f,
                        json!({"error": code}),
                        Some(submitted.log_index),
                    );
                    Written::Refused
                }
            },
            Err(e) if e.is_definite() && !unknown_before => {
                rec.complete(self.id, EventType::Fail, f, client_error_value(&e), None);
                Written::Failed
            }
            Err(e) => {
                rec.complete(self.id, EventType::Info, f, client_error_value(&e), None);
                Written::Unknown
            }
        }
    }

    fn ret_of(&self, call: &BookingCall, reply: &Reply) -> Option<BookingRet> {
        let ttl = self.shared.cfg.hold_ttl_ms;
        Some(match (call, reply) {
            (
                BookingCall::Hold(_),
                Reply::Held {
                    hold_id,
                    expires_at_ms,
                    ..
                },
            ) => BookingRet::Held(Held {
                hold_id: *hold_id,
                expires_at_ms: *expires_at_ms,
                at_ms: expires_at_ms.saturating_sub(ttl),
            }),
            (BookingCall::Release(_), Reply::Released { .. }) => {
                BookingRet::Released(Released { at_ms: None })
            }
            (BookingCall::Confirm(_), Reply::Confirmed(b)) => BookingRet::Confirmed(Confirmed {
                booking_id: b.booking_id,
                hold_expires_at_ms: None,
                at_ms: b.created_at_ms,
            }),
            (BookingCall::Cancel(_), Reply::BookingCancelled { .. }) => {
                BookingRet::Cancelled(Cancelled { at_ms: None })
            }
            (BookingCall::BeginPayment(_), Reply::PaymentBegun { expires_at_ms, .. }) => {
                BookingRet::PaymentBegun(PaymentBegun {
                    expires_at_ms: *expires_at_ms,
                })
            }
            _ => return None,
        })
    }

    /// A linearizable read of one seat (through the availability map).
    async fn read(&mut self, seat: &str) {
        let rec = &self.shared.recorder;
        let call = BookingCall::Read(ReadArgs {
            seat: seat.to_string(),
        });
        rec.invoke(self.id, call.f(), call.to_value());
        let pinned = &self.shared.node_clients;
        let client = if self.shared.cfg.kind == WorkloadKind::Register
            && !pinned.is_empty()
            && self.rng.random_bool(0.5)
        {
            &pinned[self.rng.random_range(0..pinned.len())]
        } else {
            &self.shared.client
        };
        let result = client
            .read(
                Query::Availability {
                    event_id: EVENT_ID.into(),
                },
                Consistency::Linearizable,
            )
            .await;
        match result {
            Ok((QueryResult::Availability(Ok(view)), index)) => {
                let n: usize = seat
                    .rsplit('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let state = view
                    .sections
                    .iter()
                    .find(|s| s.section == SECTION)
                    .and_then(|s| s.rows.iter().find(|r| r.label == ROW))
                    .and_then(|r| r.states.as_bytes().get(n.wrapping_sub(1)).copied());
                let seat_view = match state {
                    Some(b'.') => Some(SeatView::Available),
                    Some(b'H') => Some(SeatView::HeldUnnamed),
                    Some(b'B') => Some(SeatView::BookedUnnamed),
                    _ => None,
                };
                match seat_view {
                    Some(seat_view) => {
                        let ret = BookingRet::Read(SeatRead {
                            seat: seat_view,
                            at_ms: Some(view.clock_ms),
                        });
                        rec.complete(
                            self.id,
                            EventType::Ok,
                            call.f(),
                            ret.to_value(),
                            Some(index),
                        );
                    }
                    None => rec.complete(
                        self.id,
                        EventType::Fail,
                        call.f(),
                        json!({"client_error": "seat_not_in_map", "message": format!("{state:?}")}),
                        Some(index),
                    ),
                }
            }
            Ok((other, _)) => rec.complete(
                self.id,
                EventType::Fail,
                call.f(),
                json!({"client_error": "unexpected_result", "message": format!("{other:?}")}),
                None,
            ),
            // A read has no effect: any failure is a `fail`.
            Err(e) => rec.complete(
                self.id,
                EventType::Fail,
                call.f(),
                client_error_value(&e),
                None,
            ),
        }
    }

    fn random_seat(&mut self) -> String {
        let n = self.rng.random_range(1..=self.shared.cfg.seats);
        format!("{SECTION}-{ROW}-{n}")
    }

    fn random_seats(&mut self, count: usize) -> Vec<String> {
        let mut seats: Vec<String> = Vec::new();
        while seats.len() < count.min(self.shared.cfg.seats as usize) {
            let s = self.random_seat();
            if !seats.contains(&s) {
                seats.push(s);
            }
        }
        seats.sort();
        seats
    }

    async fn think(&mut self, max_ms: u64) {
        if max_ms > 0 {
            let ms = self.rng.random_range(0..=max_ms);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    async fn hold(&mut self, seats: Vec<String>, retries: u32) -> Option<HoldRef> {
        let holder = self.holder();
        let call = BookingCall::Hold(HoldArgs {
            seats: seats.clone(),
            holder: holder.clone(),
        });
        let command = Command::Hold {
            event_id: EVENT_ID.into(),
            holder: holder.clone(),
            selection: state_machine::Selection::Seats(seats.clone()),
        };
        match self.write(call, command, retries).await {
            Written::Ok(reply) => match *reply {
                Reply::Held { hold_id, .. } => Some(HoldRef {
                    hold_id,
                    holder,
                    seats,
                }),
                _ => None,
            },
            _ => None,
        }
    }

    async fn confirm(&mut self, hold: &HoldRef, retries: u32) -> Written {
        let command = Command::Confirm {
            hold_id: hold.hold_id,
            holder: hold.holder.clone(),
            payment_ref: format!("pay-{}", hold.hold_id),
        };
        self.write(BookingCall::Confirm(hold.clone()), command, retries)
            .await
    }

    async fn begin_payment(&mut self, hold: &HoldRef, retries: u32) -> Written {
        let command = Command::BeginPayment {
            hold_id: hold.hold_id,
            holder: hold.holder.clone(),
        };
        self.write(BookingCall::BeginPayment(hold.clone()), command, retries)
            .await
    }

    async fn release(&mut self, hold: &HoldRef, retries: u32) -> Written {
        let command = Command::Release {
            hold_id: hold.hold_id,
            holder: hold.holder.clone(),
        };
        self.write(BookingCall::Release(hold.clone()), command, retries)
            .await
    }

    async fn cancel(&mut self, booking: &BookingRef, retries: u32) -> Written {
        let command = Command::CancelBooking {
            booking_id: booking.booking_id,
            holder: booking.holder.clone(),
        };
        self.write(BookingCall::Cancel(booking.clone()), command, retries)
            .await
    }

    fn booking_of(hold: &HoldRef, written: &Written) -> Option<BookingRef> {
        match written {
            Written::Ok(reply) => match reply.as_ref() {
                Reply::Confirmed(b) => Some(BookingRef {
                    booking_id: b.booking_id,
                    holder: hold.holder.clone(),
                    seats: hold.seats.clone(),
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Runs every process of the workload until the deadline, `stop`, or the
/// operation budget; returns when all have finished their last operation.
pub async fn run(shared: Arc<Shared>) {
    let mut tasks = Vec::new();
    for id in 0..shared.cfg.processes {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let rng =
                StdRng::seed_from_u64(shared.cfg.seed.wrapping_mul(1_000_003).wrapping_add(id));
            let mut p = Proc {
                id,
                shared,
                rng,
                holds_invoked: 0,
            };
            match p.shared.cfg.kind {
                WorkloadKind::Register => p.run_register().await,
                WorkloadKind::Sellout => p.run_sellout().await,
                WorkloadKind::Expiry => p.run_expiry().await,
                // Driven over HTTP by `gateway_workload::run`, not here.
                WorkloadKind::Gateway => {}
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}
