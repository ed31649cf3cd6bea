//! The one error enum of the booking domain, and the snapshot error.
//!
//! Owns: every way a command or query can be refused, with a stable
//! snake_case `code()` that the gateway maps to HTTP problems and the client
//! maps to retry decisions. Must not: know HTTP or gRPC (conversion happens in
//! `raft-node`, `client` and `http-gateway`). Caveat: codes are part of the
//! public API and of replicated dedupe results; never rename one, only add.

use serde::{Deserialize, Serialize};

/// Why a command or a lookup was refused. Every refusal is a value: nothing a
/// client sends makes `apply` panic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum BookingError {
    /// The event definition breaks a rule; `reason` names the field and the rule.
    #[error("invalid event definition: {reason}")]
    InvalidEvent { reason: String },
    /// An event with this id already exists.
    #[error("event {event_id} already exists")]
    EventExists { event_id: String },
    /// The store already holds `limits::MAX_EVENTS` events.
    #[error("the store holds the maximum number of events ({max})")]
    TooManyEvents { max: u64 },
    #[error("unknown event {event_id}")]
    UnknownEvent { event_id: String },
    #[error("unknown section {section} in event {event_id}")]
    UnknownSection { event_id: String, section: String },
    /// A seat id that does not parse or does not exist in the event.
    #[error("unknown seat {seat}")]
    UnknownSeat { seat: String },
    /// The section is general admission but seats were named, or the reverse.
    #[error("section {section} is {actual}, not usable for this selection")]
    WrongSectionKind { section: String, actual: String },
    /// A malformed request that is not about the event: empty selection, zero
    /// count, a seat listed twice, an over-long name.
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },
    /// Some of the listed seats are held or booked; nothing was held.
    #[error("seats unavailable: {}", seats.join(", "))]
    SeatUnavailable { seats: Vec<String> },
    /// Best-available or general admission could not find `requested` seats.
    #[error("not enough seats: requested {requested}, available {available}")]
    NotEnoughSeats { requested: u32, available: u32 },
    #[error("too many seats: requested {requested}, at most {max} per hold")]
    TooManySeats { requested: u32, max: u32 },
    /// The event's sale is not open (not yet, or closed).
    #[error("sale of event {event_id} is not open")]
    SaleNotOpen { event_id: String },
    /// The event has a waiting room and this holder is not admitted (never,
    /// not yet, or the admission lapsed).
    #[error("{holder} is not admitted to event {event_id}")]
    NotAdmitted { event_id: String, holder: String },
    #[error("unknown hold {hold_id}")]
    UnknownHold { hold_id: u64 },
    /// The hold, booking or ticket belongs to somebody else.
    #[error("not the owner")]
    NotOwner,
    /// The hold expired or was released: its seats may be someone else's now.
    /// The gateway refunds a payment that arrives for such a hold.
    #[error("hold {hold_id} expired or was released")]
    HoldExpired { hold_id: u64 },
    /// The hold is in a state that does not allow this command (e.g. extending
    /// a hold whose payment is in flight).
    #[error("hold {hold_id} is {status}, not allowed here")]
    HoldNotActive { hold_id: u64, status: String },
    /// The hold was already confirmed into `booking_id`.
    #[error("hold {hold_id} already confirmed as booking {booking_id}")]
    AlreadyConfirmed { hold_id: u64, booking_id: u64 },
    /// Extending would pass the cap (`Settings::max_hold_lifetime_ttls` × ttl
    /// after the hold was made).
    #[error("hold {hold_id} cannot be extended past {max_expires_at_ms}")]
    ExtendLimitReached {
        hold_id: u64,
        max_expires_at_ms: u64,
    },
    #[error("unknown booking {booking_id}")]
    UnknownBooking { booking_id: u64 },
    #[error("booking {booking_id} is cancelled")]
    BookingCancelled { booking_id: u64 },
    #[error("unknown ticket {ticket_id}")]
    UnknownTicket { ticket_id: u64 },
    /// The ticket's booking was cancelled.
    #[error("ticket {ticket_id} is revoked")]
    TicketRevoked { ticket_id: u64 },
    #[error("ticket {ticket_id} already checked in at {checked_in_at_ms}")]
    AlreadyCheckedIn {
        ticket_id: u64,
        checked_in_at_ms: u64,
    },
    #[error("event {event_id} has no waiting room")]
    NoWaitingRoom { event_id: String },
    #[error("{user} is not in the waiting room of {event_id}")]
    NotInQueue { event_id: String, user: String },
    /// The waiting room handed out every position it may
    /// (`QUEUE_POSITION_MAX`): a capacity limit of the system.
    #[error("the waiting room of {event_id} is full")]
    QueueFull { event_id: String },
    #[error("invalid settings: {reason}")]
    InvalidSettings { reason: String },
    /// The hold's payment was not begun with this charge and amount (or not
    /// begun at all): a payment completes only the hold it was begun for.
    #[error("hold {hold_id} has no payment begun with this charge and amount")]
    ChargeMismatch { hold_id: u64 },
    /// The booking can no longer be cancelled: a ticket checked in, or the
    /// event starts within the cancellation cutoff.
    #[error("booking {booking_id} can no longer be cancelled: {reason}")]
    CancelClosed { booking_id: u64, reason: String },
    /// The request id was first used for a different command; nothing was
    /// applied and the first outcome stands.
    #[error("request ({client_id}, {request_id}) was first used for a different command")]
    RequestReused { client_id: u64, request_id: u64 },
    /// The exactly-once table holds `Settings::dedupe_max_entries` outcomes,
    /// all still inside their TTL: remembering one more would mean forgetting
    /// a live one, so nothing was applied. A capacity limit of the system,
    /// not the caller's fault; the node answers it as `overloaded` (not
    /// applied, retryable under the same ids).
    #[error("overloaded: {reason}")]
    Overloaded { reason: String },
    /// The holder was admitted and the admission's window (`hold_ttl_ms`
    /// after its round) has passed; join again for a new place.
    #[error("the admission of {holder} to event {event_id} has lapsed")]
    AdmissionLapsed { event_id: String, holder: String },
}

impl BookingError {
    /// Stable snake_case code, the same as the serde variant name.
    pub fn code(&self) -> &'static str {
        use BookingError::*;
        match self {
            InvalidEvent { .. } => "invalid_event",
            EventExists { .. } => "event_exists",
            TooManyEvents { .. } => "too_many_events",
            UnknownEvent { .. } => "unknown_event",
            UnknownSection { .. } => "unknown_section",
            UnknownSeat { .. } => "unknown_seat",
            WrongSectionKind { .. } => "wrong_section_kind",
            InvalidRequest { .. } => "invalid_request",
            SeatUnavailable { .. } => "seat_unavailable",
            NotEnoughSeats { .. } => "not_enough_seats",
            TooManySeats { .. } => "too_many_seats",
            SaleNotOpen { .. } => "sale_not_open",
            NotAdmitted { .. } => "not_admitted",
            UnknownHold { .. } => "unknown_hold",
            NotOwner => "not_owner",
            HoldExpired { .. } => "hold_expired",
            HoldNotActive { .. } => "hold_not_active",
            AlreadyConfirmed { .. } => "already_confirmed",
            ExtendLimitReached { .. } => "extend_limit_reached",
            UnknownBooking { .. } => "unknown_booking",
            BookingCancelled { .. } => "booking_cancelled",
            UnknownTicket { .. } => "unknown_ticket",
            TicketRevoked { .. } => "ticket_revoked",
            AlreadyCheckedIn { .. } => "already_checked_in",
            NoWaitingRoom { .. } => "no_waiting_room",
            NotInQueue { .. } => "not_in_queue",
            QueueFull { .. } => "queue_full",
            InvalidSettings { .. } => "invalid_settings",
            ChargeMismatch { .. } => "charge_mismatch",
            CancelClosed { .. } => "cancel_closed",
            RequestReused { .. } => "request_reused",
            Overloaded { .. } => "overloaded",
            AdmissionLapsed { .. } => "admission_lapsed",
        }
    }

    /// True when the caller can fix the request (a 4xx); false when the
    /// refusal comes from a capacity limit of the system (retry later).
    /// Every refusal is definite: the command did not change state.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            BookingError::QueueFull { .. }
                | BookingError::TooManyEvents { .. }
                | BookingError::Overloaded { .. }
        )
    }
}

/// Why `BookingState::restore` refused a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot too short: {len} bytes")]
    TooShort { len: usize },
    #[error("bad snapshot magic (not a booking state snapshot)")]
    BadMagic,
    #[error("unsupported snapshot version {found} (this build reads {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("snapshot length field says {declared} payload bytes, found {actual}")]
    LengthMismatch { declared: u64, actual: u64 },
    #[error("snapshot checksum mismatch (corrupt or truncated)")]
    ChecksumMismatch,
    #[error("snapshot payload does not decode: {0}")]
    Decode(String),
    /// The payload decoded but breaks an invariant: written by a buggy build.
    #[error("snapshot state breaks an invariant: {0}")]
    Invariant(String),
}
