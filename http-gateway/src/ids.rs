//! `(client_id, request_id)` for every command the gateway submits.
//!
//! Owns: the two ways of naming a request to the state machine's
//! exactly-once table:
//! - derived ids, when a retry must come to the same result: from a user's
//!   `Idempotency-Key` (`derive(["idem", user, scope, key])`), or from the
//!   hold or booking a payment step belongs to (`derive(["hold", id])`, step
//!   number as request id). They are plain SHA-256 of the inputs, with no
//!   gateway secret, so ANY gateway of the cluster derives the same ids and
//!   gets the remembered outcome. Derived client ids have the top bit set.
//!   Sent as `client::Ids::Derived`: always through the log. The ids of a
//!   hold's or booking's steps include the user who asks, so a stranger's
//!   request can never occupy the owner's ids (the gateway also checks
//!   ownership before it writes anything).
//! - new ids, when a repeat must be judged anew (check-in twice must fail
//!   the second time): a random per-process client id with the top bit
//!   clear, and a counter. Never sent before, so their send is a first send
//!   (the leader may answer a refusal without a log write).
//!
//! Must not: reuse a derived id for a different command: the state machine
//! would answer with the first command's outcome. Scopes keep them apart.
//!
//! Caveat: the state machine remembers outcomes for at least `dedupe_ttl_ms`
//! (15 min by default, by the forgetting leader's monotonic clock and in log
//! time); an idempotency key reused after that may be a new request.

use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const DERIVED_BIT: u64 = 1 << 63;

/// Steps of the payment flow of one hold; the request id of each.
pub mod step {
    pub const BEGIN_PAYMENT: u64 = 1;
    pub const CONFIRM: u64 = 2;
    pub const FAIL_PAYMENT: u64 = 3;
    pub const RELEASE: u64 = 4;
    pub const CANCEL_BOOKING: u64 = 5;
}

/// True for a client id this module derived (a retry must come to the same
/// result, so the request must be named by exactly these ids everywhere);
/// false for new ids ([`NewIds`]).
pub fn is_derived(client_id: u64) -> bool {
    client_id & DERIVED_BIT != 0
}

/// Derived `(client_id, request_id)` of an idempotent user request.
pub fn idempotent(user: &str, scope: &str, key: &str) -> (u64, u64) {
    let client = hash_u64(&[b"idem-client", user.as_bytes()]) | DERIVED_BIT;
    let request = hash_u64(&[
        b"idem-request",
        user.as_bytes(),
        scope.as_bytes(),
        key.as_bytes(),
    ]);
    (client, request)
}

/// Derived client id of everything `user` does to one hold (payment steps,
/// release).
pub fn for_hold(hold_id: u64, user: &str) -> u64 {
    hash_u64(&[b"hold-v2", &hold_id.to_be_bytes(), user.as_bytes()]) | DERIVED_BIT
}

/// Derived client id of everything `user` does to one booking (cancel).
pub fn for_booking(booking_id: u64, user: &str) -> u64 {
    hash_u64(&[b"booking-v2", &booking_id.to_be_bytes(), user.as_bytes()]) | DERIVED_BIT
}

/// Length-prefixed parts, so ("ab","c") and ("a","bc") differ.
fn hash_u64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    h.update(b"booking-gateway-ids-v1");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// New ids, never sent before, for requests that must not be deduplicated
/// against earlier ones.
#[derive(Debug)]
pub struct NewIds {
    client_id: u64,
    next: AtomicU64,
}

impl NewIds {
    pub fn new() -> NewIds {
        let mut bytes = [0u8; 8];
        // Without OS randomness, fall back to the time: uniqueness across
        // gateways is then only probable, which is acceptable for a fallback
        // that should never run.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1);
            bytes = (nanos as u64).to_be_bytes();
        }
        let client_id = (u64::from_be_bytes(bytes) & !DERIVED_BIT).max(1);
        NewIds {
            client_id,
            next: AtomicU64::new(1),
        }
    }

    pub fn next(&self) -> (u64, u64) {
        (self.client_id, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for NewIds {
    fn default() -> Self {
        NewIds::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_scoped() {
        // Goal: the same (user, key) always derives the same ids; other users or scopes differ.
        assert_eq!(
            idempotent("alice", "hold", "k1"),
            idempotent("alice", "hold", "k1")
        );
        assert_ne!(
            idempotent("alice", "hold", "k1"),
            idempotent("bob", "hold", "k1")
        );
        assert_ne!(
            idempotent("alice", "hold", "k1").1,
            idempotent("alice", "queue", "k1").1
        );
        assert!(idempotent("a", "b", "c").0 & DERIVED_BIT != 0);
        let new = NewIds::new();
        assert_eq!(new.next().0 & DERIVED_BIT, 0);
        assert!(is_derived(idempotent("a", "b", "c").0));
        assert!(is_derived(for_hold(7, "a")) && is_derived(for_booking(7, "a")));
        assert_ne!(for_hold(7, "alice"), for_hold(7, "mallory"));
        assert_ne!(for_booking(7, "alice"), for_booking(7, "mallory"));
        assert!(!is_derived(new.next().0));
        assert_ne!(new.next(), new.next());
    }
}
