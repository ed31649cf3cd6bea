//! The front door of every routed request: one tower layer that does what
//! four middlewares used to (the rate-limit check, metrics, the security
//! headers and the problem-body guard), in that order on the way in and in
//! the reverse order on the way out.
//!
//! Owns: the order of those four steps. Must not: decide anything itself:
//! who is limited is [`crate::ratelimit::admit`], what is counted is
//! [`crate::metrics::Metrics::record`], what a stray error body becomes is
//! [`crate::problem::ensure_problem_body`].
//!
//! Why one layer (gateway CPU per request, docs/BENCHMARKS.md): each
//! `axum::middleware::from_fn` clones the service below it, boxes that clone
//! and boxes its own future on every request, and axum clones the whole
//! layered stack of a route per request too; three of them plus five
//! header layers were a visible share of the gateway's profile. This
//! layer's future is a plain struct around the inner future: no box, no
//! clone of the stack below.
//!
//! Caveat: the request timeout, the body-read timeout and the panic catcher
//! stay tower-http layers below this one ([`crate::api`]); the rate-limit
//! check runs before the request timeout starts, which is the same as
//! before since it never waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tower::{Layer, Service};

use crate::api::CSP_API;
use crate::metrics::method_label;
use crate::AppState;

/// The security headers every answer carries unless its handler set its
/// own, in the order they are added (the seat-map page sets its own CSP).
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    ),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::CONTENT_SECURITY_POLICY, CSP_API),
];

/// [`Front`] around each route.
#[derive(Clone)]
pub struct FrontLayer {
    state: AppState,
}

impl FrontLayer {
    pub fn new(state: AppState) -> FrontLayer {
        FrontLayer { state }
    }
}

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Front<S> {
        Front {
            state: self.state.clone(),
            inner,
        }
    }
}

/// Rate limits and identity in, then metrics, security headers and the
/// problem-body guard on the answer.
#[derive(Clone)]
pub struct Front<S> {
    state: AppState,
    inner: S,
}

impl<S, B> Service<Request> for Front<S>
where
    S: Service<Request, Response = axum::http::Response<B>>,
    axum::http::Response<B>: IntoResponse,
{
    type Response = Response;
    type Error = S::Error;
    type Future = FrontFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        // A clone of the matched path shares its string (no copy per request).
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        let (inner, refused) = match crate::ratelimit::admit(&self.state, &mut req) {
            Ok(()) => (Some(self.inner.call(req)), None),
            Err(refused) => (None, Some(refused)),
        };
        FrontFuture {
            inner,
            refused,
            finish: Some(Finish {
                state: self.state.clone(),
                started,
                route,
                method,
            }),
        }
    }
}

/// What the answer needs from the request: who counts it and under which labels.
struct Finish {
    state: AppState,
    started: Instant,
    route: Option<MatchedPath>,
    method: &'static str,
}

impl Finish {
    /// Counts and times the answer, then adds the security headers and makes
    /// a stray error body a problem (the order the middlewares had).
    fn answer(self, response: Response) -> Response {
        let route = self.route.as_ref().map_or("unmatched", |m| m.as_str());
        self.state.metrics.record(
            route,
            self.method,
            response.status(),
            self.started.elapsed(),
        );
        let mut response = response;
        let headers = response.headers_mut();
        for (name, value) in &SECURITY_HEADERS {
            if !headers.contains_key(name) {
                headers.insert(name.clone(), HeaderValue::from_static(value));
            }
        }
        crate::problem::ensure_problem_body(response)
    }
}

pin_project! {
    /// The answer of [`Front`]: the inner service's, or the rate limiter's refusal.
    pub struct FrontFuture<F> {
        #[pin]
        inner: Option<F>,
        // The 429 when the request was refused before reaching the inner service.
        refused: Option<Response>,
        // Taken when the answer is ready.
        finish: Option<Finish>,
    }
}

impl<F, B, E> Future for FrontFuture<F>
where
    F: Future<Output = Result<axum::http::Response<B>, E>>,
    axum::http::Response<B>: IntoResponse,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.inner.as_pin_mut() {
            Some(inner) => match ready!(inner.poll(cx)) {
                Ok(response) => response.into_response(),
                Err(e) => return Poll::Ready(Err(e)),
            },
            None => this
                .refused
                .take()
                .expect("FrontFuture polled after it completed"),
        };
        let finish = this
            .finish
            .take()
            .expect("FrontFuture polled after it completed");
        Poll::Ready(Ok(finish.answer(response)))
    }
}
