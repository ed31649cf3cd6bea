//! The route table and the helpers every handler shares.
//!
//! Owns: which handler serves which method and path, the middleware stack
//! (outermost first: the front layer of [`crate::front`] (client address +
//! identity + rate limits in; metrics, security headers and the
//! problem-body guard out), request timeout, body-read timeout, panic
//! catcher), per-route body limits, and the fallbacks that turn
//! unknown routes and methods into problems. Must not: hold domain rules; handlers translate
//! HTTP to commands and outcomes back.
//!
//! Submodules: `events` (events, availability, sale), `holds` (create,
//! read, release), `checkout` (checkout, payment webhook), `bookings`
//! (bookings, tickets), `queue` (waiting room), `ops` (sessions, health, metrics, cluster, page, OpenAPI).

mod bookings;
mod checkout;
mod events;
mod holds;
mod ops;
mod queue;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use state_machine::{Command, Query, Reply, Request};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::cluster::{Consistency, ReadAnswer};
use crate::problem::{self, Problem};
use crate::AppState;

pub(crate) use ops::openapi_routes;

/// The Content-Security-Policy of every answer but the seat-map page (which
/// sets its own): nothing may load, and no page may frame us.
pub(crate) const CSP_API: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub fn router(state: AppState) -> Router {
    let event_body_limit = state.settings.event_body_limit_bytes;
    let body_limit = state.settings.body_limit_bytes;
    let request_timeout = Duration::from_millis(state.settings.request_timeout_ms);
    let body_timeout = Duration::from_millis(state.settings.body_read_timeout_ms);
    let api = Router::new()
        .route("/v1/sessions", post(ops::create_session))
        .route(
            "/v1/events",
            get(events::list_events)
                .post(events::create_event)
                .layer(DefaultBodyLimit::max(event_body_limit)),
        )
        .route("/v1/events/{event_id}", get(events::get_event))
        .route(
            "/v1/events/{event_id}/availability",
            get(events::availability),
        )
        .route("/v1/events/{event_id}/sale/open", post(events::open_sale))
        .route("/v1/events/{event_id}/sale/close", post(events::close_sale))
        .route("/v1/events/{event_id}/live", get(crate::live::live))
        .route("/v1/events/{event_id}/holds", post(holds::create_hold))
        .route("/v1/events/{event_id}/queue", post(queue::join))
        .route("/v1/events/{event_id}/queue/{token}", get(queue::position))
        .route(
            "/v1/holds/{hold_id}",
            get(holds::get_hold).delete(holds::release_hold),
        )
        .route("/v1/holds/{hold_id}/checkout", post(checkout::checkout))
        .route("/v1/payments/webhook", post(checkout::webhook))
        .route("/v1/bookings/{booking_id}", get(bookings::get_booking))
        .route(
            "/v1/bookings/{booking_id}/cancel",
            post(bookings::cancel_booking),
        )
        .route("/v1/tickets/public-key", get(bookings::public_key))
        .route("/v1/tickets/verify", post(bookings::verify_ticket))
        .route("/v1/tickets/{ticket_id}", get(bookings::get_ticket))
        .route("/v1/tickets/{ticket_id}/qr.svg", get(bookings::ticket_qr))
        .route("/v1/events/{event_id}/check-in", post(bookings::check_in))
        .route("/v1/cluster", get(ops::cluster_status))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/", get(ops::index_page))
        .fallback(problem::not_found_fallback)
        .method_not_allowed_fallback(problem::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(body_limit));
    api.layer(
        ServiceBuilder::new()
            // Rate limits and identity, metrics, security headers and the
            // problem-body guard, in one layer without boxing (front.rs).
            .layer(crate::front::FrontLayer::new(state.clone()))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                request_timeout,
            ))
            .layer(RequestBodyTimeoutLayer::new(body_timeout))
            // The layers below take axum's body type again.
            .map_request(|req: axum::http::Request<_>| req.map(axum::body::Body::new))
            .layer(CatchPanicLayer::custom(problem::panic_response)),
    )
    .with_state(state)
}

/// Submits one command with the given ids, bounded by `cluster_timeout_ms`
/// (the app's cluster bounds every write: [`crate::cluster::TimedWrites`]).
/// Domain refusals come back as problems.
pub(crate) async fn submit(
    state: &AppState,
    ids: (u64, u64),
    command: Command,
) -> Result<Reply, Problem> {
    let request = Request {
        client_id: ids.0,
        request_id: ids.1,
        command,
    };
    let outcome = state.cluster.submit(request).await?;
    state
        .metrics
        .cluster_submits
        .with_label_values(&["log"])
        .inc();
    outcome.map_err(Problem::from)
}

/// Submits under new ids (a repeat is judged anew) as a first send, bounded by
/// `cluster_timeout_ms` like [`submit`]. New ids were never sent, so the leader may answer a refusal without a log write
/// ([`crate::cluster::Cluster::submit_first_send`]); a request that carries an
/// `Idempotency-Key` must use [`submit`] with its derived ids instead, since
/// another gateway may have sent the same key.
pub(crate) async fn submit_first_send(
    state: &AppState,
    command: Command,
) -> Result<Reply, Problem> {
    let (client_id, request_id) = state.new_ids.next();
    let request = Request {
        client_id,
        request_id,
        command,
    };
    let answer = state.cluster.submit_first_send(request).await?;
    let path = if answer.answered_without_log_write {
        "without_log_write"
    } else {
        "log"
    };
    state
        .metrics
        .cluster_submits
        .with_label_values(&[path])
        .inc();
    answer.outcome.map_err(Problem::from)
}

/// Reads one query, bounded by `cluster_timeout_ms`.
pub(crate) async fn read(
    state: &AppState,
    query: Query,
    consistency: Consistency,
) -> Result<ReadAnswer, Problem> {
    let timeout = Duration::from_millis(state.settings.cluster_timeout_ms);
    match tokio::time::timeout(timeout, state.cluster.read(query, consistency)).await {
        Err(_) => Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the cluster did not answer in time",
        )
        .retry_after_ms(1_000)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(answer)) => Ok(answer),
    }
}

/// A reply of an unexpected kind: the state machine and the gateway disagree.
pub(crate) fn unexpected(what: &str) -> Problem {
    tracing::error!(what, "unexpected reply from the cluster");
    Problem::internal(format!("unexpected reply from the cluster to {what}"))
}

/// Event ids are slugs of at most 64 characters; anything else cannot exist.
pub(crate) fn check_event_id(event_id: &str) -> Result<(), Problem> {
    if state_machine::spec::check_slug(event_id).is_err() {
        return Err(Problem::not_found(
            "unknown_event",
            format!("no event {event_id:?}"),
        ));
    }
    Ok(())
}
