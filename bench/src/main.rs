//! `bench`: `bench flash-sale` and `bench peers` (see the library docs and
//! docs/BENCHMARKS.md). A hidden subcommand runs the child process the
//! benchmark starts from this same binary: `echo-server` (the ceiling).
//!
//! Owns: the command line and the order of a run. Must not: hold logic a
//! module could own. Exit codes: 0 done with a clean audit, 1 error, 3 the
//! audit failed (oversold, double sold, replicas disagree).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use bench::cluster::{self, LocalCluster};
use bench::flash::{self, FlashParams};
use bench::peers::{self, etcd, ours, postgres, redis, Row, Variant, Workload};
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "Flash-sale benchmark and peers (etcd, Redis, PostgreSQL) on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Fans arrive open-loop and try to hold then buy a seat through the gateway.
    FlashSale(FlashArgs),
    /// The same hold workload against this store, etcd, Redis and PostgreSQL.
    Peers(PeersArgs),
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        port: u16,
    },
}

#[derive(clap::Args, Debug)]
struct FlashArgs {
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
    #[arg(long, default_value_t = 50_000)]
    seats: u32,
    #[arg(long, default_value_t = 1_000_000)]
    fans: u64,
    /// Fan arrivals per second (open loop).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Distinct signed-in users the fans share (sign-in happens before the sale).
    #[arg(long, default_value_t = 20_000)]
    users: u64,
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
    /// Concurrent requests of the echo baseline.
    #[arg(long, default_value_t = 256)]
    echo_connections: usize,
    /// Where to write the throughput/latency PNG ("" for none).
    #[arg(long, default_value = "reports/flash-sale.png")]
    png: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// The started cluster's snapshot policy: a snapshot every N applied
    /// entries (`[raft] snapshot_every_entries`; default: the config's),
    /// to measure how snapshots stall apply. Not with --target.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct PeersArgs {
    #[arg(long)]
    booking_bin: Option<PathBuf>,
    #[arg(long, default_value_t = 10_000)]
    seats: u32,
    /// Hold attempts per system and variant.
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Concurrent workers (closed loop).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// The `booking-fault-bugs` binary of the `ours-client-no-sync` row
    /// (default `<repo>/target/release/booking-fault-bugs`, which
    /// scripts/test.sh builds).
    #[arg(long)]
    fault_bugs_bin: Option<PathBuf>,
    /// Systems: ours-client, ours-gateway, ours-client-plaintext (a second
    /// cluster with `[tls] mode = "off"`: the cost of TLS), etcd, redis-always, redis-everysec, pg-for-update, pg-optimistic;
    /// also ours-client-no-sync (the store without its durability step, as before it existed; not by default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ours-client,ours-gateway,etcd,redis-always,redis-everysec,pg-for-update,pg-optimistic"
    )]
    systems: Vec<String>,
    /// Variants: uniform, hot.
    #[arg(long, value_delimiter = ',', default_value = "uniform,hot")]
    variants: Vec<String>,
    /// Upper bound per system and variant, in seconds.
    #[arg(long, default_value_t = 60)]
    duration_max_s: u64,
    /// Run bench/peers-setup.sh first (installs missing Debian packages).
    #[arg(long)]
    install: bool,
    /// Fail instead of skipping a peer that is not installed.
    #[arg(long)]
    require_peers: bool,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::EchoServer { port } => bench::echo::serve(port).await.map(|_| ExitCode::SUCCESS),
        Cmd::FlashSale(a) => {
            install_signal_handler();
            flash_sale(a).await
        }
        Cmd::Peers(a) => {
            install_signal_handler();
            peers_cmd(a).await
        }
    }
}

/// How long children get after SIGTERM when the bench is interrupted.
const INTERRUPT_GRACE: Duration = Duration::from_millis(1_500);

/// Installs a Ctrl-C/SIGTERM handler that stops every live child (SIGTERM,
/// a grace period, SIGKILL) and exits 130. Drop guards do not run on
/// `process::exit`, hence testkit's registry of live children.
fn install_signal_handler() {
    tokio::spawn(async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        eprintln!("\nbench: interrupted; stopping child processes");
        tokio::task::block_in_place(|| testkit::process::terminate_all_live(INTERRUPT_GRACE));
        std::process::exit(130);
    });
}

async fn flash_sale(a: FlashArgs) -> anyhow::Result<ExitCode> {
    let params = FlashParams {
        seats: a.seats,
        fans: a.fans,
        rate_per_s: a.rate.max(1),
        users: a.users,
        retries: a.retries,
        explicit_share: a.explicit_share.clamp(0.0, 1.0),
        zipf_exponent: a.zipf,
        inflight_max: a.inflight_max,
        duration_s_max: a.duration_max_s,
    };
    let log_dir = tempfile::Builder::new().prefix("bench-flash-").tempdir()?;
    let echo_rps = if a.echo_s > 0 {
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
    let (mut report, timeline) =
        flash::run(&url, &token, &endpoints, &tls, &metrics, params, a.json).await?;
    report.gateway = kind;
    if let Some((every, election)) = started_config {
        report.snapshot_every_entries = Some(every);
        report.election_timeout_ms = Some(election);
    }
    if let Some(e) = echo_rps {
        report.echo_requests_per_s = Some(e);
        report.fraction_of_echo = Some(report.http_requests_per_s / e.max(1e-9));
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

fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

async fn peers_cmd(a: PeersArgs) -> anyhow::Result<ExitCode> {
    if a.install {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("peers-setup.sh");
        let ok = std::process::Command::new("bash")
            .arg(&script)
            .status()?
            .success();
        anyhow::ensure!(ok, "{} failed", script.display());
    }
    let w = Workload {
        seats: a.seats.max(1),
        ops: a.ops,
        clients: a.clients.max(1),
        duration_s_max: a.duration_max_s,
    };
    let variants: Vec<Variant> = a
        .variants
        .iter()
        .map(|v| match v.as_str() {
            "uniform" => Ok(Variant::Uniform),
            "hot" | "hot-seat" => Ok(Variant::Hot),
            other => anyhow::bail!("unknown variant {other:?} (uniform, hot)"),
        })
        .collect::<anyhow::Result<_>>()?;
    let want = |s: &str| a.systems.iter().any(|x| x == s);
    let mut rows: Vec<Row> = Vec::new();
    let mut missing = Vec::new();
    let pid = std::process::id();

    if want("ours-client") || want("ours-gateway") {
        let bin = a
            .booking_bin
            .clone()
            .unwrap_or_else(cluster::default_booking_bin);
        let c = LocalCluster::start(&bin, want("ours-gateway"), true).await?;
        for v in &variants {
            let round = format!("{pid}-{}", v.name());
            if want("ours-client") {
                let t = ours::ViaClient::new(&c.endpoints, &c.client_tls, &round, w.seats).await?;
                rows.push(peers::run_round(ours::CLIENT, *v, &w, t).await);
            }
            if want("ours-gateway") {
                let t = ours::ViaGateway::new(
                    &c.gateway_url,
                    &c.admin_token,
                    &c.endpoints,
                    &c.client_tls,
                    &round,
                    w.seats,
                    w.clients,
                )
                .await?;
                rows.push(peers::run_round(ours::GATEWAY, *v, &w, t).await);
            }
        }
    }
    if want("ours-client-no-sync") {
        let bin = a
            .fault_bugs_bin
            .clone()
            .unwrap_or_else(|| cluster::default_booking_bin().with_file_name("booking-fault-bugs"));
        anyhow::ensure!(
            bin.is_file(),
            "ours-client-no-sync needs {} (build with `cargo build --release --bin booking --features booking/fault-injection-bugs` and keep it under that name, as scripts/test.sh does)",
            bin.display()
        );
        let env = vec![(
            "BOOKING_FAULT_BUG".to_string(),
            "skip-fdatasync".to_string(),
        )];
        let c = LocalCluster::start_with_env(&bin, false, true, env).await?;
        for v in &variants {
            let round = format!("{pid}-nosync-{}", v.name());
            let t = ours::ViaClient::new(&c.endpoints, &c.client_tls, &round, w.seats).await?;
            rows.push(peers::run_round(ours::CLIENT_NO_SYNC, *v, &w, t).await);
        }
    }
    if want("ours-client-plaintext") {
        let bin = a
            .booking_bin
            .clone()
            .unwrap_or_else(cluster::default_booking_bin);
        let c = LocalCluster::start(&bin, false, false).await?;
        for v in &variants {
            let round = format!("{pid}-plain-{}", v.name());
            let t = ours::ViaClient::new(&c.endpoints, &c.client_tls, &round, w.seats).await?;
            rows.push(peers::run_round(ours::CLIENT_PLAINTEXT, *v, &w, t).await);
        }
    }
    if want("etcd") {
        if !have(etcd::BIN) {
            missing.push("etcd-server");
            variants.iter().for_each(|v| {
                rows.push(peers::skipped(
                    etcd::NAME,
                    *v,
                    "etcd not installed (bench/peers-setup.sh)",
                ))
            });
        } else {
            let e = etcd::EtcdCluster::start().await?;
            for v in &variants {
                let t = etcd::EtcdTarget::new(&e, &format!("r{pid}-{}", v.name()))?;
                rows.push(peers::run_round(etcd::NAME, *v, &w, t).await);
            }
        }
    }
    let redis_modes: Vec<&str> = ["always", "everysec"]
        .into_iter()
        .filter(|m| want(&format!("redis-{m}")))
        .collect();
    if !redis_modes.is_empty() {
        if !have(redis::BIN) {
            missing.push("redis-server");
            for m in &redis_modes {
                variants.iter().for_each(|v| {
                    rows.push(peers::skipped(
                        &format!("redis 7 AOF {m}"),
                        *v,
                        "redis-server not installed",
                    ))
                });
            }
        } else {
            let r = redis::RedisServer::start().await?;
            for m in &redis_modes {
                for v in &variants {
                    let t = redis::RedisTarget::new(
                        &r,
                        &format!("r{pid}-{m}-{}", v.name()),
                        m,
                        w.clients,
                    )
                    .await?;
                    rows.push(peers::run_round(&format!("redis 7 AOF {m}"), *v, &w, t).await);
                }
            }
        }
    }
    let pg_modes: Vec<(&str, postgres::Strategy)> = [
        ("for-update", postgres::Strategy::ForUpdate),
        ("optimistic", postgres::Strategy::Optimistic),
    ]
    .into_iter()
    .filter(|(n, _)| want(&format!("pg-{n}")))
    .collect();
    if !pg_modes.is_empty() {
        if postgres::bin_dir().is_none() {
            missing.push("postgresql");
            for (n, _) in &pg_modes {
                variants.iter().for_each(|v| {
                    rows.push(peers::skipped(
                        &format!("postgres 15 {n}"),
                        *v,
                        "postgresql not installed",
                    ))
                });
            }
        } else {
            let pg = postgres::PgServer::start().await?;
            for (n, s) in &pg_modes {
                for v in &variants {
                    let t = postgres::PgTarget::new(
                        &pg,
                        &format!("r{pid}_{n}_{}", v.name()),
                        *s,
                        w.seats,
                        w.clients,
                    )
                    .await?;
                    rows.push(peers::run_round(&format!("postgres 15 {n}"), *v, &w, t).await);
                }
            }
        }
    }
    if a.require_peers && !missing.is_empty() {
        anyhow::bail!(
            "peers not installed: {} (run bench/peers-setup.sh)",
            missing.join(", ")
        );
    }
    peers::fill_ratios(&mut rows);
    if a.json {
        println!(
            "{}",
            serde_json::json!({ "seats": w.seats, "ops": w.ops, "clients": w.clients, "rows": rows })
        );
    } else {
        println!(
            "peers: {} seats, {} hold attempts per row, {} concurrent clients, closed loop",
            w.seats, w.ops, w.clients
        );
        peers::print_table(&rows);
    }
    let clean = rows
        .iter()
        .all(|r| r.oversold == 0 && (r.audit == "ok" || r.audit == "skipped"));
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
