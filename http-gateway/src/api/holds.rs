//! Holds: creating one (a seat list, best available or general admission,
//! checked for length and charset before the cluster; an optional
//! `Idempotency-Key` naming the request everywhere; on a waiting-room event
//! the fan's `queue_token`, verified here, its position checked by the
//! state machine), reading one, and
//! releasing one (ownership checked before the write; the caller is in the
//! derived ids). Anybody else's hold answers the same 404 as a missing one.
//!
//! Must not: charge or confirm (that is [`super::checkout`]).

use axum::extract::State;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use state_machine::{BookingError, Command, HoldView, Query, QueryResult, Reply, Selection};

use super::{check_event_id, read, submit, submit_first_send, unexpected};
use crate::auth::{Caller, User};
use crate::cluster::Consistency;
use crate::ids::{self, step};
use crate::problem::{not_yours_or_missing, ApiJson, ApiPath, Problem};
use crate::{rfc3339_ms, AppState};

/// Longest `Idempotency-Key`, in bytes.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 255;
/// Longest seat id (`SECTION-ROW-NUMBER`: 16 + 1 + 16 + 1 + 4 characters,
/// rounded up), in bytes.
pub const SEAT_ID_LEN_MAX: usize = 40;
/// Longest section id (the state machine's bound), in bytes.
pub const SECTION_ID_LEN_MAX: usize = state_machine::limits::MAX_SECTION_ID_LEN;
/// Characters of a client's input echoed back in an error.
const ECHO_LEN_MAX: usize = 40;
/// Most seats one request may name (the state machine's per-hold cap is lower or equal).
const SEATS_PER_REQUEST_MAX: usize = state_machine::limits::MAX_SEATS_PER_HOLD_LIMIT as usize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    #[serde(default)]
    seats: Option<Vec<String>>,
    #[serde(default)]
    best_available: Option<BestAvailableBody>,
    #[serde(default)]
    general_admission: Option<GeneralAdmissionBody>,
    /// The waiting-room token (events with a waiting room): its position
    /// is presented to the state machine, which admits or refuses it.
    #[serde(default)]
    queue_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestAvailableBody {
    count: u32,
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    allow_non_adjacent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneralAdmissionBody {
    section: String,
    count: u32,
}

/// At most [`ECHO_LEN_MAX`] characters of client input, for error texts.
pub(crate) fn echo(input: &str) -> String {
    match input.char_indices().nth(ECHO_LEN_MAX) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_string(),
    }
}

/// Seat ids are `SECTION-ROW-NUMBER` of ASCII letters, digits and dashes;
/// anything else is refused here, before it costs a log entry or reaches
/// replicated state.
fn check_seat_id(seat: &str) -> Result<(), Problem> {
    let ok = !seat.is_empty()
        && seat.len() <= SEAT_ID_LEN_MAX
        && seat.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(
            "invalid_seat",
            format!(
                "seat {:?}: 1..={SEAT_ID_LEN_MAX} ASCII letters, digits and '-' (like A-12-7)",
                echo(seat)
            ),
        ))
    }
}

/// Section ids are 1..=16 ASCII letters and digits.
fn check_section_id(section: &str) -> Result<(), Problem> {
    let ok = !section.is_empty()
        && section.len() <= SECTION_ID_LEN_MAX
        && section.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Problem::unprocessable(
            "invalid_section",
            format!(
                "section {:?}: 1..={SECTION_ID_LEN_MAX} ASCII letters and digits",
                echo(section)
            ),
        ))
    }
}

fn selection_of(body: HoldBody) -> Result<Selection, Problem> {
    let chosen = [
        body.seats.is_some(),
        body.best_available.is_some(),
        body.general_admission.is_some(),
    ];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(Problem::unprocessable(
            "invalid_selection",
            "give exactly one of seats, best_available or general_admission",
        ));
    }
    if let Some(seats) = body.seats {
        if seats.is_empty() || seats.len() > SEATS_PER_REQUEST_MAX {
            return Err(Problem::unprocessable(
                "invalid_selection",
                format!("seats: between 1 and {SEATS_PER_REQUEST_MAX} seat ids"),
            ));
        }
        for seat in &seats {
            check_seat_id(seat)?;
        }
        return Ok(Selection::Seats(seats));
    }
    if let Some(b) = body.best_available {
        if let Some(section) = &b.section {
            check_section_id(section)?;
        }
        return Ok(Selection::BestAvailable {
            count: b.count,
            section: b.section,
            allow_non_adjacent: b.allow_non_adjacent,
        });
    }
    match body.general_admission {
        Some(ga) => {
            check_section_id(&ga.section)?;
            Ok(Selection::GeneralAdmission {
                section: ga.section,
                count: ga.count,
            })
        }
        // Unreachable: exactly one selection was counted above.
        None => Err(Problem::unprocessable(
            "invalid_selection",
            "give exactly one of seats, best_available or general_admission",
        )),
    }
}

/// The `Idempotency-Key` header, if present and well-formed.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_LEN_MAX && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1..={IDEMPOTENCY_KEY_LEN_MAX} visible ASCII characters"),
            )
        })?;
    Ok(Some(key.to_string()))
}

fn hold_json(view: &HoldView) -> Value {
    json!({
        "hold_id": view.hold_id,
        "event_id": view.event_id,
        "seats": view.seats,
        "general_admission": view.general_admission,
        "status": view.status.as_str(),
        "created_at": rfc3339_ms(view.created_at_ms),
        "expires_at": rfc3339_ms(view.expires_at_ms),
        "expires_at_ms": view.expires_at_ms,
        "total_cents": view.total_cents,
        "booking_id": view.booking_id,
    })
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0, hold = tracing::field::Empty))]
pub async fn create_hold(
    State(state): State<AppState>,
    user: User,
    ApiPath(event_id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let key = idempotency_key(&headers)?;
    let queue_position = match &body.queue_token {
        Some(token) => Some(super::queue::verified_token(&state, token, &event_id, &user.0)?.p),
        None => None,
    };
    let selection = selection_of(body)?;
    let command = match queue_position {
        Some(queue_position) => Command::HoldQueued {
            event_id,
            holder: user.0.clone(),
            selection,
            queue_position,
        },
        None => Command::Hold {
            event_id,
            holder: user.0.clone(),
            selection,
        },
    };
    // With an Idempotency-Key the hold always goes through the log: another
    // gateway (or an earlier try) may have sent the same derived ids, and a
    // copy in flight could still succeed. Without one the ids are new, so it
    // is a first send and a provable refusal may be answered without a log
    // write.
    let reply = match &key {
        Some(k) => submit(&state, ids::idempotent(&user.0, "hold", k), command).await?,
        None => submit_first_send(&state, command).await?,
    };
    match reply {
        Reply::Held {
            hold_id,
            event_id,
            seats,
            general_admission,
            expires_at_ms,
            total_cents,
        } => {
            tracing::Span::current().record("hold", hold_id);
            let body = json!({
                "hold_id": hold_id,
                "event_id": event_id,
                "seats": seats,
                "general_admission": general_admission,
                "expires_at": rfc3339_ms(expires_at_ms),
                "expires_at_ms": expires_at_ms,
                "total_cents": total_cents,
            });
            let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/holds/{hold_id}")) {
                response.headers_mut().insert(LOCATION, v);
            }
            Ok(response)
        }
        _ => Err(unexpected("hold")),
    }
}

/// Reads a hold the caller may see. Anybody else's, an unknown id and a
/// forgotten one all answer the same 404, so ids cannot be probed.
pub(super) async fn owned_hold(
    state: &AppState,
    caller: &Caller,
    hold_id: u64,
) -> Result<HoldView, Problem> {
    let answer = read(state, Query::Hold { hold_id }, Consistency::Linearizable).await?;
    let view = match answer.result {
        QueryResult::Hold(Ok(view)) => view,
        QueryResult::Hold(Err(
            BookingError::UnknownHold { .. }
            | BookingError::HoldExpired { .. }
            | BookingError::NotOwner,
        )) => return Err(not_yours_or_missing()),
        QueryResult::Hold(Err(e)) => return Err(e.into()),
        _ => return Err(unexpected("hold query")),
    };
    if !caller.may_see(&view.holder) {
        return Err(not_yours_or_missing());
    }
    Ok(view)
}

#[tracing::instrument(skip_all, fields(hold = hold_id))]
pub async fn get_hold(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(hold_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    let view = owned_hold(&state, &caller, hold_id).await?;
    Ok(axum::Json(hold_json(&view)).into_response())
}

#[tracing::instrument(skip_all, fields(hold = hold_id, user = %user.0))]
pub async fn release_hold(
    State(state): State<AppState>,
    user: User,
    ApiPath(hold_id): ApiPath<u64>,
) -> Result<Response, Problem> {
    // Ownership first: a stranger's DELETE writes nothing, so it cannot leave
    // an outcome under ids the owner's release will use.
    owned_hold(&state, &Caller::User(user.0.clone()), hold_id).await?;
    // Derived ids (with the caller in them): a retried DELETE gets the first
    // answer, not "already released".
    let ids = (ids::for_hold(hold_id, &user.0), step::RELEASE);
    match submit(
        &state,
        ids,
        Command::Release {
            hold_id,
            holder: user.0,
        },
    )
    .await?
    {
        Reply::Released { hold_id } => {
            Ok(axum::Json(json!({ "hold_id": hold_id, "status": "released" })).into_response())
        }
        _ => Err(unexpected("release")),
    }
}
