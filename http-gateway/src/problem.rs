//! Every error answer of the gateway: RFC 9457 `application/problem+json`
//! with a stable `code`, and the extractors whose rejections produce it.
//!
//! Owns: [`Problem`], the mapping of domain refusals
//! ([`state_machine::BookingError`]) and cluster errors ([`ClusterError`]) to
//! HTTP statuses, the JSON/path/query extractors [`ApiJson`], [`ApiPath`] and
//! [`ApiQuery`], and the last-line guard [`ensure_problem_body`] that
//! rewrites any stray non-problem 4xx/5xx (axum's own 405, a WebSocket upgrade
//! rejection, a caught panic) into a problem.
//!
//! Must not: decide anything about the domain. A client error is never a
//! 500: only cluster trouble (503) or a gateway bug (500, after the
//! catch-panic layer) may be 5xx.
//!
//! Caveat: `code` values are public API: add, never rename.

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use state_machine::BookingError;

use crate::cluster::ClusterError;

/// The media type of every error body.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Base of the `type` URIs; each code gets `<base><code>`. Not dereferenceable
/// today; it names the problem kind stably.
pub const PROBLEM_TYPE_BASE: &str = "https://booking.invalid/problems/";

/// Longest detail we echo back, in bytes: rejection texts can quote input.
const DETAIL_LEN_MAX: usize = 512;

/// An RFC 9457 problem. Extension members go in `extra` (flattened).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable snake_case code; clients branch on this, not on `title`.
    pub code: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// Seconds for the `Retry-After` header (429, 503).
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Problem {
        let mut detail: String = detail.into();
        if detail.len() > DETAIL_LEN_MAX {
            let mut cut = DETAIL_LEN_MAX;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
            detail.push('…');
        }
        Problem {
            type_uri: format!("{PROBLEM_TYPE_BASE}{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            code: code.to_string(),
            extra: Map::new(),
            retry_after_s: None,
        }
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Problem {
        self.extra.insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Sets `Retry-After` (rounded up to whole seconds, at least 1).
    pub fn retry_after_ms(mut self, ms: u64) -> Problem {
        self.retry_after_s = Some(ms.div_ceil(1000).max(1));
        self.extra
            .insert("retry_after_s".into(), Value::from(self.retry_after_s));
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn bad_request(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }
    pub fn unprocessable(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    pub fn not_found(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, code, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    pub fn forbidden(code: &str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, code, detail)
    }
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// The generic problem for a status that reached the client without one.
    pub fn for_status(status: StatusCode) -> Problem {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_ACCEPTABLE => "not_acceptable",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
            StatusCode::UPGRADE_REQUIRED => "upgrade_required",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_server_error() => "internal",
            _ => "error",
        };
        let detail = status.canonical_reason().unwrap_or("error").to_string();
        Problem::new(status, code, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = self.retry_after_s;
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(s) = retry {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

/// The HTTP status of each domain refusal. Not-owner answers 404 like an
/// unknown id, so a user cannot probe which hold or booking ids exist.
pub fn booking_error_status(err: &BookingError) -> StatusCode {
    use BookingError::*;
    match err {
        InvalidEvent { .. }
        | UnknownSection { .. }
        | UnknownSeat { .. }
        | WrongSectionKind { .. }
        | InvalidRequest { .. }
        | TooManySeats { .. }
        | InvalidSettings { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        EventExists { .. }
        | TooManyEvents { .. }
        | SeatUnavailable { .. }
        | NotEnoughSeats { .. }
        | SaleNotOpen { .. }
        | HoldNotActive { .. }
        | AlreadyConfirmed { .. }
        | ExtendLimitReached { .. }
        | BookingCancelled { .. }
        | TicketRevoked { .. }
        | AlreadyCheckedIn { .. }
        | ChargeMismatch { .. }
        | CancelClosed { .. }
        | NoWaitingRoom { .. } => StatusCode::CONFLICT,
        RequestReused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        UnknownEvent { .. }
        | UnknownHold { .. }
        | NotOwner
        | UnknownBooking { .. }
        | UnknownTicket { .. }
        | NotInQueue { .. } => StatusCode::NOT_FOUND,
        NotAdmitted { .. } | AdmissionLapsed { .. } => StatusCode::FORBIDDEN,
        HoldExpired { .. } => StatusCode::GONE,
        // The exactly-once table is full (the node answers this as the
        // cluster's `overloaded`; it reaches here only inside a batch).
        QueueFull { .. } | Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        // No catch-all: a new `BookingError` variant fails to compile here
        // until someone decides its status.
    }
}

/// How long a client should wait before retrying a full waiting room.
const QUEUE_FULL_RETRY_AFTER_MS: u64 = 5_000;

/// The one answer for "does not exist" and "is not yours" (holds, bookings,
/// tickets), so ids cannot be probed.
pub fn not_yours_or_missing() -> Problem {
    Problem::not_found("not_found", "not found (or not yours)")
}

impl From<BookingError> for Problem {
    fn from(err: BookingError) -> Problem {
        let status = booking_error_status(&err);
        // "Someone else's" and "missing" read the same, so they leak nothing.
        let (code, detail) = match &err {
            BookingError::NotOwner
            | BookingError::UnknownHold { .. }
            | BookingError::UnknownBooking { .. }
            | BookingError::UnknownTicket { .. } => {
                return not_yours_or_missing();
            }
            // Derived ids come from (user, scope, Idempotency-Key): the key
            // was first used with another body. Stripe answers 400 here.
            BookingError::RequestReused { .. } => (
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request; use a new key".to_string(),
            ),
            _ => (err.code(), err.to_string()),
        };
        let mut p = Problem::new(status, code, detail);
        match &err {
            BookingError::SeatUnavailable { seats } => p = p.with("seats", seats),
            BookingError::NotEnoughSeats {
                requested,
                available,
            } => p = p.with("requested", requested).with("available", available),
            BookingError::AlreadyConfirmed { booking_id, .. } => {
                p = p.with("booking_id", booking_id)
            }
            BookingError::QueueFull { .. } | BookingError::Overloaded { .. } => {
                p = p.retry_after_ms(QUEUE_FULL_RETRY_AFTER_MS)
            }
            _ => {}
        }
        p
    }
}

/// Cluster trouble as the public sees it: a stable code and a fixed text.
/// The reason (node addresses, gRPC statuses) goes to the log only.
impl From<ClusterError> for Problem {
    fn from(err: ClusterError) -> Problem {
        tracing::warn!(error = %err, "cluster call failed");
        match err {
            ClusterError::Unavailable { retry_after_ms, .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "the booking cluster has no leader right now; retry shortly",
            )
            .retry_after_ms(retry_after_ms),
            ClusterError::Overloaded { retry_after_ms } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the cluster is shedding load",
            )
            .retry_after_ms(retry_after_ms),
            ClusterError::UpgradePending { retry_after_ms, .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upgrade_pending",
                "the booking cluster is being upgraded and cannot take this operation until \
                 every node runs the new version; retry later",
            )
            .retry_after_ms(retry_after_ms),
            ClusterError::OutcomeUnknown { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "outcome_unknown",
                "the request may or may not have taken effect; retry with the same Idempotency-Key",
            )
            .retry_after_ms(1_000),
            ClusterError::Invalid { .. } => {
                Problem::internal("the cluster refused the request; it has been logged")
            }
            ClusterError::Internal { .. } => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_error",
                "the booking cluster could not answer; retry shortly",
            )
            .retry_after_ms(1_000),
        }
    }
}

/// `axum::Json` whose rejections are problems: 400 for a syntax error, 422
/// for a well-formed body of the wrong shape, 415 for a wrong content type,
/// 413 past the body limit.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// True when a body error came from the body-read timeout.
fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

fn json_rejection(rejection: JsonRejection) -> Problem {
    if is_body_timeout(&rejection) {
        return Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        );
    }
    let status = rejection.status();
    let code = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "payload_too_large"
        }
        _ => "bad_body",
    };
    Problem::new(status, code, rejection.body_text())
}

/// `axum::extract::Path` with problem rejections (400 for a segment that does
/// not parse, e.g. a hold id that is not a number).
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> Problem {
    let status = if rejection.status().is_server_error() {
        StatusCode::BAD_REQUEST
    } else {
        rejection.status()
    };
    Problem::new(status, "invalid_path", rejection.body_text())
}

/// `axum::extract::Query` with problem rejections (400).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        rejection.body_text(),
    )
}

/// The router's fallback: an unknown route is a problem, not an empty 404.
pub async fn not_found_fallback() -> Problem {
    Problem::not_found("not_found", "no such route")
}

/// The router's method-not-allowed fallback.
pub async fn method_not_allowed_fallback() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Last line: any 4xx/5xx whose body is not already a problem (axum
/// internals, the WebSocket upgrade check, the panic catcher) becomes the
/// generic problem of its status. Headers such as `Allow` and `Retry-After`
/// are kept.
/// Run on every answer by [`crate::front`].
pub fn ensure_problem_body(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_CONTENT_TYPE));
    if is_problem {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let problem = Problem::for_status(status);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// The catch-panic layer's answer: a 500 problem that names nothing inside.
pub fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a handler panicked; answered 500");
    Problem::internal("the gateway hit an internal error; it has been logged").into_response()
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_problem() {
        // Goal: the last line of defence turns a panic into a problem+json 500 instead of a dropped connection.
        async fn boom() -> &'static str {
            panic!("deliberate test panic")
        }
        let app = Router::new().route("/boom", get(boom)).layer(
            tower_http::catch_panic::CatchPanicLayer::custom(panic_response),
        );
        let response = app
            .oneshot(Request::builder().uri("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    }

    #[test]
    fn every_booking_error_is_a_client_or_capacity_status() {
        // Goal: no domain refusal maps to a 500.
        let samples = [
            BookingError::NotOwner,
            BookingError::SeatUnavailable {
                seats: vec!["A-1-1".into()],
            },
            BookingError::HoldExpired { hold_id: 1 },
            BookingError::NotAdmitted {
                event_id: "e".into(),
                holder: "h".into(),
            },
            BookingError::QueueFull {
                event_id: "e".into(),
            },
            BookingError::AdmissionLapsed {
                event_id: "e".into(),
                holder: "h".into(),
            },
        ];
        for e in samples {
            let p = Problem::from(e);
            assert!(p.status < 500 || p.status == 503, "{p:?}");
        }
    }

    // Goal: a command refused during a rolling upgrade is a 503 with its own code and a Retry-After, not a 500 or "no leader".
    #[test]
    fn an_upgrade_pending_refusal_is_a_503_with_retry_after() {
        let p = Problem::from(ClusterError::UpgradePending {
            retry_after_ms: 30_000,
            reason: "node 3 applies only set 2".into(),
        });
        assert_eq!(p.status, 503);
        assert_eq!(p.code, "upgrade_pending");
        assert_eq!(p.retry_after_s, Some(30));
        assert!(
            !p.detail.contains("node 3"),
            "node details stay in the log: {p:?}"
        );
    }
}
