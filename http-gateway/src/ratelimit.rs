//! Per-address and per-user rate limits (token buckets from `governor`,
//! rates from `[gateway] rate_per_*`), answered with `429` and `Retry-After`.
//!
//! Owns: the two keyed limiters and the check ([`admit`], run by
//! [`crate::front`] on every request) that also resolves who is calling: the client address ([`crate::client_addr`]: IPv6 by /64,
//! forwarded headers only from trusted proxies) and the bearer token
//! ([`crate::auth::identify`], any `Bearer` casing), both stored in the
//! request's extensions for the handlers. The user bucket is keyed by the
//! verified user, so a forged or unknown token is limited by address alone
//! (and then refused with 401). Must not: hold memory without bound: a
//! janitor task drops idle keys every [`JANITOR_INTERVAL_MS`].
//!
//! Caveat: limits are per gateway; N gateways admit N times the rate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::client_addr::{client_addr, AddrKey};
use crate::problem::Problem;
use crate::settings::GatewaySettings;
use crate::AppState;

/// How often idle limiter keys are dropped.
pub const JANITOR_INTERVAL_MS: u64 = 60_000;

pub struct RateLimits {
    by_address: DefaultKeyedRateLimiter<AddrKey>,
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

/// Resolves the client address, checks its bucket, resolves the caller's
/// identity, then checks the user's bucket; stores the address and the
/// identity in the request's extensions. `Err` is the 429 to answer instead.
pub fn admit(state: &AppState, req: &mut Request) -> Result<(), Response> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let client = client_addr(peer, req.headers(), &state.settings.trusted_proxies);
    req.extensions_mut().insert(client);
    // The limiters' own clock: building a `DefaultClock` per request costs a
    // CPUID (a hypervisor trap on a VM), seen in the bench profile.
    if let Err(not_until) = state.limits.by_address.check_key(&client.key) {
        let now = state.limits.by_address.clock().now();
        return Err(limited(not_until.wait_time_from(now), "address"));
    }
    let identity = crate::auth::identify(req.headers(), state);
    if let Some(user) = identity.user() {
        if let Err(not_until) = state.limits.by_user.check_key(&user.to_string()) {
            let now = state.limits.by_user.clock().now();
            return Err(limited(not_until.wait_time_from(now), "user"));
        }
    }
    req.extensions_mut().insert(identity);
    Ok(())
}
