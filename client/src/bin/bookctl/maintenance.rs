//! `bookctl leader transfer` and `bookctl rolling-restart`: planned
//! maintenance without failed requests (README, "Operating a cluster").
//!
//! Owns: running the operator's restart command for each member, progress
//! lines on stderr and the summary. Must not: restart a process any other way
//! than through that command, or sequence the handover itself (the client
//! library's `transfer_leader`, `prepare_restart` and `wait_rejoined` do).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use client::Client;
use serde_json::json;

use crate::output::print;
use crate::Usage;

#[derive(Subcommand, Debug)]
pub enum LeaderCmd {
    /// Move leadership to another voter (writes and reads wait, they do not fail).
    Transfer {
        /// The voter to lead next (default: the one whose log is most up to date).
        #[arg(long)]
        to: Option<u64>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
    },
}

#[derive(Args, Debug)]
pub struct RollingRestartArgs {
    /// Shell command that restarts one node and returns once it was started
    /// again; `{id}` is replaced by the node id, e.g.
    /// 'systemctl restart booking-node@{id}'.
    #[arg(long)]
    exec: String,
    /// Bound of each wait (healthy before, caught up after), in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

pub async fn leader(client: &Client, command: LeaderCmd, json_mode: bool) -> anyhow::Result<()> {
    let LeaderCmd::Transfer { to, timeout_s } = command;
    let transfer = client
        .transfer_leader(to, Duration::from_secs(timeout_s))
        .await?;
    print(json_mode, serde_json::to_value(&transfer)?, || {
        if transfer.from == transfer.to {
            format!(
                "node {} already leads (term {})",
                transfer.to, transfer.term
            )
        } else {
            format!(
                "leadership moved from node {} to node {} (term {}) in {} ms",
                transfer.from, transfer.to, transfer.term, transfer.took_ms
            )
        }
    });
    Ok(())
}

pub async fn rolling_restart(
    client: &Client,
    args: RollingRestartArgs,
    json_mode: bool,
) -> anyhow::Result<()> {
    if !args.exec.contains("{id}") {
        return Err(Usage(format!(
            "--exec {:?} has no {{id}}: every node would get the same command",
            args.exec
        ))
        .into());
    }
    let timeout = Duration::from_secs(args.timeout_s);
    let started = Instant::now();
    let order = client.restart_order(timeout).await?;
    eprintln!(
        "rolling restart of {} member(s), in this order: {order:?}",
        order.len()
    );
    let mut rows = Vec::new();
    for (i, &id) in order.iter().enumerate() {
        eprintln!(
            "[{}/{}] node {id}: waiting until the cluster is healthy",
            i + 1,
            order.len()
        );
        let transfer = client.prepare_restart(id, timeout).await?;
        if let Some(t) = &transfer {
            eprintln!(
                "[{}/{}] node {id}: leadership moved to node {} in {} ms",
                i + 1,
                order.len(),
                t.to,
                t.took_ms
            );
        }
        let command = args.exec.replace("{id}", &id.to_string());
        eprintln!("[{}/{}] node {id}: running {command:?}", i + 1, order.len());
        let status = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .status()
            .await
            .map_err(|e| anyhow::anyhow!("cannot run {command:?}: {e}"))?;
        if !status.success() {
            anyhow::bail!("{command:?} failed ({status}); stopped before the next node");
        }
        let rejoined = client.wait_rejoined(id, timeout).await?;
        eprintln!(
            "[{}/{}] node {id}: back and caught up (applied index {}) in {} ms",
            i + 1,
            order.len(),
            rejoined.applied_index,
            rejoined.catch_up_ms
        );
        rows.push(json!({
            "node_id": id,
            "transfer": transfer,
            "catch_up_ms": rejoined.catch_up_ms,
            "applied_index": rejoined.applied_index,
        }));
    }
    let took_s = started.elapsed().as_secs_f64();
    let summary = json!({ "restarted": rows, "took_s": took_s });
    print(json_mode, summary, || {
        format!(
            "rolling restart done: {} member(s) restarted one at a time in {took_s:.1} s",
            order.len()
        )
    });
    Ok(())
}
