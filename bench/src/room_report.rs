//! The waiting-room sale's report: the numbers, the goal check, the table,
//! the JSON and the PNG's figure.
//!
//! Owns: [`RoomReport`] and how it is computed from the fans' tally and
//! the run's measurements. Must not: measure anything itself.
//!
//! Goal (issue 16): the sale completes with zero oversell (every replica
//! sold exactly the seats, none twice), the replicated state at its peak
//! is at most [`STATE_BYTES_GOAL`] (measured as the largest snapshot a
//! node built during the run: the snapshot is the encoded replicated
//! state), and joins run at least [`JOINS_PER_ECHO_GOAL`] of the echo
//! ceiling's request rate measured in the same run.

use std::time::Duration;

use crate::cpu::CpuPerRequest;
use crate::join_ceiling::JoinCeiling;
use crate::node_metrics::NodeCounters;
use crate::plot::{per_second_counts, per_second_quantile};
use crate::plot::{Figure, Series, HOLDS_COLOUR, JOINS_COLOUR, JOIN_P99_COLOUR, P99_COLOUR};
use crate::room::{Probes, RoomParams};
use crate::room_fan::Tally;
use crate::stats::Timeline;

/// Largest replicated state (at the peak) the goal allows, in bytes.
pub const STATE_BYTES_GOAL: u64 = 64 * 1024 * 1024;
/// Joins per second over the echo ceiling's requests per second, at least.
pub const JOINS_PER_ECHO_GOAL: f64 = 0.5;

/// What the run measured besides the fans' tally.
pub struct Measured {
    pub started: u64,
    pub run: Duration,
    pub requests: u64,
    pub counters: Option<NodeCounters>,
    /// (bytes, node) of the largest snapshot any node built.
    pub snapshot_bytes_max: Option<(u64, u64)>,
    pub sold_per_replica: Vec<u64>,
    pub held_per_replica: Vec<u64>,
    pub probes: Probes,
    /// Joins answered in the busiest second.
    pub joins_peak_per_s: u64,
    /// Joins answered in the whole seconds before the sell-out's second.
    pub joins_before_sellout: Option<u64>,
    /// CPU time per HTTP request of the run, by process.
    pub cpu: CpuPerRequest,
    /// The closed-loop join capacity measured before the sale.
    pub join_ceiling: Option<JoinCeiling>,
}

#[derive(Debug, serde::Serialize)]
pub struct RoomReport {
    pub gateway: String,
    pub seats: u32,
    pub ga_seats: u32,
    pub fans: u64,
    pub fans_started: u64,
    pub users: u64,
    pub admit_batch: u32,
    pub hold_ttl_ms: u64,
    pub arrival_s: u64,
    pub run_ms: u64,
    // Joins.
    pub joins: u64,
    pub join_failed: u64,
    /// Joins answered over the join phase (first join sent to last answered).
    pub joins_per_s: f64,
    pub join_phase_ms: u64,
    pub joins_peak_per_s: u64,
    /// Joins answered per second from the first join to the sell-out's
    /// second (whole seconds): the sale itself, when holds, checkouts and
    /// polls share the box. Shown beside `joins_per_s`; the goal uses
    /// `joins_per_s`.
    pub joins_to_sellout_per_s: Option<f64>,
    /// The fans followed the gateway's `poll_after_ms`.
    pub follow_poll_hint: bool,
    /// Joins shared the other requests' in-flight slots.
    pub joins_share_slots: bool,
    pub join_p50_ms: f64,
    pub join_p99_ms: f64,
    pub join_p999_ms: f64,
    pub start_lag_p99_ms: f64,
    // Waiting.
    pub polls: u64,
    pub poll_failed: u64,
    pub poll_p99_ms: f64,
    pub admitted: u64,
    pub left_far_back: u64,
    pub parked: u64,
    pub left_sold_out: u64,
    pub gave_up_polling: u64,
    // Holds and payments.
    pub hold_requests: u64,
    pub hold_ok: u64,
    pub hold_rejected: u64,
    pub hold_not_admitted: u64,
    pub hold_lapsed: u64,
    pub hold_p50_ms: f64,
    pub hold_p99_ms: f64,
    pub hold_p999_ms: f64,
    pub hold_all_p99_ms: f64,
    pub checkout_p50_ms: f64,
    pub checkout_p99_ms: f64,
    pub abandoned: u64,
    pub declined: u64,
    pub slow_paid: u64,
    pub checkout_failed: u64,
    pub gave_up_sold_out: u64,
    pub rate_limited: u64,
    pub unavailable: u64,
    pub other_status: u64,
    // The sale.
    pub sold_out: bool,
    pub sellout_ms: Option<u64>,
    pub goodput_seats_per_s: f64,
    pub bookings_acknowledged: u64,
    pub sold: u64,
    pub sold_per_replica: Vec<u64>,
    pub held_per_replica: Vec<u64>,
    pub replicas_agree: bool,
    pub double_sold: u64,
    /// Every replica sold exactly `seats`, none twice.
    pub audit_exact: bool,
    // Admission enforcement.
    pub probes_waiting: u64,
    pub probe_holds: u64,
    pub probe_holds_refused: u64,
    pub probe_holds_accepted: u64,
    // The log and the state.
    pub http_requests: u64,
    pub http_requests_per_s: f64,
    pub commands_proposed: Option<u64>,
    /// Requests that cannot have written the log: all requests less the
    /// commands the nodes proposed (a lower bound; each command is at most
    /// one request's write), over all requests.
    pub share_without_log_write: Option<f64>,
    /// First sends the nodes answered from state after a ReadIndex round.
    pub answered_without_log_write_count: Option<u64>,
    pub snapshots_built: Option<u64>,
    pub snapshot_bytes_max: Option<u64>,
    pub snapshot_bytes_node: Option<u64>,
    // The ceiling and the goal.
    pub echo_requests_per_s: Option<f64>,
    /// CPU time per HTTP request of the run, by process.
    pub cpu_per_request: CpuPerRequest,
    /// Closed-loop joins before the sale (`join_ceiling.rs`), and their
    /// rate over the echo ceiling's (same generator, same concurrency):
    /// the stack's join capacity, which the sale's own joins/s (set by
    /// the arrival schedule and the generator's slots) does not show.
    pub join_ceiling: Option<JoinCeiling>,
    pub join_ceiling_per_echo: Option<f64>,
    pub joins_per_echo: Option<f64>,
    pub goal_zero_oversell: bool,
    pub goal_state_within_64_mib: Option<bool>,
    pub goal_joins_half_echo: Option<bool>,
    pub png: Option<String>,
    pub snapshot_every_entries: Option<u64>,
}

pub fn build(p: &RoomParams, t: &Tally, m: Measured) -> RoomReport {
    let secs = m.run.as_secs_f64().max(1e-9);
    let join_phase = match (t.first_join_at, t.last_join_at) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    let double_sold = t.booked_seats.values().filter(|n| **n > 1).count() as u64
        + t.booked_ga.saturating_sub(u64::from(p.ga_seats));
    let bookings = t.booked_seats.values().map(|n| u64::from(*n)).sum::<u64>() + t.booked_ga;
    let sold = m.sold_per_replica.first().copied().unwrap_or(bookings);
    let sellout_ms = t.sellout.map(|d| d.as_millis() as u64);
    let replicas_agree = m.sold_per_replica.windows(2).all(|w| w[0] == w[1])
        && m.held_per_replica.windows(2).all(|w| w[0] == w[1]);
    let audit_exact = !m.sold_per_replica.is_empty()
        && m.sold_per_replica.iter().all(|s| *s == u64::from(p.seats))
        && double_sold == 0;
    let commands = m.counters.map(|c| c.commands_proposed);
    RoomReport {
        gateway: String::new(),
        seats: p.seats,
        ga_seats: p.ga_seats,
        fans: p.fans,
        fans_started: m.started,
        users: p.users,
        admit_batch: p.admit_batch,
        hold_ttl_ms: p.hold_ttl_ms,
        arrival_s: p.arrival_s,
        run_ms: m.run.as_millis() as u64,
        joins: t.joined,
        join_failed: t.join_failed,
        joins_per_s: t.joined as f64 / join_phase.as_secs_f64().max(1e-3),
        join_phase_ms: join_phase.as_millis() as u64,
        joins_peak_per_s: m.joins_peak_per_s,
        joins_to_sellout_per_s: match (m.joins_before_sellout, t.sellout, t.first_join_at) {
            (Some(n), Some(end), Some(first)) if end.as_secs() > first.as_secs() => {
                Some(n as f64 / (end.as_secs() - first.as_secs()) as f64)
            }
            _ => None,
        },
        follow_poll_hint: p.follow_poll_hint,
        joins_share_slots: p.joins_share_slots,
        join_p50_ms: t.join.quantile_ms(0.5),
        join_p99_ms: t.join.quantile_ms(0.99),
        join_p999_ms: t.join.quantile_ms(0.999),
        start_lag_p99_ms: t.start_lag.quantile_ms(0.99),
        polls: t.polls,
        poll_failed: t.poll_failed,
        poll_p99_ms: t.poll.quantile_ms(0.99),
        admitted: t.admitted,
        left_far_back: t.left_far_back,
        parked: t.parked,
        left_sold_out: t.left_sold_out,
        gave_up_polling: t.gave_up_polling,
        hold_requests: t.hold_requests,
        hold_ok: t.hold_ok.count(),
        hold_rejected: t.hold_rejected,
        hold_not_admitted: t.hold_not_admitted,
        hold_lapsed: t.hold_lapsed,
        hold_p50_ms: t.hold_ok.quantile_ms(0.5),
        hold_p99_ms: t.hold_ok.quantile_ms(0.99),
        hold_p999_ms: t.hold_ok.quantile_ms(0.999),
        hold_all_p99_ms: t.hold_all.quantile_ms(0.99),
        checkout_p50_ms: t.checkout.quantile_ms(0.5),
        checkout_p99_ms: t.checkout.quantile_ms(0.99),
        abandoned: t.abandoned,
        declined: t.declined,
        slow_paid: t.slow_paid,
        checkout_failed: t.checkout_failed,
        gave_up_sold_out: t.gave_up_sold_out,
        rate_limited: t.rate_limited,
        unavailable: t.unavailable,
        other_status: t.other_status,
        sold_out: sold >= u64::from(p.seats),
        sellout_ms,
        goodput_seats_per_s: match sellout_ms {
            Some(ms) => f64::from(p.seats) / (ms.max(1) as f64 / 1000.0),
            None => sold as f64 / secs,
        },
        bookings_acknowledged: bookings,
        sold,
        sold_per_replica: m.sold_per_replica,
        held_per_replica: m.held_per_replica,
        replicas_agree,
        double_sold,
        audit_exact,
        probes_waiting: m.probes.waiting,
        probe_holds: m.probes.holds,
        probe_holds_refused: m.probes.refused,
        probe_holds_accepted: m.probes.accepted,
        http_requests: m.requests,
        http_requests_per_s: m.requests as f64 / secs,
        commands_proposed: commands,
        share_without_log_write: commands
            .map(|c| m.requests.saturating_sub(c) as f64 / m.requests.max(1) as f64),
        answered_without_log_write_count: m.counters.map(|c| c.answered_without_log_write),
        snapshots_built: m.counters.map(|c| c.snapshots_built),
        snapshot_bytes_max: m.snapshot_bytes_max.map(|(b, _)| b),
        snapshot_bytes_node: m.snapshot_bytes_max.map(|(_, n)| n),
        echo_requests_per_s: None,
        joins_per_echo: None,
        cpu_per_request: m.cpu,
        join_ceiling: m.join_ceiling,
        join_ceiling_per_echo: None,
        goal_zero_oversell: audit_exact && replicas_agree,
        goal_state_within_64_mib: m
            .snapshot_bytes_max
            .filter(|(b, _)| *b > 0)
            .map(|(b, _)| b <= STATE_BYTES_GOAL),
        goal_joins_half_echo: None,
        png: None,
        snapshot_every_entries: None,
    }
}

impl RoomReport {
    /// Adds the echo ceiling of the same run and the goal it decides.
    pub fn set_echo(&mut self, echo_requests_per_s: f64) {
        let ratio = self.joins_per_s / echo_requests_per_s.max(1e-9);
        self.echo_requests_per_s = Some(echo_requests_per_s);
        self.joins_per_echo = Some(ratio);
        self.goal_joins_half_echo = Some(ratio >= JOINS_PER_ECHO_GOAL);
        self.join_ceiling_per_echo = self
            .join_ceiling
            .map(|c| c.joins_per_s / echo_requests_per_s.max(1e-9));
    }
}

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "met",
        Some(false) => "NOT met",
        None => "not measured",
    }
}

pub fn print_table(r: &RoomReport) {
    println!(
        "waiting-room flash sale: {} seats ({} GA), {} fans ({} started) over a {} s Zipf burst, {} users, admit batch {}, hold window {} ms, gateway: {}",
        r.seats, r.ga_seats, r.fans, r.fans_started, r.arrival_s, r.users, r.admit_batch, r.hold_ttl_ms, r.gateway
    );
    println!("  joins                 {} answered ({} failed) in {} ms: {:.0} joins/s (busiest second {})", r.joins, r.join_failed, r.join_phase_ms, r.joins_per_s, r.joins_peak_per_s);
    if let Some(j) = r.joins_to_sellout_per_s {
        println!(
            "  joins to the sell-out {j:.0} joins/s (first join to the sell-out's second; the goal uses the whole join phase above)"
        );
    }
    println!(
        "  fans                  {}; joins {}",
        if r.follow_poll_hint {
            "follow the gateway's poll hint"
        } else {
            "ignore the poll hint"
        },
        if r.joins_share_slots {
            "share the --inflight-max request slots"
        } else {
            "bounded by their own --inflight-max"
        }
    );
    println!(
        "  join p50/p99/p999     {:.2} / {:.2} / {:.2} ms (fan start lag p99 {:.0} ms)",
        r.join_p50_ms, r.join_p99_ms, r.join_p999_ms, r.start_lag_p99_ms
    );
    println!("  waiting               {} polls (p99 {:.2} ms, {} failed); {} parked for a poller; {} admitted; left: {} far back, {} at the sell-out, {} gave up", r.polls, r.poll_p99_ms, r.poll_failed, r.parked, r.admitted, r.left_far_back, r.left_sold_out, r.gave_up_polling);
    println!("  holds                 {} requests: {} held, {} rejected, {} not admitted, {} lapsed; p50/p99/p999 {:.2} / {:.2} / {:.2} ms (all answers p99 {:.2} ms)", r.hold_requests, r.hold_ok, r.hold_rejected, r.hold_not_admitted, r.hold_lapsed, r.hold_p50_ms, r.hold_p99_ms, r.hold_p999_ms, r.hold_all_p99_ms);
    println!("  payments              {} abandoned (left to expire), {} declined, {} slow, {} failed; checkout p50/p99 {:.2} / {:.2} ms", r.abandoned, r.declined, r.slow_paid, r.checkout_failed, r.checkout_p50_ms, r.checkout_p99_ms);
    println!(
        "  other answers         {} rate-limited, {} unavailable, {} other",
        r.rate_limited, r.unavailable, r.other_status
    );
    println!(
        "  time to sell out      {}; goodput {:.0} seats/s; run {} ms",
        r.sellout_ms
            .map_or("not sold out".to_string(), |v| format!("{v} ms")),
        r.goodput_seats_per_s,
        r.run_ms
    );
    println!(
        "  audit                 sold {} of {} per replica {:?} (held {:?}), replicas agree: {}, double sold: {}, exact: {}",
        r.sold, r.seats, r.sold_per_replica, r.held_per_replica, r.replicas_agree, r.double_sold, r.audit_exact
    );
    println!(
        "  admission enforced    {} probe holds by {} waiting users: {} refused (403), {} accepted",
        r.probe_holds, r.probes_waiting, r.probe_holds_refused, r.probe_holds_accepted
    );
    match (r.commands_proposed, r.share_without_log_write) {
        (Some(c), Some(s)) => println!(
            "  without a log write   at least {:.2}% of {} requests ({c} commands proposed; {} first sends answered from state)",
            100.0 * s,
            r.http_requests,
            r.answered_without_log_write_count.unwrap_or(0)
        ),
        _ => println!("  without a log write   not measured (no node metrics)"),
    }
    if let Some(b) = r.snapshot_bytes_max {
        println!(
            "  replicated state      {} bytes ({:.2} MiB) at the peak: the largest snapshot built (node {}), {} snapshots during the run{}",
            b,
            b as f64 / (1024.0 * 1024.0),
            r.snapshot_bytes_node.unwrap_or(0),
            r.snapshots_built.unwrap_or(0),
            r.snapshot_every_entries.map_or(String::new(), |e| format!(", one every {e} entries"))
        );
    }
    if let (Some(e), Some(f)) = (r.echo_requests_per_s, r.joins_per_echo) {
        println!(
            "  echo ceiling          {e:.0} req/s; joins/s = {:.2}x of it",
            f
        );
    }
    if let Some(c) = &r.join_ceiling {
        let ratio = r
            .join_ceiling_per_echo
            .map_or(String::new(), |f| format!(" = {f:.2}x the echo ceiling"));
        println!(
            "  join capacity         {:.0} joins/s closed loop ({} in flight, {} ms, {} not joined){ratio}; CPU per join: {}",
            c.joins_per_s,
            c.connections,
            c.duration_ms,
            c.not_joined,
            crate::cpu::describe(&c.cpu)
        );
    }
    println!(
        "  CPU per HTTP request  {}",
        crate::cpu::describe(&r.cpu_per_request)
    );
    println!(
        "  goal                  zero oversell: {}; state <= 64 MiB: {}; joins >= 0.5x echo: {}",
        yes_no(Some(r.goal_zero_oversell)),
        yes_no(r.goal_state_within_64_mib),
        yes_no(r.goal_joins_half_echo)
    );
    if let Some(p) = &r.png {
        println!("  plot                  {p} (top: joins/s and holds/s; bottom: p99 join and hold ms, log; x: seconds)");
    }
}

/// The PNG's picture: joins/s and holds/s on top, their p99 below.
pub fn figure(joins: &Timeline, holds: &Timeline) -> Figure {
    let seconds = joins.used().len().max(holds.used().len()).max(1) as f64;
    Figure {
        title: "Waiting-room flash sale: joins and holds per second, p99 latency".into(),
        seconds,
        rate_y_desc: "answered requests (req/s)".into(),
        rates: vec![
            Series {
                name: "joins per second".into(),
                colour: JOINS_COLOUR,
                points: per_second_counts(joins),
            },
            Series {
                name: "holds per second".into(),
                colour: HOLDS_COLOUR,
                points: per_second_counts(holds),
            },
        ],
        latency_y_desc: "p99 latency (ms, log)".into(),
        latencies: vec![
            Series {
                name: "p99 join latency".into(),
                colour: JOIN_P99_COLOUR,
                points: per_second_quantile(joins, 0.99),
            },
            Series {
                name: "p99 hold latency".into(),
                colour: P99_COLOUR,
                points: per_second_quantile(holds, 0.99),
            },
        ],
    }
}
