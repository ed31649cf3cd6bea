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

use bench::cluster::{self, LocalCluster};
use bench::peers::{self, etcd, ours, postgres, redis, Row, Variant, Workload};
use clap::{Parser, Subcommand};
use flash_cmd::{flash_sale, FlashArgs};

mod flash_cmd;

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
    FlashSale(Box<FlashArgs>),
    /// The same hold workload against this store, etcd, Redis and PostgreSQL.
    Peers(PeersArgs),
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        port: u16,
    },
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
            flash_sale(*a).await
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
