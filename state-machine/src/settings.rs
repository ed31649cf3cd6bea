//! Replicated settings, changed only through the `Configure` command.
//!
//! Owns: the tunables that shape decisions (payment window, dedupe bounds,
//! hold extension cap, retention of finished holds, outbox and waiting-room
//! bounds), their defaults in one place, and their validation. Must not: be
//! read from a local file by the state machine (every replica must decide with
//! the same values, so they travel through the log). Caveat: a change applies
//! from the entry that carries it on; existing holds keep their expiry.

use serde::{Deserialize, Serialize};

/// Replicated tunables. `#[serde(default)]`, so `Configure` may send only the
/// fields it changes from the defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// How long `BeginPayment` pins a hold: expiry becomes `clock_ms + this`.
    pub payment_window_ms: u64,
    /// How long the result of a `(client_id, request_id)` is remembered for
    /// deduplication: at least this long by the forgetting leader's
    /// monotonic clock *and* in log time (see `crate::forgetting`).
    pub dedupe_ttl_ms: u64,
    /// At most this many remembered results. Never reached by eviction:
    /// when the table holds this many live results, new requests are
    /// refused as `overloaded` (nothing applied) until some are a TTL old.
    pub dedupe_max_entries: u32,
    /// Extension cap: `ExtendHold` never moves a hold's expiry past
    /// `created_at_ms + max_hold_lifetime_ttls × hold_ttl_ms`.
    pub max_hold_lifetime_ttls: u32,
    /// Released and expired holds are forgotten this long after they ended;
    /// a later `Confirm` of a forgotten hold still answers `hold_expired`.
    pub hold_retention_ms: u64,
    /// At most this many undelivered outbox messages; when full, the oldest
    /// is dropped (counted in `Status::outbox_dropped`) so sales never stop
    /// because a notification sink is down.
    pub outbox_max_entries: u32,
    /// Payment-provider webhook event ids are remembered this long.
    pub webhook_dedupe_ttl_ms: u64,
    /// At most this many remembered webhook ids; when full, the oldest goes.
    pub webhook_dedupe_max_entries: u32,
    /// Most positions one `ReserveQueueBlock` may reserve. (Formerly the
    /// per-fan bound `queue_max_fans`; the waiting room keeps no record per
    /// fan now, and the field keeps its place in the encoding.)
    pub queue_block_max: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            payment_window_ms: 120_000,
            dedupe_ttl_ms: 900_000,
            // Sized in ARCHITECTURE.md "Exactly-once": a flash sale at the
            // measured peak of logged commands for a whole TTL fits.
            dedupe_max_entries: 4_000_000,
            max_hold_lifetime_ttls: 2,
            hold_retention_ms: 3_600_000,
            outbox_max_entries: 100_000,
            webhook_dedupe_ttl_ms: 3 * 86_400_000,
            webhook_dedupe_max_entries: 100_000,
            queue_block_max: 100_000,
        }
    }
}

impl Settings {
    /// Refuses values that would make the system unsafe or unbounded; the
    /// message names the field and its allowed range.
    pub fn validate(&self) -> Result<(), String> {
        fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(format!("{field}: {v} is outside {lo}..={hi}"))
            }
        }
        range(
            "payment_window_ms",
            self.payment_window_ms,
            1_000,
            3_600_000,
        )?;
        // Never shorter than a client may retry one request id: a retry that
        // outlives its remembered outcome would apply a second time.
        range(
            "dedupe_ttl_ms",
            self.dedupe_ttl_ms,
            crate::limits::DEDUPE_TTL_MS_MIN,
            7 * 86_400_000,
        )?;
        range(
            "dedupe_max_entries",
            self.dedupe_max_entries as u64,
            1,
            10_000_000,
        )?;
        range(
            "max_hold_lifetime_ttls",
            self.max_hold_lifetime_ttls as u64,
            1,
            10,
        )?;
        range(
            "hold_retention_ms",
            self.hold_retention_ms,
            0,
            7 * 86_400_000,
        )?;
        range(
            "outbox_max_entries",
            self.outbox_max_entries as u64,
            1,
            10_000_000,
        )?;
        range(
            "webhook_dedupe_ttl_ms",
            self.webhook_dedupe_ttl_ms,
            1_000,
            30 * 86_400_000,
        )?;
        range(
            "webhook_dedupe_max_entries",
            self.webhook_dedupe_max_entries as u64,
            1,
            10_000_000,
        )?;
        range(
            "queue_block_max",
            self.queue_block_max as u64,
            1,
            100_000_000,
        )?;
        Ok(())
    }
}
