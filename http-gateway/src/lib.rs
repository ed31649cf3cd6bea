//! The public HTTP API (axum): REST under `/v1`, the live seat map over
//! WebSocket, the waiting room, payments with idempotency, signed e-tickets and
//! the seat-map page.
//!
//! Owns: HTTP and the JSON shapes of the public API. Must not: talk to the
//! cluster except through `client`, or keep state that a second gateway would
//! need to agree with.
//!
//! Not written yet: arrives with the gateway issue.
