//! Events: create (admin), list, the static layout (cacheable), live
//! availability, and opening/closing the sale (admin).
//!
//! Caveats: the layout served by `GET /v1/events/{id}` is the definition
//! only, so its `ETag` changes never and a CDN may cache it; seat states are
//! at `/availability`, which says the log index it reflects.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use state_machine::{Command, EventSpec, Query, QueryResult, Reply};

use super::{check_event_id, read, submit_first_send, unexpected};
use crate::auth::Admin;
use crate::cluster::Consistency;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::AppState;

#[tracing::instrument(skip_all, fields(event = tracing::field::Empty))]
pub async fn create_event(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(spec): ApiJson<EventSpec>,
) -> Result<Response, Problem> {
    // Validate here too so a bad definition never costs a log entry.
    spec.validate()
        .map_err(|reason| Problem::unprocessable("invalid_event", reason))?;
    match submit_first_send(&state, Command::CreateEvent(spec)).await? {
        Reply::EventCreated { event_id } => {
            tracing::Span::current().record("event", event_id.as_str());
            let mut response = (
                StatusCode::CREATED,
                axum::Json(json!({ "event_id": event_id })),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/events/{event_id}")) {
                response.headers_mut().insert(LOCATION, v);
            }
            Ok(response)
        }
        _ => Err(unexpected("create_event")),
    }
}

#[tracing::instrument(skip_all)]
pub async fn list_events(State(state): State<AppState>) -> Result<Response, Problem> {
    let answer = read(&state, Query::Events, Consistency::Linearizable).await?;
    match answer.result {
        QueryResult::Events(events) => Ok(axum::Json(
            json!({ "events": events, "applied_index": answer.applied_index }),
        )
        .into_response()),
        _ => Err(unexpected("events")),
    }
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn get_event(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    // The layout never changes after creation, so any replica's copy will do.
    let answer = read(
        &state,
        Query::Event {
            event_id: event_id.clone(),
        },
        Consistency::Stale,
    )
    .await?;
    let view = match answer.result {
        QueryResult::Event(r) => r?,
        _ => return Err(unexpected("event")),
    };
    let body = serde_json::to_vec(&view.spec).map_err(|_| unexpected("event layout"))?;
    let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let cache = format!("public, max-age={}", state.settings.event_cache_max_age_s);
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag || t.trim() == "*" || t.trim() == format!("W/{etag}"))
        });
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&cache) {
        h.insert(CACHE_CONTROL, v);
    }
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityParams {
    #[serde(default)]
    consistency: Option<String>,
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn availability(
    State(state): State<AppState>,
    ApiPath(event_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<AvailabilityParams>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    let consistency = match params.consistency.as_deref() {
        None | Some("linearizable") => Consistency::Linearizable,
        Some("stale") => Consistency::Stale,
        Some(other) => {
            return Err(Problem::bad_request(
                "invalid_query",
                format!("consistency must be linearizable or stale, not {other:?}"),
            ))
        }
    };
    let answer = read(&state, Query::Availability { event_id }, consistency).await?;
    let view = match answer.result {
        QueryResult::Availability(r) => r?,
        _ => return Err(unexpected("availability")),
    };
    let mut body = serde_json::to_value(&view).map_err(|_| unexpected("availability"))?;
    body["consistency"] = serde_json::to_value(consistency).unwrap_or_default();
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert("x-applied-index", HeaderValue::from(view.applied_index));
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn open_sale(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    match submit_first_send(&state, Command::OpenSale { event_id }).await? {
        Reply::SaleOpened {
            event_id,
            fans_shuffled,
        } => Ok(axum::Json(
            json!({ "event_id": event_id, "sale": "open", "fans_shuffled": fans_shuffled }),
        )
        .into_response()),
        _ => Err(unexpected("open_sale")),
    }
}

#[tracing::instrument(skip_all, fields(event = %event_id))]
pub async fn close_sale(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(event_id): ApiPath<String>,
) -> Result<Response, Problem> {
    check_event_id(&event_id)?;
    match submit_first_send(&state, Command::CloseSale { event_id }).await? {
        Reply::SaleClosed { event_id } => {
            Ok(axum::Json(json!({ "event_id": event_id, "sale": "closed" })).into_response())
        }
        _ => Err(unexpected("close_sale")),
    }
}
