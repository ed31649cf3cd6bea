//! The accept loop: hyper-util's server builder with a Tokio timer, so a
//! connection that sends its headers slowly is closed, plus connection caps,
//! the idle timeout, fair turns at the cap, and graceful shutdown.
//!
//! Owns, per connection: a place among accepted connections
//! (`connections_max` plus at most [`WAITING_CONNECTIONS_MAX`] waiting,
//! taken before `accept`, so beyond it new connections wait in the kernel's
//! accept queue instead of costing memory here), then one serving slot of
//! `connections_max` ([`crate::connections`]), one unit of
//! `connections_per_address_max` for the peer's address key (a peer over
//! its cap is closed at once; trusted proxies are exempt, since every
//! client behind them shares their address), the header-read timeout
//! (`header_read_timeout_ms`, HTTP/1), HTTP/2 keep-alive pings, and the
//! connection's supervisor, which closes it gracefully (hyper's
//! `graceful_shutdown`: the request in progress is answered, HTTP/1 with
//! `Connection: close`, HTTP/2 with GOAWAY) when
//! - it has had no request for `keep_alive_idle_ms` (counted `idle`);
//! - the fairness task asks it to, because connections wait for a slot
//!   (counted `fairness`, in [`crate::connections`]);
//! - the gateway shuts down;
//!
//! and drops it outright if that close has not finished within the close
//! grace (`request_timeout_ms` + 1 s; counted `forced`), so a peer that
//! stops reading cannot keep its slot. Request and body timeouts are tower
//! layers in [`crate::api`].
//!
//! Choice (issue 16): a connection does not keep its slot forever while
//! others wait. Before, the slot was taken before `accept` and given back
//! only at close, so a crowd keeping `connections_max` keep-alive
//! connections busy left every newcomer (an operator's `/readyz`, a new
//! fan) in the kernel's accept queue for good. Now a bounded number of
//! connections past the cap are accepted and wait, and each makes the
//! oldest served connection close after its current request, so a waiter
//! is admitted within [`crate::connections::TENURE_MIN_MS`] plus the close
//! grace, and usually within one request's time; the client whose
//! connection closed reconnects and waits its turn, as it would behind
//! nginx (`keepalive_requests`) or envoy (`max_requests_per_connection`).
//! Below the cap nothing changes: nobody is asked to leave.
//!
//! Must not: parse HTTP itself or know routes. Caveats: an upgraded
//! connection (a WebSocket) leaves hyper's hands at the upgrade, and with
//! them its serving slot and per-address unit: it is bounded by the
//! WebSocket caps (`ws_clients_max`, `ws_clients_per_address_max`)
//! instead, and is never asked to close for fairness. The idle timeout of an
//! HTTP/1 connection is at most `header_read_timeout_ms`, since hyper's
//! header timer also runs while it waits for the next request. Closing an
//! idle keep-alive connection races with a request the client may be
//! sending on it; HTTP clients retry such a request on a new connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::client_addr::{is_trusted, AddrCounts, AddrKey};
use crate::connections::{stopped, Activity, Admitted, ConnTable, TableMetrics, TENURE_MIN_MS};
use crate::metrics::Metrics;
use crate::AppState;

/// Pause after a failed `accept` (out of file descriptors), so the loop does
/// not spin; in ms.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;
/// HTTP/2 keep-alive ping interval, in ms; a peer that does not answer
/// within the header-read timeout is dropped.
const H2_KEEPALIVE_MS: u64 = 20_000;
/// Most connections accepted past `connections_max` to wait for a slot
/// (never more than `connections_max`, so each can be matched with a
/// served connection asked to close). Each costs a socket and a small
/// task; when full, further connections wait in the kernel's accept queue.
pub const WAITING_CONNECTIONS_MAX: usize = 1_024;

/// Serves `app` on `listener` until `shutdown`, then waits for open requests
/// for at most the close grace (`request_timeout_ms` + 1 s).
pub async fn run(
    state: AppState,
    app: Router,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = &state.settings;
    let header_timeout = Duration::from_millis(settings.header_read_timeout_ms);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(H2_KEEPALIVE_MS))
        .keep_alive_timeout(header_timeout)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let table = ConnTable::new(
        settings.connections_max,
        settings.connections_max.min(WAITING_CONNECTIONS_MAX),
        Duration::from_millis(TENURE_MIN_MS),
        TableMetrics {
            open: state.metrics.connections_open.clone(),
            waiting: state.metrics.connections_waiting.clone(),
            fairness_closes: state
                .metrics
                .connections_closed
                .with_label_values(&["fairness"]),
        },
    );
    let limits = Limits {
        idle: Duration::from_millis(settings.keep_alive_idle_ms),
        close_grace: close_grace(settings.request_timeout_ms),
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let fairness = tokio::spawn(table.clone().run_fairness(stop_rx.clone()));
    let per_address = AddrCounts::default();
    let per_address_max = settings.connections_per_address_max;
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = table.accept_slot() => slot,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let guard = if is_trusted(peer.ip(), &settings.trusted_proxies) {
            None
        } else {
            match per_address.try_add(AddrKey::of(peer.ip()), per_address_max) {
                Some(g) => Some(g),
                None => {
                    state.metrics.connections_refused.inc();
                    tracing::debug!(%peer, "connection refused: per-address cap");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, table) = (app.clone(), builder.clone(), table.clone());
        let (state, mut stop) = (state.clone(), stop_rx.clone());
        tokio::spawn(async move {
            // Wait for a serving slot (at once below the cap), unless the
            // gateway stops first.
            let admitted = tokio::select! {
                admitted = table.admit() => admitted,
                () = stopped(&mut stop) => return,
            };
            let activity = Activity::new();
            let service = {
                let activity = activity.clone();
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                    let busy = activity.begin();
                    let answer = app.clone().oneshot(req);
                    async move {
                        let answer = answer.await;
                        drop(busy);
                        answer
                    }
                })
            };
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            let conn = std::pin::pin!(conn);
            supervise(
                conn,
                |c| c.graceful_shutdown(),
                Watch {
                    admitted: &admitted,
                    activity: &activity,
                    stop,
                    metrics: &state.metrics,
                    peer,
                },
                limits,
            )
            .await;
            drop(admitted);
            drop(guard);
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection was told to close; each has the close grace, so
    // this waits only a moment longer.
    let grace = limits.close_grace + Duration::from_secs(1);
    if !table.drained_within(grace).await {
        tracing::warn!("shutdown: connections still open after the grace period");
    }
    let _ = fairness.await;
    Ok(())
}

/// How long a connection asked to close may take to finish its request:
/// the request timeout and a second to write the answer.
fn close_grace(request_timeout_ms: u64) -> Duration {
    Duration::from_millis(request_timeout_ms.saturating_add(1_000))
}

/// The supervisor's bounds.
#[derive(Clone, Copy)]
struct Limits {
    /// Longest time without a request before a connection is closed.
    idle: Duration,
    /// Longest a graceful close may take before the connection is dropped.
    close_grace: Duration,
}

/// What the supervisor watches besides the connection itself.
struct Watch<'a> {
    admitted: &'a Admitted,
    activity: &'a Activity,
    stop: watch::Receiver<bool>,
    metrics: &'a Metrics,
    peer: SocketAddr,
}

/// Drives `conn` to its end, closing it gracefully (with `graceful`) when
/// it is idle, asked to, or the gateway stops, and dropping it if that
/// close takes longer than the close grace.
async fn supervise<F, E>(
    mut conn: std::pin::Pin<&mut F>,
    graceful: impl Fn(std::pin::Pin<&mut F>),
    mut watch: Watch<'_>,
    limits: Limits,
) where
    F: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let peer = watch.peer;
    let mut idle_check = Instant::now() + limits.idle;
    let mut close_by: Option<Instant> = None;
    loop {
        let closing = close_by.is_some();
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::trace!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = watch.admitted.close.notified(), if !closing => {
                // Counted by the fairness task when it asked.
                tracing::debug!(%peer, "connection asked to close: others wait for a slot");
                graceful(conn.as_mut());
                close_by = Some(Instant::now() + limits.close_grace);
            }
            () = stopped(&mut watch.stop), if !closing => {
                watch.admitted.closing();
                graceful(conn.as_mut());
                close_by = Some(Instant::now() + limits.close_grace);
            }
            () = tokio::time::sleep_until(idle_check), if !closing => {
                match watch.activity.idle_check(limits.idle) {
                    Some(again) => idle_check = again,
                    None => {
                        watch.metrics.connections_closed.with_label_values(&["idle"]).inc();
                        watch.admitted.closing();
                        graceful(conn.as_mut());
                        close_by = Some(Instant::now() + limits.close_grace);
                    }
                }
            }
            () = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if closing => {
                watch.metrics.connections_closed.with_label_values(&["forced"]).inc();
                tracing::debug!(%peer, "connection dropped: its close took longer than the grace");
                return;
            }
        }
    }
}
