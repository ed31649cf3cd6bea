//! Documented bounds on everything a client can make the state machine store.
//!
//! Owns: the constants that validation checks against. Must not: be read from
//! configuration (they shape the replicated state, so every replica must agree
//! on them without a log entry; tunable limits live in [`crate::Settings`]).
//! Caveat: raising a bound is safe for existing snapshots, lowering one is not
//! (an old event could then fail re-validation, which restore does not redo).

/// The longest a client keeps retrying one request id, across all its
/// attempts (the `client` crate caps `retry_budget_ms` at this). The
/// exactly-once table must remember an outcome longer than any retry can
/// arrive, so `Settings::dedupe_ttl_ms` may not be shorter than
/// [`DEDUPE_TTL_MS_MIN`].
pub const CLIENT_RETRY_BUDGET_MS_MAX: u64 = 30_000;
/// Shortest `dedupe_ttl_ms` `Configure` accepts: twice the client's retry
/// budget, because the budget runs on the client's clock and the TTL in log
/// time, which a leader's clock running fast can advance sooner.
pub const DEDUPE_TTL_MS_MIN: u64 = 2 * CLIENT_RETRY_BUDGET_MS_MAX;

/// Seats (reserved seats plus general-admission capacity) in one event.
pub const MAX_SEATS_PER_EVENT: u32 = 200_000;
/// Seats in one row of a reserved section.
pub const MAX_SEATS_PER_ROW: u32 = 1_000;
/// Rows in one reserved section.
pub const MAX_ROWS_PER_SECTION: u32 = 1_000;
/// Sections in one event.
pub const MAX_SECTIONS_PER_EVENT: usize = 100;
/// Events the store holds; creating one more is refused with `too_many_events`.
pub const MAX_EVENTS: usize = 10_000;
/// Upper bound for an event's `max_seats_per_hold`.
pub const MAX_SEATS_PER_HOLD_LIMIT: u32 = 100;
/// Default `max_seats_per_hold` when the definition omits it.
pub const DEFAULT_MAX_SEATS_PER_HOLD: u32 = 8;
/// Default hold time to live when the definition omits it (10 minutes).
pub const DEFAULT_HOLD_TTL_MS: u64 = 600_000;
/// Bounds of `hold_ttl_ms`: one second to one day.
pub const MIN_HOLD_TTL_MS: u64 = 1_000;
pub const MAX_HOLD_TTL_MS: u64 = 86_400_000;
/// Default waiting-room admission batch.
pub const DEFAULT_ADMIT_BATCH: u32 = 100;
/// Upper bound of a waiting-room admission batch.
pub const MAX_ADMIT_BATCH: u32 = 100_000;
/// Event ids (slugs): 1..=64 characters of `a-z`, `0-9`, `-`, not starting or
/// ending with `-`.
pub const MAX_EVENT_ID_LEN: usize = 64;
/// Section ids and row labels: ASCII letters and digits only (no `-`, which
/// separates the parts of a seat id), 1..=16 characters.
pub const MAX_SECTION_ID_LEN: usize = 16;
pub const MAX_ROW_LABEL_LEN: usize = 16;
/// Names (event, section) and venue: 1..=200 bytes of UTF-8, no control characters.
pub const MAX_NAME_LEN: usize = 200;
/// Holder (user) names, payment references and webhook event ids.
pub const MAX_HOLDER_LEN: usize = 128;
pub const MAX_PAYMENT_REF_LEN: usize = 128;
pub const MAX_WEBHOOK_ID_LEN: usize = 256;
/// Highest price of one seat, in cents (one million currency units): keeps
/// every total of a hold far from u64 overflow.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;
/// Timestamps in event definitions must lie within years 1970..=9999.
pub const MAX_TIMESTAMP_YEAR: i64 = 9999;
