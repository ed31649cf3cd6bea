//! The waiting room: join (one place per user, enforced by the state
//! machine) and ask for one's position with the signed token.
//!
//! Caveat: `estimated_wait_ms` is a rough upper bound: batches ahead ×
//! hold TTL, since admissions free up as admitted fans finish or lapse.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use state_machine::{Command, Query, QueryResult, QueueView, Reply};

use super::{check_event_id, read, submit_first_send, unexpected};
use crate::auth::User;
use crate::cluster::Consistency;
use crate::problem::{ApiPath, Problem};
use crate::{rfc3339_ms, AppState};

/// (admit batch, hold TTL ms) of an event with a waiting room, for estimates.
async fn admission_pace(state: &AppState, event_id: &str) -> Option<(u64, u64, Option<u64>)> {
    let answer = read(
        state,
        Query::Event {
            event_id: event_id.to_string(),
        },
        Consistency::Stale,
    )
    .await
    .ok()?;
    match answer.result {
        QueryResult::Event(Ok(view)) => {
            let batch = view
                .spec
                .waiting_room
                .as_ref()
                .map_or(1, |w| w.admit_batch.max(1)) as u64;
            Some((batch, view.spec.hold_ttl_ms, view.queue_waiting))
        }
        _ => None,
    }
}

async fn queue_json(state: &AppState, token: Option<String>, q: &QueueView) -> serde_json::Value {
    let pace = admission_pace(state, &q.event_id).await;
    if let Some((_, _, Some(waiting))) = pace {
        state.metrics.set_queue_waiting(&q.event_id, waiting);
    }
    let estimated_wait_ms = match (q.position, pace) {
        (Some(position), Some((batch, ttl_ms, _))) => Some(position.div_ceil(batch) * ttl_ms),
        _ if q.admitted => Some(0),
        _ => None,
    };
    let mut body = json!({
        "event_id": q.event_id,
        "position": q.position,
        "admitted": q.admitted,
        "admitted_until": q.admitted_until_ms.map(rfc3339_ms),
        "state": q.state,
        "estimated_wait_ms": estimated_wait_ms,
    });
    if let Some(t) = token {
        body["queue_token"] = json!(t);
    }
    body
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn join(
    State(state): State<AppState>,
    user: User,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let command = Command::JoinQueue {
        event_id: event_id.clone(),
        user: user.0.clone(),
    };
    match submit_first_send(&state, command).await? {
        Reply::QueueJoined {
            queue,
            already_joined,
        } => {
            let token = state.keys.issue_queue_token(&event_id, &user.0);
            let mut body = queue_json(&state, Some(token), &queue).await;
            body["already_joined"] = json!(already_joined);
            let status = if already_joined {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, axum::Json(body)).into_response())
        }
        _ => Err(unexpected("join_queue")),
    }
}

#[tracing::instrument(skip_all, fields(event = %event_id, user = %user.0))]
pub async fn position(
    State(state): State<AppState>,
    user: User,
    ApiPath((event_id, token)): ApiPath<(String, String)>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let (token_event, token_user) = state.keys.verify_queue_token(&token).ok_or_else(|| {
        Problem::forbidden("invalid_queue_token", "the waiting-room token is not valid")
    })?;
    if token_event != event_id || token_user != user.0 {
        return Err(Problem::forbidden(
            "invalid_queue_token",
            "the waiting-room token belongs to another user or event",
        ));
    }
    let answer = read(
        &state,
        Query::QueuePosition {
            event_id,
            user: user.0,
        },
        Consistency::Linearizable,
    )
    .await?;
    match answer.result {
        QueryResult::QueuePosition(r) => {
            let q = r?;
            Ok(axum::Json(queue_json(&state, None, &q).await).into_response())
        }
        _ => Err(unexpected("queue position")),
    }
}
