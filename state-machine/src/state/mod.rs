//! The replicated booking state and `apply`.
//!
//! Owns: [`BookingState`] (the saved fields, and the [`Derived`] indexes kept
//! visibly apart from them), `apply` and its per-entry housekeeping,
//! `precheck`, and the dispatch of each command to the one function that
//! carries its rules. The rules themselves live by command family:
//! [`holds`] (plan, hold, extend, release, payment begun or failed, the end
//! of a hold), [`bookings`] (confirm, cancel, check-in), [`sales`] (create,
//! open, close), [`queue`] (join, admit, leave) and [`service`] (webhook ids,
//! the outbox, settings). Must not: read a clock, draw randomness, do I/O, or
//! let a hash map's order reach anything. `apply` is a pure function of
//! (state, index, batch).
//!
//! Time model (DESIGN §3): `clock_ms = max(clock_ms, batch.stamp_ms)` at the
//! start of each entry, so log time never goes back even when a new leader's
//! clock is behind. Then the entry's *housekeeping* runs with that clock:
//! scheduled sale openings, hold expiries, admission lapses, forgetting old
//! finished holds, webhook-id aging, waiting-room admission. The exactly-once
//! table does not age with log time: only `ForgetRequests` shrinks it. So every decision in
//! the entry already sees due holds expired: a hold on a seat whose hold is
//! past due succeeds before any `Tick` (the expiry is reported in that entry's
//! `changes`). `Tick` only carries a newer stamp.
//!
//! Boundary rule: a hold with `expires_at_ms = t` is expired when
//! `clock_ms >= t` (a hold made at `s` with ttl `d` is usable while
//! `clock_ms < s + d`). Admissions lapse by the same rule.
//!
//! Caveats: the deadline queues in [`Derived`] are not saved; they are rebuilt
//! on restore. Ids are counters in the state (holds, bookings, tickets, outbox
//! messages), never reused. The field order of [`BookingState`], [`Hold`],
//! [`Booking`] and [`Ticket`] is part of the snapshot format and the state
//! hash (postcard encodes fields by position, without names): reordering,
//! inserting or removing a saved field changes both.

mod bookings;
mod derived;
mod hold_table;
mod holds;
mod queue;
mod sales;
mod service;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::dedupe::{RequestTable, WebhookTable};
use crate::error::BookingError;
use crate::event::Event;
use crate::settings::Settings;
use crate::view::*;

pub(crate) use bookings::{Booking, Ticket, TicketSeat};
pub(crate) use derived::Derived;
pub(crate) use hold_table::HoldTable;
pub(crate) use holds::Hold;

/// Everything a replica holds. `Default` is the empty state with default settings.
///
/// Every field but `derived` is saved in snapshots and hashed by
/// `state_hash`, in this order; `derived` is recomputed from them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingState {
    /// Replicated tunables (TTLs, bounds), changed only by `Configure` so
    /// every replica applies the same rules at the same index.
    pub(crate) settings: Settings,
    /// Raft log index of the last applied entry; `apply` refuses to go back,
    /// so an entry applied twice is a crash, not a silent double booking.
    pub(crate) applied_index: u64,
    /// Log time: the highest `stamp_ms` of any applied entry. Every decision
    /// about time is made from it, never from a local clock.
    pub(crate) clock_ms: u64,
    /// Every event ever created, indexed by the dense event number that
    /// holds, bookings and the derived queues use (`u32`, never reused).
    pub(crate) events: Vec<Event>,
    /// Public event id (slug) → dense event number, to resolve commands.
    pub(crate) event_by_id: BTreeMap<String, u32>,
    /// Live holds, confirmed ones (their bookings point at them), and
    /// finished (released or expired) ones until `hold_retention_ms` after
    /// they ended, so a client can still read what became of its hold;
    /// forgetting bounds memory. By hold id.
    /// (`HoldTable` encodes as the `BTreeMap<u64, Hold>` it replaced.)
    pub(crate) holds: HoldTable,
    /// Every booking ever confirmed, cancelled ones included. By booking id.
    pub(crate) bookings: BTreeMap<u64, Booking>,
    /// Every ticket ever issued, revoked ones included. By ticket id.
    pub(crate) tickets: BTreeMap<u64, Ticket>,
    /// Id of the next hold. Ids below it existed, so a command naming a
    /// forgotten hold still gets `hold_expired` rather than `unknown_hold`.
    pub(crate) next_hold_id: u64,
    /// Id of the next booking.
    pub(crate) next_booking_id: u64,
    /// Id of the next ticket.
    pub(crate) next_ticket_id: u64,
    /// Id of the next outbox message; `AckOutbox { up_to }` relies on ids
    /// increasing.
    pub(crate) next_outbox_id: u64,
    /// Remembered outcomes by `(client_id, request_id)`: what makes a retry
    /// exactly-once. Forgotten only by `ForgetRequests`; at
    /// `dedupe_max_entries` new requests are refused (`overloaded`).
    pub(crate) dedupe: RequestTable,
    /// Payment-provider webhook ids already seen, so a redelivered webhook
    /// is not acted on twice. Bounded like `dedupe`.
    pub(crate) webhooks: WebhookTable,
    /// Notifications (booking confirmed or cancelled) waiting for the
    /// gateway to deliver and acknowledge them; oldest first, at most
    /// `outbox_max_entries`.
    pub(crate) outbox: VecDeque<OutboxMessage>,
    /// Outbox messages dropped unsent because the outbox was full; a count,
    /// so an operator can see that notifications were lost.
    pub(crate) outbox_dropped: u64,
    /// `(ended_at_ms, hold_id)` of released and expired holds, oldest first:
    /// housekeeping forgets each `hold_retention_ms` after it ended.
    pub(crate) forget: VecDeque<(u64, u64)>,
    /// Indexes computed from the fields above: not saved, rebuilt on restore.
    #[serde(skip)]
    pub(crate) derived: Derived,
}

impl Default for BookingState {
    fn default() -> Self {
        BookingState {
            settings: Settings::default(),
            applied_index: 0,
            clock_ms: 0,
            events: Vec::new(),
            event_by_id: BTreeMap::new(),
            holds: HoldTable::default(),
            bookings: BTreeMap::new(),
            tickets: BTreeMap::new(),
            next_hold_id: 1,
            next_booking_id: 1,
            next_ticket_id: 1,
            next_outbox_id: 1,
            dedupe: RequestTable::default(),
            webhooks: WebhookTable::default(),
            outbox: VecDeque::new(),
            outbox_dropped: 0,
            forget: VecDeque::new(),
            derived: Derived::default(),
        }
    }
}

/// Per-entry context handed to commands.
struct Ctx<'a> {
    /// Raft log index of the entry being applied.
    index: u64,
    /// The leader's stamp on the entry (the clock is already moved to it).
    stamp_ms: u64,
    /// Position of the request in the entry's batch, from 0.
    position: usize,
    /// The entry's seat changes, in apply order.
    changes: &'a mut Vec<SeatChange>,
}

impl BookingState {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Applies one log entry. Pure: no clock, randomness or I/O. `index` is
    /// the Raft log index (strictly increasing; for entries that carry no
    /// batch, such as blank or membership entries, apply `Batch::default()`
    /// so the applied index moves on — stamp 0 never moves the clock).
    pub fn apply(&mut self, index: u64, batch: &Batch) -> ApplyOutput {
        assert!(
            index > self.applied_index,
            "log entry {index} applied after entry {}: an entry was applied twice or out of order",
            self.applied_index
        );
        self.applied_index = index;
        self.clock_ms = self.clock_ms.max(batch.stamp_ms);
        // One seat change per request is the common case; size for it up front.
        let mut out = ApplyOutput {
            outcomes: Vec::with_capacity(batch.requests.len()),
            indexes: Vec::with_capacity(batch.requests.len()),
            changes: Vec::with_capacity(batch.requests.len()),
        };
        self.housekeeping(index, batch.stamp_ms, &mut out.changes);
        for (position, req) in batch.requests.iter().enumerate() {
            let mut ctx = Ctx {
                index,
                stamp_ms: batch.stamp_ms,
                position,
                changes: &mut out.changes,
            };
            let dedupe = is_deduplicated(req);
            if dedupe {
                if let Some((first, first_index)) =
                    self.dedupe.get(req.client_id, req.request_id, &req.command)
                {
                    out.outcomes.push(first);
                    // 0: remembered before snapshots carried the index.
                    out.indexes
                        .push(if first_index == 0 { index } else { first_index });
                    continue;
                }
            }
            if dedupe && self.request_table_full() && !is_operator_command(&req.command) {
                // Remembering one more outcome would mean forgetting a live
                // one: refuse instead, apply nothing, remember nothing. A
                // retry under the same ids is judged anew.
                out.outcomes.push(Err(BookingError::Overloaded {
                    reason: format!(
                        "the exactly-once table holds {} live outcomes (dedupe_max_entries)",
                        self.dedupe.len()
                    ),
                }));
                out.indexes.push(index);
                continue;
            }
            let outcome = self.execute(&req.command, &mut ctx);
            if dedupe {
                self.dedupe.insert(
                    req.client_id,
                    req.request_id,
                    &req.command,
                    self.clock_ms,
                    index,
                    &outcome,
                );
            }
            out.outcomes.push(outcome);
            out.indexes.push(index);
        }
        out
    }

    /// Whether the exactly-once table is at its count bound (so a request
    /// it does not remember would be refused as `overloaded`).
    fn request_table_full(&self) -> bool {
        self.dedupe.len() >= self.settings.dedupe_max_entries as usize
    }

    /// True when `apply` would refuse `request` as `overloaded` because the
    /// exactly-once table is full of live outcomes and does not remember
    /// this one: the leader refuses it before proposing.
    pub fn refuses_as_overloaded(&self, request: &Request) -> bool {
        is_deduplicated(request)
            && !is_operator_command(&request.command)
            && self.request_table_full()
            && !self.dedupe.contains(request.client_id, request.request_id)
    }

    /// Whether the exactly-once table remembers this request id.
    pub fn remembers(&self, client_id: u64, request_id: u64) -> bool {
        self.dedupe.contains(client_id, request_id)
    }

    /// Outcomes the exactly-once table remembers now.
    pub fn remembered_requests(&self) -> usize {
        self.dedupe.len()
    }

    /// True when `ForgetRequests { before_ms }` in an entry stamped
    /// `stamp_ms` would forget something: the oldest remembered outcome is
    /// below the cut-off and a TTL old in the log time that entry moves the
    /// clock to. The leader proposes the command only then.
    pub fn forget_due(&self, before_ms: u64, stamp_ms: u64) -> bool {
        let clock_ms = self.clock_ms.max(stamp_ms);
        self.dedupe.oldest_at_ms().is_some_and(|at| {
            at < before_ms && at.saturating_add(self.settings.dedupe_ttl_ms) <= clock_ms
        })
    }

    /// Earliest log time at which a `Tick` would change something a client
    /// sees (a hold expires, an admission lapses, a sale opens by schedule, a
    /// waiting room can admit now), or None. The leader ticks when now >= it.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let d = &self.derived;
        let mut next = [
            d.expiry.first().map(|e| e.0),
            d.lapses.first().map(|l| l.0),
            d.scheduled_opens.first().map(|s| s.0),
        ]
        .into_iter()
        .flatten()
        .min();
        if d.queue_events.iter().any(|&e| self.can_admit(e)) {
            next = Some(self.clock_ms);
        }
        // A round's grace ending may let the room admit (a no-op tick if not).
        let grace = d
            .queue_events
            .iter()
            .filter_map(|&e| self.next_grace_end_ms(e))
            .min();
        next.into_iter().chain(grace).min()
    }

    /// Read-only: the answer `apply` would give `request` in an entry stamped
    /// at the current log time (`clock_ms`), when that answer changes nothing
    /// but the dedupe table: the outcome remembered for an already-applied
    /// request id, or a refusal of a `Hold` (sale not open, not admitted,
    /// unknown event/seat/section, seat unavailable, not enough seats, bad
    /// count). `None` means "only the log can answer": the hold would take
    /// seats or needs a best-available search, the command is not a `Hold`, or
    /// housekeeping is due at `clock_ms` (an entry would first change state).
    ///
    /// The hold's refusals come from the same `plan_hold` that `apply` runs,
    /// so the two cannot drift; `tests/precheck.rs` checks that a `Some` here
    /// equals what `apply` on a clone answers, with nothing else changed. The
    /// caller (the leader's fast path) is responsible for this state being
    /// current: a ReadIndex round and applied >= its index, and no deadline
    /// due by its own clock (see `next_deadline_ms`).
    pub fn precheck(&self, request: &Request) -> Option<Outcome> {
        if self.housekeeping_due() {
            return None;
        }
        if is_deduplicated(request) {
            if let Some((first, _)) =
                self.dedupe
                    .get(request.client_id, request.request_id, &request.command)
            {
                return Some(first);
            }
        }
        match &request.command {
            Command::Hold {
                event_id,
                holder,
                selection,
            } => match self.plan_hold(event_id, holder, selection, None) {
                Err(refusal) => Some(Err(refusal)),
                Ok(_) => None,
            },
            Command::HoldQueued {
                event_id,
                holder,
                selection,
                queue_position,
            } => match self.plan_hold(event_id, holder, selection, Some(*queue_position)) {
                Err(refusal) => Some(Err(refusal)),
                Ok(_) => None,
            },
            _ => None,
        }
    }

    /// True when `housekeeping` at `clock_ms` would change something: one
    /// condition per loop of `housekeeping`, in its order.
    fn housekeeping_due(&self) -> bool {
        let clock = self.clock_ms;
        let d = &self.derived;
        let due = |at: Option<u64>| at.is_some_and(|at| at <= clock);
        due(d.scheduled_opens.first().map(|s| s.0))
            || due(d.expiry.first().map(|e| e.0))
            || due(d.lapses.first().map(|l| l.0))
            || due(self
                .forget
                .front()
                .map(|f| f.0.saturating_add(self.settings.hold_retention_ms)))
            || due(self
                .webhooks
                .oldest_at_ms()
                .map(|at| at.saturating_add(self.settings.webhook_dedupe_ttl_ms)))
            || d.queue_events.iter().any(|&e| self.can_admit(e))
    }

    /// Work that falls due with time; runs at the start of every entry.
    fn housekeeping(&mut self, index: u64, stamp_ms: u64, changes: &mut Vec<SeatChange>) {
        let clock = self.clock_ms;
        while let Some(&(at, event)) = self.derived.scheduled_opens.first() {
            if at > clock {
                break;
            }
            self.open_event(event, index, stamp_ms);
        }
        while self
            .derived
            .expiry
            .first()
            .is_some_and(|&(at, _)| at <= clock)
        {
            let (_, hold_id) = self.derived.expiry.pop_first().expect("checked non-empty");
            self.end_hold(hold_id, HoldStatus::Expired, changes);
        }
        while let Some(&(at, event)) = self.derived.lapses.first() {
            if at > clock {
                break;
            }
            self.derived.lapses.pop_first();
            self.lapse_rounds(event);
        }
        let retention = self.settings.hold_retention_ms;
        while let Some(&(ended, hold_id)) = self.forget.front() {
            if ended.saturating_add(retention) > clock {
                break;
            }
            self.forget.pop_front();
            let hold = self
                .holds
                .remove(hold_id)
                .expect("forget queue names a missing hold");
            assert!(
                matches!(hold.status, HoldStatus::Released | HoldStatus::Expired),
                "hold {hold_id} forgotten while {:?}",
                hold.status
            );
        }
        // The exactly-once table is not aged here: log time alone may jump
        // (a fast clock, a majority moved after an outage), so it forgets
        // only through `ForgetRequests`, whose cut-off a leader picked by its
        // monotonic clock.
        self.webhooks
            .expire(clock, self.settings.webhook_dedupe_ttl_ms);
        let queue_events: Vec<u32> = self.derived.queue_events.iter().copied().collect();
        for event in queue_events {
            self.admit(event);
        }
    }

    /// One call per command: the rules live in the command's family module.
    fn execute(&mut self, command: &Command, ctx: &mut Ctx) -> Outcome {
        match command {
            Command::CreateEvent(spec) => self.create_event(spec, ctx),
            Command::OpenSale { event_id } => self.open_sale(event_id, ctx),
            Command::CloseSale { event_id } => self.close_sale(event_id),
            Command::Hold {
                event_id,
                holder,
                selection,
            } => self.hold(event_id, holder, selection, None, ctx),
            Command::ExtendHold { hold_id, holder } => self.extend_hold(*hold_id, holder),
            Command::Release { hold_id, holder } => self.release(*hold_id, holder, ctx),
            Command::BeginPayment { hold_id, holder } => self.begin_payment(*hold_id, holder),
            Command::Confirm {
                hold_id,
                holder,
                payment_ref,
            } => self.confirm(*hold_id, holder, payment_ref, ctx),
            Command::FailPayment { hold_id, holder } => self.fail_payment(*hold_id, holder, ctx),
            Command::CancelBooking { booking_id, holder } => {
                self.cancel_booking(*booking_id, holder, ctx)
            }
            Command::CheckIn { ticket_id } => self.check_in(*ticket_id),
            Command::JoinQueue { event_id, user } => self.join_queue(event_id, user),
            Command::ReserveQueueBlock { event_id, count } => {
                self.reserve_queue_block(event_id, *count)
            }
            Command::HoldQueued {
                event_id,
                holder,
                selection,
                queue_position,
            } => self.hold(event_id, holder, selection, Some(*queue_position), ctx),
            Command::LeaveQueue { event_id, user } => self.leave_queue(event_id, user),
            Command::RecordWebhook { webhook_id } => self.record_webhook(webhook_id),
            Command::AckOutbox { up_to } => self.ack_outbox(*up_to),
            Command::Configure(settings) => self.configure(settings),
            Command::Tick => self.tick(),
            Command::BeginCharge {
                hold_id,
                holder,
                charge_id,
                amount_cents,
            } => self.begin_charge(*hold_id, holder, charge_id, *amount_cents),
            Command::ConfirmCharge {
                hold_id,
                holder,
                charge_id,
                amount_cents,
            } => self.confirm_charge(*hold_id, holder, charge_id, *amount_cents, ctx),
            Command::CancelBookingBefore {
                booking_id,
                holder,
                cutoff_ms,
            } => self.cancel_booking_before(*booking_id, holder, *cutoff_ms, ctx),
            Command::ForgetRequests { before_ms } => self.forget_requests(*before_ms),
        }
    }

    /// `Tick` changes nothing itself: its stamp moved the clock and the
    /// entry's housekeeping did the due work before it ran.
    fn tick(&self) -> Outcome {
        Ok(Reply::Ticked {
            clock_ms: self.clock_ms,
        })
    }

    /// `ForgetRequests`: forgets the outcomes recorded below `before_ms`
    /// that are also `dedupe_ttl_ms` old in log time.
    fn forget_requests(&mut self, before_ms: u64) -> Outcome {
        let removed =
            self.dedupe
                .forget_before(before_ms, self.clock_ms, self.settings.dedupe_ttl_ms);
        Ok(Reply::RequestsForgotten { removed })
    }

    fn event_index(&self, event_id: &str) -> Result<u32, BookingError> {
        self.event_by_id
            .get(event_id)
            .copied()
            .ok_or_else(|| BookingError::UnknownEvent {
                event_id: event_id.into(),
            })
    }

    /// Rebuilds every derived index from the saved state (after restore):
    /// the dedupe key index, each event's layout and free-seat rows, and
    /// [`Derived`].
    pub(crate) fn rebuild_indexes(&mut self) {
        self.dedupe.rebuild();
        for ev in &mut self.events {
            ev.rebuild_indexes();
        }
        self.derived = Derived::rebuild(&self.holds, &self.events);
    }
}

/// The seat-map change of a general-admission section: its counters now.
fn ga_change(ev: &Event, si: u32) -> SeatChange {
    let s = &ev.layout.sections[si as usize];
    let c = &ev.counters[si as usize];
    SeatChange {
        event_id: ev.id.clone(),
        seat: s.id.clone(),
        state: SeatStatus::GeneralAdmission {
            capacity: s.ga_capacity.expect("GA change of a reserved section"),
            held: c.held,
            sold: c.booked,
        },
    }
}

/// Whether `apply` remembers this request's outcome (and answers a repeat
/// with it): every request with a client id, except `Tick`.
fn is_deduplicated(request: &Request) -> bool {
    request.client_id != 0 && !matches!(request.command, Command::Tick)
}

/// Commands a full exactly-once table never refuses: `Configure`, so an
/// operator can always raise `dedupe_max_entries`. Each is remembered
/// beyond the bound, which only operators can grow.
fn is_operator_command(command: &Command) -> bool {
    matches!(command, Command::Configure(_))
}

fn check_text(field: &str, value: &str, max_len: usize) -> Result<(), BookingError> {
    if value.is_empty() || value.len() > max_len || value.chars().any(char::is_control) {
        return Err(BookingError::InvalidRequest {
            reason: format!("{field} must be 1..={max_len} bytes without control characters"),
        });
    }
    Ok(())
}
