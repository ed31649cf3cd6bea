//! Sessions, health, readiness, metrics, cluster status, the OpenAPI
//! document and the seat-map page.

use std::time::Duration;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::auth::Admin;
use crate::problem::{ApiJson, Problem};
use crate::{rfc3339_ms, unix_now_s, AppState};

/// The seat-map page, embedded so the binary needs no files beside it.
const INDEX_HTML: &str = include_str!("../../static/index.html");

/// Longest user name, in bytes.
pub const USER_NAME_LEN_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub name: String,
}

/// Demo mode only: a session token for any name. In jwt mode the route
/// answers 404 (`sessions_disabled`): users sign in at the identity provider.
#[tracing::instrument(skip_all)]
pub async fn create_session(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<SessionRequest>,
) -> Result<Response, Problem> {
    if state.settings.auth.mode != crate::settings::AuthMode::Demo {
        return Err(Problem::not_found(
            "sessions_disabled",
            "name-only sessions exist in demo mode only; present a JWT from the identity provider",
        ));
    }
    let name = body.name.trim();
    let ok = !name.is_empty()
        && name.len() <= USER_NAME_LEN_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return Err(Problem::unprocessable(
            "invalid_name",
            format!("name: 1..={USER_NAME_LEN_MAX} of ASCII letters, digits, '_', '-', '.'"),
        ));
    }
    let exp_s = unix_now_s() + state.settings.auth.demo_session_ttl_s;
    let token = state.keys.issue_session(name, exp_s);
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({ "token": token, "name": name, "expires_at": rfc3339_ms(exp_s * 1000) })),
    )
        .into_response())
}

pub async fn healthz() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// Ready when the cluster answers status and knows a leader.
#[tracing::instrument(skip_all)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, Problem> {
    let timeout = Duration::from_millis(state.settings.cluster_timeout_ms);
    let status = tokio::time::timeout(timeout, state.cluster.status())
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "cluster status timed out",
            )
            .retry_after_ms(1_000)
        })?
        .map_err(Problem::from)?;
    if status.leader_id.is_none() {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            "the cluster has no leader",
        )
        .retry_after_ms(1_000));
    }
    Ok(axum::Json(json!({ "status": "ready", "leader_id": status.leader_id, "applied_index": status.applied_index }))
        .into_response())
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

#[tracing::instrument(skip_all)]
pub async fn cluster_status(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Response, Problem> {
    let timeout = Duration::from_millis(state.settings.cluster_timeout_ms);
    let status = tokio::time::timeout(timeout, state.cluster.status())
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "cluster status timed out",
            )
            .retry_after_ms(1_000)
        })?
        .map_err(Problem::from)?;
    Ok(axum::Json(status).into_response())
}

pub async fn openapi() -> Response {
    (
        [
            (CONTENT_TYPE, "application/json"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        crate::openapi::document_json(),
    )
        .into_response()
}

/// The page's Content-Security-Policy: its one inline script by hash (so an
/// injected script does not run), same-origin fetches and WebSockets, the
/// QR codes it renders from blobs, and no framing.
fn page_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let script = INDEX_HTML
            .split_once("<script>")
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map_or("", |(body, _)| body);
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(script));
        format!(
            "default-src 'none'; script-src 'sha256-{hash}'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'none'"
        )
    })
}

pub async fn index_page() -> Response {
    (
        [
            (CACHE_CONTROL, "no-cache"),
            (axum::http::header::CONTENT_SECURITY_POLICY, page_csp()),
        ],
        Html(INDEX_HTML),
    )
        .into_response()
}

/// Route table of the OpenAPI document: (method, path, summary, auth, success statuses).
pub(crate) fn openapi_routes() -> &'static [(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [u16],
)] {
    &[
        (
            "post",
            "/v1/sessions",
            "Get a signed session token for a name",
            "none",
            &[201],
        ),
        ("get", "/v1/events", "List events", "none", &[200]),
        (
            "post",
            "/v1/events",
            "Create an event (body: EventSpec)",
            "admin",
            &[201],
        ),
        (
            "get",
            "/v1/events/{event_id}",
            "The static layout of an event (ETag, Cache-Control, 304)",
            "none",
            &[200, 304],
        ),
        (
            "get",
            "/v1/events/{event_id}/availability",
            "Seat states as of an applied log index",
            "none",
            &[200],
        ),
        (
            "post",
            "/v1/events/{event_id}/sale/open",
            "Open the sale",
            "admin",
            &[200],
        ),
        (
            "post",
            "/v1/events/{event_id}/sale/close",
            "Close the sale",
            "admin",
            &[200],
        ),
        (
            "get",
            "/v1/events/{event_id}/live",
            "WebSocket: a snapshot, then seat changes; ?from=<index> resumes",
            "none",
            &[101],
        ),
        (
            "post",
            "/v1/events/{event_id}/holds",
            "Hold seats (Idempotency-Key honoured)",
            "user",
            &[201],
        ),
        (
            "post",
            "/v1/events/{event_id}/queue",
            "Join the waiting room: a signed token with a position (no log write per fan)",
            "user",
            &[201],
        ),
        (
            "get",
            "/v1/events/{event_id}/queue/{token}",
            "Where a waiting-room token stands (from the cached watermark)",
            "user",
            &[200],
        ),
        (
            "get",
            "/v1/holds/{hold_id}",
            "See a hold (owner only)",
            "user",
            &[200],
        ),
        (
            "delete",
            "/v1/holds/{hold_id}",
            "Release a hold (owner only)",
            "user",
            &[200],
        ),
        (
            "post",
            "/v1/holds/{hold_id}/checkout",
            "Pay and confirm a hold",
            "user",
            &[201, 202],
        ),
        (
            "post",
            "/v1/payments/webhook",
            "Payment provider webhook (Booking-Signature)",
            "signature",
            &[200],
        ),
        (
            "get",
            "/v1/bookings/{booking_id}",
            "See a booking (owner only)",
            "user",
            &[200],
        ),
        (
            "post",
            "/v1/bookings/{booking_id}/cancel",
            "Cancel a booking: refund, seats return",
            "user",
            &[200],
        ),
        (
            "get",
            "/v1/tickets/public-key",
            "The Ed25519 public key tickets are signed with",
            "none",
            &[200],
        ),
        (
            "post",
            "/v1/tickets/verify",
            "Verify a ticket code (signature offline, revocation online)",
            "none",
            &[200],
        ),
        (
            "get",
            "/v1/tickets/{ticket_id}",
            "A signed e-ticket",
            "user",
            &[200],
        ),
        (
            "get",
            "/v1/tickets/{ticket_id}/qr.svg",
            "The ticket's QR code",
            "user",
            &[200],
        ),
        (
            "post",
            "/v1/events/{event_id}/check-in",
            "Check a ticket in at the door by its code (once; booking:scan)",
            "scan",
            &[200],
        ),
        ("get", "/v1/cluster", "Cluster status", "admin", &[200]),
        ("get", "/healthz", "Liveness", "none", &[200]),
        (
            "get",
            "/readyz",
            "Readiness: the cluster has a leader",
            "none",
            &[200],
        ),
        ("get", "/metrics", "Prometheus metrics", "none", &[200]),
        ("get", "/openapi.json", "This document", "none", &[200]),
        ("get", "/", "The seat-map page", "none", &[200]),
    ]
}
