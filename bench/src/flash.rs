//! `bench flash-sale`: fans arrive open-loop at a set rate and try to hold a
//! seat through the HTTP gateway, then check out; the run ends when every fan
//! is done (or at the time bound), and an audit reads every replica.
//!
//! Owns: the fan behaviour, the arrival schedule, the run's numbers, the
//! audit and the report. Must not: read a node's memory (the audit is a
//! stale `Availability` read per node through gRPC, after the nodes report
//! equal applied indexes).
//!
//! Fan behaviour: signs in before the sale (a pool of `--users` accounts,
//! fans share them round-robin), then makes up to `1 + retries` hold
//! attempts: an explicit seat drawn from a Zipf distribution over seat rank
//! (best seats most wanted) with probability `explicit_share`, otherwise
//! best-available for one seat. A 409 saying nothing is left ends the fan; a
//! held seat is checked out at once (simulated payment, always succeeds).
//!
//! Caveats:
//! - Hold latency is measured per request from when the fan sends it. When
//!   the generator cannot start fans on schedule (in-flight bound reached),
//!   the lateness is reported separately as `start_lag_p99_ms` rather than
//!   folded into latency.
//! - The load generator shares the machine's cores with the cluster and the
//!   gateway; compare against the echo baseline of the same run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::{Client, ClientOptions, ClientTls, Consistency};
use serde_json::json;
use state_machine::{Query, QueryResult};
use tokio::sync::Semaphore;

use crate::cpu::{self, CpuPerRequest};
use crate::http::{self, FanPool, HoldAnswer};
use crate::node_metrics::{gauge_max, gauge_of, node_counters};
use crate::stats::{Latencies, Timeline};

/// Longest run the timeline covers, in seconds (later samples share the last bucket).
pub const TIMELINE_S_MAX: usize = 3_600;
/// Pause after a 429/503 before the fan tries again.
pub const BACKOFF_UNAVAILABLE: Duration = Duration::from_millis(50);
/// How long replicas may take to reach equal applied indexes after the run.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct FlashParams {
    pub seats: u32,
    pub fans: u64,
    pub rate_per_s: u64,
    pub users: u64,
    pub retries: u32,
    pub explicit_share: f64,
    pub zipf_exponent: f64,
    pub inflight_max: usize,
    pub duration_s_max: u64,
}

/// Draws seat ranks with P(rank k) proportional to 1 / (k + 1)^s.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut total = 0.0;
        for k in 0..n {
            total += 1.0 / ((k + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    pub fn sample(&self) -> u32 {
        let u: f64 = rand::random();
        self.cdf
            .partition_point(|c| *c < u)
            .min(self.cdf.len().saturating_sub(1)) as u32
    }
}

/// Everything fans report, merged under one lock (a few µs per fan).
#[derive(Default)]
struct Tally {
    hold_ok: Latencies,
    hold_rejected: Latencies,
    checkout: Latencies,
    start_lag: Latencies,
    rate_limited: u64,
    unavailable: u64,
    other: u64,
    checkout_failed: u64,
    gave_up_sold_out: u64,
    /// Seat -> confirmed bookings the bench was told about.
    booked: HashMap<String, u32>,
    last_hold_ok: Option<Duration>,
    sellout: Option<Duration>,
}

struct Shared {
    pool: FanPool,
    tokens: Vec<String>,
    event_id: String,
    zipf: Zipf,
    params: FlashParams,
    start: Instant,
    tally: Mutex<Tally>,
    timeline: Mutex<Timeline>,
    booked_count: AtomicU64,
    hold_requests: AtomicU64,
    http_requests: AtomicU64,
    stop: AtomicBool,
}

/// The flash-sale result, printed as a table or one JSON object.
#[derive(Debug, serde::Serialize)]
pub struct FlashReport {
    pub gateway: String,
    pub seats: u32,
    pub fans: u64,
    pub fans_started: u64,
    pub rate_per_s: u64,
    pub sold: u64,
    pub sold_per_replica: Vec<u64>,
    pub held_per_replica: Vec<u64>,
    pub replicas_agree: bool,
    pub double_sold: u64,
    pub bookings_acknowledged: u64,
    pub sold_out: bool,
    pub sellout_ms: Option<u64>,
    pub last_hold_ms: Option<u64>,
    pub run_ms: u64,
    pub goodput_seats_per_s: f64,
    pub holds_per_s: f64,
    pub http_requests_per_s: f64,
    pub hold_requests: u64,
    pub hold_ok: u64,
    pub hold_rejected: u64,
    pub rate_limited: u64,
    pub unavailable: u64,
    pub other_status: u64,
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub hold_p999_ms: f64,
    pub rejected_p50_ms: f64,
    pub rejected_p99_ms: f64,
    pub rejected_p999_ms: f64,
    pub checkout_p50_ms: f64,
    pub checkout_p99_ms: f64,
    pub start_lag_p99_ms: f64,
    pub commands_proposed: Option<u64>,
    /// Human summary of the next two fields.
    pub answered_without_log_write: String,
    /// Answers the nodes gave without a log write during the sale (their
    /// `booking_answered_without_log_write_total`, summed).
    pub answered_without_log_write_count: Option<u64>,
    /// That count over the hold requests sent (only holds can take the path).
    pub share_without_log_write: Option<f64>,
    pub echo_requests_per_s: Option<f64>,
    pub fraction_of_echo: Option<f64>,
    /// CPU time per HTTP request of the sale, by process.
    pub cpu_per_request: CpuPerRequest,
    /// The echo ceiling's CPU per request: its server, and the generator.
    pub echo_server_cpu_us: Option<f64>,
    pub echo_generator_cpu_us: Option<f64>,
    pub png: Option<String>,
    /// The longest time one apply batch waited for a node's state lock
    /// (`booking_apply_pause_max_ms`, the largest over the nodes) and that
    /// node's id (1-based, endpoint order).
    pub apply_pause_max_ms: Option<u64>,
    pub apply_pause_node: Option<u64>,
    /// The longest a copy of the state (for a snapshot or the state hash)
    /// held a node's state lock (`booking_state_copy_lock_held_max_ms`,
    /// largest over the nodes).
    pub state_copy_lock_held_max_ms: Option<u64>,
    /// The CPU time of that longest copy (`booking_state_copy_cpu_of_max_ms`
    /// of the same node); the rest was waiting for a core.
    pub state_copy_cpu_ms: Option<u64>,
    /// Snapshots the nodes built during the sale (summed).
    pub snapshots_built: Option<u64>,
    /// The cluster's snapshot policy (`raft.snapshot_every_entries`) and
    /// election timeout range, when the bench started the cluster.
    pub snapshot_every_entries: Option<u64>,
    pub election_timeout_ms: Option<[u64; 2]>,
}

async fn fan(shared: Arc<Shared>, i: u64, scheduled: Duration) {
    let p = &shared.params;
    let token = &shared.tokens[(i % shared.tokens.len() as u64) as usize];
    {
        let lag = shared.start.elapsed().saturating_sub(scheduled);
        shared
            .tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .start_lag
            .record(lag);
    }
    for attempt in 0..=p.retries {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let explicit = rand::random::<f64>() < p.explicit_share;
        let seat = explicit.then(|| http::seat_id(shared.zipf.sample()));
        let t0 = Instant::now();
        let answer = shared
            .pool
            .hold(i, token, &shared.event_id, seat.as_deref())
            .await;
        let took = t0.elapsed();
        let at = shared.start.elapsed();
        shared.hold_requests.fetch_add(1, Ordering::Relaxed);
        shared.http_requests.fetch_add(1, Ordering::Relaxed);
        shared
            .timeline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(at, took);
        match answer {
            HoldAnswer::Held { hold_id, seats } => {
                {
                    let mut t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
                    t.hold_ok.record(took);
                    t.last_hold_ok = Some(at);
                }
                let t1 = Instant::now();
                let ok = shared.pool.checkout(i, token, hold_id).await;
                shared.http_requests.fetch_add(1, Ordering::Relaxed);
                let mut t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.checkout.record(t1.elapsed());
                if ok {
                    for s in seats {
                        *t.booked.entry(s).or_default() += 1;
                        let n = shared.booked_count.fetch_add(1, Ordering::Relaxed) + 1;
                        if n >= u64::from(p.seats) && t.sellout.is_none() {
                            t.sellout = Some(shared.start.elapsed());
                        }
                    }
                } else {
                    t.checkout_failed += 1;
                }
                return;
            }
            HoldAnswer::Rejected { sold_out } => {
                let mut t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
                t.hold_rejected.record(took);
                if sold_out {
                    t.gave_up_sold_out += 1;
                    return;
                }
            }
            HoldAnswer::RateLimited
            | HoldAnswer::Unavailable
            | HoldAnswer::NotAdmitted { .. }
            | HoldAnswer::Other(_) => {
                {
                    let mut t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
                    match answer {
                        HoldAnswer::RateLimited => t.rate_limited += 1,
                        HoldAnswer::Unavailable => t.unavailable += 1,
                        _ => t.other += 1,
                    }
                }
                if attempt < p.retries {
                    tokio::time::sleep(BACKOFF_UNAVAILABLE).await;
                }
            }
        }
    }
}

/// Per replica (in endpoint order): seats booked and held, read stale from
/// each node after all report the same applied index.
pub async fn audit(
    endpoints: &[String],
    tls: &Option<ClientTls>,
    event_id: &str,
) -> anyhow::Result<(Vec<u64>, Vec<u64>)> {
    let clients: Vec<Client> = endpoints
        .iter()
        .map(|e| {
            Client::with_options(
                [e.clone()],
                ClientOptions {
                    tls: tls.clone(),
                    attempts_max: 2,
                    ..ClientOptions::default()
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let deadline = Instant::now() + CONVERGE_WAIT;
    let mut last = Vec::new();
    loop {
        let mut applied = Vec::new();
        for (c, e) in clients.iter().zip(endpoints) {
            applied.push(c.node_status(e).await.map(|s| s.applied_index).unwrap_or(0));
        }
        let converged = applied.iter().all(|a| *a == applied[0] && *a > 0);
        if converged && applied == last {
            break;
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "replicas did not converge within {CONVERGE_WAIT:?}: applied indexes {applied:?}"
            );
        }
        last = applied;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mut sold, mut held) = (Vec::new(), Vec::new());
    for c in &clients {
        let (result, _) = c
            .read(
                Query::Availability {
                    event_id: event_id.to_string(),
                },
                Consistency::Stale,
            )
            .await?;
        let QueryResult::Availability(Ok(view)) = result else {
            anyhow::bail!("availability read failed: {result:?}")
        };
        let mut b = 0u64;
        let mut h = 0u64;
        for s in &view.sections {
            if s.general_admission {
                // A count, no seats to look at.
                b += u64::from(s.booked);
                h += u64::from(s.held);
            }
            for r in &s.rows {
                b += r.states.bytes().filter(|c| *c == b'B').count() as u64;
                h += r.states.bytes().filter(|c| *c == b'H').count() as u64;
            }
        }
        sold.push(b);
        held.push(h);
    }
    Ok((sold, held))
}

/// Runs one sale against `gateway_url`. `endpoints`/`metrics_urls` are the
/// nodes' (empty with `--target`, then the audit reads through the gateway
/// only... see `audit_via_gateway`).
pub async fn run(
    gateway_url: &str,
    admin_token: &str,
    endpoints: &[String],
    tls: &Option<ClientTls>,
    metrics_urls: &[String],
    params: FlashParams,
    quiet: bool,
) -> anyhow::Result<(FlashReport, Timeline)> {
    let pool = FanPool::new(gateway_url)?;
    http::wait_ready(gateway_url, Duration::from_secs(30)).await?;
    let event_id = format!("flash-{}", std::process::id());
    http::create_event(gateway_url, admin_token, &event_id, params.seats).await?;

    // Sign in before the sale, like fans waiting on the sale page.
    let tokens = http::sign_in(&pool, params.users.clamp(1, params.fans.max(1))).await?;

    let counters_before = node_counters(metrics_urls).await;
    let cpu_before = cpu::sample(Some(gateway_url), metrics_urls).await;
    let bar = fans_bar(params.fans, quiet);
    let shared = Arc::new(Shared {
        pool,
        tokens,
        event_id: event_id.clone(),
        zipf: Zipf::new(params.seats, params.zipf_exponent),
        params: params.clone(),
        start: Instant::now(),
        tally: Mutex::new(Tally::default()),
        timeline: Mutex::new(Timeline::new(TIMELINE_S_MAX)),
        booked_count: AtomicU64::new(0),
        hold_requests: AtomicU64::new(0),
        http_requests: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let inflight = Arc::new(Semaphore::new(params.inflight_max.max(1)));
    let deadline = Duration::from_secs(params.duration_s_max.max(1));
    let mut started = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while started < params.fans {
        tick.tick().await;
        let now = shared.start.elapsed();
        if now >= deadline {
            break;
        }
        let due = ((now.as_secs_f64() * params.rate_per_s as f64) as u64 + 1).min(params.fans);
        while started < due {
            // The in-flight bound can stall this loop for long; keep the time bound.
            if shared.start.elapsed() >= deadline {
                break;
            }
            let Ok(permit) =
                tokio::time::timeout(Duration::from_millis(100), inflight.clone().acquire_owned())
                    .await
            else {
                continue;
            };
            let permit = permit?;
            let scheduled =
                Duration::from_secs_f64(started as f64 / params.rate_per_s.max(1) as f64);
            let s = shared.clone();
            let i = started;
            tasks.spawn(async move {
                let _permit = permit;
                fan(s, i, scheduled).await;
            });
            started += 1;
            // Behind schedule this loop runs long: reap finished fans here.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.try_join_next().is_some() {}
        bar.set_position(started);
        bar.set_message(format!(
            "sold {}",
            shared.booked_count.load(Ordering::Relaxed)
        ));
    }
    // Let fans in flight finish, within the time bound.
    let drain_until = tokio::time::Instant::now()
        + deadline
            .saturating_sub(shared.start.elapsed())
            .max(Duration::from_secs(10));
    while !tasks.is_empty() {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(_) => bar.set_message(format!(
                "sold {}",
                shared.booked_count.load(Ordering::Relaxed)
            )),
            Err(_) => {
                shared.stop.store(true, Ordering::Relaxed);
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
    let run = shared.start.elapsed();
    bar.finish_and_clear();
    let counters_after = node_counters(metrics_urls).await;
    let cpu_after = cpu::sample(Some(gateway_url), metrics_urls).await;

    let (sold_per_replica, held_per_replica) = if endpoints.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        audit(endpoints, tls, &event_id).await.context("audit")?
    };
    let apply_pause = gauge_max(metrics_urls, "booking_apply_pause_max_ms").await;
    let copy_held = gauge_max(metrics_urls, "booking_state_copy_lock_held_max_ms").await;
    let copy_cpu = match copy_held {
        Some((_, node)) => gauge_of(metrics_urls, "booking_state_copy_cpu_of_max_ms", node).await,
        None => None,
    };
    let t = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
    let double_sold = t.booked.values().filter(|n| **n > 1).count() as u64;
    let sold = sold_per_replica
        .first()
        .copied()
        .unwrap_or(shared.booked_count.load(Ordering::Relaxed));
    let hold_requests = shared.hold_requests.load(Ordering::Relaxed);
    let http_requests = shared.http_requests.load(Ordering::Relaxed);
    let secs = run.as_secs_f64().max(1e-9);
    let sellout_ms = t.sellout.map(|d| d.as_millis() as u64);
    let delta = counters_before
        .zip(counters_after)
        .map(|(a, b)| b.since(&a));
    let commands = delta.map(|d| d.commands_proposed);
    let without_count = delta.map(|d| d.answered_without_log_write);
    let share_without = without_count.map(|n| n as f64 / hold_requests.max(1) as f64);
    let without_log = match delta {
        Some(d) => format!(
            "{:.1}% of hold requests ({} of {hold_requests}); {} commands proposed for {hold_requests} hold + {} checkout requests",
            100.0 * share_without.unwrap_or(0.0),
            d.answered_without_log_write,
            d.commands_proposed,
            http_requests - hold_requests
        ),
        None => "not measured (no node metrics)".to_string(),
    };
    let report = FlashReport {
        gateway: String::new(),
        seats: params.seats,
        fans: params.fans,
        fans_started: started,
        rate_per_s: params.rate_per_s,
        sold,
        replicas_agree: sold_per_replica.windows(2).all(|w| w[0] == w[1])
            && held_per_replica.windows(2).all(|w| w[0] == w[1]),
        sold_per_replica,
        held_per_replica,
        double_sold,
        bookings_acknowledged: t.booked.len() as u64,
        sold_out: sold >= u64::from(params.seats),
        sellout_ms,
        last_hold_ms: t.last_hold_ok.map(|d| d.as_millis() as u64),
        run_ms: run.as_millis() as u64,
        goodput_seats_per_s: match sellout_ms {
            Some(ms) => f64::from(params.seats) / (ms.max(1) as f64 / 1000.0),
            None => sold as f64 / secs,
        },
        holds_per_s: hold_requests as f64 / secs,
        http_requests_per_s: http_requests as f64 / secs,
        hold_requests,
        hold_ok: t.hold_ok.count(),
        hold_rejected: t.hold_rejected.count(),
        rate_limited: t.rate_limited,
        unavailable: t.unavailable,
        other_status: t.other,
        hold_p50_ms: t.hold_ok.quantile_ms(0.5),
        hold_p99_ms: t.hold_ok.quantile_ms(0.99),
        hold_p999_ms: t.hold_ok.quantile_ms(0.999),
        rejected_p50_ms: t.hold_rejected.quantile_ms(0.5),
        rejected_p99_ms: t.hold_rejected.quantile_ms(0.99),
        rejected_p999_ms: t.hold_rejected.quantile_ms(0.999),
        checkout_p50_ms: t.checkout.quantile_ms(0.5),
        checkout_p99_ms: t.checkout.quantile_ms(0.99),
        start_lag_p99_ms: t.start_lag.quantile_ms(0.99),
        commands_proposed: commands,
        answered_without_log_write: without_log,
        answered_without_log_write_count: without_count,
        share_without_log_write: share_without,
        echo_requests_per_s: None,
        fraction_of_echo: None,
        cpu_per_request: cpu::per_request(&cpu_before, &cpu_after, http_requests),
        echo_server_cpu_us: None,
        echo_generator_cpu_us: None,
        png: None,
        apply_pause_max_ms: apply_pause.map(|(v, _)| v),
        apply_pause_node: apply_pause.map(|(_, node)| node),
        state_copy_lock_held_max_ms: copy_held.map(|(v, _)| v),
        state_copy_cpu_ms: copy_cpu,
        snapshots_built: delta.map(|d| d.snapshots_built),
        snapshot_every_entries: None,
        election_timeout_ms: None,
    };
    drop(t);
    let timeline = std::mem::replace(
        &mut *shared.timeline.lock().unwrap_or_else(|e| e.into_inner()),
        Timeline::new(1),
    );
    Ok((report, timeline))
}

/// The report as the human table.
pub fn print_table(r: &FlashReport) {
    let ms = |v: Option<u64>| v.map_or("not sold out".to_string(), |v| format!("{v} ms"));
    println!(
        "flash sale: {} seats, {} fans ({} started) at {}/s, gateway: {}",
        r.seats, r.fans, r.fans_started, r.rate_per_s, r.gateway
    );
    println!("  time to sell out      {}", ms(r.sellout_ms));
    println!("  last successful hold  {}", ms(r.last_hold_ms));
    println!("  run                   {} ms", r.run_ms);
    println!(
        "  goodput               {:.0} seats/s",
        r.goodput_seats_per_s
    );
    println!("  hold requests         {} ({:.0}/s): {} held, {} rejected, {} rate-limited, {} unavailable, {} other", r.hold_requests, r.holds_per_s, r.hold_ok, r.hold_rejected, r.rate_limited, r.unavailable, r.other_status);
    println!(
        "  http requests         {:.0}/s (holds + checkouts)",
        r.http_requests_per_s
    );
    println!(
        "  hold ok   p50/p99/p999 {:.2} / {:.2} / {:.2} ms",
        r.hold_p50_ms, r.hold_p99_ms, r.hold_p999_ms
    );
    println!(
        "  rejected  p50/p99/p999 {:.2} / {:.2} / {:.2} ms",
        r.rejected_p50_ms, r.rejected_p99_ms, r.rejected_p999_ms
    );
    println!(
        "  checkout  p50/p99      {:.2} / {:.2} ms",
        r.checkout_p50_ms, r.checkout_p99_ms
    );
    println!("  fan start lag p99     {:.2} ms", r.start_lag_p99_ms);
    println!(
        "  share of requests answered without a log write   {}",
        r.answered_without_log_write
    );
    if let (Some(e), Some(f)) = (r.echo_requests_per_s, r.fraction_of_echo) {
        println!(
            "  echo baseline         {e:.0} req/s; full stack = {:.1}% of it (http requests/s)",
            f * 100.0
        );
    }
    println!(
        "  CPU per HTTP request  {}",
        cpu::describe(&r.cpu_per_request)
    );
    if let Some(server) = r.echo_server_cpu_us {
        let generator = r.echo_generator_cpu_us.unwrap_or(0.0);
        println!("  CPU per echo request  server {server:.0} µs, generator {generator:.0} µs");
    }
    println!(
        "  audit                 sold {} of {} (per replica {:?}, held {:?}), replicas agree: {}, double sold: {}, bookings acknowledged: {}",
        r.sold, r.seats, r.sold_per_replica, r.held_per_replica, r.replicas_agree, r.double_sold, r.bookings_acknowledged
    );
    if let (Some(ms), Some(node)) = (r.apply_pause_max_ms, r.apply_pause_node) {
        println!("  longest apply pause: {ms} ms (node {node})");
    }
    if let Some(ms) = r.state_copy_lock_held_max_ms {
        let cpu = r
            .state_copy_cpu_ms
            .map_or(String::new(), |c| format!(" ({c} ms of it on a CPU)"));
        println!("  longest state copy under the lock (snapshot or hash): {ms} ms{cpu}");
    }
    if let Some(n) = r.snapshots_built {
        let every = r.snapshot_every_entries.map_or(String::new(), |e| {
            format!(" (a snapshot every {e} entries)")
        });
        println!("  snapshots built       {n} during the sale{every}");
    }
    if let Some([lo, hi]) = r.election_timeout_ms {
        println!("  election timeout      {lo}-{hi} ms");
    }
    if let Some(p) = &r.png {
        println!(
            "  plot                  {p} (top: answered holds/s; bottom: p50/p99 hold ms, log; x: seconds)"
        );
    }
}

/// JSON of the report (one object).
pub fn to_json(r: &FlashReport) -> serde_json::Value {
    json!(r)
}

/// The run's progress bar over `fans` fans (hidden when `quiet`); the
/// plain and the waiting-room sale both count fans started.
pub(crate) fn fans_bar(fans: u64, quiet: bool) -> indicatif::ProgressBar {
    let bar = if quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(fans)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} fans {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
