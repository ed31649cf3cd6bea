//! The ceiling (DESIGN §10): a no-op axum JSON echo in its own process, and a
//! closed-loop load on it from the same load generator the flash sale uses.
//!
//! Owns: the echo server (`bench echo-server --port P`) and [`measure`].
//! Must not: do any work per request beyond parsing and re-serialising the
//! JSON body, so it stays a ceiling for "HTTP + JSON on this box".
//! Caveat: closed loop with `connections` in flight; the number depends on the
//! machine's load at the time, hence it is always measured in the same run.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::cpu;
use crate::http::FanPool;
use testkit::free_addr;
use testkit::process::Child;

/// Serves `POST /echo` on 127.0.0.1:`port` until SIGTERM.
pub async fn serve(port: u16) -> anyhow::Result<()> {
    let app = Router::new().route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The ceiling of one run.
#[derive(Clone, Copy, Debug)]
pub struct EchoCeiling {
    pub requests_per_s: f64,
    /// CPU time per request of the echo server and of the generator (the
    /// same load generator the sale uses), µs.
    pub server_cpu_us: Option<f64>,
    pub generator_cpu_us: f64,
}

/// Starts the echo process, loads it for `duration` with `connections`
/// concurrent requests, stops it, and returns requests per second and the
/// CPU each side spent per request.
pub async fn measure(
    duration: Duration,
    connections: usize,
    log_dir: &std::path::Path,
) -> anyhow::Result<EchoCeiling> {
    let port = free_addr().port();
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("echo-server").arg("--port").arg(port.to_string());
    let mut child = Child::spawn("echo", cmd, &log_dir.join("echo.log"))?;
    child
        .wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )
        .await?;
    let pool = FanPool::new(&format!("http://127.0.0.1:{port}"))?;
    let done = Arc::new(AtomicU64::new(0));
    let server_cpu_before = child.pid().and_then(cpu::pid_cpu_ms);
    let generator_cpu_before = cpu::self_cpu_ms();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections as u64 {
        let pool = pool.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let url = format!("{}/echo", pool.base);
            let body = json!({ "seats": ["S1-1-1"] });
            while start.elapsed() < duration {
                if let Ok(r) = pool.client(c).post(&url).json(&body).send().await {
                    if r.status().is_success() && r.bytes().await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let requests = done.load(Ordering::Relaxed);
    let rps = requests as f64 / start.elapsed().as_secs_f64();
    let per_request = |ms: u64| ms as f64 * 1000.0 / requests.max(1) as f64;
    let server_cpu_us = server_cpu_before
        .zip(child.pid().and_then(cpu::pid_cpu_ms))
        .map(|(b, a)| per_request(a.saturating_sub(b)));
    let generator_cpu_us = per_request(cpu::self_cpu_ms().saturating_sub(generator_cpu_before));
    drop(child);
    Ok(EchoCeiling {
        requests_per_s: rps,
        server_cpu_us,
        generator_cpu_us,
    })
}
