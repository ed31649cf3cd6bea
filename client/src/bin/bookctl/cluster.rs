//! `bookctl status`, `node add|remove`, `snapshot` and `snapshot save`: the cluster itself
//! (who leads, how far each member has applied, membership, snapshots).
//!
//! Must not: change membership other than through the client's membership
//! calls (add as a learner, wait until it caught up, then promote).

use clap::Subcommand;
use client::{Client, ClientError, ClusterStatus, NodeStatus};
use serde_json::json;

use crate::output::{print, render_table};
use crate::Usage;

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// Add a node: as a learner (waiting until it caught up), then as a voter.
    Add {
        id: u64,
        /// The new node's gRPC address, host:port.
        addr: String,
    },
    /// Remove a node from the membership.
    Remove { id: u64 },
}

pub async fn node(client: &Client, command: NodeCmd, json_mode: bool) -> anyhow::Result<()> {
    match command {
        NodeCmd::Add { id, addr } => {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(
                    Usage(format!("{addr:?} is not host:port, e.g. 127.0.0.1:7104")).into(),
                );
            }
            client.add_learner(id, &addr, true).await?;
            let change = client.promote(id).await?;
            print(json_mode, serde_json::to_value(&change)?, || {
                format!(
                    "node {id} at {addr} added as a voter (log index {})\n{}",
                    change.log_index,
                    members_text(&change.members)
                )
            });
            Ok(())
        }
        NodeCmd::Remove { id } => {
            let change = client.remove_node(id).await?;
            print(json_mode, serde_json::to_value(&change)?, || {
                format!(
                    "node {id} removed (log index {})\n{}",
                    change.log_index,
                    members_text(&change.members)
                )
            });
            Ok(())
        }
    }
}

/// One row of the status table: a member (or an endpoint that answered
/// without being a member).
struct Row {
    id: Option<u64>,
    addr: String,
    voter: Option<bool>,
    status: Result<NodeStatus, String>,
}

pub async fn status(client: &Client, json_mode: bool) -> anyhow::Result<()> {
    let cluster: ClusterStatus = client.status().await;
    let answered: Vec<&NodeStatus> = cluster
        .endpoints
        .iter()
        .filter_map(|e| e.status.as_ref().ok())
        .collect();
    if answered.is_empty() {
        let errors: Vec<String> = cluster
            .endpoints
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.endpoint,
                    e.status.as_ref().err().map_or("", |s| s.as_str())
                )
            })
            .collect();
        return Err(ClientError::Unavailable {
            attempts: 1,
            last_error: format!("no node answered ({})", errors.join("; ")),
        }
        .into());
    }
    let membership = cluster
        .leader
        .as_ref()
        .or(answered.first().copied())
        .map(|s| s.members.clone())
        .unwrap_or_default();
    let mut rows: Vec<Row> = Vec::new();
    let find = |id: u64| {
        cluster
            .endpoints
            .iter()
            .find(|e| e.status.as_ref().is_ok_and(|s| s.node_id == id))
    };
    for member in &membership {
        let endpoint_status = find(member.node_id)
            .map(|e| e.status.clone())
            .or_else(|| {
                let want = format!("http://{}", member.addr);
                cluster
                    .endpoints
                    .iter()
                    .find(|e| e.endpoint == want)
                    .map(|e| e.status.clone())
            })
            .unwrap_or_else(|| Err("not asked (not among the endpoints)".into()));
        rows.push(Row {
            id: Some(member.node_id),
            addr: member.addr.clone(),
            voter: Some(member.voter),
            status: endpoint_status,
        });
    }
    for endpoint in &cluster.endpoints {
        let known = match &endpoint.status {
            Ok(s) => membership.iter().any(|m| m.node_id == s.node_id),
            Err(_) => membership
                .iter()
                .any(|m| format!("http://{}", m.addr) == endpoint.endpoint),
        };
        if !known {
            rows.push(Row {
                id: endpoint.status.as_ref().ok().map(|s| s.node_id),
                addr: endpoint.endpoint.trim_start_matches("http://").to_string(),
                voter: None,
                status: endpoint.status.clone(),
            });
        }
    }
    let leader = cluster.leader.as_ref();
    let leader_applied = leader.map(|l| l.applied_index);
    let term = leader
        .map(|l| l.term)
        .or_else(|| answered.iter().map(|s| s.term).max());
    if json_mode {
        let members: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| match &r.status {
                Ok(s) => json!({
                    "id": r.id, "addr": r.addr, "voter": r.voter, "reachable": true, "role": s.role,
                    "term": s.term, "applied_index": s.applied_index, "commit_index": s.commit_index,
                    "last_log_index": s.last_log_index, "snapshot_index": s.snapshot_index,
                    "lag": leader_applied.map(|l| l.saturating_sub(s.applied_index)),
                    "state_hash": s.state_hash, "admission": s.admission,
                    "incarnation": s.incarnation, "command_set": s.command_set, "error": null,
                }),
                Err(e) => json!({
                    "id": r.id, "addr": r.addr, "voter": r.voter, "reachable": false, "role": null,
                    "error": e,
                }),
            })
            .collect();
        let value = json!({
            "cluster": answered.first().map(|s| s.cluster_name.clone()),
            "leader": leader.map(|l| l.node_id),
            "cluster_time": leader.map(|l| json!({
                "agreed": l.cluster_time_agreed,
                "leader_clock_agrees": l.own_clock_agrees,
                "leader_clock_skew_ms": l.clock_skew_ms,
            })),
            "cluster_command_set": leader.map(|l| l.cluster_command_set),
            "leader_addr": leader.map(|l| l.members.iter().find(|m| m.node_id == l.node_id).map(|m| m.addr.clone())),
            "term": term,
            "members": members,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = match leader {
        Some(l) => format!(
            "cluster {:?}: leader node {} (term {})\n",
            l.cluster_name, l.node_id, l.term
        ),
        None => format!(
            "cluster: NO LEADER (highest term seen {})\n",
            term.unwrap_or(0)
        ),
    };
    let mut table = vec![vec![
        "NODE".to_string(),
        "ADDR".into(),
        "KIND".into(),
        "ROLE".into(),
        "TERM".into(),
        "APPLIED".into(),
        "COMMIT".into(),
        "LAG".into(),
        "SNAPSHOT".into(),
    ]];
    for r in &rows {
        let id = r.id.map_or("?".to_string(), |i| i.to_string());
        let kind = match r.voter {
            Some(true) => "voter",
            Some(false) => "learner",
            None => "not member",
        }
        .to_string();
        match &r.status {
            Ok(s) => table.push(vec![
                id,
                r.addr.clone(),
                kind,
                s.role.clone(),
                s.term.to_string(),
                s.applied_index.to_string(),
                s.commit_index.to_string(),
                leader_applied.map_or("-".into(), |l| {
                    l.saturating_sub(s.applied_index).to_string()
                }),
                s.snapshot_index.to_string(),
            ]),
            Err(e) => table.push(vec![id, r.addr.clone(), kind, format!("unreachable: {e}")]),
        }
    }
    out.push_str(&render_table(&table));
    if let Some(l) = leader {
        out.push_str(&clock_line(l));
        out.push_str(&command_set_line(l, &rows));
    }
    for r in &rows {
        if let Ok(s) = &r.status {
            if !s.admission.is_empty() && s.admission != "admitted" {
                out.push_str(&format!(
                    "\nnode {}: data directory NOT ADMITTED ({}; incarnation {}): it neither votes nor \
                     counts toward a quorum.{}",
                    s.node_id,
                    s.admission,
                    s.incarnation,
                    if s.admission == "refused" {
                        format!(
                            " Its disk was emptied or replaced: bookctl node remove {0}, then \
                             bookctl node add {0} {1} (learner, catch-up, then voter).",
                            s.node_id, r.addr
                        )
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    println!("{out}");
    Ok(())
}

/// The version handshake, when it matters: a member whose build applies an
/// older command set than the leader's (a rolling upgrade under way), so
/// the leader refuses the newer commands as `upgrade_pending`.
fn command_set_line(leader: &NodeStatus, rows: &[Row]) -> String {
    if leader.cluster_command_set == 0 || leader.cluster_command_set >= leader.command_set {
        return String::new();
    }
    let older: Vec<String> = rows
        .iter()
        .filter_map(|r| r.status.as_ref().ok())
        .filter(|s| s.command_set < leader.command_set)
        .map(|s| format!("node {} (set {})", s.node_id, s.command_set))
        .collect();
    format!(
        "\nupgrade pending: the leader applies command set {} but the cluster only {}{}; \
         commands of the newer sets are refused until every member runs the new build",
        leader.command_set,
        leader.cluster_command_set,
        if older.is_empty() {
            String::new()
        } else {
            format!(" ({})", older.join(", "))
        }
    )
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a consistent backup of the cluster (the leader's snapshot at a
    /// committed index) to FILE; `booking restore --from FILE` makes a new
    /// cluster of it.
    Save { file: std::path::PathBuf },
}

pub async fn snapshot_cmd(
    client: &Client,
    command: SnapshotCmd,
    json_mode: bool,
) -> anyhow::Result<()> {
    let SnapshotCmd::Save { file } = command;
    let header = client.save_snapshot(&file).await?;
    print(json_mode, serde_json::to_value(&header)?, || {
        format!(
            "saved {}: cluster {:?} at log index {} (term {}), {} bytes, state hash {}",
            file.display(),
            header.cluster_name,
            header.last_log_index,
            header.last_log_term,
            header.data_bytes,
            header.state_hash
        )
    });
    Ok(())
}

pub async fn snapshot(client: &Client, json_mode: bool) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut any_ok = false;
    for endpoint in client.endpoints() {
        let result = client.trigger_snapshot(&endpoint).await;
        any_ok |= result.is_ok();
        results.push((endpoint, result));
    }
    if json_mode {
        let value: Vec<serde_json::Value> = results
            .iter()
            .map(|(endpoint, r)| match r {
                Ok(index) => {
                    json!({ "endpoint": endpoint, "snapshot_index": index, "error": null })
                }
                Err(e) => {
                    json!({ "endpoint": endpoint, "snapshot_index": null, "error": e.to_string() })
                }
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for (endpoint, r) in &results {
            match r {
                Ok(index) => {
                    println!("{endpoint}: snapshot requested (current snapshot index {index})")
                }
                Err(e) => println!("{endpoint}: {e}"),
            }
        }
    }
    if !any_ok {
        return Err(ClientError::Unavailable {
            attempts: 1,
            last_error: "no node accepted the snapshot request".into(),
        }
        .into());
    }
    Ok(())
}

fn members_text(members: &[client::Member]) -> String {
    let mut rows = vec![vec!["NODE".to_string(), "ADDR".into(), "KIND".into()]];
    for m in members {
        rows.push(vec![
            m.node_id.to_string(),
            m.addr.clone(),
            if m.voter { "voter" } else { "learner" }.into(),
        ]);
    }
    render_table(&rows)
}

/// One line on cluster time as the leader sees it: log time follows the
/// time a majority of clocks agrees on, never one clock alone.
fn clock_line(l: &client::NodeStatus) -> String {
    if !l.cluster_time_agreed {
        return "\nclock: no majority of clocks agrees; log time runs on the leader's monotonic clock\n"
            .to_string();
    }
    if l.own_clock_agrees {
        format!(
            "\nclock: a majority agrees; leader clock skew {} ms (within tolerance)\n",
            l.clock_skew_ms
        )
    } else {
        format!(
            "\nclock: LEADER CLOCK SKEWED by {} ms from the majority; log time follows the majority, not it\n",
            l.clock_skew_ms
        )
    }
}
