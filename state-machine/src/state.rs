//! The replicated booking state and `apply`.
//!
//! Owns: [`BookingState`], the holds, bookings, tickets, outbox and the
//! deadline queues, and the rules of every command. Must not: read a clock,
//! draw randomness, do I/O, or let a hash map's order reach anything. `apply`
//! is a pure function of (state, index, batch).
//!
//! Time model (DESIGN §3): `clock_ms = max(clock_ms, batch.stamp_ms)` at the
//! start of each entry, so log time never goes back even when a new leader's
//! clock is behind. Then the entry's *housekeeping* runs with that clock:
//! scheduled sale openings, hold expiries, admission lapses, forgetting old
//! finished holds, dedupe aging, waiting-room admission. So every decision in
//! the entry already sees due holds expired: a hold on a seat whose hold is
//! past due succeeds before any `Tick` (the expiry is reported in that entry's
//! `changes`). `Tick` only carries a newer stamp.
//!
//! Boundary rule: a hold with `expires_at_ms = t` is expired when
//! `clock_ms >= t` (a hold made at `s` with ttl `d` is usable while
//! `clock_ms < s + d`). Admissions lapse by the same rule.
//!
//! Caveats: the deadline queues (`expiry`, `lapses`, `scheduled_opens`,
//! `queue_events`) are derived and rebuilt on restore. Ids are counters in the
//! state (holds, bookings, tickets, outbox messages), never reused.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::command::*;
use crate::dedupe::{RequestTable, WebhookTable};
use crate::error::BookingError;
use crate::event::{Event, Seat};
use crate::limits::*;
use crate::settings::Settings;
use crate::spec::{derive_slug, EventSpec};
use crate::view::*;
use crate::waiting_room::Joined;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hold {
    pub event: u32,
    pub holder: String,
    /// Dense reserved seats (empty for general admission).
    pub seats: Vec<u32>,
    /// General admission: (section index, count).
    pub ga: Option<(u32, u32)>,
    pub status: HoldStatus,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    /// When it was released or expired (drives forgetting).
    pub ended_at_ms: Option<u64>,
    pub booking_id: Option<u64>,
    pub total_cents: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Booking {
    pub event: u32,
    pub hold_id: u64,
    pub holder: String,
    pub seats: Vec<u32>,
    pub ga: Option<(u32, u32)>,
    pub payment_ref: String,
    pub total_cents: u64,
    pub status: BookingStatus,
    pub created_at_ms: u64,
    pub cancelled_at_ms: Option<u64>,
    pub tickets: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TicketSeat {
    Reserved(u32),
    /// (section index, n): the n-th GA place sold in that section.
    GeneralAdmission(u32, u32),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    pub booking_id: u64,
    pub seat: TicketSeat,
    pub issued_at_ms: u64,
    pub checked_in_at_ms: Option<u64>,
    pub revoked: bool,
}

/// Everything a replica holds. `Default` is the empty state with default settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingState {
    pub(crate) settings: Settings,
    pub(crate) applied_index: u64,
    pub(crate) clock_ms: u64,
    pub(crate) events: Vec<Event>,
    pub(crate) event_by_id: BTreeMap<String, u32>,
    pub(crate) holds: BTreeMap<u64, Hold>,
    pub(crate) bookings: BTreeMap<u64, Booking>,
    pub(crate) tickets: BTreeMap<u64, Ticket>,
    pub(crate) next_hold_id: u64,
    pub(crate) next_booking_id: u64,
    pub(crate) next_ticket_id: u64,
    pub(crate) next_outbox_id: u64,
    pub(crate) dedupe: RequestTable,
    pub(crate) webhooks: WebhookTable,
    pub(crate) outbox: VecDeque<OutboxMessage>,
    pub(crate) outbox_dropped: u64,
    /// (ended_at_ms, hold_id) of released/expired holds, oldest first.
    pub(crate) forget: VecDeque<(u64, u64)>,
    /// (expires_at_ms, hold_id) of live holds.
    #[serde(skip)]
    pub(crate) expiry: BTreeSet<(u64, u64)>,
    /// (admitted_until_ms, event, user) of admitted fans.
    #[serde(skip)]
    pub(crate) lapses: BTreeSet<(u64, u32, String)>,
    /// (sale_opens_at_ms, event) of events not opened yet that open by themselves.
    #[serde(skip)]
    pub(crate) scheduled_opens: BTreeSet<(u64, u32)>,
    /// Events with a waiting room whose sale is open.
    #[serde(skip)]
    pub(crate) queue_events: BTreeSet<u32>,
}

impl Default for BookingState {
    fn default() -> Self {
        BookingState {
            settings: Settings::default(),
            applied_index: 0,
            clock_ms: 0,
            events: Vec::new(),
            event_by_id: BTreeMap::new(),
            holds: BTreeMap::new(),
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
            expiry: BTreeSet::new(),
            lapses: BTreeSet::new(),
            scheduled_opens: BTreeSet::new(),
            queue_events: BTreeSet::new(),
        }
    }
}

/// Per-entry context handed to commands.
struct Ctx<'a> {
    index: u64,
    stamp_ms: u64,
    position: usize,
    changes: &'a mut Vec<SeatChange>,
}

/// How a `Hold` that passed every read-only check takes its seats.
enum HoldPlan {
    /// Exactly these seats, all checked free.
    Seats(Vec<u32>),
    /// A best-available search; enough seats are free in scope, but the search
    /// may still refuse (no block fits without `allow_non_adjacent`).
    BestAvailable {
        count: u32,
        section: Option<u32>,
        allow_non_adjacent: bool,
    },
    /// (section index, count) of general admission, checked available.
    GeneralAdmission(u32, u32),
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
                if let Some((first, first_index)) = self.dedupe.get(req.client_id, req.request_id) {
                    out.outcomes.push(first);
                    // 0: remembered before snapshots carried the index.
                    out.indexes
                        .push(if first_index == 0 { index } else { first_index });
                    continue;
                }
            }
            let outcome = self.execute(&req.command, &mut ctx);
            if dedupe {
                self.dedupe.insert(
                    req.client_id,
                    req.request_id,
                    self.clock_ms,
                    index,
                    &outcome,
                    self.settings.dedupe_max_entries,
                );
            }
            out.outcomes.push(outcome);
            out.indexes.push(index);
        }
        out
    }

    /// Earliest log time at which a `Tick` would change something a client
    /// sees (a hold expires, an admission lapses, a sale opens by schedule, a
    /// waiting room can admit now), or None. The leader ticks when now >= it.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let mut next = [
            self.expiry.first().map(|e| e.0),
            self.lapses.first().map(|l| l.0),
            self.scheduled_opens.first().map(|s| s.0),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.queue_events.iter().any(|&e| self.can_admit(e)) {
            next = Some(self.clock_ms);
        }
        next
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
            if let Some((first, _)) = self.dedupe.get(request.client_id, request.request_id) {
                return Some(first);
            }
        }
        match &request.command {
            Command::Hold {
                event_id,
                holder,
                selection,
            } => match self.plan_hold(event_id, holder, selection) {
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
        let due = |at: Option<u64>| at.is_some_and(|at| at <= clock);
        due(self.scheduled_opens.first().map(|s| s.0))
            || due(self.expiry.first().map(|e| e.0))
            || due(self.lapses.first().map(|l| l.0))
            || due(self
                .forget
                .front()
                .map(|f| f.0.saturating_add(self.settings.hold_retention_ms)))
            || due(self
                .dedupe
                .oldest_at_ms()
                .map(|at| at.saturating_add(self.settings.dedupe_ttl_ms)))
            || due(self
                .webhooks
                .oldest_at_ms()
                .map(|at| at.saturating_add(self.settings.webhook_dedupe_ttl_ms)))
            || self.queue_events.iter().any(|&e| self.can_admit(e))
    }

    fn can_admit(&self, event: u32) -> bool {
        let ev = &self.events[event as usize];
        match &ev.queue {
            Some(q) => ev.sale == SaleState::Open && q.slots(ev.available_units()) > 0,
            None => false,
        }
    }

    /// Work that falls due with time; runs at the start of every entry.
    fn housekeeping(&mut self, index: u64, stamp_ms: u64, changes: &mut Vec<SeatChange>) {
        let clock = self.clock_ms;
        while let Some(&(at, event)) = self.scheduled_opens.first() {
            if at > clock {
                break;
            }
            self.open_sale(event, index, stamp_ms);
        }
        while self.expiry.first().is_some_and(|&(at, _)| at <= clock) {
            let (_, hold_id) = self.expiry.pop_first().expect("checked non-empty");
            self.end_hold(hold_id, HoldStatus::Expired, changes);
        }
        while let Some((at, _, _)) = self.lapses.first() {
            if *at > clock {
                break;
            }
            let (at, event, user) = self.lapses.pop_first().expect("non-empty");
            let queue = self.events[event as usize]
                .queue
                .as_mut()
                .expect("lapse entry of an event without a waiting room");
            queue.lapse(&user, at);
        }
        let retention = self.settings.hold_retention_ms;
        while let Some(&(ended, hold_id)) = self.forget.front() {
            if ended.saturating_add(retention) > clock {
                break;
            }
            self.forget.pop_front();
            let hold = self
                .holds
                .remove(&hold_id)
                .expect("forget queue names a missing hold");
            assert!(
                matches!(hold.status, HoldStatus::Released | HoldStatus::Expired),
                "hold {hold_id} forgotten while {:?}",
                hold.status
            );
        }
        self.dedupe.expire(clock, self.settings.dedupe_ttl_ms);
        self.webhooks
            .expire(clock, self.settings.webhook_dedupe_ttl_ms);
        let queue_events: Vec<u32> = self.queue_events.iter().copied().collect();
        for event in queue_events {
            self.admit(event);
        }
    }

    fn execute(&mut self, command: &Command, ctx: &mut Ctx) -> Outcome {
        match command {
            Command::CreateEvent(spec) => self.create_event(spec, ctx),
            Command::OpenSale { event_id } => {
                let event = self.event_index(event_id)?;
                let fans_shuffled = self.open_sale(event, ctx.index, ctx.stamp_ms);
                Ok(Reply::SaleOpened {
                    event_id: event_id.clone(),
                    fans_shuffled,
                })
            }
            Command::CloseSale { event_id } => {
                let event = self.event_index(event_id)?;
                let ev = &mut self.events[event as usize];
                ev.sale = SaleState::Closed;
                if let Some(at) = ev.sale_opens_at_ms.take() {
                    self.scheduled_opens.remove(&(at, event));
                }
                self.queue_events.remove(&event);
                Ok(Reply::SaleClosed {
                    event_id: event_id.clone(),
                })
            }
            Command::Hold {
                event_id,
                holder,
                selection,
            } => self.hold(event_id, holder, selection, ctx),
            Command::ExtendHold { hold_id, holder } => self.extend_hold(*hold_id, holder),
            Command::Release { hold_id, holder } => {
                self.live_hold(*hold_id, holder)?;
                self.end_hold(*hold_id, HoldStatus::Released, ctx.changes);
                Ok(Reply::Released { hold_id: *hold_id })
            }
            Command::BeginPayment { hold_id, holder } => {
                let hold = self.live_hold(*hold_id, holder)?;
                if hold.status != HoldStatus::Active {
                    return Err(BookingError::HoldNotActive {
                        hold_id: *hold_id,
                        status: hold.status.as_str().into(),
                    });
                }
                let old = hold.expires_at_ms;
                let new = old.max(
                    self.clock_ms
                        .saturating_add(self.settings.payment_window_ms),
                );
                let hold = self.holds.get_mut(hold_id).expect("checked above");
                hold.status = HoldStatus::PaymentPending;
                hold.expires_at_ms = new;
                self.expiry.remove(&(old, *hold_id));
                self.expiry.insert((new, *hold_id));
                Ok(Reply::PaymentBegun {
                    hold_id: *hold_id,
                    expires_at_ms: new,
                })
            }
            Command::Confirm {
                hold_id,
                holder,
                payment_ref,
            } => self.confirm(*hold_id, holder, payment_ref, ctx),
            Command::FailPayment { hold_id, holder } => {
                self.live_hold(*hold_id, holder)?;
                self.end_hold(*hold_id, HoldStatus::Released, ctx.changes);
                Ok(Reply::PaymentFailed { hold_id: *hold_id })
            }
            Command::CancelBooking { booking_id, holder } => {
                self.cancel_booking(*booking_id, holder, ctx)
            }
            Command::CheckIn { ticket_id } => {
                let ticket =
                    self.tickets
                        .get_mut(ticket_id)
                        .ok_or(BookingError::UnknownTicket {
                            ticket_id: *ticket_id,
                        })?;
                if ticket.revoked {
                    return Err(BookingError::TicketRevoked {
                        ticket_id: *ticket_id,
                    });
                }
                if let Some(at) = ticket.checked_in_at_ms {
                    return Err(BookingError::AlreadyCheckedIn {
                        ticket_id: *ticket_id,
                        checked_in_at_ms: at,
                    });
                }
                ticket.checked_in_at_ms = Some(self.clock_ms);
                Ok(Reply::CheckedIn {
                    ticket_id: *ticket_id,
                    checked_in_at_ms: self.clock_ms,
                })
            }
            Command::JoinQueue { event_id, user } => self.join_queue(event_id, user),
            Command::LeaveQueue { event_id, user } => {
                let event = self.event_index(event_id)?;
                let queue = self.events[event as usize].queue.as_mut().ok_or_else(|| {
                    BookingError::NoWaitingRoom {
                        event_id: event_id.clone(),
                    }
                })?;
                let lapse = queue.leave(user).map_err(|()| BookingError::NotInQueue {
                    event_id: event_id.clone(),
                    user: user.clone(),
                })?;
                if let Some(until) = lapse {
                    self.lapses.remove(&(until, event, user.clone()));
                }
                // A freed place goes to the next fan at once.
                self.admit(event);
                Ok(Reply::QueueLeft {
                    event_id: event_id.clone(),
                })
            }
            Command::RecordWebhook { webhook_id } => {
                check_text("webhook_id", webhook_id, MAX_WEBHOOK_ID_LEN)?;
                let new = self.webhooks.record(
                    webhook_id,
                    self.clock_ms,
                    self.settings.webhook_dedupe_max_entries,
                );
                Ok(Reply::WebhookRecorded { new })
            }
            Command::AckOutbox { up_to } => {
                let mut removed = 0;
                while self.outbox.front().is_some_and(|m| m.id <= *up_to) {
                    self.outbox.pop_front();
                    removed += 1;
                }
                Ok(Reply::OutboxAcked { removed })
            }
            Command::Configure(settings) => {
                settings
                    .validate()
                    .map_err(|reason| BookingError::InvalidSettings { reason })?;
                self.settings = settings.clone();
                self.dedupe.trim(self.settings.dedupe_max_entries);
                self.webhooks.trim(self.settings.webhook_dedupe_max_entries);
                while self.outbox.len() > self.settings.outbox_max_entries as usize {
                    self.outbox.pop_front();
                    self.outbox_dropped += 1;
                }
                Ok(Reply::Configured)
            }
            Command::Tick => Ok(Reply::Ticked {
                clock_ms: self.clock_ms,
            }),
        }
    }

    fn event_index(&self, event_id: &str) -> Result<u32, BookingError> {
        self.event_by_id
            .get(event_id)
            .copied()
            .ok_or_else(|| BookingError::UnknownEvent {
                event_id: event_id.into(),
            })
    }

    fn create_event(&mut self, spec: &EventSpec, ctx: &mut Ctx) -> Outcome {
        let times = spec
            .validate()
            .map_err(|reason| BookingError::InvalidEvent { reason })?;
        if self.events.len() >= MAX_EVENTS {
            return Err(BookingError::TooManyEvents {
                max: MAX_EVENTS as u64,
            });
        }
        let id = match &spec.id {
            Some(id) => {
                if self.event_by_id.contains_key(id) {
                    return Err(BookingError::EventExists {
                        event_id: id.clone(),
                    });
                }
                id.clone()
            }
            None => {
                // Two creations in one entry share the index: the position in
                // the batch, then a counter, keep derived ids unique.
                let base = derive_slug(&spec.name, ctx.index);
                let mut id = if ctx.position == 0 {
                    base.clone()
                } else {
                    format!("{base}-{}", ctx.position)
                };
                let mut n = 1;
                while self.event_by_id.contains_key(&id) {
                    n += 1;
                    id = format!("{base}-{}-{n}", ctx.position);
                }
                id
            }
        };
        let mut spec = spec.clone();
        spec.id = Some(id.clone());
        // Validation bounds years to 1970..=9999, so the instant is not negative.
        let sale_opens_at_ms = times.sale_opens_at_ms.map(|ms| ms.max(0) as u64);
        let event = self.events.len() as u32;
        self.events
            .push(Event::new(spec, ctx.index, self.clock_ms, sale_opens_at_ms));
        self.event_by_id.insert(id.clone(), event);
        if let Some(at) = sale_opens_at_ms {
            self.scheduled_opens.insert((at, event));
        }
        Ok(Reply::EventCreated { event_id: id })
    }

    /// Opens a sale (idempotent); the first opening shuffles the pre-opening
    /// fans with a seed derived from this entry's index and stamp.
    fn open_sale(&mut self, event: u32, index: u64, stamp_ms: u64) -> u64 {
        let ev = &mut self.events[event as usize];
        if let Some(at) = ev.sale_opens_at_ms.take() {
            self.scheduled_opens.remove(&(at, event));
        }
        if ev.sale == SaleState::Open {
            return 0;
        }
        ev.sale = SaleState::Open;
        let mut shuffled = 0;
        if !ev.opened_once {
            ev.opened_once = true;
            if let Some(queue) = ev.queue.as_mut() {
                shuffled = queue.shuffle_pending(shuffle_seed(&ev.id, index, stamp_ms));
            }
        }
        if ev.queue.is_some() {
            self.queue_events.insert(event);
            self.admit(event);
        }
        shuffled
    }

    fn admit(&mut self, event: u32) {
        let ev = &mut self.events[event as usize];
        if ev.sale != SaleState::Open {
            return;
        }
        let available = ev.available_units();
        let until = self.clock_ms.saturating_add(ev.spec.hold_ttl_ms);
        let Some(queue) = ev.queue.as_mut() else {
            return;
        };
        let slots = queue.slots(available);
        if slots == 0 {
            return;
        }
        for user in queue.admit(slots, until) {
            self.lapses.insert((until, event, user));
        }
    }

    fn join_queue(&mut self, event_id: &str, user: &str) -> Outcome {
        check_text("user", user, MAX_HOLDER_LEN)?;
        let event = self.event_index(event_id)?;
        let max_fans = self.settings.queue_max_fans;
        let ev = &mut self.events[event as usize];
        let opened = ev.opened_once;
        let queue = ev
            .queue
            .as_mut()
            .ok_or_else(|| BookingError::NoWaitingRoom {
                event_id: event_id.into(),
            })?;
        let already_joined = match queue.join(user, opened, max_fans) {
            Joined::New => false,
            Joined::Already => true,
            Joined::Full => {
                return Err(BookingError::QueueFull {
                    event_id: event_id.into(),
                })
            }
        };
        self.admit(event);
        let queue = self.events[event as usize]
            .queue
            .as_ref()
            .expect("checked above");
        let view = queue.view(event_id, user).expect("the user just joined");
        Ok(Reply::QueueJoined {
            queue: view,
            already_joined,
        })
    }

    /// Every refusal `Hold` can meet before it takes anything, decided
    /// read-only. Shared by `hold` (apply) and [`BookingState::precheck`], so
    /// the fast path and the log path cannot disagree on a refusal.
    fn plan_hold(
        &self,
        event_id: &str,
        holder: &str,
        selection: &Selection,
    ) -> Result<(u32, HoldPlan), BookingError> {
        check_text("holder", holder, MAX_HOLDER_LEN)?;
        let event = self.event_index(event_id)?;
        let ev = &self.events[event as usize];
        if ev.sale != SaleState::Open {
            return Err(BookingError::SaleNotOpen {
                event_id: event_id.into(),
            });
        }
        if let Some(queue) = &ev.queue {
            if !queue.is_admitted(holder, self.clock_ms) {
                return Err(BookingError::NotAdmitted {
                    event_id: event_id.into(),
                    holder: holder.into(),
                });
            }
        }
        let max = ev.spec.max_seats_per_hold;
        let check_count = |count: u32| {
            if count == 0 {
                Err(BookingError::InvalidRequest {
                    reason: "count must be at least 1".into(),
                })
            } else if count > max {
                Err(BookingError::TooManySeats {
                    requested: count,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let plan = match selection {
            Selection::Seats(ids) => {
                if ids.is_empty() {
                    return Err(BookingError::InvalidRequest {
                        reason: "no seats listed".into(),
                    });
                }
                check_count(ids.len().min(u32::MAX as usize) as u32)?;
                let mut seats = Vec::with_capacity(ids.len());
                for id in ids {
                    let seat = ev
                        .parse_seat(id)
                        .ok_or_else(|| BookingError::UnknownSeat { seat: id.clone() })?;
                    if seats.contains(&seat) {
                        return Err(BookingError::InvalidRequest {
                            reason: format!("seat {id} listed twice"),
                        });
                    }
                    seats.push(seat);
                }
                let taken: Vec<String> = seats
                    .iter()
                    .filter(|&&s| ev.seats[s as usize] != Seat::Available)
                    .map(|&s| ev.seat_id(s))
                    .collect();
                if !taken.is_empty() {
                    return Err(BookingError::SeatUnavailable { seats: taken });
                }
                HoldPlan::Seats(seats)
            }
            Selection::BestAvailable {
                count,
                section,
                allow_non_adjacent,
            } => {
                check_count(*count)?;
                let section = match section {
                    Some(s) => {
                        let si = section_index(ev, s)?;
                        if ev.layout.sections[si as usize].ga_capacity.is_some() {
                            return Err(BookingError::WrongSectionKind {
                                section: s.clone(),
                                actual: "general_admission".into(),
                            });
                        }
                        Some(si)
                    }
                    None => None,
                };
                let available = ev.reserved_available(section);
                if available < *count {
                    return Err(BookingError::NotEnoughSeats {
                        requested: *count,
                        available,
                    });
                }
                HoldPlan::BestAvailable {
                    count: *count,
                    section,
                    allow_non_adjacent: *allow_non_adjacent,
                }
            }
            Selection::GeneralAdmission { section, count } => {
                let si = section_index(ev, section)?;
                let Some(capacity) = ev.layout.sections[si as usize].ga_capacity else {
                    return Err(BookingError::WrongSectionKind {
                        section: section.clone(),
                        actual: "reserved".into(),
                    });
                };
                check_count(*count)?;
                let c = &ev.counters[si as usize];
                let available = capacity - c.held - c.booked;
                if available < *count {
                    return Err(BookingError::NotEnoughSeats {
                        requested: *count,
                        available,
                    });
                }
                HoldPlan::GeneralAdmission(si, *count)
            }
        };
        Ok((event, plan))
    }

    fn hold(
        &mut self,
        event_id: &str,
        holder: &str,
        selection: &Selection,
        ctx: &mut Ctx,
    ) -> Outcome {
        let (event, plan) = self.plan_hold(event_id, holder, selection)?;
        let clock = self.clock_ms;
        let ev = &mut self.events[event as usize];
        let (seats, ga) = match plan {
            HoldPlan::Seats(seats) => (seats, None),
            HoldPlan::BestAvailable {
                count,
                section,
                allow_non_adjacent,
            } => {
                let seats =
                    ev.find_best(count, section, allow_non_adjacent)
                        .map_err(|available| BookingError::NotEnoughSeats {
                            requested: count,
                            available,
                        })?;
                (seats, None)
            }
            HoldPlan::GeneralAdmission(si, count) => (Vec::new(), Some((si, count))),
        };
        // Decided: take the seats.
        let hold_id = self.next_hold_id;
        self.next_hold_id += 1;
        let mut total_cents = 0;
        let mut seat_ids = Vec::with_capacity(seats.len());
        for &seat in &seats {
            assert!(
                ev.seats[seat as usize] == Seat::Available,
                "seat {} of {} double-held at apply (hold {hold_id})",
                ev.seat_id(seat),
                ev.id
            );
            ev.set_seat(seat, Seat::Held(hold_id));
            total_cents += ev.seat_price_cents(seat);
            let id = ev.seat_id(seat);
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: id.clone(),
                state: SeatStatus::Held,
            });
            seat_ids.push(id);
        }
        let mut general_admission = None;
        if let Some((si, count)) = ga {
            ev.counters[si as usize].held += count;
            total_cents += ev.layout.sections[si as usize].price_cents * count as u64;
            ctx.changes.push(ga_change(ev, si));
            general_admission = Some(GaPlaces {
                section: ev.layout.sections[si as usize].id.clone(),
                count,
            });
        }
        // Saturating: a leader stamp near u64::MAX must not wrap time around.
        let expires_at_ms = clock.saturating_add(ev.spec.hold_ttl_ms);
        self.holds.insert(
            hold_id,
            Hold {
                event,
                holder: holder.to_string(),
                seats,
                ga,
                status: HoldStatus::Active,
                created_at_ms: clock,
                expires_at_ms,
                ended_at_ms: None,
                booking_id: None,
                total_cents,
            },
        );
        self.expiry.insert((expires_at_ms, hold_id));
        Ok(Reply::Held {
            hold_id,
            event_id: event_id.to_string(),
            seats: seat_ids,
            general_admission,
            expires_at_ms,
            total_cents,
        })
    }

    /// The hold if it is live and the holder owns it; otherwise the refusal
    /// a client should see for its state.
    fn live_hold(&self, hold_id: u64, holder: &str) -> Result<&Hold, BookingError> {
        let Some(hold) = self.holds.get(&hold_id) else {
            // Ids below the counter existed: a missing one was a finished
            // (released or expired) hold that has been forgotten.
            return Err(if hold_id > 0 && hold_id < self.next_hold_id {
                BookingError::HoldExpired { hold_id }
            } else {
                BookingError::UnknownHold { hold_id }
            });
        };
        if hold.holder != holder {
            return Err(BookingError::NotOwner);
        }
        match hold.status {
            HoldStatus::Active | HoldStatus::PaymentPending => Ok(hold),
            HoldStatus::Confirmed => Err(BookingError::AlreadyConfirmed {
                hold_id,
                booking_id: hold.booking_id.expect("a confirmed hold names its booking"),
            }),
            HoldStatus::Released | HoldStatus::Expired => {
                Err(BookingError::HoldExpired { hold_id })
            }
        }
    }

    fn extend_hold(&mut self, hold_id: u64, holder: &str) -> Outcome {
        let hold = self.live_hold(hold_id, holder)?;
        if hold.status != HoldStatus::Active {
            return Err(BookingError::HoldNotActive {
                hold_id,
                status: hold.status.as_str().into(),
            });
        }
        let ttl = self.events[hold.event as usize].spec.hold_ttl_ms;
        let cap = hold
            .created_at_ms
            .saturating_add(ttl * self.settings.max_hold_lifetime_ttls as u64);
        let new = self.clock_ms.saturating_add(ttl).min(cap);
        let old = hold.expires_at_ms;
        if new <= old {
            return Err(BookingError::ExtendLimitReached {
                hold_id,
                max_expires_at_ms: cap,
            });
        }
        self.holds
            .get_mut(&hold_id)
            .expect("checked above")
            .expires_at_ms = new;
        self.expiry.remove(&(old, hold_id));
        self.expiry.insert((new, hold_id));
        Ok(Reply::HoldExtended {
            hold_id,
            expires_at_ms: new,
        })
    }

    /// Releases or expires a live hold: its seats return to inventory.
    fn end_hold(&mut self, hold_id: u64, status: HoldStatus, changes: &mut Vec<SeatChange>) {
        let clock = self.clock_ms;
        let hold = self
            .holds
            .get_mut(&hold_id)
            .expect("ending a hold that does not exist");
        assert!(
            hold.status.is_live(),
            "hold {hold_id} ended twice (was {:?})",
            hold.status
        );
        hold.status = status;
        hold.ended_at_ms = Some(clock);
        // Housekeeping pops the expiry entry itself before expiring a hold.
        if status != HoldStatus::Expired {
            let removed = self.expiry.remove(&(hold.expires_at_ms, hold_id));
            assert!(
                removed,
                "live hold {hold_id} was missing from the expiry queue"
            );
        }
        let ev = &mut self.events[hold.event as usize];
        for &seat in &hold.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Held(hold_id),
                "seat {} of {} freed by hold {hold_id} that does not hold it",
                ev.seat_id(seat),
                ev.id
            );
            ev.set_seat(seat, Seat::Available);
            changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Available,
            });
        }
        if let Some((si, count)) = hold.ga {
            ev.counters[si as usize].held -= count;
            changes.push(ga_change(ev, si));
        }
        self.forget.push_back((clock, hold_id));
    }

    fn confirm(&mut self, hold_id: u64, holder: &str, payment_ref: &str, ctx: &mut Ctx) -> Outcome {
        check_text("payment_ref", payment_ref, MAX_PAYMENT_REF_LEN)?;
        self.live_hold(hold_id, holder)?;
        let clock = self.clock_ms;
        let booking_id = self.next_booking_id;
        self.next_booking_id += 1;
        let hold = self.holds.get_mut(&hold_id).expect("checked above");
        hold.status = HoldStatus::Confirmed;
        hold.booking_id = Some(booking_id);
        self.expiry.remove(&(hold.expires_at_ms, hold_id));
        let ev = &mut self.events[hold.event as usize];
        let mut tickets = Vec::new();
        for &seat in &hold.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Held(hold_id),
                "seat {} booked without its hold",
                ev.seat_id(seat)
            );
            ev.set_seat(seat, Seat::Booked(booking_id));
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Booked,
            });
            tickets.push(TicketSeat::Reserved(seat));
        }
        if let Some((si, count)) = hold.ga {
            let c = &mut ev.counters[si as usize];
            c.held -= count;
            c.booked += count;
            for _ in 0..count {
                c.ga_issued += 1;
                tickets.push(TicketSeat::GeneralAdmission(si, c.ga_issued));
            }
            ctx.changes.push(ga_change(ev, si));
        }
        let mut ticket_ids = Vec::with_capacity(tickets.len());
        for seat in tickets {
            let ticket_id = self.next_ticket_id;
            self.next_ticket_id += 1;
            self.tickets.insert(
                ticket_id,
                Ticket {
                    booking_id,
                    seat,
                    issued_at_ms: clock,
                    checked_in_at_ms: None,
                    revoked: false,
                },
            );
            ticket_ids.push(ticket_id);
        }
        let booking = Booking {
            event: hold.event,
            hold_id,
            holder: hold.holder.clone(),
            seats: hold.seats.clone(),
            ga: hold.ga,
            payment_ref: payment_ref.to_string(),
            total_cents: hold.total_cents,
            status: BookingStatus::Confirmed,
            created_at_ms: clock,
            cancelled_at_ms: None,
            tickets: ticket_ids,
        };
        let event = hold.event;
        self.bookings.insert(booking_id, booking);
        if let Some(queue) = self.events[event as usize].queue.as_mut() {
            if let Some(until) = queue.done(holder) {
                self.lapses.remove(&(until, event, holder.to_string()));
            }
        }
        self.push_outbox(OutboxKind::BookingConfirmed, booking_id);
        Ok(Reply::Confirmed(
            self.booking_view(booking_id).expect("just inserted"),
        ))
    }

    fn cancel_booking(&mut self, booking_id: u64, holder: &str, ctx: &mut Ctx) -> Outcome {
        let clock = self.clock_ms;
        let booking = self
            .bookings
            .get_mut(&booking_id)
            .ok_or(BookingError::UnknownBooking { booking_id })?;
        if booking.holder != holder {
            return Err(BookingError::NotOwner);
        }
        if booking.status == BookingStatus::Cancelled {
            return Err(BookingError::BookingCancelled { booking_id });
        }
        booking.status = BookingStatus::Cancelled;
        booking.cancelled_at_ms = Some(clock);
        let ev = &mut self.events[booking.event as usize];
        for &seat in &booking.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Booked(booking_id),
                "seat {} returned by booking {booking_id} that does not own it",
                ev.seat_id(seat)
            );
            ev.set_seat(seat, Seat::Available);
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Available,
            });
        }
        if let Some((si, count)) = booking.ga {
            ev.counters[si as usize].booked -= count;
            ctx.changes.push(ga_change(ev, si));
        }
        for ticket_id in &booking.tickets {
            self.tickets
                .get_mut(ticket_id)
                .expect("a booking's ticket exists")
                .revoked = true;
        }
        let tickets_revoked = booking.tickets.clone();
        self.push_outbox(OutboxKind::BookingCancelled, booking_id);
        Ok(Reply::BookingCancelled {
            booking_id,
            tickets_revoked,
        })
    }

    fn push_outbox(&mut self, kind: OutboxKind, booking_id: u64) {
        let view = self
            .booking_view(booking_id)
            .expect("outbox message for a missing booking");
        let event_name = &self.events[self.bookings[&booking_id].event as usize]
            .spec
            .name;
        let places = match &view.general_admission {
            Some(ga) => format!("{} x general admission {}", ga.count, ga.section),
            None => view.seats.join(", "),
        };
        let text = match kind {
            OutboxKind::BookingConfirmed => format!(
                "Booking {booking_id} confirmed for {event_name}: {places}; total {} cents; tickets {:?}",
                view.total_cents,
                view.tickets.iter().map(|t| t.ticket_id).collect::<Vec<_>>()
            ),
            OutboxKind::BookingCancelled => {
                format!("Booking {booking_id} for {event_name} cancelled: {places}; tickets revoked")
            }
        };
        if self.outbox.len() >= self.settings.outbox_max_entries as usize {
            self.outbox.pop_front();
            self.outbox_dropped += 1;
        }
        let id = self.next_outbox_id;
        self.next_outbox_id += 1;
        self.outbox.push_back(OutboxMessage {
            id,
            kind,
            booking_id,
            event_id: view.event_id,
            holder: view.holder,
            at_ms: self.clock_ms,
            text,
        });
    }

    /// Rebuilds every derived index from the serialized state (after restore).
    pub(crate) fn rebuild_indexes(&mut self) {
        self.dedupe.rebuild();
        for ev in &mut self.events {
            ev.rebuild_indexes();
        }
        self.expiry = self
            .holds
            .iter()
            .filter(|(_, h)| h.status.is_live())
            .map(|(id, h)| (h.expires_at_ms, *id))
            .collect();
        self.lapses.clear();
        self.scheduled_opens.clear();
        self.queue_events.clear();
        for (i, ev) in self.events.iter().enumerate() {
            let i = i as u32;
            if let Some(at) = ev.sale_opens_at_ms {
                self.scheduled_opens.insert((at, i));
            }
            if let Some(queue) = &ev.queue {
                if ev.sale == SaleState::Open {
                    self.queue_events.insert(i);
                }
                for (user, fan) in &queue.fans {
                    if let crate::waiting_room::Fan::Admitted { until_ms } = fan {
                        self.lapses.insert((*until_ms, i, user.clone()));
                    }
                }
            }
        }
    }
}

fn section_index(ev: &Event, section: &str) -> Result<u32, BookingError> {
    ev.layout
        .section_by_id
        .get(section)
        .copied()
        .ok_or_else(|| BookingError::UnknownSection {
            event_id: ev.id.clone(),
            section: section.into(),
        })
}

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

fn check_text(field: &str, value: &str, max_len: usize) -> Result<(), BookingError> {
    if value.is_empty() || value.len() > max_len || value.chars().any(char::is_control) {
        return Err(BookingError::InvalidRequest {
            reason: format!("{field} must be 1..={max_len} bytes without control characters"),
        });
    }
    Ok(())
}

/// The waiting-room shuffle seed: a hash of the event and the log entry that
/// opened the sale, so every replica draws the same order and nobody can
/// pick it by choosing when to join.
fn shuffle_seed(event_id: &str, index: u64, stamp_ms: u64) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"booking/waiting-room-shuffle/v1");
    h.update(&index.to_le_bytes());
    h.update(&stamp_ms.to_le_bytes());
    h.update(event_id.as_bytes());
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
}
