//! What goes into the log and what comes out of `apply`.
//!
//! Owns: [`Request`], [`Batch`] (one Raft entry's payload), [`Command`] and its
//! [`Selection`], the success values [`Reply`], and the per-entry
//! [`ApplyOutput`] with its [`SeatChange`] feed. Must not: carry anything a
//! replica could compute differently (no local time, no random ids): ids are
//! assigned in apply, time comes from `Batch::stamp_ms`.
//! Caveat: these types are stored in the Raft log; add fields only with
//! `#[serde(default)]` and variants only at the end, or old logs stop decoding
//! under postcard.

use serde::{Deserialize, Serialize};

use crate::error::BookingError;
use crate::settings::Settings;
use crate::spec::EventSpec;
use crate::view::{BookingView, QueueView};

/// One client command with its exactly-once key. `client_id == 0` means "no
/// dedupe" (the leader's own `Tick`s use it); any other value is remembered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client_id: u64,
    pub request_id: u64,
    pub command: Command,
}

/// The payload of one Raft log entry: the leader's stamp and the commands it
/// batched. The state machine moves its clock to `max(clock_ms, stamp_ms)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub stamp_ms: u64,
    pub requests: Vec<Request>,
}

/// How a `Hold` picks seats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Choose-your-seat: exactly these seats (`A-12-7`), all or nothing.
    Seats(Vec<String>),
    /// `count` adjacent seats in one row: best rows (sections and rows in
    /// definition order, first = best) and centre first, avoiding single
    /// orphan seats; with `allow_non_adjacent`, falls back to the best
    /// `count` free seats anywhere in scope.
    BestAvailable {
        count: u32,
        #[serde(default)]
        section: Option<String>,
        #[serde(default)]
        allow_non_adjacent: bool,
    },
    /// `count` places in a general-admission section.
    GeneralAdmission { section: String, count: u32 },
}

/// Every command of DESIGN §3. `holder`/`user` is the authenticated user name
/// the gateway vouches for; ownership checks compare it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    CreateEvent(EventSpec),
    /// Opens the sale (idempotent). The first opening shuffles the fans who
    /// joined the waiting room before it, seeded from this entry.
    OpenSale {
        event_id: String,
    },
    /// Closes the sale (idempotent): no new holds; existing holds may still pay.
    CloseSale {
        event_id: String,
    },
    Hold {
        event_id: String,
        holder: String,
        selection: Selection,
    },
    /// Moves an active hold's expiry to `clock_ms + hold_ttl_ms`, capped.
    ExtendHold {
        hold_id: u64,
        holder: String,
    },
    Release {
        hold_id: u64,
        holder: String,
    },
    /// Active → PaymentPending; expiry becomes `clock_ms + payment_window_ms`.
    BeginPayment {
        hold_id: u64,
        holder: String,
    },
    /// Active or PaymentPending → Confirmed: creates a booking and its tickets.
    Confirm {
        hold_id: u64,
        holder: String,
        payment_ref: String,
    },
    /// The payment failed: the hold is released and its seats return.
    FailPayment {
        hold_id: u64,
        holder: String,
    },
    CancelBooking {
        booking_id: u64,
        holder: String,
    },
    /// Marks a ticket as used (door staff; no owner check). Once only.
    CheckIn {
        ticket_id: u64,
    },
    /// Retired (one log write per fan): answered `invalid_request`. Kept so
    /// old logs decode; joining is `ReserveQueueBlock` plus a gateway token.
    JoinQueue {
        event_id: String,
        user: String,
    },
    /// Ends the user's live admission (they give up shopping; the place goes
    /// to the next fan). A fan who has not held yet just drops the token.
    LeaveQueue {
        event_id: String,
        user: String,
    },
    /// Remembers a payment provider's webhook event id; replies whether it is new.
    RecordWebhook {
        webhook_id: String,
    },
    /// Drops outbox messages with `id <= up_to` (they were delivered).
    AckOutbox {
        up_to: u64,
    },
    Configure(Settings),
    /// Advances log time only; the due work (expiries, lapses, admissions,
    /// scheduled sale openings) runs at the start of every entry anyway.
    Tick,
    /// Active → PaymentPending, bound to the charge the gateway began for
    /// this hold: `amount_cents` must be the hold's total. Expiry as
    /// `BeginPayment`. Repeating it with the same charge is a no-op success;
    /// another charge is refused (`charge_mismatch`).
    BeginCharge {
        hold_id: u64,
        holder: String,
        charge_id: String,
        amount_cents: u64,
    },
    /// PaymentPending with exactly this charge and amount → Confirmed. The
    /// only confirm the gateway sends: a payment can complete only the hold
    /// it was begun for.
    ConfirmCharge {
        hold_id: u64,
        holder: String,
        charge_id: String,
        amount_cents: u64,
    },
    /// `CancelBooking`, refused from `cutoff_ms` before the event starts
    /// (log time), as well as after any of its tickets checked in.
    CancelBookingBefore {
        booking_id: u64,
        holder: String,
        cutoff_ms: u64,
    },
    /// Forgets remembered request outcomes recorded at a log time below
    /// `before_ms` that are also `dedupe_ttl_ms` old in log time. Proposed
    /// only by a leader, which picks `before_ms` by its own monotonic clock
    /// (`crate::forgetting`), so no clock jump can make an outcome be
    /// forgotten inside its TTL. The only way the exactly-once table shrinks.
    ForgetRequests {
        before_ms: u64,
    },
    /// Reserves `count` consecutive positions of a waiting room for one
    /// gateway, which hands them out to joining fans in signed tokens: one
    /// log write per block, none per fan. `count` is at most
    /// `Settings::queue_block_max`.
    ReserveQueueBlock {
        event_id: String,
        count: u32,
    },
    /// A `Hold` on an event with a waiting room, presenting the position of
    /// the holder's queue token (the gateway verified its signature and that
    /// it names this holder and event).
    HoldQueued {
        event_id: String,
        holder: String,
        selection: Selection,
        queue_position: u64,
    },
}

impl Command {
    /// True for commands whose loss changes nothing a client asked for (a
    /// `Tick`): the leader may drop them under load or after a term change.
    pub fn is_read_only_safe_to_drop(&self) -> bool {
        matches!(self, Command::Tick | Command::ForgetRequests { .. })
    }

    /// The command set that first held this command ([`command_set`]): a
    /// leader proposes it only when every member reports at least this set.
    pub fn command_set(&self) -> u32 {
        match self {
            Command::ForgetRequests { .. } => command_set::FORGET_REQUESTS,
            Command::ReserveQueueBlock { .. } | Command::HoldQueued { .. } => {
                command_set::BLOCK_WAITING_ROOM
            }
            _ => command_set::BASE,
        }
    }

    /// Short lower-case name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateEvent(_) => "create_event",
            Command::OpenSale { .. } => "open_sale",
            Command::CloseSale { .. } => "close_sale",
            Command::Hold { .. } => "hold",
            Command::ExtendHold { .. } => "extend_hold",
            Command::Release { .. } => "release",
            Command::BeginPayment { .. } => "begin_payment",
            Command::Confirm { .. } => "confirm",
            Command::FailPayment { .. } => "fail_payment",
            Command::CancelBooking { .. } => "cancel_booking",
            Command::CheckIn { .. } => "check_in",
            Command::JoinQueue { .. } => "join_queue",
            Command::LeaveQueue { .. } => "leave_queue",
            Command::RecordWebhook { .. } => "record_webhook",
            Command::AckOutbox { .. } => "ack_outbox",
            Command::Configure(_) => "configure",
            Command::Tick => "tick",
            Command::BeginCharge { .. } => "begin_charge",
            Command::ConfirmCharge { .. } => "confirm_charge",
            Command::CancelBookingBefore { .. } => "cancel_booking_before",
            Command::ForgetRequests { .. } => "forget_requests",
            Command::ReserveQueueBlock { .. } => "reserve_queue_block",
            Command::HoldQueued { .. } => "hold_queued",
        }
    }
}

/// The command sets, numbered in the order they came: the version handshake
/// of rolling upgrades (ARCHITECTURE.md "Rolling upgrades and new log
/// commands"). A node reports the highest set it applies ([`CURRENT`]); a
/// leader proposes a command only when every member of the cluster reports
/// at least the command's set ([`Command::command_set`]), so an older binary
/// never meets an entry it cannot decode.
///
/// Adding a command: give it the next number, make it [`CURRENT`], and keep
/// every older number as it is.
pub mod command_set {
    /// Everything before cluster time.
    pub const BASE: u32 = 1;
    /// `ForgetRequests` (cluster time, the exactly-once table's forgetting).
    pub const FORGET_REQUESTS: u32 = 2;
    /// `ReserveQueueBlock` and `HoldQueued` (the waiting room in blocks).
    pub const BLOCK_WAITING_ROOM: u32 = 3;
    /// The highest set this build applies.
    pub const CURRENT: u32 = BLOCK_WAITING_ROOM;
    /// What a leader assumes of a member that reports no set (a build from
    /// before the handshake, whose `Clock` reply lacks the field) or that it
    /// has not heard from yet: the set of the last build without the
    /// handshake. Builds older than that are covered by the operator's rule
    /// instead (finish a rolling upgrade within `dedupe_ttl_ms`).
    pub const ASSUMED_UNREPORTED: u32 = BLOCK_WAITING_ROOM;
}

/// The success value of each command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    EventCreated {
        event_id: String,
    },
    /// `fans_shuffled`: pre-opening waiting-room fans ordered by this opening.
    SaleOpened {
        event_id: String,
        fans_shuffled: u64,
    },
    SaleClosed {
        event_id: String,
    },
    /// `seats` lists reserved seat ids; for general admission it is empty and
    /// `general_admission` names the section and count.
    Held {
        hold_id: u64,
        event_id: String,
        seats: Vec<String>,
        general_admission: Option<GaPlaces>,
        expires_at_ms: u64,
        total_cents: u64,
    },
    HoldExtended {
        hold_id: u64,
        expires_at_ms: u64,
    },
    Released {
        hold_id: u64,
    },
    PaymentBegun {
        hold_id: u64,
        expires_at_ms: u64,
    },
    Confirmed(BookingView),
    PaymentFailed {
        hold_id: u64,
    },
    BookingCancelled {
        booking_id: u64,
        tickets_revoked: Vec<u64>,
    },
    CheckedIn {
        ticket_id: u64,
        checked_in_at_ms: u64,
    },
    /// Retired with `JoinQueue`; kept so remembered outcomes decode.
    QueueJoined {
        queue: QueueView,
        already_joined: bool,
    },
    QueueLeft {
        event_id: String,
    },
    WebhookRecorded {
        new: bool,
    },
    OutboxAcked {
        removed: u64,
    },
    Configured,
    Ticked {
        clock_ms: u64,
    },
    /// `ForgetRequests`: how many remembered outcomes were dropped.
    RequestsForgotten {
        removed: u64,
    },
    /// Positions `first_position..first_position + count` are the caller's
    /// to hand out; `opened`: the sale had opened (they are first come,
    /// first served) or not (they join the pre-queue).
    QueueBlock {
        event_id: String,
        first_position: u64,
        count: u32,
        opened: bool,
    },
}

/// A general-admission quantity in one section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaPlaces {
    pub section: String,
    pub count: u32,
}

/// What one request came to: its reply, or why it was refused.
pub type Outcome = Result<Reply, BookingError>;

/// The state of one seat as the live seat map shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatStatus {
    Available,
    Held,
    Booked,
    /// A general-admission section's counters after the change.
    GeneralAdmission {
        capacity: u32,
        held: u32,
        sold: u32,
    },
}

/// One seat (or GA section counter) whose state an applied command changed,
/// in apply order. A seat may appear more than once in one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatChange {
    pub event_id: String,
    /// `A-12-7`, or the section id for general admission.
    pub seat: String,
    pub state: SeatStatus,
}

/// The result of applying one entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyOutput {
    /// One per request, in the batch's order.
    pub outcomes: Vec<Outcome>,
    /// One per outcome: the log index of the entry that decided it. This
    /// entry's index, except for a deduplicated retry, whose remembered
    /// outcome came from an earlier entry: that entry's index (or this one's
    /// when it is not known: remembered in a format-1 snapshot).
    pub indexes: Vec<u64>,
    /// Seat changes caused by this entry: expiries at its start, then each
    /// command's effects.
    pub changes: Vec<SeatChange>,
}
