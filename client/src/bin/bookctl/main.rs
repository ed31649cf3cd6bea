//! `bookctl`: the operator's and scripter's command line for a booking cluster.
//!
//! Human tables by default, `--json` for scripts (one JSON document on stdout).
//! Exit codes: 0 ok; 1 refused or rejected by the store (seat taken, not the
//! owner, ...); 2 usage error, bad input file, or cluster unreachable (nothing
//! was applied); 3 outcome unknown (a write may or may not have been applied;
//! the message says which request id to check).
//!
//! Layout: this file parses the global options, connects, dispatches and
//! maps errors to exit codes; each command family is a module:
//! - [`events`]: `event create|list|show|open|close` and `seats`;
//! - [`holds`]: `hold`, `release`, `confirm` and `booking show`;
//! - [`cluster`]: `status`, `node add|remove` and `snapshot`;
//! - [`maintenance`]: `leader transfer` and `rolling-restart`;
//! - [`output`]: printing, tables, money and times.
//!
//! Owns: argument parsing, output formatting and exit codes. Must not: talk to
//! a node except through the `client` library, or retry a write itself (the
//! client's loop retries with the same ids; an unknown outcome exits 3).

mod cluster;
mod events;
mod holds;
mod maintenance;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::state_machine::{Command, Query, QueryResult, Reply};
use client::{Client, ClientError, ClientOptions, ClientTls, Consistency, Ids, TlsIdentity};

/// Talk to a booking cluster.
#[derive(Parser, Debug)]
#[command(name = "bookctl", version, about)]
struct Cli {
    /// Cluster file whose [[node]] addresses to use (default: ./cluster.toml).
    #[arg(
        long,
        global = true,
        env = "BOOKCTL_CONFIG",
        conflicts_with = "endpoints"
    )]
    config: Option<PathBuf>,
    /// Comma-separated node addresses (host:port or http://host:port) instead of a file.
    #[arg(long, global = true, env = "BOOKCTL_ENDPOINTS", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// With --endpoints: the cluster's CA certificate (PEM), for mutual TLS
    /// (with --cert and --key). With a config file, `[tls] ca_file` is used.
    #[arg(long, global = true, env = "BOOKCTL_CACERT", requires_all = ["cert", "key"])]
    cacert: Option<PathBuf>,
    /// With --endpoints: this client's certificate (PEM); the admin
    /// certificate for `node` and `snapshot` commands.
    #[arg(long, global = true, env = "BOOKCTL_CERT", requires_all = ["cacert", "key"])]
    cert: Option<PathBuf>,
    /// With --endpoints: the private key of --cert (PEM).
    #[arg(long, global = true, env = "BOOKCTL_KEY", requires_all = ["cacert", "cert"])]
    key: Option<PathBuf>,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of one attempt against one node, in milliseconds.
    #[arg(long, global = true, default_value_t = 3_000)]
    timeout_ms: u64,
    /// Read from the answering node's local state (may be behind) instead of linearizably.
    #[arg(long, global = true)]
    stale: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Leader, term, and each member's role and applied index.
    Status,
    /// Create, list, show, open and close events.
    Event {
        #[command(subcommand)]
        command: events::EventCmd,
    },
    /// The seat map of an event.
    Seats {
        /// Event id.
        event: String,
    },
    /// Hold seats for a holder.
    Hold(holds::HoldArgs),
    /// Release a hold (owner only).
    Release(holds::ReleaseArgs),
    /// Confirm a hold into a booking (owner only).
    Confirm(holds::ConfirmArgs),
    /// Bookings.
    Booking {
        #[command(subcommand)]
        command: holds::BookingCmd,
    },
    /// Membership: add or remove a node while serving.
    Node {
        #[command(subcommand)]
        command: cluster::NodeCmd,
    },
    /// Without a subcommand: ask every node to build a snapshot now and purge
    /// its log. `snapshot save FILE`: a consistent backup of the cluster.
    Snapshot {
        #[command(subcommand)]
        command: Option<cluster::SnapshotCmd>,
    },
    /// Leadership: move it to another voter before maintenance.
    Leader {
        #[command(subcommand)]
        command: maintenance::LeaderCmd,
    },
    /// Restart every member one at a time (the leader last, after a transfer),
    /// waiting until each is back and caught up.
    RollingRestart(maintenance::RollingRestartArgs),
}

/// An error the operator must fix (exit 2).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("bookctl: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bookctl: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(client_error) = e.downcast_ref::<ClientError>() {
        return match client_error {
            ClientError::Refused(_) | ClientError::Rejected { .. } => 1,
            ClientError::Unavailable { .. }
            | ClientError::InvalidEndpoint { .. }
            | ClientError::Tls { .. } => 2,
            ClientError::OutcomeUnknown { .. } | ClientError::Protocol { .. } => 3,
        };
    }
    2
}

fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let options = ClientOptions {
        request_timeout_ms: cli.timeout_ms,
        retry_budget_ms: 15_000,
        ..ClientOptions::default()
    };
    if !cli.endpoints.is_empty() {
        let tls = match (&cli.cacert, &cli.cert, &cli.key) {
            (Some(ca), Some(cert), Some(key)) => {
                Some(ClientTls::from_files(ca, cert, key).map_err(|e| Usage(e.to_string()))?)
            }
            _ => None,
        };
        let options = ClientOptions { tls, ..options };
        return Ok(Client::with_options(&cli.endpoints, options)?);
    }
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("cluster.toml"));
    let config = cluster_config::ClusterConfig::load(&path).map_err(|e| Usage(e.to_string()))?;
    // bookctl is the operator's tool: it presents the admin certificate, so
    // membership and snapshot commands work (etcdctl's habit too).
    let tls = ClientTls::load(&config, TlsIdentity::Admin).map_err(|e| Usage(e.to_string()))?;
    let options = ClientOptions { tls, ..options };
    Ok(Client::from_config(&config, options)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = connect(&cli)?;
    let consistency = if cli.stale {
        Consistency::Stale
    } else {
        Consistency::Linearizable
    };
    let json = cli.json;
    match cli.command {
        Cmd::Status => cluster::status(&client, json).await,
        Cmd::Event { command } => events::event(&client, command, consistency, json).await,
        Cmd::Seats { event } => events::seats(&client, event, consistency, json).await,
        Cmd::Hold(args) => holds::hold(&client, args, json).await,
        Cmd::Release(args) => holds::release(&client, args, json).await,
        Cmd::Confirm(args) => holds::confirm(&client, args, json).await,
        Cmd::Booking { command } => holds::booking(&client, command, consistency, json).await,
        Cmd::Node { command } => cluster::node(&client, command, json).await,
        Cmd::Snapshot { command: None } => cluster::snapshot(&client, json).await,
        Cmd::Snapshot {
            command: Some(command),
        } => cluster::snapshot_cmd(&client, command, json).await,
        Cmd::Leader { command } => maintenance::leader(&client, command, json).await,
        Cmd::RollingRestart(args) => maintenance::rolling_restart(&client, args, json).await,
    }
}

/// Every write of bookctl: a first send of new ids (a one-shot CLI never
/// resends), the store's refusal as [`ClientError::Refused`] (exit 1).
async fn write(client: &Client, command: Command) -> Result<Reply, ClientError> {
    client.submit(Ids::New, command).await?.into_reply()
}

/// Every read of bookctl: the answer without its applied index.
async fn read(
    client: &Client,
    query: Query,
    consistency: Consistency,
) -> Result<QueryResult, ClientError> {
    Ok(client.read(query, consistency).await?.0)
}
