//! Read-only views returned by queries and by some replies.
//!
//! Owns: the plain data shapes clients see (public seat ids, statuses as
//! enums, times in log milliseconds). Must not: expose internal indexes (dense
//! seat numbers, row bitsets) or anything whose order depends on a hash map.

use serde::{Deserialize, Serialize};

use crate::command::GaPlaces;
use crate::spec::EventSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    NotOpen,
    Open,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    Active,
    PaymentPending,
    Confirmed,
    Released,
    Expired,
}

impl HoldStatus {
    /// Live holds own their seats.
    pub fn is_live(self) -> bool {
        matches!(self, HoldStatus::Active | HoldStatus::PaymentPending)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::PaymentPending => "payment_pending",
            HoldStatus::Confirmed => "confirmed",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    pub hold_id: u64,
    pub event_id: String,
    pub holder: String,
    pub seats: Vec<String>,
    pub general_admission: Option<GaPlaces>,
    pub status: HoldStatus,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub total_cents: u64,
    pub booking_id: Option<u64>,
    /// The charge its payment was begun with (`BeginCharge`), if any.
    #[serde(default)]
    pub charge_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    pub ticket_id: u64,
    pub booking_id: u64,
    pub event_id: String,
    pub holder: String,
    /// `A-12-7`, or `<section>#<n>` for the n-th general-admission place sold in a section.
    pub seat: String,
    pub issued_at_ms: u64,
    pub checked_in_at_ms: Option<u64>,
    /// The booking was cancelled: the ticket is no longer valid.
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingView {
    pub booking_id: u64,
    pub hold_id: u64,
    pub event_id: String,
    pub holder: String,
    pub seats: Vec<String>,
    pub general_admission: Option<GaPlaces>,
    pub payment_ref: String,
    pub total_cents: u64,
    pub status: BookingStatus,
    pub created_at_ms: u64,
    pub cancelled_at_ms: Option<u64>,
    pub tickets: Vec<TicketView>,
}

/// A fan's place in a waiting room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueView {
    pub event_id: String,
    pub user: String,
    /// 1-based place in line among fans not yet admitted; None while the
    /// pre-opening shuffle is pending and once admitted. An upper bound: fans
    /// ahead who left still count until the head of the line passes them.
    pub position: Option<u64>,
    pub admitted: bool,
    /// When the admission lapses (log time); set while admitted.
    pub admitted_until_ms: Option<u64>,
    pub state: FanState,
}

/// A waiting room as the replicated state holds it: enough, with a fan's
/// token (user, position), to say where the fan stands without asking the
/// cluster again (`state_machine::fan_place`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingRoomView {
    pub event_id: String,
    pub admit_batch: u32,
    pub hold_ttl_ms: u64,
    /// Log time of this view.
    pub clock_ms: u64,
    /// Key of the pre-queue order; None until the sale first opens.
    pub seed: Option<[u8; 32]>,
    /// The first position not reserved by any block.
    pub next_position: u64,
    /// Positions `1..=pre_count` were reserved before the opening.
    pub pre_count: u64,
    /// The watermark: places below it are admitted.
    pub admitted_places: u64,
    /// Places below it were admitted by rounds that have lapsed.
    pub lapsed_places: u64,
    /// Live rounds, oldest first: (watermark after the round, lapse time).
    pub rounds: Vec<(u64, u64)>,
    /// Admitted places still shopping.
    pub shopping: u32,
    /// Admitted users who have acted and whose admission is live.
    pub shoppers: u64,
}

/// Where a fan's token stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanPlace {
    /// Joined before the sale opened; the opening fixes the order.
    PendingShuffle,
    /// `ahead`: places in line before this one not yet admitted.
    Waiting {
        ahead: u64,
    },
    Admitted {
        until_ms: u64,
    },
    /// Admitted, and the window passed.
    Lapsed,
    /// Not a position this room handed out.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanState {
    /// Joined before the sale opened; ordered by the shuffle at opening.
    PendingShuffle,
    Waiting,
    Admitted,
    /// Confirmed a booking; the admission ended.
    Done,
    /// The admission window passed.
    Lapsed,
    Left,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSummary {
    pub event_id: String,
    pub name: String,
    pub venue: String,
    pub starts_at: String,
    pub sale: SaleState,
    pub capacity: u32,
    pub available: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// The definition as created (with the derived id filled in).
    pub spec: EventSpec,
    pub sale: SaleState,
    pub created_index: u64,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    /// Fans waiting (incl. pending shuffle) and admitted-and-shopping, if the
    /// event has a waiting room.
    pub queue_waiting: Option<u64>,
    pub queue_shopping: Option<u32>,
}

/// Seat states of an event as of `applied_index` / `clock_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityView {
    pub event_id: String,
    pub applied_index: u64,
    pub clock_ms: u64,
    pub sale: SaleState,
    pub sections: Vec<SectionAvailability>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionAvailability {
    pub section: String,
    pub general_admission: bool,
    pub price_cents: u64,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    /// Reserved sections only, in definition order.
    pub rows: Vec<RowAvailability>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowAvailability {
    pub label: String,
    /// One character per seat, seat 1 first: `.` available, `H` held, `B` booked.
    pub states: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    BookingConfirmed,
    BookingCancelled,
}

/// A notification (e-mail/SMS shaped) waiting to be delivered at least once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxMessage {
    /// Increasing; `AckOutbox { up_to }` removes every id <= up_to.
    pub id: u64,
    pub kind: OutboxKind,
    pub booking_id: u64,
    pub event_id: String,
    pub holder: String,
    pub at_ms: u64,
    /// Human text: event name, seats, total.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub applied_index: u64,
    pub clock_ms: u64,
    pub events: u64,
    pub holds_live: u64,
    pub holds_remembered: u64,
    pub bookings: u64,
    pub tickets: u64,
    pub dedupe_entries: u64,
    pub webhook_entries: u64,
    pub outbox_len: u64,
    pub outbox_dropped: u64,
    pub next_deadline_ms: Option<u64>,
}
