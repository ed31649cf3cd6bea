//! `bench flash-sale`: its command line, the cluster it runs on (started,
//! or `--target`), the echo ceiling first, then the sale: the plain one
//! (`bench::flash`) or, with `--waiting-room`, the waiting-room one
//! (`bench::room`).
//!
//! Owns: the flags and the order of a run. Must not: hold what the sale
//! modules own (fans, audit, report).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::cluster::{self, LocalCluster};
use bench::flash::{self, FlashParams};
use bench::room::{self, RoomParams};
use bench::room_report;
use client::ClientTls;

#[derive(clap::Args, Debug)]
pub struct FlashArgs {
    /// An already running gateway to target instead of starting a cluster.
    #[arg(long)]
    target: Option<String>,
    /// With --target: the nodes' gRPC endpoints for the audit (comma separated).
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// With --target: the admin token (`booking up` prints it on its first
    /// run and keeps it in <data_dir>/gateway/admin-token). The target must
    /// run `[auth] mode = "demo"`: the bench signs its users in by name.
    #[arg(long, env = "BOOKING_ADMIN_TOKEN", default_value = "")]
    admin_token: String,
    /// The `booking` binary (default: <repo>/target/release/booking).
    #[arg(long)]
    booking_bin: Option<PathBuf>,
    /// Seats in all (with --waiting-room: reserved plus --ga-seats).
    #[arg(long, default_value_t = 50_000)]
    seats: u32,
    #[arg(long, default_value_t = 1_000_000)]
    fans: u64,
    /// Fan arrivals per second (open loop).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Distinct signed-in users the fans share (sign-in happens before the
    /// sale). Default 20 000; with --waiting-room 3 x seats plus
    /// --inflight-max (one admission per user, so fans near the front of
    /// the line rarely share a user).
    #[arg(long)]
    users: Option<u64>,
    /// Extra hold attempts of a rejected fan.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Share of attempts that name a seat (Zipf over seat rank); the rest ask for best-available.
    #[arg(long, default_value_t = 0.7)]
    explicit_share: f64,
    /// Zipf exponent of the seat preference.
    #[arg(long, default_value_t = 1.0)]
    zipf: f64,
    /// Most fans in flight; the generator waits (and reports start lag) beyond it.
    #[arg(long, default_value_t = 4_096)]
    inflight_max: usize,
    /// Upper bound on the sale phase, in seconds.
    #[arg(long, default_value_t = 300)]
    duration_max_s: u64,
    /// Seconds of the echo baseline (0 skips it).
    #[arg(long, default_value_t = 5)]
    echo_s: u64,
    /// Concurrent requests of the echo baseline (and of the join capacity).
    #[arg(long, default_value_t = 256)]
    echo_connections: usize,
    /// With --waiting-room: seconds of closed-loop joins on an event of
    /// their own before the sale, at the echo's concurrency (0 skips it):
    /// the stack's join capacity, set against the echo ceiling.
    #[arg(long, default_value_t = 5)]
    join_ceiling_s: u64,
    /// Where to write the throughput/latency PNG ("" for none).
    #[arg(long, default_value = "reports/flash-sale.png")]
    png: String,
    /// Run the waiting-room sale (issue 16): fans join the event's
    /// waiting room in a Zipf burst at the opening, poll, are admitted in
    /// batches, hold (seat, best-available or GA) and pay (some declined,
    /// some slow, some abandoned). See bench/src/room.rs.
    #[arg(long)]
    waiting_room: bool,
    /// With --waiting-room: general-admission places among --seats
    /// (default: a tenth).
    #[arg(long)]
    ga_seats: Option<u32>,
    /// With --waiting-room: the arrival window; second k gets a share
    /// proportional to 1/(k+1)^--arrival-zipf.
    #[arg(long, default_value_t = 60)]
    arrival_s: u64,
    #[arg(long, default_value_t = 1.0)]
    arrival_zipf: f64,
    /// With --waiting-room: the room's admission batch (`waiting_room.admit_batch`).
    #[arg(long, default_value_t = 5_000)]
    admit_batch: u32,
    /// With --waiting-room: the event's hold window (and so the admission
    /// window and how long an abandoned hold keeps its seat), in ms.
    #[arg(long, default_value_t = 15_000)]
    hold_ttl_ms: u64,
    /// With --waiting-room: share of admitted fans who want a GA place.
    #[arg(long, default_value_t = 0.1)]
    ga_share: f64,
    /// With --waiting-room: shares of fans holding a seat who pay with a
    /// declined card, pay slowly (`tok_slow_<--slow-payment-ms>`), or
    /// abandon the hold (it expires after --hold-ttl-ms).
    #[arg(long, default_value_t = 0.05)]
    decline_share: f64,
    #[arg(long, default_value_t = 0.05)]
    slow_share: f64,
    #[arg(long, default_value_t = 2_000)]
    slow_payment_ms: u64,
    #[arg(long, default_value_t = 0.05)]
    abandon_share: f64,
    /// With --waiting-room: most fans polling at once (default: the
    /// seats); the next ones park (a token each, no task) until a poller
    /// slot frees, at most --parked-max of them (default: 10 x seats);
    /// the rest leave.
    #[arg(long)]
    pollers_max: Option<u64>,
    #[arg(long)]
    parked_max: Option<u64>,
    /// With --waiting-room: longest wait between two polls of one fan, in ms.
    #[arg(long, default_value_t = 5_000)]
    poll_max_ms: u64,
    /// With --waiting-room: fans ignore the gateway's `poll_after_ms` and
    /// poll on their own estimate (the bench's behaviour before the hint).
    #[arg(long)]
    ignore_poll_hint: bool,
    /// With --waiting-room: joins are bounded by their own --inflight-max
    /// permits only, not by the request slots polls, holds and checkouts
    /// share (default: they take one of those too). Caveat: with it, 1 M
    /// fans parked ten times as many fans, whose admissions went unused
    /// and lapsed; see docs/BENCHMARKS.md.
    #[arg(long)]
    joins_own_slots: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// The started cluster's snapshot policy: a snapshot every N applied
    /// entries (`[raft] snapshot_every_entries`; default: the config's),
    /// to measure how snapshots stall apply. Not with --target.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: Option<u64>,
}

pub async fn flash_sale(a: FlashArgs) -> anyhow::Result<ExitCode> {
    let flash_params = FlashParams {
        seats: a.seats,
        fans: a.fans,
        rate_per_s: a.rate.max(1),
        users: a.users.unwrap_or(20_000),
        retries: a.retries,
        explicit_share: a.explicit_share.clamp(0.0, 1.0),
        zipf_exponent: a.zipf,
        inflight_max: a.inflight_max,
        duration_s_max: a.duration_max_s,
    };
    let log_dir = tempfile::Builder::new().prefix("bench-flash-").tempdir()?;
    let echo = if a.echo_s > 0 {
        Some(
            bench::echo::measure(
                Duration::from_secs(a.echo_s),
                a.echo_connections,
                log_dir.path(),
            )
            .await
            .context("echo baseline")?,
        )
    } else {
        None
    };
    if a.target.is_some() && a.snapshot_every.is_some() {
        anyhow::bail!("--snapshot-every sets the started cluster's policy; it cannot change a --target cluster");
    }
    let cluster;
    // The started cluster's snapshot policy and election timeout, for the report.
    let mut started_config = None;
    // With --target the audit dials the given endpoints in plaintext: only
    // a cluster with `[tls] mode = "off"` answers it.
    let (url, token, endpoints, tls, metrics, kind) = match &a.target {
        Some(t) => (
            t.clone(),
            a.admin_token.clone(),
            a.endpoints.clone(),
            None,
            Vec::new(),
            format!("target {t}"),
        ),
        None => {
            let bin = a
                .booking_bin
                .clone()
                .unwrap_or_else(cluster::default_booking_bin);
            let snapshot_every = a.snapshot_every;
            cluster = LocalCluster::start_configured(&bin, true, true, Vec::new(), |file| {
                if let Some(n) = snapshot_every {
                    file.raft.snapshot_every_entries = n;
                }
            })
            .await?;
            started_config = Some((cluster.snapshot_every_entries, cluster.election_timeout_ms));
            (
                cluster.gateway_url.clone(),
                cluster.admin_token.clone(),
                cluster.endpoints.clone(),
                cluster.client_tls.clone(),
                cluster.metrics_urls(),
                "booking gateway".to_string(),
            )
        }
    };
    if a.waiting_room {
        return room_sale(
            &a,
            &url,
            &token,
            &endpoints,
            &tls,
            &metrics,
            kind,
            started_config,
            echo.map(|e| e.requests_per_s),
        )
        .await;
    }
    let (mut report, timeline) = flash::run(
        &url,
        &token,
        &endpoints,
        &tls,
        &metrics,
        flash_params,
        a.json,
    )
    .await?;
    report.gateway = kind;
    if let Some((every, election)) = started_config {
        report.snapshot_every_entries = Some(every);
        report.election_timeout_ms = Some(election);
    }
    if let Some(e) = echo {
        report.echo_requests_per_s = Some(e.requests_per_s);
        report.fraction_of_echo = Some(report.http_requests_per_s / e.requests_per_s.max(1e-9));
        report.echo_server_cpu_us = e.server_cpu_us;
        report.echo_generator_cpu_us = Some(e.generator_cpu_us);
    }
    if !a.png.is_empty() {
        let path = PathBuf::from(&a.png);
        match bench::plot::draw(&path, &timeline) {
            Ok(()) => report.png = Some(path.display().to_string()),
            Err(e) => eprintln!("bench: no PNG: {e:#}"),
        }
    }
    if a.json {
        println!("{}", flash::to_json(&report));
    } else {
        flash::print_table(&report);
    }
    let audit_ok =
        report.double_sold == 0 && report.sold <= u64::from(report.seats) && report.replicas_agree;
    Ok(if audit_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// The `--waiting-room` sale on the cluster `flash_sale` set up.
#[allow(clippy::too_many_arguments)]
async fn room_sale(
    a: &FlashArgs,
    url: &str,
    token: &str,
    endpoints: &[String],
    tls: &Option<ClientTls>,
    metrics: &[String],
    kind: String,
    started_config: Option<(u64, [u64; 2])>,
    echo_rps: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let pollers_max = a.pollers_max.unwrap_or(u64::from(a.seats)).max(1);
    let share = |v: f64| v.clamp(0.0, 1.0);
    let params = RoomParams {
        seats: a.seats,
        ga_seats: a.ga_seats.unwrap_or(a.seats / 10).min(a.seats),
        fans: a.fans,
        users: a
            .users
            .unwrap_or(3 * u64::from(a.seats) + a.inflight_max as u64)
            .max(1),
        arrival_s: a.arrival_s.max(1),
        arrival_zipf: a.arrival_zipf,
        admit_batch: a.admit_batch.max(1),
        hold_ttl_ms: a.hold_ttl_ms,
        retries: a.retries,
        ga_share: share(a.ga_share),
        explicit_share: share(a.explicit_share),
        zipf_exponent: a.zipf,
        decline_share: share(a.decline_share),
        slow_share: share(a.slow_share),
        slow_payment_ms: a.slow_payment_ms,
        abandon_share: share(a.abandon_share),
        inflight_max: a.inflight_max.max(1),
        pollers_max,
        parked_max: a.parked_max.unwrap_or(10 * u64::from(a.seats)),
        poll_max_ms: a.poll_max_ms,
        follow_poll_hint: !a.ignore_poll_hint,
        joins_share_slots: !a.joins_own_slots,
        duration_s_max: a.duration_max_s,
        join_ceiling_s: a.join_ceiling_s,
        join_ceiling_connections: a.echo_connections,
    };
    anyhow::ensure!(
        params.abandon_share + params.decline_share + params.slow_share <= 1.0,
        "--abandon-share + --decline-share + --slow-share must be at most 1"
    );
    let (mut report, joins, holds) =
        room::run(url, token, endpoints, tls, metrics, params, a.json).await?;
    report.gateway = kind;
    report.snapshot_every_entries = started_config.map(|(every, _)| every);
    if let Some(e) = echo_rps {
        report.set_echo(e);
    }
    if !a.png.is_empty() {
        let path = PathBuf::from(&a.png);
        match bench::plot::draw_figure(&path, &room_report::figure(&joins, &holds)) {
            Ok(()) => report.png = Some(path.display().to_string()),
            Err(e) => eprintln!("bench: no PNG: {e:#}"),
        }
    }
    if a.json {
        println!("{}", serde_json::json!(report));
    } else {
        room_report::print_table(&report);
    }
    let clean = report.double_sold == 0
        && report.sold <= u64::from(report.seats)
        && report.replicas_agree
        && report.probe_holds_accepted == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
