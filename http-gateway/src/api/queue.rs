//! The waiting room: join (a position from this gateway's block, in a
//! signed token; no log write per fan) and where a token stands (computed
//! from the token and the cached watermark; no cluster call per fan).
//!
//! Caveats: `estimated_wait_ms` is a rough upper bound (batches ahead ×
//! hold TTL: admissions free up sooner as fans finish). Each join hands out
//! a new position (joining again after the opening gives a later place;
//! before it, another draw, bounded by the per-user rate limit), and one
//! admission per user is enforced when they hold.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use state_machine::{fan_place, FanPlace, WaitingRoomView};

use super::check_event_id;
use crate::auth::User;
use crate::keys::QueueClaims;
use crate::problem::{ApiPath, Problem};
use crate::{rfc3339_ms, AppState};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where `position` of `user` stands in `view`. A position past the view
/// (a block reserved after this cached read) is at the back of the line.
fn place(view: &WaitingRoomView, position: u64) -> FanPlace {
    match fan_place(view, position) {
        FanPlace::Unknown if view.seed.is_none() => FanPlace::PendingShuffle,
        FanPlace::Unknown => FanPlace::Waiting {
            ahead: (position - 1).saturating_sub(view.admitted_places),
        },
        p => p,
    }
}

fn queue_json(state: &AppState, view: &WaitingRoomView, position: u64) -> serde_json::Value {
    state.metrics.set_queue_waiting(
        &view.event_id,
        (view.next_position - 1).saturating_sub(view.admitted_places),
    );
    let batch = view.admit_batch.max(1) as u64;
    let (status, ahead, until) = match place(view, position) {
        FanPlace::PendingShuffle => ("pending_shuffle", None, None),
        FanPlace::Waiting { ahead } => ("waiting", Some(ahead), None),
        FanPlace::Admitted { until_ms } => ("admitted", None, Some(until_ms)),
        FanPlace::Lapsed | FanPlace::Unknown => ("lapsed", None, None),
    };
    let estimated_wait_ms = match (status, ahead) {
        ("waiting", Some(ahead)) => Some((ahead + 1).div_ceil(batch) * view.hold_ttl_ms),
        ("admitted", _) => Some(0),
        _ => None,
    };
    json!({
        "event_id": view.event_id,
        "queue_position": position,
        "position": ahead.map(|a| a + 1),
        "admitted": until.is_some(),
        "admitted_until": until.map(rfc3339_ms),
        "state": status,
        "estimated_wait_ms": estimated_wait_ms,
    })
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn join(
    State(state): State<AppState>,
    user: User,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let taken = state.queue_desks.take(&state, &event_id).await?;
    let token = state
        .keys
        .issue_queue_token(&event_id, &user.0, taken.position, now_ms());
    let mut body = queue_json(&state, &taken.view, taken.position);
    body["queue_token"] = json!(token);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// The claims of `token` if it is valid and names this user and event;
/// otherwise the problem to answer (403 `invalid_queue_token`).
pub(crate) fn verified_token(
    state: &AppState,
    token: &str,
    event_id: &str,
    user: &str,
) -> Result<QueueClaims, Problem> {
    let claims = state.keys.verify_queue_token(token).ok_or_else(|| {
        Problem::forbidden("invalid_queue_token", "the waiting-room token is not valid")
    })?;
    if claims.e != event_id || claims.u != user {
        return Err(Problem::forbidden(
            "invalid_queue_token",
            "the waiting-room token belongs to another user or event",
        ));
    }
    Ok(claims)
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn position(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, token)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let claims = verified_token(&state, &token, &event_id, &user.0)?;
    let view = state.queue_desks.view(&state, &event_id).await?;
    Ok(axum::Json(queue_json(&state, &view, claims.p)).into_response())
}
