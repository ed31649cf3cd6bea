//! The gateway workload (`--workload gateway-sellout`): fans buy seats
//! through a real `booking gateway` process, over HTTP, like a browser would.
//!
//! Owns, by concept: the gateway process next to the nodes ([`process`]),
//! the fans and their operations with the HTTP-to-history translation
//! ([`fan`]), and the gateway-only checker [`no_unrequested_holds`]
//! ([`check`]).
//!
//! A fan, per logical purchase: signs in as a fresh user `g<process>-<n>`
//! (`POST /v1/sessions`), holds explicit seats (from a small hot set, so fans
//! collide) or best-available seats with an `Idempotency-Key`, then checks
//! out with `tok_ok` (or releases the hold). Each request is retried on 5xx,
//! 429 and timeouts with the SAME key, as a real client does (checkout and
//! release ids are derived from the hold by the gateway). History: `ok` on
//! 2xx, `fail` on a definite 4xx (409, 402, 410, ...; value `{"error": code}`),
//! `info` when the retries ran out on 5xx or timeouts. A fan keeps a few
//! bookings and cancels its oldest beyond that, and after a refusal, so
//! seats keep changing hands for the whole run.
//!
//! The history uses the booking shapes of `booking.rs`; a best-available
//! hold's invoke has `"seats": []` plus `"best_available": <count>`, and its
//! seats are known from its reply on. So the per-seat linearizability check
//! does not apply (the harness skips it for this workload); the sell-out
//! checkers do, plus [`no_unrequested_holds`].
//!
//! Must not: judge results while running, or run unbounded: every fan stops
//! at the deadline, on `stop` or at the operation budget; every request has a
//! timeout and a bounded number of attempts.
//!
//! Caveat: one gateway process; retries across gateways are tested by the
//! root package's `tests/gateway_faults.rs`.

mod check;
mod fan;
pub mod process;

pub use check::{no_unrequested_holds, requests_by_holder, Requested};
pub use fan::{http_client, run, GwShared};
