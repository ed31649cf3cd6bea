//! The booking domain every replica runs: a pure, deterministic state machine.
//!
//! Owns: events and their seats, holds (leases in *log time*), bookings,
//! tickets, the waiting room, exactly-once request dedupe, webhook dedupe,
//! the notification outbox, replicated settings, queries, snapshots and the
//! replica state hash. `BookingState::apply(index, &Batch)` is a pure function
//! of (state, entry).
//!
//! Must not: read a clock, draw randomness, do I/O, depend on an async
//! runtime, or let hash-map iteration order reach results, snapshots or
//! hashes. Time arrives only as `Batch::stamp_ms` (the leader's stamp);
//! randomness only as seeds derived from log entries.
//!
//! Layout:
//! - [`command`]: `Request`, `Batch`, `Command`, `Selection`, `Reply`, `ApplyOutput`, `SeatChange`.
//! - [`query`]: `Query`, `QueryResult`; [`view`]: the read-only shapes they return.
//! - [`spec`]: event definitions (the `POST /v1/events` JSON) and validation,
//!   with the RFC 3339 parser in `spec/rfc3339.rs`; [`limits`]: the bounds.
//! - [`settings`]: replicated tunables changed by `Configure`.
//! - [`error`]: `BookingError` (with `code()`), `SnapshotError`.
//! - `state`: `BookingState`, `apply`, `precheck` and housekeeping, with the
//!   command rules by family in `state/{holds,bookings,sales,queue,service}.rs`
//!   and the derived indexes (never saved) in `state/derived.rs`.
//! - `event`: one event's seats, counters and free-seat index, with the
//!   best-available search in `event/best_available.rs`; `waiting_room`;
//!   `dedupe` (its key index in `key_index`); `snapshot`; `invariants`.
//! - [`forgetting`]: the cut-off a leader names when the exactly-once table
//!   forgets (a node's monotonic samples; pure, driven by its caller).
//!
//! Caveats: see `state` for the time model and the expiry boundary rule
//! (a hold with `expires_at_ms = t` is expired once `clock_ms >= t`), `dedupe`
//! for what happens when the dedupe table is full, `snapshot` for the format.

pub mod command;
mod dedupe;
pub mod error;
mod event;
pub mod forgetting;
mod invariants;
mod key_index;
mod legacy_queue;
pub mod limits;
pub mod query;
pub mod settings;
mod snapshot;
pub mod spec;
mod state;
pub mod view;
mod waiting_room;

pub use command::{
    command_set, ApplyOutput, Batch, Command, GaPlaces, Outcome, Reply, Request, SeatChange,
    SeatStatus, Selection,
};
pub use error::{BookingError, SnapshotError};
pub use query::{Query, QueryResult};
pub use settings::Settings;
pub use snapshot::{SavedCopy, SNAPSHOT_MAGIC, SNAPSHOT_VERSION, SNAPSHOT_VERSION_MIN};
pub use spec::{EventSpec, RowSpec, SectionSpec, WaitingRoomSpec};
pub use state::BookingState;
pub use view::*;
pub use waiting_room::{admit_grace_ms, fan_place, place_of, pre_queue_place, QUEUE_POSITION_MAX};
