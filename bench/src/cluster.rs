//! Our store under test: three `booking node` processes with fsync on (the
//! store always flushes before acknowledging; there is no switch to turn it
//! off) and one gateway, on free loopback ports, with a temp cluster.toml and
//! temp data directories; or an already running gateway (`--target URL`).
//!
//! Owns: the temp config, the child processes and their logs, and waiting
//! until a leader exists and the gateway is healthy. Must not: reach into a
//! node (only processes, gRPC through `client`, and HTTP).
//!
//! Caveat: the gateway is `booking gateway --config FILE` when the binary
//! has that subcommand; otherwise this bench's own `gateway-standin`
//! subcommand, which runs the same `http_gateway::serve` over
//! `ClientCluster` with the same settings `booking gateway` would use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use client::{Client, ClientOptions};

use crate::procs::{free_port, wait_port, Child};

/// How long three fresh nodes may take to elect a leader.
pub const LEADER_WAIT: Duration = Duration::from_secs(60);
/// How long the gateway may take to answer `/healthz`.
pub const GATEWAY_WAIT: Duration = Duration::from_secs(30);

/// A running local cluster. Dropping it stops the gateway, then the nodes.
pub struct LocalCluster {
    // Field order is drop order: gateway first, nodes next, the dir last.
    pub gateway: Option<Child>,
    pub nodes: Vec<Child>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    /// gRPC endpoints, `http://127.0.0.1:port`, node 1 first.
    pub endpoints: Vec<String>,
    /// The gateway's base URL, `http://127.0.0.1:port`.
    pub gateway_url: String,
    pub admin_token: String,
    /// `booking gateway` or `bench gateway-standin`.
    pub gateway_kind: &'static str,
}

/// The admin token of the temp cluster (loopback only, so the default
/// development token would also be accepted; a distinct one avoids mixing up
/// clusters).
pub const ADMIN_TOKEN: &str = "bench-admin-token";

/// The default `booking` binary: `<repo>/target/release/booking`.
pub fn default_booking_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/booking")
}

fn write_config(
    dir: &Path,
    nodes: &[(u64, u16, u16)],
    gateway_port: u16,
) -> anyhow::Result<PathBuf> {
    let mut text = String::from(
        "# Written by `bench`: a private 3-node cluster on free loopback ports.\n[cluster]\nname = \"bench\"\ndata_dir = \"data\"\n",
    );
    for (id, port, metrics_port) in nodes {
        text.push_str(&format!(
            "[[node]]\nid = {id}\naddr = \"127.0.0.1:{port}\"\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\n"
        ));
    }
    text.push_str(&format!(
        "[gateway]\nlisten = \"127.0.0.1:{gateway_port}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"
    ));
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Does this `booking` binary have the `gateway` subcommand?
fn has_gateway_subcommand(booking_bin: &Path) -> bool {
    Command::new(booking_bin)
        .args(["gateway", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl LocalCluster {
    /// Starts three nodes and a gateway and waits until both serve.
    pub async fn start(booking_bin: &Path, with_gateway: bool) -> anyhow::Result<LocalCluster> {
        if !booking_bin.exists() {
            bail!(
                "no booking binary at {} (build it: cargo build --release -p booking, or pass --booking-bin)",
                booking_bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("bench-cluster-")
            .tempdir()?;
        let mut ports = Vec::new();
        for id in 1..=3u64 {
            ports.push((id, free_port()?, free_port()?));
        }
        let gateway_port = free_port()?;
        let config_path = write_config(dir.path(), &ports, gateway_port)?;
        let mut nodes = Vec::new();
        for (id, port, _) in &ports {
            let mut cmd = Command::new(booking_bin);
            cmd.arg("node")
                .arg("--config")
                .arg(&config_path)
                .arg("--id")
                .arg(id.to_string());
            if *id == 1 {
                cmd.arg("--bootstrap");
            }
            cmd.env("RUST_LOG", "warn");
            let mut child = Child::spawn(
                &format!("node-{id}"),
                cmd,
                &dir.path().join(format!("node-{id}.log")),
            )?;
            wait_port(
                SocketAddr::from(([127, 0, 0, 1], *port)),
                Duration::from_secs(30),
                &mut child,
            )
            .await?;
            nodes.push(child);
        }
        let endpoints: Vec<String> = ports
            .iter()
            .map(|(_, p, _)| format!("http://127.0.0.1:{p}"))
            .collect();
        let client = Client::with_options(endpoints.clone(), ClientOptions::default())?;
        client
            .wait_for_leader(LEADER_WAIT)
            .await
            .context("the bench cluster elected no leader")?;
        let mut cluster = LocalCluster {
            gateway: None,
            nodes,
            config_path,
            endpoints,
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            admin_token: ADMIN_TOKEN.to_string(),
            gateway_kind: "none",
            dir,
        };
        if with_gateway {
            let mut cmd;
            if has_gateway_subcommand(booking_bin) {
                cmd = Command::new(booking_bin);
                cmd.arg("gateway");
                cluster.gateway_kind = "booking gateway";
            } else {
                cmd = Command::new(std::env::current_exe()?);
                cmd.arg("gateway-standin");
                cluster.gateway_kind =
                    "bench gateway-standin (booking has no gateway subcommand yet)";
            }
            cmd.arg("--config")
                .arg(&cluster.config_path)
                .env("RUST_LOG", "warn");
            let mut child = Child::spawn("gateway", cmd, &cluster.dir.path().join("gateway.log"))?;
            wait_port(
                SocketAddr::from(([127, 0, 0, 1], gateway_port)),
                GATEWAY_WAIT,
                &mut child,
            )
            .await?;
            cluster.gateway = Some(child);
        }
        Ok(cluster)
    }

    /// Metrics endpoints, node 1 first.
    pub fn log_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Runs the gateway in this process over the real cluster of `config`: the
/// stand-in for `booking gateway --config FILE` until that subcommand exists.
pub async fn run_gateway_standin(config_path: &Path) -> anyhow::Result<()> {
    let config = cluster_config::ClusterConfig::load(config_path)?;
    let settings = http_gateway::GatewaySettings::from_config(&config);
    let cluster =
        http_gateway::ClientCluster::from_config(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut t), Ok(mut i)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
        }
    };
    http_gateway::serve(settings, cluster, listener, shutdown).await?;
    Ok(())
}
