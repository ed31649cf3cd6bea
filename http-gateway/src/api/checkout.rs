//! Checkout and the payment webhook.
//!
//! The checkout flow of one hold (every step's ids are derived from the hold
//! and its owner, so a retry through any gateway gets the remembered outcomes):
//! 1. The provider names the charge (idempotency key `hold-<id>`; no money
//!    moves), and `BeginCharge` pins the hold for the payment window, bound
//!    to that charge and the hold's total.
//! 2. Charge the provider, retrying transient failures up to
//!    `payment_attempts_max` with doubling backoff.
//! 3. Success → `ConfirmCharge` with the charge and amount (201 with
//!    tickets). If the hold lapsed meanwhile it answers `hold_expired`, and a
//!    charge that is not the one begun answers `charge_mismatch`: either way
//!    the charge is refunded (410 / 409). Decline or exhausted retries →
//!    `FailPayment` (402; seats released). Pending → 202; the webhook
//!    finishes it.
//!
//! Webhooks: the signature is checked; the charge must be the one begun for
//! the named hold (and the state machine checks the amount too); the effect
//! is applied (idempotent by derived ids), and only then the event id is
//! recorded with `RecordWebhook`, so a redelivery after a failure is not
//! mistaken for a duplicate.
//!
//! Must not: create or release holds (that is [`super::holds`]).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use state_machine::{BookingView, Command, Query, QueryResult, Reply};

use super::holds::owned_hold;
use super::{read, submit, submit_first_send, unexpected};
use crate::auth::{Caller, User};
use crate::cluster::Consistency;
use crate::ids::{self, step};
use crate::payments::{verify_webhook, ChargeRequest, ChargeResult, PaymentError, WebhookEvent};
use crate::problem::{ApiJson, ApiPath, Problem};
use crate::tickets::sign_code;
use crate::{rfc3339_ms, unix_now_s, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    payment_method: String,
}

/// The checkout answer: the booking with a signed code per ticket.
pub(crate) fn booking_json(state: &AppState, booking: &BookingView) -> Value {
    let tickets: Vec<Value> = booking
        .tickets
        .iter()
        .map(|t| {
            json!({
                "ticket_id": t.ticket_id,
                "seat": t.seat,
                "code": sign_code(state.keys.ticket_key(), t),
                "checked_in": t.checked_in_at_ms.is_some(),
                "revoked": t.revoked,
            })
        })
        .collect();
    json!({
        "booking_id": booking.booking_id,
        "hold_id": booking.hold_id,
        "event_id": booking.event_id,
        "seats": booking.seats,
        "general_admission": booking.general_admission,
        "total_cents": booking.total_cents,
        "status": booking.status,
        "created_at": rfc3339_ms(booking.created_at_ms),
        "cancelled_at": booking.cancelled_at_ms.map(rfc3339_ms),
        "tickets": tickets,
    })
}

/// The payment idempotency key of a hold.
pub(crate) fn payment_key(hold_id: u64) -> String {
    format!("hold-{hold_id}")
}

#[tracing::instrument(skip_all, fields(hold = hold_id, user = %user.0))]
pub async fn checkout(
    State(state): State<AppState>,
    user: User,
    ApiPath(hold_id): ApiPath<u64>,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, Problem> {
    if body.payment_method.is_empty()
        || body.payment_method.len() > crate::payments::PAYMENT_METHOD_LEN_MAX
    {
        return Err(Problem::unprocessable(
            "invalid_payment_method",
            "payment_method: 1..=64 characters",
        ));
    }
    state
        .payments
        .validate_method(&body.payment_method)
        .map_err(payment_unavailable)?;
    let caller = Caller::User(user.0.clone());
    let hold = owned_hold(&state, &caller, hold_id).await?;
    let client = ids::for_hold(hold_id, &user.0);
    let holder = user.0.clone();
    let request = ChargeRequest {
        idempotency_key: payment_key(hold_id),
        amount_cents: hold.total_cents,
        payment_method: body.payment_method.clone(),
        hold_id,
    };
    let timeout = Duration::from_millis(state.settings.payment_timeout_ms);
    let begun_charge = match tokio::time::timeout(timeout, state.payments.begin(&request)).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => return Err(payment_unavailable(e)),
        Err(_) => {
            return Err(payment_unavailable(PaymentError::Transient(
                "provider timed out".into(),
            )))
        }
    };

    match submit(
        &state,
        (client, step::BEGIN_PAYMENT),
        Command::BeginCharge {
            hold_id,
            holder: holder.clone(),
            charge_id: begun_charge.clone(),
            amount_cents: hold.total_cents,
        },
    )
    .await
    {
        Ok(Reply::PaymentBegun { .. }) => {}
        Ok(_) => return Err(unexpected("begin_charge")),
        // Already paid (a retried checkout): answer with the booking.
        Err(p) if p.code == "already_confirmed" => {
            return confirmed_answer(&state, &caller, hold_id).await
        }
        Err(p) => return Err(p),
    }

    let amount_cents = hold.total_cents;
    let charged = charge_with_retries(&state, request).await;
    match charged {
        Ok(ChargeResult::Succeeded { charge_id }) => {
            confirm(&state, hold_id, holder, charge_id, amount_cents).await
        }
        Ok(ChargeResult::Pending { charge_id }) => {
            state.metrics.payments.with_label_values(&["pending"]).inc();
            let body = json!({
                "hold_id": hold_id,
                "status": "payment_pending",
                "charge_id": charge_id,
                "detail": "the payment provider will confirm by webhook; poll GET /v1/holds/{id}",
            });
            Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
        }
        Ok(ChargeResult::Declined { reason }) => {
            state
                .metrics
                .payments
                .with_label_values(&["declined"])
                .inc();
            fail_payment(&state, hold_id, holder).await?;
            Err(Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_declined",
                format!("the payment was declined ({reason}); the seats were released"),
            )
            .with("hold_id", hold_id))
        }
        Err(e) => {
            state.metrics.payments.with_label_values(&["failed"]).inc();
            fail_payment(&state, hold_id, holder).await?;
            Err(Problem::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_failed",
                format!("the payment did not go through ({e}); the seats were released"),
            )
            .with("hold_id", hold_id))
        }
    }
}

async fn charge_with_retries(
    state: &AppState,
    request: ChargeRequest,
) -> Result<ChargeResult, PaymentError> {
    let attempts = state.settings.payment_attempts_max.max(1);
    let timeout = Duration::from_millis(state.settings.payment_timeout_ms);
    let mut backoff = Duration::from_millis(state.settings.payment_backoff_ms);
    let mut last = PaymentError::Transient("no attempt made".into());
    for attempt in 1..=attempts {
        let result = tokio::time::timeout(timeout, state.payments.charge(request.clone()))
            .await
            .unwrap_or_else(|_| Err(PaymentError::Transient("provider timed out".into())));
        match result {
            Err(PaymentError::Transient(reason)) => {
                tracing::warn!(attempt, %reason, "transient payment failure");
                last = PaymentError::Transient(reason);
                if attempt < attempts {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
            other => return other,
        }
    }
    Err(last)
}

async fn fail_payment(state: &AppState, hold_id: u64, holder: String) -> Result<(), Problem> {
    let ids = (ids::for_hold(hold_id, &holder), step::FAIL_PAYMENT);
    match submit(state, ids, Command::FailPayment { hold_id, holder }).await {
        Ok(_) => Ok(()),
        // The hold lapsed on its own: the seats are free either way.
        Err(p) if p.code == "hold_expired" => Ok(()),
        Err(p) => Err(p),
    }
}

/// A provider that cannot take the payment now: 503, nothing reserved.
fn payment_unavailable(e: PaymentError) -> Problem {
    match e {
        PaymentError::InvalidMethod(m) => Problem::unprocessable("invalid_payment_method", m),
        PaymentError::Unavailable => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_unavailable",
            "this gateway has no payment provider configured",
        ),
        PaymentError::Transient(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_unavailable",
            "the payment provider did not answer; retry",
        )
        .retry_after_ms(1_000),
    }
}

/// Confirms a paid hold with the charge and amount its payment began with;
/// refunds if the hold lapsed meanwhile or the charge is not the one begun.
async fn confirm(
    state: &AppState,
    hold_id: u64,
    holder: String,
    charge_id: String,
    amount_cents: u64,
) -> Result<Response, Problem> {
    let ids = (ids::for_hold(hold_id, &holder), step::CONFIRM);
    let command = Command::ConfirmCharge {
        hold_id,
        holder,
        charge_id: charge_id.clone(),
        amount_cents,
    };
    match submit(state, ids, command).await {
        Ok(Reply::Confirmed(booking)) => {
            state
                .metrics
                .payments
                .with_label_values(&["confirmed"])
                .inc();
            let mut response = (
                StatusCode::CREATED,
                axum::Json(booking_json(state, &booking)),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/bookings/{}", booking.booking_id)) {
                response.headers_mut().insert(LOCATION, v);
            }
            Ok(response)
        }
        Ok(_) => Err(unexpected("confirm")),
        // Money moved for a hold that lapsed, or for a charge that is not
        // the one begun: give it back.
        Err(p) if p.code == "hold_expired" || p.code == "charge_mismatch" => {
            state
                .metrics
                .payments
                .with_label_values(&["refunded"])
                .inc();
            let refunded = state.payments.refund(charge_id.clone()).await.is_ok();
            let expired = p.code == "hold_expired";
            let (status, code, why) = if expired {
                (
                    StatusCode::GONE,
                    "hold_expired",
                    "the hold expired before the payment completed",
                )
            } else {
                (
                    StatusCode::CONFLICT,
                    "charge_mismatch",
                    "the charge is not the one begun for this hold",
                )
            };
            Err(Problem::new(
                status,
                code,
                if refunded {
                    format!("{why}; the charge was refunded")
                } else {
                    format!("{why}; the refund is pending")
                },
            )
            .with("hold_id", hold_id)
            .with("refunded", refunded)
            .with("charge_id", charge_id))
        }
        Err(p) => Err(p),
    }
}

/// The booking a confirmed hold became.
async fn confirmed_answer(
    state: &AppState,
    caller: &Caller,
    hold_id: u64,
) -> Result<Response, Problem> {
    let hold = owned_hold(state, caller, hold_id).await?;
    let booking_id = hold
        .booking_id
        .ok_or_else(|| unexpected("confirmed hold without booking"))?;
    let answer = read(
        state,
        Query::Booking { booking_id },
        Consistency::Linearizable,
    )
    .await?;
    match answer.result {
        QueryResult::Booking(r) => {
            let booking = r?;
            Ok((
                StatusCode::CREATED,
                axum::Json(booking_json(state, &booking)),
            )
                .into_response())
        }
        _ => Err(unexpected("booking query")),
    }
}

#[tracing::instrument(skip_all, fields(webhook = tracing::field::Empty))]
pub async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let signature = headers
        .get("booking-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Problem::bad_request("invalid_signature", "missing Booking-Signature header")
        })?;
    verify_webhook(
        state.keys.webhook_secret(),
        signature,
        &body,
        unix_now_s(),
        state.settings.webhook_tolerance_s,
    )
    .map_err(|e| Problem::bad_request("invalid_signature", e.to_string()))?;
    let event: WebhookEvent = serde_json::from_slice(&body)
        .map_err(|e| Problem::unprocessable("invalid_body", e.to_string()))?;
    if event.id.is_empty() || event.id.len() > state_machine::limits::MAX_WEBHOOK_ID_LEN {
        return Err(Problem::unprocessable(
            "invalid_body",
            "id: 1..=256 characters",
        ));
    }
    tracing::Span::current().record("webhook", event.id.as_str());
    let hold_id = event.data.hold_id;
    // The holder and the charge come from replicated state, not from the webhook.
    let hold = owned_hold(&state, &Caller::Admin, hold_id).await?;
    // Checked here before anything is written or refunded: a webhook for
    // another hold, charge or amount changes nothing, and cannot spend the
    // hold's confirm ids on a refusal. (`BeginCharge` bound the charge to the
    // hold's total, so the amount must be that total; `ConfirmCharge` checks
    // both again in the state machine.)
    if hold.charge_id.as_deref() != Some(event.data.charge_id.as_str())
        || event.data.amount_cents != hold.total_cents
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "charge_mismatch",
            "no payment was begun for this hold with that charge and amount",
        ));
    }
    let outcome = match event.kind.as_str() {
        "payment.succeeded" => match confirm(
            &state,
            hold_id,
            hold.holder.clone(),
            event.data.charge_id.clone(),
            event.data.amount_cents,
        )
        .await
        {
            Ok(_) => "confirmed",
            Err(p) if p.code == "hold_expired" => "refunded",
            Err(p) if p.code == "already_confirmed" => "confirmed",
            Err(p) => return Err(p),
        },
        "payment.failed" => {
            fail_payment(&state, hold_id, hold.holder.clone()).await?;
            "released"
        }
        other => {
            return Err(Problem::unprocessable(
                "invalid_body",
                format!("unknown webhook type {other:?}"),
            ))
        }
    };
    let new = match submit_first_send(
        &state,
        Command::RecordWebhook {
            webhook_id: event.id.clone(),
        },
    )
    .await?
    {
        Reply::WebhookRecorded { new } => new,
        _ => return Err(unexpected("record_webhook")),
    };
    Ok(axum::Json(
        json!({ "received": true, "duplicate": !new, "hold_id": hold_id, "outcome": outcome }),
    )
    .into_response())
}
