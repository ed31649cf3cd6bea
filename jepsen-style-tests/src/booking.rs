//! The booking workload's operations, as recorded in `history.jsonl`.
//!
//! Owns: the typed form of a booking history ([`BookingOp`]: a [`BookingCall`]
//! and its [`BookingResult`]), the JSON shapes of their values, the final
//! per-replica seat map ([`ReplicaState`]) the checkers compare against, and
//! decoding from generic history events.
//!
//! `history.jsonl` lines of the booking workloads use `f` ∈ {`hold`,
//! `release`, `confirm`, `cancel`, `read`, `begin_payment`} and these values:
//!
//! | f | invoke value | ok value |
//! | --- | --- | --- |
//! | hold | `{"seats":["A-1-1"],"holder":"p3-17"}` | `{"hold_id":5,"expires_at_ms":61000,"at_ms":1000}` |
//! | release | `{"hold_id":5,"holder":"p3-17","seats":["A-1-1"]}` | `{"at_ms":1200}` |
//! | confirm | `{"hold_id":5,"holder":"p3-17","seats":["A-1-1"]}` | `{"booking_id":9,"hold_expires_at_ms":61000,"at_ms":1300}` |
//! | cancel | `{"booking_id":9,"holder":"p3-17","seats":["A-1-1"]}` | `{"at_ms":1400}` |
//! | read | `{"seat":"A-1-1"}` | `{"seat":{"state":"held","hold_id":5,"holder":"p3-17"},"at_ms":1250}` |
//! | begin_payment | `{"hold_id":5,"holder":"p3-17","seats":["A-1-1"]}` | `{"expires_at_ms":121000}` |
//!
//! A write's invoke value may also carry `"request_id":"<client>:<request>"`,
//! the ids every same-id retry of it resends (`BookingOp::request_id`).
//!
//! A read may also report `{"state":"held_unnamed"}` or
//! `{"state":"booked_unnamed"}` when the store shows only that a seat is
//! taken, not by whom (the harness reads the availability map). The
//! `release` and `cancel` results' `at_ms` is optional: the store's replies
//! to them carry no log time.
//!
//! `at_ms` is the state machine's log time (`clock_ms`) at the apply that
//! decided the operation; `hold_expires_at_ms` is the hold's expiry as that
//! apply saw it (after any extension). A `fail` whose value is
//! `{"error":"<code>","at_ms":…}` is a *refusal* by the state machine (e.g.
//! `seat_unavailable`, `hold_expired`): it did not change anything, but it was
//! decided in log order and so is an observation. A `fail` with any other
//! value (a client-side definite failure) says nothing and is ignored. `info`
//! values are not read.
//!
//! Contract with the workload: `holder` must be unique per hold invocation
//! (e.g. `"p{process}-{n}"`), so a read can name a hold even when the hold's
//! own reply was lost. Must not: judge anything; see `checkers` and
//! `models::seat`.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::history::{self, Event, EventType, Operation};

pub type SeatId = String;
pub type HoldId = u64;
pub type BookingId = u64;

/// The functions of the booking workloads.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BookingF {
    Hold,
    Release,
    Confirm,
    Cancel,
    Read,
    /// `BeginPayment`: an active hold becomes payment-pending, its expiry
    /// pinned to at least log time + the payment window.
    BeginPayment,
}

/// One line of a booking `history.jsonl`.
pub type BookingEvent = Event<BookingF, Value>;

/// Hold these seats for `holder`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HoldArgs {
    pub seats: Vec<SeatId>,
    pub holder: String,
}

/// Release or confirm a hold. `holder` and `seats` repeat what the hold was
/// for, so a checker can place the operation without looking the hold up.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct HoldRef {
    pub hold_id: HoldId,
    pub holder: String,
    pub seats: Vec<SeatId>,
}

/// Cancel a booking (its seats return to inventory).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BookingRef {
    pub booking_id: BookingId,
    pub holder: String,
    pub seats: Vec<SeatId>,
}

/// Read one seat, linearizably.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReadArgs {
    pub seat: SeatId,
}

/// What was asked: the invoke.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BookingCall {
    Hold(HoldArgs),
    Release(HoldRef),
    Confirm(HoldRef),
    Cancel(BookingRef),
    Read(ReadArgs),
    BeginPayment(HoldRef),
}

/// A seat as a read or a replica's final state shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeatView {
    Available,
    Held {
        hold_id: HoldId,
        holder: String,
    },
    Booked {
        booking_id: BookingId,
        hold_id: HoldId,
        holder: String,
    },
    /// Held by a hold the reader cannot name: the store's availability map
    /// shows only `H` per seat. Matches any held state.
    HeldUnnamed,
    /// Booked, owner not named (as `HeldUnnamed`). Matches any booked state.
    BookedUnnamed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Held {
    pub hold_id: HoldId,
    pub expires_at_ms: u64,
    pub at_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Released {
    /// `None` when the server does not report it (the store's `Released`
    /// reply carries no log time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Confirmed {
    pub booking_id: BookingId,
    /// The hold's expiry as the confirming apply saw it; `None` if the server
    /// does not report it (the expiry checker then uses the hold's reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_expires_at_ms: Option<u64>,
    pub at_ms: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cancelled {
    /// `None` when the server does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeatRead {
    pub seat: SeatView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// What an acknowledged `BeginPayment` returned: the hold's new expiry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PaymentBegun {
    pub expires_at_ms: u64,
}

/// A state-machine refusal: the `fail` value that carries a code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Refusal {
    /// The state machine's stable code (`BookingError::code()`).
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// What an `ok` returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BookingRet {
    Held(Held),
    Released(Released),
    Confirmed(Confirmed),
    Cancelled(Cancelled),
    Read(SeatRead),
    PaymentBegun(PaymentBegun),
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BookingResult {
    Ok(BookingRet),
    /// `fail` with a state-machine code: did not happen, but was decided.
    Refused(Refusal),
    /// `fail` without a code: did not happen; nothing else is known.
    Failed,
    /// `info`, or no completion: may have happened at any point after the
    /// invoke, or never.
    Unknown,
}

/// One booking operation, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookingOp {
    /// `history::Operation::id`: position in invoke order.
    pub id: usize,
    pub process: u64,
    pub call: BookingCall,
    pub result: BookingResult,
    pub invoke_ns: u64,
    /// `None` when the outcome is unknown (+infinity for the checkers).
    pub complete_ns: Option<u64>,
    /// The server's log index for the completion, when reported.
    pub index: Option<u64>,
    /// The write's request id (`client_id:request_id`), as the workload
    /// recorded it in the invoke (`request_id` beside the arguments); every
    /// same-id retry of the operation carries it. `None` for reads and for
    /// histories that do not record it.
    pub request_id: Option<String>,
}

/// The final state one replica reports after the faults are healed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub node: String,
    /// Every seat the workload touched (absent seats are taken as unknown,
    /// not as available).
    pub seats: BTreeMap<SeatId, SeatView>,
    /// `BookingState::state_hash()`, hex.
    pub state_hash: String,
    /// The replica does not know the run's event at all, although the setup
    /// created it and the store acknowledged that before the workload began
    /// (then `seats` is empty).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub event_missing: bool,
}

impl BookingCall {
    pub fn f(&self) -> BookingF {
        match self {
            BookingCall::Hold(_) => BookingF::Hold,
            BookingCall::Release(_) => BookingF::Release,
            BookingCall::Confirm(_) => BookingF::Confirm,
            BookingCall::Cancel(_) => BookingF::Cancel,
            BookingCall::Read(_) => BookingF::Read,
            BookingCall::BeginPayment(_) => BookingF::BeginPayment,
        }
    }

    /// The seats the operation touches.
    pub fn seats(&self) -> &[SeatId] {
        match self {
            BookingCall::Hold(a) => &a.seats,
            BookingCall::Release(r) | BookingCall::Confirm(r) | BookingCall::BeginPayment(r) => {
                &r.seats
            }
            BookingCall::Cancel(b) => &b.seats,
            BookingCall::Read(r) => std::slice::from_ref(&r.seat),
        }
    }

    /// The invoke value, for the harness to record.
    pub fn to_value(&self) -> Value {
        let v = match self {
            BookingCall::Hold(a) => serde_json::to_value(a),
            BookingCall::Release(r) | BookingCall::Confirm(r) | BookingCall::BeginPayment(r) => {
                serde_json::to_value(r)
            }
            BookingCall::Cancel(b) => serde_json::to_value(b),
            BookingCall::Read(r) => serde_json::to_value(r),
        };
        v.expect("plain structs always serialise")
    }
}

impl BookingRet {
    /// The `ok` value, for the harness to record.
    pub fn to_value(&self) -> Value {
        let v = match self {
            BookingRet::Held(x) => serde_json::to_value(x),
            BookingRet::Released(x) => serde_json::to_value(x),
            BookingRet::Confirmed(x) => serde_json::to_value(x),
            BookingRet::Cancelled(x) => serde_json::to_value(x),
            BookingRet::Read(x) => serde_json::to_value(x),
            BookingRet::PaymentBegun(x) => serde_json::to_value(x),
        };
        v.expect("plain structs always serialise")
    }

    /// The log time of the apply that decided the operation, if reported.
    pub fn at_ms(&self) -> Option<u64> {
        match self {
            BookingRet::Held(x) => Some(x.at_ms),
            BookingRet::Released(x) => x.at_ms,
            BookingRet::Confirmed(x) => Some(x.at_ms),
            BookingRet::Cancelled(x) => x.at_ms,
            BookingRet::Read(x) => x.at_ms,
            BookingRet::PaymentBegun(_) => None,
        }
    }
}

impl BookingOp {
    pub fn is_ok(&self) -> bool {
        matches!(self.result, BookingResult::Ok(_))
    }

    /// Ok or unknown: it may have taken effect.
    pub fn may_have_happened(&self) -> bool {
        matches!(self.result, BookingResult::Ok(_) | BookingResult::Unknown)
    }
}

/// Whether a hold expiring at `expires_at_ms` has expired at log time `at_ms`.
/// DESIGN §3: a hold made at `t` expires at `t + ttl_ms`, so from that instant
/// on it may no longer be confirmed. The one definition both the seat model
/// and the expiry checker use.
pub fn is_expired(expires_at_ms: u64, at_ms: u64) -> bool {
    at_ms >= expires_at_ms
}

/// Pairs and decodes a booking history.
pub fn decode(events: Vec<BookingEvent>) -> Result<Vec<BookingOp>> {
    history::pair(events)?.iter().map(decode_op).collect()
}

fn value_as<T: DeserializeOwned>(op: usize, what: &str, v: &Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| Error::Decode {
        op,
        reason: format!("{what}: {e}: {v}"),
    })
}

/// Decodes one paired operation.
pub fn decode_op(op: &Operation<BookingF, Value>) -> Result<BookingOp> {
    let id = op.id;
    let call = match op.f {
        BookingF::Hold => BookingCall::Hold(value_as(id, "hold arguments", &op.value)?),
        BookingF::Release => BookingCall::Release(value_as(id, "release arguments", &op.value)?),
        BookingF::Confirm => BookingCall::Confirm(value_as(id, "confirm arguments", &op.value)?),
        BookingF::Cancel => BookingCall::Cancel(value_as(id, "cancel arguments", &op.value)?),
        BookingF::Read => BookingCall::Read(value_as(id, "read arguments", &op.value)?),
        BookingF::BeginPayment => {
            BookingCall::BeginPayment(value_as(id, "begin-payment arguments", &op.value)?)
        }
    };
    let result = match &op.completion {
        None => BookingResult::Unknown,
        Some(c) => match c.kind {
            EventType::Info => BookingResult::Unknown,
            EventType::Fail => match serde_json::from_value::<Refusal>(c.value.clone()) {
                Ok(r) => BookingResult::Refused(r),
                Err(_) => BookingResult::Failed,
            },
            EventType::Ok => {
                let v = &c.value;
                BookingResult::Ok(match op.f {
                    BookingF::Hold => BookingRet::Held(value_as(id, "hold result", v)?),
                    BookingF::Release => BookingRet::Released(value_as(id, "release result", v)?),
                    BookingF::Confirm => BookingRet::Confirmed(value_as(id, "confirm result", v)?),
                    BookingF::Cancel => BookingRet::Cancelled(value_as(id, "cancel result", v)?),
                    BookingF::Read => BookingRet::Read(value_as(id, "read result", v)?),
                    BookingF::BeginPayment => {
                        BookingRet::PaymentBegun(value_as(id, "begin-payment result", v)?)
                    }
                })
            }
            EventType::Invoke => unreachable!("history::pair never completes with an invoke"),
        },
    };
    Ok(BookingOp {
        id,
        process: op.process,
        call,
        result,
        invoke_ns: op.invoke_ns,
        complete_ns: op.known_return_ns(),
        index: op.index(),
        request_id: op
            .value
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        process: u64,
        kind: EventType,
        f: BookingF,
        value: Value,
        time_ns: u64,
    ) -> BookingEvent {
        Event {
            process,
            kind,
            f,
            value,
            time_ns,
            index: None,
        }
    }

    #[test]
    fn decodes_the_documented_shapes() {
        // Goal: the JSON shapes in the module table decode to the intended variants.
        let ops = decode(vec![
            event(
                1,
                EventType::Invoke,
                BookingF::Hold,
                json!({"seats":["A-1-1"],"holder":"p1-1"}),
                1,
            ),
            event(
                1,
                EventType::Ok,
                BookingF::Hold,
                json!({"hold_id":5,"expires_at_ms":61000,"at_ms":1000}),
                2,
            ),
            event(
                2,
                EventType::Invoke,
                BookingF::Hold,
                json!({"seats":["A-1-1"],"holder":"p2-1"}),
                3,
            ),
            event(
                2,
                EventType::Fail,
                BookingF::Hold,
                json!({"error":"seat_unavailable","at_ms":1001}),
                4,
            ),
            event(
                3,
                EventType::Invoke,
                BookingF::Read,
                json!({"seat":"A-1-1"}),
                5,
            ),
            event(
                3,
                EventType::Ok,
                BookingF::Read,
                json!({"seat":{"state":"held","hold_id":5,"holder":"p1-1"}}),
                6,
            ),
            event(
                4,
                EventType::Invoke,
                BookingF::Confirm,
                json!({"hold_id":5,"holder":"p1-1","seats":["A-1-1"]}),
                7,
            ),
            event(
                4,
                EventType::Fail,
                BookingF::Confirm,
                json!("connection refused"),
                8,
            ),
            event(
                5,
                EventType::Invoke,
                BookingF::Cancel,
                json!({"booking_id":9,"holder":"p1-1","seats":["A-1-1"]}),
                9,
            ),
        ])
        .unwrap();
        assert!(matches!(&ops[0].result, BookingResult::Ok(BookingRet::Held(h)) if h.hold_id == 5));
        assert!(
            matches!(&ops[1].result, BookingResult::Refused(r) if r.error == "seat_unavailable")
        );
        assert!(matches!(
            &ops[2].result,
            BookingResult::Ok(BookingRet::Read(SeatRead {
                seat: SeatView::Held { hold_id: 5, .. },
                at_ms: None
            }))
        ));
        assert_eq!(ops[3].result, BookingResult::Failed);
        assert_eq!(
            (ops[4].result.clone(), ops[4].complete_ns),
            (BookingResult::Unknown, None)
        );
        // And the harness-side encoders write what the decoder reads.
        assert_eq!(
            ops[4].call.to_value(),
            json!({"booking_id":9,"holder":"p1-1","seats":["A-1-1"]})
        );
    }

    #[test]
    fn a_result_of_the_wrong_shape_is_an_error() {
        // Goal: an ok hold without a hold id is rejected, not guessed at.
        let err = decode(vec![
            event(
                1,
                EventType::Invoke,
                BookingF::Hold,
                json!({"seats":["A-1-1"],"holder":"p1-1"}),
                1,
            ),
            event(1, EventType::Ok, BookingF::Hold, json!({"at_ms":3}), 2),
        ])
        .unwrap_err();
        assert!(matches!(err, Error::Decode { op: 0, .. }), "{err}");
    }
}
