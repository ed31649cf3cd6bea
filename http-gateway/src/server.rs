//! The accept loop: hyper-util's server builder with a Tokio timer, so a
//! connection that sends its headers slowly is closed, plus connection caps
//! and graceful shutdown.
//!
//! Owns, per connection: one permit of `connections_max` (taken before
//! `accept`, so beyond the cap new connections wait in the kernel's accept
//! queue instead of costing memory here), one unit of
//! `connections_per_address_max` for the peer's address key (a peer over
//! its cap is closed at once; trusted proxies are exempt, since every
//! client behind them shares their address), the header-read timeout
//! (`header_read_timeout_ms`, HTTP/1) and HTTP/2 keep-alive pings. Request
//! and body timeouts are tower layers in [`crate::api`].
//!
//! Must not: parse HTTP itself or know routes. Caveat: an upgraded
//! connection (a WebSocket) leaves hyper's hands and is bounded by the
//! WebSocket caps instead; it keeps its connection permit until it closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::client_addr::{is_trusted, AddrCounts, AddrKey};
use crate::AppState;

/// Pause after a failed `accept` (out of file descriptors), so the loop does
/// not spin; in ms.
const ACCEPT_ERROR_PAUSE_MS: u64 = 50;
/// HTTP/2 keep-alive ping interval, in ms; a peer that does not answer
/// within the header-read timeout is dropped.
const H2_KEEPALIVE_MS: u64 = 20_000;

/// Serves `app` on `listener` until `shutdown`, then waits for open requests
/// for at most `request_timeout_ms`.
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
    let connections = Arc::new(Semaphore::new(settings.connections_max));
    let per_address = AddrCounts::default();
    let per_address_max = settings.connections_per_address_max;
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
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
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                app.clone().oneshot(req)
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::trace!(error = %e, %peer, "connection ended with an error");
            }
            drop(guard);
            drop(permit);
        });
    }
    drop(listener);
    let grace = Duration::from_millis(state.settings.request_timeout_ms.saturating_add(1_000));
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: connections still open after the grace period");
    }
    Ok(())
}
