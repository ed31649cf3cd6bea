//! The waiting room's join capacity, measured like the echo ceiling: a
//! closed loop of joins with the echo's concurrency, for a few seconds,
//! on an event of its own, before the sale.
//!
//! Why: the sale's joins/s is set by the arrival schedule and by the
//! generator (its request slots are shared with polls and holds, and fans
//! start late when they are full), so it says little about what the stack
//! can take. The same closed loop against the echo server and against
//! `POST /v1/events/{id}/queue` gives two rates from one generator, on one
//! box, in one run; their ratio is the stack's join cost against a no-op.
//!
//! Owns: the loop and its count. Must not: touch the sale's event (its
//! positions and audit stay the sale's own) or count anything but 201
//! answers as joins.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cpu::{self, CpuPerRequest};
use crate::http::{FanPool, QueueAnswer};

/// What the closed loop measured.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct JoinCeiling {
    pub joins_per_s: f64,
    /// Answers other than 201 (rate-limited, unavailable, other).
    pub not_joined: u64,
    pub connections: usize,
    pub duration_ms: u64,
    pub cpu: CpuPerRequest,
}

/// Joins `event_id` for `duration` with `connections` joins in flight,
/// each under the next of `tokens` (round robin).
pub async fn measure(
    pool: &FanPool,
    gateway_url: &str,
    metrics_urls: &[String],
    event_id: &str,
    tokens: &[String],
    duration: Duration,
    connections: usize,
) -> JoinCeiling {
    let tokens: Arc<Vec<String>> = Arc::new(tokens.to_vec());
    let joined = Arc::new(AtomicU64::new(0));
    let not_joined = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let cpu_before = cpu::sample(Some(gateway_url), metrics_urls).await;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        let (pool, tokens, joined, not_joined, next) = (
            pool.clone(),
            tokens.clone(),
            joined.clone(),
            not_joined.clone(),
            next.clone(),
        );
        let event_id = event_id.to_string();
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < duration {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let token = &tokens[(i % tokens.len().max(1) as u64) as usize];
                match pool.join(i, token, &event_id).await {
                    QueueAnswer::Place(_) => joined.fetch_add(1, Ordering::Relaxed),
                    _ => not_joined.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = start.elapsed();
    let cpu_after = cpu::sample(Some(gateway_url), metrics_urls).await;
    let joined = joined.load(Ordering::Relaxed);
    let not_joined = not_joined.load(Ordering::Relaxed);
    JoinCeiling {
        joins_per_s: joined as f64 / elapsed.as_secs_f64().max(1e-3),
        not_joined,
        connections,
        duration_ms: elapsed.as_millis() as u64,
        cpu: cpu::per_request(&cpu_before, &cpu_after, joined + not_joined),
    }
}
