//! Per-address and per-user rate limits (token buckets from `governor`),
//! answered with `429` and `Retry-After`.
//!
//! Owns: the two keyed limiters and the middleware. The user is read from a
//! valid session token only (a forged token is limited by address alone and
//! then refused by the handler). Must not: hold memory without bound: a
//! janitor task drops idle keys every [`JANITOR_INTERVAL_MS`].
//!
//! Caveat: limits are per gateway; N gateways admit N times the rate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::Problem;
use crate::settings::GatewaySettings;
use crate::{unix_now_s, AppState};

/// How often idle limiter keys are dropped.
pub const JANITOR_INTERVAL_MS: u64 = 60_000;

pub struct RateLimits {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<String>,
}

fn quota(per_s: u32, burst: u32) -> Quota {
    let per_s = NonZeroU32::new(per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(per_s);
    Quota::per_second(per_s).allow_burst(burst)
}

impl RateLimits {
    pub fn new(settings: &GatewaySettings) -> RateLimits {
        RateLimits {
            by_address: RateLimiter::keyed(quota(
                settings.rate_per_address_per_s,
                settings.rate_per_address_burst,
            )),
            by_user: RateLimiter::keyed(quota(
                settings.rate_per_user_per_s,
                settings.rate_per_user_burst,
            )),
        }
    }

    /// Drops keys whose buckets are full again (idle callers).
    pub fn forget_idle(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_user.retain_recent();
        self.by_user.shrink_to_fit();
    }
}

fn limited(wait: Duration, what: &str) -> Response {
    let ms = wait.as_millis().min(u64::MAX as u128) as u64;
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this {what}; slow down"),
    )
    .retry_after_ms(ms.max(1))
    .into_response()
}

/// Checks the address bucket, then the user bucket.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    // The limiters' own clock: building a `DefaultClock` per request costs a
    // CPUID (a hypervisor trap on a VM), seen in the bench profile.
    if let Err(not_until) = state.limits.by_address.check_key(&ip) {
        let now = state.limits.by_address.clock().now();
        return limited(not_until.wait_time_from(now), "address");
    }
    let user = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(|t| state.keys.verify_session(t.trim(), unix_now_s()))
        .map(|c| c.sub);
    if let Some(user) = user {
        if let Err(not_until) = state.limits.by_user.check_key(&user) {
            let now = state.limits.by_user.clock().now();
            return limited(not_until.wait_time_from(now), "user");
        }
    }
    next.run(req).await
}
