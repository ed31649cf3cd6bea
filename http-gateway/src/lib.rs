//! The public HTTP API (axum): REST under `/v1`, the live seat map over
//! WebSocket, the waiting room, payments with idempotency, signed e-tickets,
//! the seat-map page, OpenAPI, health and metrics.
//!
//! Owns: HTTP and the JSON shapes of the public API, and the mapping of
//! every failure to an RFC 9457 problem. Must not: talk to the cluster except
//! through the [`cluster::Cluster`] trait (implemented over the `client`
//! crate in production), or keep state that a second gateway would need to
//! agree with: tokens are signed and stateless, idempotency keys map to the
//! replicated exactly-once table, webhook dedupe lives in replicated state.
//!
//! Layout:
//! - [`cluster`]: the `Cluster` trait the gateway reaches the store through;
//!   [`remote`]: its implementation over `client::Client`.
//! - `fake` (tests / feature `fake-cluster`): an in-memory `Cluster`.
//! - [`settings`]: `GatewaySettings` and start-up checks; [`keys`]: secrets,
//!   session and waiting-room tokens; [`jwt`]: the identity provider's keys
//!   and token verification.
//! - [`server`]: the accept loop (timeouts, connection caps, the idle
//!   timeout, shutdown); [`connections`]: serving slots, waiters and who is
//!   asked to make room at the cap; [`client_addr`]: client addresses
//!   behind trusted proxies.
//! - [`problem`]: problem+json errors and problem-producing extractors.
//! - [`auth`]: who is calling and the role extractors; [`ids`]: exactly-once request ids.
//! - [`payments`]: `PaymentProvider`, the simulated provider, webhook signatures.
//! - [`tickets`]: Ed25519 ticket codes and QR codes.
//! - [`front`]: the one layer around every route (rate limits and identity
//!   in, metrics, security headers and the problem-body guard out);
//!   [`ratelimit`], [`metrics`]: what it calls.
//! - `api`: the handlers; `live`: the WebSocket feed; `openapi`: the document;
//!   `notify`: the outbox sender.
//! - [`fault`]: which deliberate bug was chosen at start, and the gateway's
//!   bug `jepsen selftest` must catch (a wrapper around the cluster, compiled
//!   only with the feature `fault-injection-bugs`).
//!
//! Caveats:
//! - Rate limits and connection caps are per gateway process.
//! - The simulated payment provider's ledger is in this process's memory;
//!   with several gateways use a real provider (keyed by idempotency key).

// Handlers return `Result<_, Problem>`; a problem is built once per failed
// request and becomes the response, so its size on the error path is noise.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod client_addr;
pub mod cluster;
pub mod connections;
#[cfg(any(test, feature = "fake-cluster"))]
pub mod fake;
pub mod fault;
pub mod front;
pub mod ids;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod payments;
pub mod problem;
pub mod ratelimit;
pub mod remote;
pub mod server;
pub mod settings;
pub mod tickets;

mod api;
pub mod live;
mod notify;
mod openapi;
pub mod queue_desk;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use cluster::{Cluster, ClusterError, Consistency};
pub use payments::{PaymentProvider, SimulatedProvider};
pub use remote::ClientCluster;
pub use settings::{GatewaySettings, SettingsError};

use crate::client_addr::AddrCounts;
use crate::ids::NewIds;
use crate::jwt::{JwtSettings, JwtVerifier};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::settings::AuthMode;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<App>);

pub struct App {
    pub settings: GatewaySettings,
    pub cluster: Arc<dyn Cluster>,
    pub payments: Arc<dyn PaymentProvider>,
    pub keys: Keys,
    pub new_ids: NewIds,
    pub metrics: Metrics,
    pub limits: RateLimits,
    /// The identity provider's keys (`[auth] mode = "jwt"` only).
    pub jwt: Option<Arc<JwtVerifier>>,
    /// One permit per live WebSocket client (bound: `ws_clients_max`).
    pub ws_slots: Arc<Semaphore>,
    /// Live WebSocket clients per address key (bound: `ws_clients_per_address_max`).
    pub ws_per_address: AddrCounts,
    /// One cluster watch per event, shared by its sockets.
    pub live: live::LiveHub,
    /// Waiting-room position blocks and the cached watermark, per event.
    pub queue_desks: queue_desk::QueueDesks,
}

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl AppState {
    /// Validates the settings, reads the JWKS file in jwt mode, and
    /// assembles the state. Keys are given (see [`Keys::load`]) so tests can
    /// fix them. Every write to `cluster` is bounded by `cluster_timeout_ms`
    /// ([`cluster::TimedWrites`]); the deliberate bug, if one was chosen at
    /// start, wraps that ([`fault::wrap`]).
    pub fn new(
        settings: GatewaySettings,
        cluster: Arc<dyn Cluster>,
        payments: Arc<dyn PaymentProvider>,
        keys: Keys,
    ) -> Result<AppState, SettingsError> {
        settings.validate()?;
        let timeout = Duration::from_millis(settings.cluster_timeout_ms);
        let cluster = fault::wrap(Arc::new(cluster::TimedWrites::new(cluster, timeout)));
        let jwt = match settings.auth.mode {
            AuthMode::Jwt => Some(Arc::new(JwtVerifier::load(JwtSettings::from_auth(
                &settings.auth,
            )?)?)),
            AuthMode::Demo => None,
        };
        Ok(AppState(Arc::new(App {
            limits: RateLimits::new(&settings),
            jwt,
            ws_per_address: AddrCounts::default(),
            live: live::LiveHub::default(),
            queue_desks: queue_desk::QueueDesks::default(),
            ws_slots: Arc::new(Semaphore::new(settings.ws_clients_max)),
            settings,
            cluster,
            payments,
            keys,
            new_ids: NewIds::new(),
            metrics: Metrics::new(),
        })))
    }
}

/// Why the gateway stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("http server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The whole HTTP app over `state`.
pub fn router(state: AppState) -> Router {
    api::router(state)
}

/// Runs the gateway on `listener` until `shutdown` resolves, with the
/// payment provider `[payments] provider` names and keys loaded per the
/// settings.
pub async fn serve(
    settings: GatewaySettings,
    cluster: impl Cluster,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    settings.validate_for(listener.local_addr()?)?;
    let keys = Keys::load(&settings)?;
    let payments = payments::provider_for(settings.payment_provider);
    let state = AppState::new(settings, Arc::new(cluster), payments, keys)?;
    serve_state(state, listener, shutdown).await
}

/// Runs the gateway over an assembled state (tests inject the provider and keys).
pub async fn serve_state(
    state: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    // The listener may differ from `settings.listen`: check where it really is.
    let local = listener.local_addr()?;
    state.settings.validate_for(local)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let janitor = tokio::spawn(janitor(state.clone(), stop_rx.clone()));
    let notifier = notify::Sender::from_settings(&state)
        .map_err(SettingsError::Notifications)?
        .map(|sender| tokio::spawn(notify::run(state.clone(), sender, stop_rx)));
    tracing::info!(addr = %local, auth = ?state.settings.auth.mode, "gateway listening");
    let result = server::run(state.clone(), router(state), listener, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = janitor.await;
    if let Some(n) = notifier {
        let _ = n.await;
    }
    result.map_err(GatewayError::Io)
}

/// Periodic upkeep: forget idle rate-limit keys; re-read a changed JWKS file.
async fn janitor(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut forget = tokio::time::interval(Duration::from_millis(ratelimit::JANITOR_INTERVAL_MS));
    let mut keys = tokio::time::interval(Duration::from_millis(jwt::JWKS_POLL_MS));
    loop {
        tokio::select! {
            _ = forget.tick() => state.limits.forget_idle(),
            _ = keys.tick() => {
                if let Some(jwt) = &state.jwt {
                    jwt.reload_if_changed();
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Wall-clock seconds since the Unix epoch (token expiry, webhook windows).
pub(crate) fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-12-01T20:00:00.000Z` for milliseconds since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let millis = ms % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian (year, month, day) of a count of days since 1970-01-01, by
/// walking 400-year eras (146 097 days each) then years and months.
fn civil_from_days(mut days: i64) -> (i64, u32, u32) {
    let mut year = 1970 + 400 * (days / 146_097);
    days %= 146_097;
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let month_lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for len in month_lengths {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    (year, month, days as u32 + 1)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        // Goal: the formatter agrees with the state machine's parser on known instants.
        assert_eq!(super::rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339_ms(951_868_800_000),
            "2000-03-01T00:00:00.000Z"
        );
        for ms in [1_796_151_600_500u64, 4_102_444_800_000, 1_709_164_800_123] {
            assert_eq!(
                state_machine::spec::parse_rfc3339_ms(&super::rfc3339_ms(ms)),
                Ok(ms as i64)
            );
        }
    }
}
