//! `bench peers`: one hold workload against this store and the systems a user
//! would pick instead (etcd, Redis, PostgreSQL), in one run, one table.
//!
//! Owns: the workload (`seats` seats, `ops` hold attempts, `clients`
//! concurrent workers, closed loop; `uniform` draws a seat uniformly, `hot`
//! sends every attempt at seat 0), the per-seat acknowledgement audit, and the
//! table. Each system module owns starting its private instance on loopback
//! in a temp dir and stopping it (drop guards).
//!
//! Must not: compare numbers from different runs: ratios are to our store
//! through the client library, same variant, same invocation.
//!
//! Audit: every successful hold the bench is told about is counted per seat;
//! `oversold` is the number of seats acknowledged to more than one worker.
//! After each round the system's own count of held seats is read back and
//! must equal the number of acknowledged seats (`audit` column).

pub mod etcd;
pub mod ours;
pub mod postgres;
pub mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stats::Latencies;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One system under the hold workload, set up for one round (fresh inventory).
pub trait HoldTarget: Send + Sync {
    /// Tries to hold `seat` for `holder` from worker `worker`: Ok(true) held,
    /// Ok(false) refused because it is taken, Err for anything else.
    fn hold<'a>(
        &'a self,
        worker: usize,
        seat: u32,
        holder: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<bool>>;
    /// How many seats the system says are held now.
    fn held_count(&self) -> BoxFuture<'_, anyhow::Result<u64>>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Uniform,
    Hot,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Uniform => "uniform",
            Variant::Hot => "hot-seat",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Workload {
    pub seats: u32,
    pub ops: u64,
    pub clients: usize,
    pub duration_s_max: u64,
}

/// One row of the table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub system: String,
    pub variant: String,
    pub ops_done: u64,
    pub holds_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub held: u64,
    pub rejected: u64,
    pub errors: u64,
    pub oversold: u64,
    /// "ok" when the system's held count equals the acknowledged seats.
    pub audit: String,
    pub ratio_to_ours: Option<f64>,
    pub note: String,
}

/// Runs the workload once against `target` (closed loop, bounded in count and time).
pub async fn run_round(
    system: &str,
    variant: Variant,
    w: &Workload,
    target: Arc<dyn HoldTarget>,
) -> Row {
    let acks: Arc<Vec<AtomicU32>> = Arc::new((0..w.seats).map(|_| AtomicU32::new(0)).collect());
    let next = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let (held, rejected, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let start = Instant::now();
    let deadline = Duration::from_secs(w.duration_s_max.max(1));
    let mut tasks = Vec::new();
    for worker in 0..w.clients.max(1) {
        let (acks, next, lat, target) = (acks.clone(), next.clone(), lat.clone(), target.clone());
        let (held, rejected, errors, first_error) = (
            held.clone(),
            rejected.clone(),
            errors.clone(),
            first_error.clone(),
        );
        let (ops, seats) = (w.ops, w.seats);
        tasks.push(tokio::spawn(async move {
            let mut local = Latencies::default();
            loop {
                let op = next.fetch_add(1, Ordering::Relaxed);
                if op >= ops || start.elapsed() >= deadline {
                    break;
                }
                let seat = match variant {
                    Variant::Uniform => rand::random_range(0..seats),
                    Variant::Hot => 0,
                };
                let holder = format!("w{worker}-{op}");
                let t0 = Instant::now();
                match target.hold(worker, seat, &holder).await {
                    Ok(true) => {
                        local.record(t0.elapsed());
                        acks[seat as usize].fetch_add(1, Ordering::Relaxed);
                        held.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(false) => {
                        local.record(t0.elapsed());
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            lat.lock().unwrap_or_else(|p| p.into_inner()).merge(&local);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let lat = lat.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let oversold = acks
        .iter()
        .filter(|a| a.load(Ordering::Relaxed) > 1)
        .count() as u64;
    let acked_seats = acks
        .iter()
        .filter(|a| a.load(Ordering::Relaxed) > 0)
        .count() as u64;
    let audit = match target.held_count().await {
        Ok(n) if n == acked_seats => "ok".to_string(),
        Ok(n) => format!("store {n} != acked {acked_seats}"),
        Err(e) => format!("read-back failed: {e}"),
    };
    let done = held.load(Ordering::Relaxed) + rejected.load(Ordering::Relaxed);
    let note = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_default();
    Row {
        system: system.to_string(),
        variant: variant.name().to_string(),
        ops_done: done,
        holds_per_s: done as f64 / secs,
        p50_ms: lat.quantile_ms(0.5),
        p99_ms: lat.quantile_ms(0.99),
        held: held.load(Ordering::Relaxed),
        rejected: rejected.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        oversold,
        audit,
        ratio_to_ours: None,
        note,
    }
}

/// A row for a system that did not run (not installed, failed to start).
pub fn skipped(system: &str, variant: Variant, why: &str) -> Row {
    Row {
        system: system.to_string(),
        variant: variant.name().to_string(),
        ops_done: 0,
        holds_per_s: 0.0,
        p50_ms: 0.0,
        p99_ms: 0.0,
        held: 0,
        rejected: 0,
        errors: 0,
        oversold: 0,
        audit: "skipped".into(),
        ratio_to_ours: None,
        note: why.to_string(),
    }
}

/// Fills `ratio_to_ours` from the `ours-client` row of the same variant.
pub fn fill_ratios(rows: &mut [Row]) {
    let base: Vec<(String, f64)> = rows
        .iter()
        .filter(|r| r.system == ours::CLIENT && r.ops_done > 0)
        .map(|r| (r.variant.clone(), r.holds_per_s))
        .collect();
    for r in rows.iter_mut() {
        if r.ops_done == 0 {
            continue;
        }
        if let Some((_, b)) = base.iter().find(|(v, _)| *v == r.variant) {
            r.ratio_to_ours = Some(r.holds_per_s / b.max(1e-9));
        }
    }
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:<22} {:<9} {:>8} {:>10} {:>9} {:>9} {:>8} {:>9} {:>7} {:>8} {:<8} {:>9}",
        "system",
        "variant",
        "ops",
        "holds/s",
        "p50 ms",
        "p99 ms",
        "held",
        "rejected",
        "errors",
        "oversold",
        "audit",
        "vs ours"
    );
    for r in rows {
        println!(
            "{:<22} {:<9} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>9} {:>7} {:>8} {:<8} {:>9}",
            r.system,
            r.variant,
            r.ops_done,
            r.holds_per_s,
            r.p50_ms,
            r.p99_ms,
            r.held,
            r.rejected,
            r.errors,
            r.oversold,
            r.audit,
            r.ratio_to_ours
                .map_or("-".to_string(), |x| format!("{x:.2}x")),
        );
    }
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("  note {} {}: {}", r.system, r.variant, r.note);
    }
}
