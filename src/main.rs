//! `booking`: the one binary an operator runs.
//!
//! - `booking node --config FILE --id N [--bootstrap]` runs one Raft node until
//!   Ctrl-C or SIGTERM (see `raft_node::run_node`).
//! - `booking gateway --config FILE` runs the HTTP gateway of the file's
//!   cluster until Ctrl-C or SIGTERM (see [`gateway`]).
//! - `booking certs --config FILE [--out DIR]` makes the CA and the node,
//!   client and admin certificates the file's `[tls]` names, where missing
//!   (see [`certs`]).
//! - `booking up [--config FILE]` runs every node of the file and one gateway
//!   as child processes on this machine, with a demo event (see [`up`]).
//! - `booking restore --config FILE --from BACKUP [--id N]` prepares the data
//!   directories of a new cluster from a backup (see [`restore`]).
//!
//! Owns: the command line, the tracing subscriber (set up here and nowhere
//! else; `RUST_LOG`, default [`DEFAULT_LOG_FILTER`]) and the process exit code. Must not: hold
//! any logic a library could own; each subcommand is a thin call into one.
//!
//! Exit codes: 0 after a clean stop, 1 when a node or a child failed at run
//! time, 2 for a usage or configuration error (the message names the key), or
//! for `BOOKING_FAULT_BUG` set in a build without `fault-injection-bugs`.

mod certs;
mod gateway;
mod restore;
mod up;

/// mimalloc instead of glibc malloc: the gateway and the nodes allocate per
/// request (HTTP, JSON, gRPC frames) from many threads; see docs/BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cluster_config::ClusterConfig;

/// A Raft-replicated seat-booking store: one node, or a whole local cluster.
#[derive(Parser, Debug)]
#[command(name = "booking", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run one node of the cluster described by the config file.
    Node {
        /// The cluster file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// This node's id (one of the file's [[node]] ids).
        #[arg(long)]
        id: u64,
        /// Initialise the membership from the file's [[node]] list, only if
        /// this node's data directory is empty (a first start).
        #[arg(long)]
        bootstrap: bool,
    },
    /// Serve the HTTP gateway of the config file's cluster on `[gateway] listen`.
    Gateway {
        /// The cluster file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Make the mutual TLS certificates of the config file's cluster: a CA,
    /// one per node, a client (gateway) and an admin (bookctl) certificate.
    /// Existing files are kept; only missing ones are made.
    Certs {
        /// The cluster file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// Write every file here, with the default names, instead of where
        /// the file's [tls] keys say.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start every node of the config file and one gateway as child
    /// processes, wait for a leader, create the demo event on a first run,
    /// print the URLs, and stop everything on Ctrl-C.
    Up {
        /// The cluster file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
    },
    /// Prepare the data directories of a new cluster (the file's, with a
    /// new [cluster] name) from a backup made by `bookctl snapshot save`.
    Restore {
        /// The new cluster's file.
        #[arg(long, default_value = "cluster.toml")]
        config: PathBuf,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Only this node's directory (one host of a multi-host cluster);
        /// default: every node of the file.
        #[arg(long)]
        id: Option<u64>,
    },
}

/// A failure that is the operator's to fix before trying again (exit 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("booking: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("booking: error: {e:#}");
            if e.downcast_ref::<UsageError>().is_some()
                || e.downcast_ref::<cluster_config::ConfigError>().is_some()
            {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The log filter when `RUST_LOG` is not set: our own lines at info, and
/// openraft's only from warn up (its info level narrates every vote).
pub(crate) const DEFAULT_LOG_FILTER: &str = "info,openraft=warn";

/// The filter `booking up` gives its children when `RUST_LOG` is not set:
/// openraft is silent, because while the nodes start one after another its
/// warnings and errors (`Unreachable node`, ignored vote responses) are
/// expected noise; the node logs leader changes itself. An explicit
/// `RUST_LOG` always wins.
pub(crate) const UP_CHILD_LOG_FILTER: &str = "info,openraft=off";

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No colour codes in files or in `booking up`'s prefixed pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Node {
            config,
            id,
            bootstrap,
        } => run_node(config, id, bootstrap).await,
        Cmd::Gateway { config } => gateway::run(config).await,
        Cmd::Up { config } => up::run(config).await,
        Cmd::Restore { config, from, id } => restore::run(config, from, id).await,
        Cmd::Certs { config, out } => certs::run(config, out),
    }
}

/// Loads and validates the config; a `ConfigError` names the file, line and key.
pub(crate) fn load_config(path: &std::path::Path) -> anyhow::Result<ClusterConfig> {
    Ok(ClusterConfig::load(path)?)
}

async fn run_node(config_path: PathBuf, id: u64, bootstrap: bool) -> anyhow::Result<ExitCode> {
    // BOOKING_FAULT_BUG: an unknown bug name, or any name in a build without
    // the `fault-injection-bugs` feature, refuses to start (exit 2).
    raft_node::bugs::select_from_env().map_err(UsageError)?;
    let config = load_config(&config_path)?;
    if config.node(id).is_none() {
        let ids: Vec<String> = config.nodes.iter().map(|n| n.id.to_string()).collect();
        return Err(UsageError(format!(
            "--id {id}: no [[node]] with id {id} in {} (ids: {})",
            config_path.display(),
            ids.join(", ")
        ))
        .into());
    }
    let shutdown = shutdown_signal().context("cannot install signal handlers")?;
    match raft_node::run_node(config, id, bootstrap, shutdown).await {
        Ok(()) => {}
        // A refused start (a missing certificate, a bad [raft] value) is the
        // operator's to fix: exit 2, like a bad key.
        Err(raft_node::NodeError::Config(message)) => {
            return Err(UsageError(format!("node {id}: {message}")).into())
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("node {id} failed"))),
    }
    Ok(ExitCode::SUCCESS)
}

/// A future that resolves on the first Ctrl-C (SIGINT) or SIGTERM. The
/// handlers are installed now, so a signal that arrives before the future is
/// first polled is not lost.
pub(crate) fn shutdown_signal(
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    })
}
