//! `bench flash-sale --waiting-room`: a crowd (10 M fans at the seed's
//! scale) joins an event's waiting room at the opening, is admitted in
//! batches, and buys its seats; then every replica is audited.
//!
//! Owns: the event of the run (reserved seats plus one GA section, a
//! waiting room, a hold window), the arrival schedule, the generator loop
//! and its bounds, the admission probes and the end of the run. The fan is
//! `room_fan`, the report and the PNG `room_report`. Must not: keep a task
//! per fan who waits (see `room_fan`: at most `inflight_max` joins plus
//! `pollers_max` pollers live; at most `parked_max` more fans are kept as
//! a token each), or read a node's memory.
//!
//! Arrivals (open loop, a Zipf-shaped burst at the opening): the share of
//! fans arriving in second `k` of an `arrival_s`-second window is
//! proportional to `1 / (k + 1)^arrival_zipf`, spread evenly within the
//! second. With the defaults (60 s, exponent 1) 21 % arrive in the first
//! second and 49 % in the first five. When the gateway cannot keep up the
//! generator falls behind (bounded by `inflight_max`); that lateness is
//! `start_lag_p99_ms`, not join latency.
//!
//! Choices: every fan joins after the opening (first come, first served);
//! the keyed shuffle of pre-opening joiners is the state machine's tests'
//! business (`state-machine/tests/waiting_room.rs`). Fans share `users`
//! accounts round-robin (fan `i` is user `i % users`); one admission per
//! user is the rule, so `users` defaults to more than the fans that can
//! poll at once, and a refusal for it is counted (`hold_not_admitted`).
//! Joins go on after the sell-out until every fan has joined (a fan who
//! joins then is told the sale is over and leaves).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use client::ClientTls;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::flash::{audit, Zipf};
use crate::http::{self, FanPool, HoldAnswer, Pick, QueueAnswer};
use crate::node_metrics::{gauge_max, node_counters};
use crate::room_fan::{fan, Shared, Tally};
use crate::room_report::{self, Measured, RoomReport};
use crate::stats::Timeline;

/// The general-admission section's id (the reserved ones are `S1`, `S2`...).
pub const GA_SECTION: &str = "GA";
/// Probe users that check a hold without admission is refused.
pub const PROBES: u64 = 4;
/// Longest timeline, in seconds (later samples share the last bucket).
pub const TIMELINE_S_MAX: usize = 3_600;

#[derive(Clone, Debug)]
pub struct RoomParams {
    /// Seats in all: reserved plus `ga_seats`.
    pub seats: u32,
    pub ga_seats: u32,
    pub fans: u64,
    pub users: u64,
    pub arrival_s: u64,
    pub arrival_zipf: f64,
    pub admit_batch: u32,
    pub hold_ttl_ms: u64,
    pub retries: u32,
    pub ga_share: f64,
    pub explicit_share: f64,
    pub zipf_exponent: f64,
    pub decline_share: f64,
    pub slow_share: f64,
    pub slow_payment_ms: u64,
    pub abandon_share: f64,
    pub inflight_max: usize,
    pub pollers_max: u64,
    pub parked_max: u64,
    pub poll_max_ms: u64,
    /// Fans wait the gateway's `poll_after_ms` between polls when it gives
    /// one (`--ignore-poll-hint` turns it off: their own estimate only).
    pub follow_poll_hint: bool,
    /// Joins also take one of the `inflight_max` request slots the other
    /// requests share (the default; `--joins-own-slots` turns it off:
    /// joins are bounded by their own `inflight_max` permits only).
    pub joins_share_slots: bool,
    pub duration_s_max: u64,
    /// Seconds of the closed-loop join capacity before the sale (0: none;
    /// `join_ceiling.rs`), and its joins in flight (the echo's).
    pub join_ceiling_s: u64,
    pub join_ceiling_connections: usize,
}

/// The arrival schedule: the share of fans arrived by the end of each second.
pub struct Arrivals {
    cumulative: Vec<f64>,
}

impl Arrivals {
    pub fn new(window_s: u64, exponent: f64) -> Arrivals {
        let weights: Vec<f64> = (0..window_s.max(1))
            .map(|k| 1.0 / ((k + 1) as f64).powf(exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        Arrivals { cumulative }
    }

    /// Share of fans arrived `t_s` seconds after the opening (0..=1).
    pub fn arrived_by(&self, t_s: f64) -> f64 {
        let k = t_s.max(0.0) as usize;
        if k >= self.cumulative.len() {
            return 1.0;
        }
        let before = if k == 0 { 0.0 } else { self.cumulative[k - 1] };
        before + (self.cumulative[k] - before) * (t_s - k as f64)
    }

    /// When the fan at `share` (0..=1) of the crowd is due, in seconds.
    pub fn due_at_s(&self, share: f64) -> f64 {
        let k = self.cumulative.partition_point(|c| *c < share);
        if k >= self.cumulative.len() {
            return self.cumulative.len() as f64;
        }
        let before = if k == 0 { 0.0 } else { self.cumulative[k - 1] };
        let width = (self.cumulative[k] - before).max(f64::MIN_POSITIVE);
        k as f64 + ((share - before) / width).clamp(0.0, 1.0)
    }
}

/// The event: reserved seats in the bench layout plus a GA section, a
/// waiting room admitting `admit_batch` at a time, holds of `hold_ttl_ms`.
pub fn event_spec(event_id: &str, p: &RoomParams) -> serde_json::Value {
    let reserved = p.seats.saturating_sub(p.ga_seats);
    let mut spec = http::event_spec(event_id, reserved);
    if p.ga_seats > 0 {
        if let Some(sections) = spec["sections"].as_array_mut() {
            sections.push(json!({ "kind": "general_admission", "id": GA_SECTION, "name": "Standing", "capacity": p.ga_seats, "price_cents": 3000 }));
        }
    }
    spec["hold_ttl_ms"] = json!(p.hold_ttl_ms);
    spec["waiting_room"] = json!({ "enabled": true, "admit_batch": p.admit_batch });
    spec
}

/// Holds tried without admission, and how they were answered.
#[derive(Default, Clone, Copy)]
pub struct Probes {
    /// Probe users whose join answered "waiting" (so the probe counts).
    pub waiting: u64,
    /// Holds sent by them (with their token, and with none).
    pub holds: u64,
    /// Of those, refused as not admitted (403).
    pub refused: u64,
    /// Of those, accepted: a hold without admission (must stay 0).
    pub accepted: u64,
}

/// A user who joined and is still waiting tries to hold with its token and
/// with no token; both must be refused. Joins answered "admitted" do not
/// count (the room had room for them).
async fn probe(pool: &FanPool, event_id: &str, session: &str, fan: u64) -> Probes {
    let mut out = Probes::default();
    let QueueAnswer::Place(place) = pool.join(fan, session, event_id).await else {
        return out;
    };
    if place.admitted {
        return out;
    }
    out.waiting = 1;
    for token in [place.queue_token.as_deref(), None] {
        out.holds += 1;
        match pool
            .hold_with(fan, session, event_id, Pick::BestAvailable, token)
            .await
        {
            HoldAnswer::NotAdmitted { .. } => out.refused += 1,
            HoldAnswer::Held { .. } => out.accepted += 1,
            _ => {}
        }
    }
    out
}

/// Runs one waiting-room sale against `gateway_url`; the report (without
/// the echo ceiling, which the caller measures) and the figure's data.
pub async fn run(
    gateway_url: &str,
    admin_token: &str,
    endpoints: &[String],
    tls: &Option<ClientTls>,
    metrics_urls: &[String],
    params: RoomParams,
    quiet: bool,
) -> anyhow::Result<(RoomReport, Timeline, Timeline)> {
    let pool = FanPool::new(gateway_url)?;
    http::wait_ready(gateway_url, Duration::from_secs(30)).await?;
    let event_id = format!("room-{}", std::process::id());
    http::create_event_from(gateway_url, admin_token, &event_spec(&event_id, &params)).await?;
    let users = params.users.clamp(1, params.fans.max(1));
    let tokens = http::sign_in(&pool, users).await?;
    let join_ceiling = if params.join_ceiling_s > 0 {
        let ceiling_event = format!("room-ceiling-{}", std::process::id());
        http::create_event_from(
            gateway_url,
            admin_token,
            &event_spec(&ceiling_event, &params),
        )
        .await?;
        Some(
            crate::join_ceiling::measure(
                &pool,
                gateway_url,
                metrics_urls,
                &ceiling_event,
                &tokens,
                Duration::from_secs(params.join_ceiling_s),
                params.join_ceiling_connections,
            )
            .await,
        )
    } else {
        None
    };
    let probe_tokens = http::sign_in_named(&pool, "probe", PROBES).await?;

    let counters_before = node_counters(metrics_urls).await;
    let cpu_before = crate::cpu::sample(Some(gateway_url), metrics_urls).await;
    let bar = crate::flash::fans_bar(params.fans, quiet);
    let timeline_s = (params.duration_s_max as usize + 60).min(TIMELINE_S_MAX);
    let reserved = params.seats.saturating_sub(params.ga_seats);
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        tokens,
        event_id: event_id.clone(),
        zipf: Zipf::new(reserved.max(1), params.zipf_exponent),
        params: params.clone(),
        start: Instant::now(),
        tally: Mutex::new(Tally::default()),
        joins: Mutex::new(Timeline::new(timeline_s)),
        holds: Mutex::new(Timeline::new(timeline_s)),
        pollers: Arc::new(Semaphore::new(params.pollers_max.max(1) as usize)),
        parked: Mutex::new(std::collections::VecDeque::new()),
        http_slots: Semaphore::new(params.inflight_max.max(1)),
        booked: AtomicU64::new(0),
        joined: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        sold_out: AtomicBool::new(false),
        sold_out_wake: tokio::sync::Notify::new(),
        stop: AtomicBool::new(false),
    });
    let arrivals = Arrivals::new(params.arrival_s, params.arrival_zipf);
    let joins_in_flight = Arc::new(Semaphore::new(params.inflight_max.max(1)));
    let deadline = Duration::from_secs(params.duration_s_max.max(1));
    // The probes go when a tenth of the crowd has been started: the line is
    // long by then, so a new joiner is waiting.
    let probe_at = (params.fans / 10).max(1);
    let mut probes_task = None;
    let mut started = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_bar = Instant::now();
    while started < params.fans {
        tick.tick().await;
        let now = shared.start.elapsed();
        if now >= deadline {
            break;
        }
        let due = ((arrivals.arrived_by(now.as_secs_f64()) * params.fans as f64).ceil() as u64)
            .clamp(1, params.fans);
        while started < due && shared.start.elapsed() < deadline {
            // A join permit, bounded in time so the time bound holds.
            let Ok(permit) = tokio::time::timeout(
                Duration::from_millis(100),
                joins_in_flight.clone().acquire_owned(),
            )
            .await
            else {
                continue;
            };
            let permit = permit?;
            let scheduled =
                Duration::from_secs_f64(arrivals.due_at_s(started as f64 / params.fans as f64));
            let s = shared.clone();
            let i = started;
            tasks.spawn(fan(s, i, scheduled, permit));
            started += 1;
            // A generator behind schedule stays in this loop for long:
            // reap finished fans here, or each keeps its memory until then.
            while tasks.try_join_next().is_some() {}
            if started == probe_at && probes_task.is_none() {
                let (pool, event_id, tokens) =
                    (pool.clone(), event_id.clone(), probe_tokens.clone());
                probes_task = Some(tokio::spawn(async move {
                    let mut all = Probes::default();
                    for (k, t) in tokens.iter().enumerate() {
                        let p = probe(&pool, &event_id, t, k as u64).await;
                        all.waiting += p.waiting;
                        all.holds += p.holds;
                        all.refused += p.refused;
                        all.accepted += p.accepted;
                    }
                    all
                }));
            }
        }
        while tasks.try_join_next().is_some() {}
        if last_bar.elapsed() >= Duration::from_millis(200) {
            last_bar = Instant::now();
            bar.set_position(started);
            bar.set_message(progress_message(&shared));
        }
    }
    // Let fans in flight finish, within the time bound (at least 10 s more).
    let drain_until = tokio::time::Instant::now()
        + deadline
            .saturating_sub(shared.start.elapsed())
            .max(Duration::from_secs(10));
    while !tasks.is_empty() {
        match tokio::time::timeout_at(drain_until, tasks.join_next()).await {
            Ok(_) => {
                bar.set_position(started);
                bar.set_message(progress_message(&shared));
            }
            Err(_) => {
                shared.stop.store(true, Ordering::Relaxed);
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
            }
        }
    }
    let run = shared.start.elapsed();
    bar.finish_and_clear();
    let probes = match probes_task {
        Some(t) => t.await.unwrap_or_default(),
        None => Probes::default(),
    };
    let counters_after = node_counters(metrics_urls).await;
    let cpu_after = crate::cpu::sample(Some(gateway_url), metrics_urls).await;
    let requests = shared.requests.load(Ordering::Relaxed);
    let (sold_per_replica, held_per_replica) = if endpoints.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        audit(endpoints, tls, &event_id).await.context("audit")?
    };
    let measured = Measured {
        started,
        run,
        requests,
        cpu: crate::cpu::per_request(&cpu_before, &cpu_after, requests),
        join_ceiling,
        counters: counters_before
            .zip(counters_after)
            .map(|(a, b)| b.since(&a)),
        snapshot_bytes_max: gauge_max(metrics_urls, "booking_snapshot_bytes_max").await,
        sold_per_replica,
        held_per_replica,
        probes,
        joins_peak_per_s: {
            let joins = shared.joins.lock().unwrap_or_else(|e| e.into_inner());
            joins.used().iter().map(|b| b.0).max().unwrap_or(0)
        },
        joins_before_sellout: {
            let sellout_s = shared.tally().sellout.map(|d| d.as_secs() as usize);
            let joins = shared.joins.lock().unwrap_or_else(|e| e.into_inner());
            sellout_s.map(|s| joins.used().iter().take(s).map(|b| b.0).sum())
        },
    };
    let report = room_report::build(&params, &shared.tally(), measured);
    let take = |m: &Mutex<Timeline>| {
        std::mem::replace(
            &mut *m.lock().unwrap_or_else(|e| e.into_inner()),
            Timeline::new(1),
        )
    };
    Ok((report, take(&shared.joins), take(&shared.holds)))
}

fn progress_message(shared: &Shared) -> String {
    let pollers_max = shared.params.pollers_max.max(1) as usize;
    format!(
        "joined {}, sold {}/{}, polling {}, parked {}",
        shared.joined.load(Ordering::Relaxed),
        shared.booked.load(Ordering::Relaxed),
        shared.params.seats,
        pollers_max - shared.pollers.available_permits().min(pollers_max),
        shared.parked.lock().map(|p| p.len()).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the arrival schedule is a burst (most fans early), reaches
    /// everyone by the end of the window, and `due_at_s` inverts `arrived_by`.
    #[test]
    fn arrivals_burst_at_the_opening_and_invert() {
        let a = Arrivals::new(60, 1.0);
        assert!(
            (a.arrived_by(1.0) - 0.214).abs() < 0.01,
            "{}",
            a.arrived_by(1.0)
        );
        assert!(a.arrived_by(5.0) > 0.45 && a.arrived_by(5.0) < 0.52);
        assert_eq!(a.arrived_by(60.0), 1.0);
        assert_eq!(a.arrived_by(0.0), 0.0);
        for t in [0.3, 1.0, 2.5, 17.2, 59.9] {
            let back = a.due_at_s(a.arrived_by(t));
            assert!((back - t).abs() < 1e-6, "{t} -> {back}");
        }
    }
}
