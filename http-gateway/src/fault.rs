//! Deliberate bugs for `jepsen selftest` (cargo feature `fault-injection-bugs`
//! only; a normal build contains none of this module).
//!
//! Owns: reading [`BUG_ENV`] once at start ([`init_from_env`]) and the flag
//! the handlers consult. The one gateway bug, `gateway-retry-new-id`: when a
//! hold, begin-payment or confirm call to the cluster ends with an unknown or
//! unavailable outcome, the gateway retries it itself with FRESH request ids
//! (see `api::submit`), so a first attempt that did commit is applied again.
//!
//! Must not: change anything unless the variable names a gateway bug. Names
//! of the node's bugs are accepted and ignored (one variable may be set for a
//! whole `booking up`); any other name is refused, so the process exits 2.

use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable that selects a compiled-in bug.
pub const BUG_ENV: &str = "BOOKING_FAULT_BUG";
/// The gateway's bug.
pub const RETRY_NEW_ID: &str = "gateway-retry-new-id";
/// Bugs that live in the node; the gateway runs unbroken with these.
const NODE_BUGS: [&str; 3] = ["stale-local-reads", "ack-without-flush", "clock-in-apply"];
/// Extra attempts (each with fresh ids) the buggy retry makes.
pub const RETRY_NEW_ID_ATTEMPTS_MAX: u32 = 3;
/// Pause before each buggy retry, in ms.
pub const RETRY_NEW_ID_PAUSE_MS: u64 = 200;

static RETRY_NEW_ID_ON: AtomicBool = AtomicBool::new(false);

/// Reads [`BUG_ENV`]; logs `fault-injection bug enabled: <name>` for the
/// gateway's bug. `Err` names an unknown bug (the caller exits 2).
pub fn init_from_env() -> Result<Option<&'static str>, String> {
    let Ok(name) = std::env::var(BUG_ENV) else {
        return Ok(None);
    };
    match name.as_str() {
        RETRY_NEW_ID => {
            RETRY_NEW_ID_ON.store(true, Ordering::Relaxed);
            tracing::warn!("fault-injection bug enabled: {RETRY_NEW_ID}");
            Ok(Some(RETRY_NEW_ID))
        }
        n if NODE_BUGS.contains(&n) => {
            tracing::info!("{BUG_ENV}={n} is a node bug; the gateway runs unbroken");
            Ok(None)
        }
        "" => Ok(None),
        other => Err(format!(
            "{BUG_ENV}={other:?}: unknown bug (gateway: {RETRY_NEW_ID}; node: {})",
            NODE_BUGS.join(", ")
        )),
    }
}

/// Is `gateway-retry-new-id` active?
pub fn retry_new_id() -> bool {
    RETRY_NEW_ID_ON.load(Ordering::Relaxed)
}
