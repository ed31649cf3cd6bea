//! `booking restore --config cluster.toml --from FILE [--id N]`: prepares the
//! data directories of a *new* cluster from a backup (`bookctl snapshot
//! save`), from which `booking up` or `booking node` (never `--bootstrap`)
//! then start.
//!
//! Owns: the checks that make a restore safe to start (the file is a whole
//! backup of this format; the new cluster's `[cluster] name` differs from the
//! backup's, because every Raft RPC carries the cluster name and a member of
//! the old cluster must never be taken for one of the new; each directory is
//! absent or empty) and the summary. Must not: lay out a data directory
//! itself (`raft_node::backup::restore_data_dir` does) or read the file's
//! format (`client::backup`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use client::backup::{hex, read_backup};
use raft_node::backup::{restore_data_dir, RestoreFrom};

use crate::UsageError;

pub async fn run(
    config_path: PathBuf,
    from: PathBuf,
    only: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let config = crate::load_config(&config_path)?;
    let (header, data) = read_backup(&from).map_err(|e| UsageError(e.to_string()))?;
    if header.cluster_name == config.cluster.name {
        return Err(UsageError(format!(
            "{} is a backup of cluster {:?}, and {} names the same cluster: a restored cluster \
             must have a new [cluster] name, so that no member of the old cluster can ever be \
             taken for one of the new (every Raft message carries the name)",
            from.display(),
            header.cluster_name,
            config_path.display()
        ))
        .into());
    }
    let ids: Vec<u64> = match only {
        Some(id) if config.node(id).is_none() => {
            return Err(UsageError(format!(
                "--id {id}: no [[node]] with id {id} in {}",
                config_path.display()
            ))
            .into())
        }
        Some(id) => vec![id],
        None => config.nodes.iter().map(|n| n.id).collect(),
    };
    // Every directory is checked before any is written, so a refusal leaves
    // nothing half restored.
    for &id in &ids {
        let dir = config.node_data_dir(id);
        if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
            return Err(UsageError(format!(
                "{} (node {id}) is not empty: a restore only prepares new data directories; \
                 move it away first",
                dir.display()
            ))
            .into());
        }
    }
    let voters: BTreeMap<u64, String> = config
        .nodes
        .iter()
        .map(|n| (n.id, n.addr.to_string()))
        .collect();
    let restore_from = RestoreFrom {
        last_log_index: header.last_log_index,
        last_log_term: header.last_log_term,
        last_log_node: header.last_log_node,
        data,
    };
    eprintln!(
        "restoring {} (cluster {:?} at log index {}, state hash {}) as cluster {:?}",
        from.display(),
        header.cluster_name,
        header.last_log_index,
        header.state_hash,
        config.cluster.name
    );
    for &id in &ids {
        let dir = config.node_data_dir(id);
        let hash = restore_data_dir(&dir, &config.cluster.name, id, &voters, &restore_from)
            .await
            .with_context(|| format!("restoring node {id} into {}", dir.display()))?;
        let hash = hex(&hash);
        if hash != header.state_hash {
            anyhow::bail!(
                "node {id}: the restored state hashes to {hash}, the backup says {}",
                header.state_hash
            );
        }
        println!("node {id}: {} restored (state hash {hash})", dir.display());
    }
    println!(
        "restored {} node(s) of cluster {:?} at log index {}; start them with `booking up --config {}` \
         or `booking node --config {} --id N` (never --bootstrap)",
        ids.len(),
        config.cluster.name,
        header.last_log_index,
        config_path.display(),
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
