//! Bookings (see, cancel with refund) and tickets (see, QR, verify, check in,
//! the public key).
//!
//! Caveat: `POST /v1/tickets/verify` is public: the offline part (the
//! signature) needs only the published key anyway, and the online part says
//! no more than valid / revoked / checked in, never who holds the ticket.
//! Check-in is the scanner's view: the code and the event at the door, with
//! the `booking:scan` scope.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use state_machine::{BookingView, Command, Query, QueryResult, Reply, TicketView};

use super::checkout::booking_json;
use super::{read, submit, submit_first_send, unexpected};
use crate::auth::{Caller, Scanner, User};
use crate::cluster::Consistency;
use crate::ids::{self, step};
use crate::problem::{not_yours_or_missing, ApiJson, ApiPath, Problem};
use crate::tickets::{public_key_b64, qr_svg, sign_code, verify_code, CODE_LEN_MAX};
use crate::{rfc3339_ms, AppState};

/// Reads a booking the caller may see; anybody else's and a missing one
/// answer the same 404.
async fn owned_booking(
    state: &AppState,
    caller: &Caller,
    booking_id: u64,
) -> Result<BookingView, Problem> {
    let answer = read(
        state,
        Query::Booking { booking_id },
        Consistency::Linearizable,
    )
    .await?;
    let view = match answer.result {
        QueryResult::Booking(r) => r?,
        _ => return Err(unexpected("booking query")),
    };
    if !caller.may_see(&view.holder) {
        return Err(not_yours_or_missing());
    }
    Ok(view)
}

async fn ticket(state: &AppState, ticket_id: u64) -> Result<TicketView, Problem> {
    let answer = read(
        state,
        Query::Ticket { ticket_id },
        Consistency::Linearizable,
    )
    .await?;
    match answer.result {
        QueryResult::Ticket(r) => Ok(r?),
        _ => Err(unexpected("ticket query")),
    }
}

async fn owned_ticket(
    state: &AppState,
    caller: &Caller,
    ticket_id: u64,
) -> Result<TicketView, Problem> {
    let view = ticket(state, ticket_id).await?;
    if !caller.may_see(&view.holder) {
        return Err(not_yours_or_missing());
    }
    Ok(view)
}

#[tracing::instrument(skip_all, fields(booking = booking_id))]
pub async fn get_booking(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(booking_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    let view = owned_booking(&state, &caller, booking_id).await?;
    Ok(axum::Json(booking_json(&state, &view)).into_response())
}

#[tracing::instrument(skip_all, fields(booking = booking_id, user = %user.0))]
pub async fn cancel_booking(
    State(state): State<AppState>,
    user: User,
    ApiPath(booking_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    let view = owned_booking(&state, &Caller::User(user.0.clone()), booking_id).await?;
    let ids = (ids::for_booking(booking_id, &user.0), step::CANCEL_BOOKING);
    let revoked = match submit(
        &state,
        ids,
        Command::CancelBookingBefore {
            booking_id,
            holder: user.0,
            cutoff_ms: state.settings.cancel_cutoff_ms,
        },
    )
    .await?
    {
        Reply::BookingCancelled {
            tickets_revoked, ..
        } => tickets_revoked,
        _ => return Err(unexpected("cancel_booking")),
    };
    // Refund after the seats are back: a failed refund is retried by
    // cancelling again (the cancel itself is remembered, the refund is
    // idempotent per charge).
    let refunded = state
        .payments
        .refund(view.payment_ref.clone())
        .await
        .is_ok();
    Ok(axum::Json(json!({
        "booking_id": booking_id,
        "status": "cancelled",
        "refunded": refunded,
        "tickets_revoked": revoked,
        "seats_released": view.seats,
    }))
    .into_response())
}

#[tracing::instrument(skip_all)]
pub async fn public_key(State(state): State<AppState>) -> Response {
    (
        [(CACHE_CONTROL, "public, max-age=3600")],
        axum::Json(json!({
            "algorithm": "Ed25519",
            "public_key": public_key_b64(state.keys.ticket_key()),
            "encoding": "base64url, no padding",
            "code_format": "base64url(payload JSON {v,t,e,s,h,i}) '.' base64url(Ed25519 signature over the payload bytes)",
        })),
    )
        .into_response()
}

fn ticket_json(state: &AppState, t: &TicketView) -> serde_json::Value {
    json!({
        "ticket_id": t.ticket_id,
        "booking_id": t.booking_id,
        "event_id": t.event_id,
        "seat": t.seat,
        "holder": t.holder,
        "issued_at": rfc3339_ms(t.issued_at_ms),
        "checked_in_at": t.checked_in_at_ms.map(rfc3339_ms),
        "revoked": t.revoked,
        "code": sign_code(state.keys.ticket_key(), t),
        "qr_svg": format!("/v1/tickets/{}/qr.svg", t.ticket_id),
    })
}

#[tracing::instrument(skip_all, fields(ticket = ticket_id))]
pub async fn get_ticket(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(ticket_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    let t = owned_ticket(&state, &caller, ticket_id).await?;
    Ok(axum::Json(ticket_json(&state, &t)).into_response())
}

#[tracing::instrument(skip_all, fields(ticket = ticket_id))]
pub async fn ticket_qr(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(ticket_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    let t = owned_ticket(&state, &caller, ticket_id).await?;
    let svg = qr_svg(&sign_code(state.keys.ticket_key(), &t))
        .map_err(|e| Problem::internal(format!("qr: {e}")))?;
    Ok((
        [
            (CONTENT_TYPE, "image/svg+xml"),
            (CACHE_CONTROL, "private, max-age=3600"),
        ],
        svg,
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    code: String,
}

#[tracing::instrument(skip_all)]
pub async fn verify_ticket(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> Result<Response, Problem> {
    if body.code.len() > CODE_LEN_MAX {
        return Err(Problem::unprocessable(
            "invalid_code",
            format!("code: at most {CODE_LEN_MAX} bytes"),
        ));
    }
    let payload = match verify_code(&state.keys.ticket_key().verifying_key(), &body.code) {
        Ok(p) => p,
        Err(e) => {
            return Ok(axum::Json(
                json!({ "valid": false, "signature_valid": false, "reason": e.code() }),
            )
            .into_response())
        }
    };
    // Signature fine: the online half (revocation, check-in).
    let t = match ticket(&state, payload.t).await {
        Ok(t) => t,
        Err(p) if p.status == 404 => {
            return Ok(axum::Json(
                json!({ "valid": false, "signature_valid": true, "reason": "unknown_ticket" }),
            )
            .into_response())
        }
        Err(p) => return Err(p),
    };
    let reason = if t.revoked {
        Some("revoked")
    } else if t.seat != payload.s || t.holder != payload.h || t.event_id != payload.e {
        Some("mismatch")
    } else {
        None
    };
    Ok(axum::Json(json!({
        "valid": reason.is_none(),
        "signature_valid": true,
        "reason": reason,
        "revoked": t.revoked,
        "checked_in": t.checked_in_at_ms.is_some(),
        "ticket": { "ticket_id": t.ticket_id, "event_id": t.event_id, "seat": t.seat },
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckInBody {
    code: String,
}

/// `POST /v1/events/{event_id}/check-in {"code"}`: the door scans a ticket's
/// code. The signature is checked offline first, then the code must be for
/// this event and match the ticket's replicated record, and the ticket
/// checks in once (new ids: a second scan must be refused, not answered
/// from memory).
#[tracing::instrument(skip_all, fields(event = %event_id, ticket = tracing::field::Empty))]
pub async fn check_in(
    State(state): State<AppState>,
    _scanner: Scanner,
    ApiPath(event_id): ApiPath<String>,
    ApiJson(body): ApiJson<CheckInBody>,
) -> Result<Response, Problem> {
    super::check_event_id(&event_id)?;
    let payload =
        verify_code(&state.keys.ticket_key().verifying_key(), &body.code).map_err(|e| {
            Problem::unprocessable(
                "invalid_code",
                format!("the ticket code does not verify ({})", e.code()),
            )
        })?;
    tracing::Span::current().record("ticket", payload.t);
    if payload.e != event_id {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "wrong_event",
            "this ticket is for another event",
        ));
    }
    let t = ticket(&state, payload.t).await?;
    if t.event_id != payload.e || t.seat != payload.s || t.holder != payload.h {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "code_mismatch",
            "the code does not match the ticket's record",
        ));
    }
    match submit_first_send(
        &state,
        Command::CheckIn {
            ticket_id: t.ticket_id,
        },
    )
    .await?
    {
        Reply::CheckedIn {
            ticket_id,
            checked_in_at_ms,
        } => Ok((
            StatusCode::OK,
            axum::Json(json!({
                "ticket_id": ticket_id,
                "event_id": t.event_id,
                "seat": t.seat,
                "checked_in_at": rfc3339_ms(checked_in_at_ms),
            })),
        )
            .into_response()),
        _ => Err(unexpected("check_in")),
    }
}
