//! Running a schedule: each step's fault applied at its time and undone at
//! its end, fault windows reported to the recorder, and the final heal.
//!
//! Owns: [`Ctx`] (what the nemesis acts through), applying a fault (kills
//! and pauses directly; partitions, clocks and membership through their own
//! files), the undo of each, and [`heal_everything`]. Must not: judge
//! anything or record client operations, or leave a fault in place: `stop`
//! heals the fault in progress before returning.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::Client;

use super::{clock, membership, partition, Fault, SnapshotVictims, Step, Target};
use crate::harness::cluster::Cluster;
use crate::harness::recorder::Recorder;

/// How often `crash-in-snapshot` asks whether its restarted node answers.
const STATUS_POLL_MS: u64 = 20;
/// How long `crash-in-snapshot` waits for its restarted node to answer.
const ANSWER_WAIT_MS: u64 = 10_000;

/// What the nemesis acts through.
pub struct Ctx {
    pub cluster: Arc<Mutex<Cluster>>,
    pub client: Client,
    pub recorder: Arc<Recorder>,
    /// Progress messages and errors, for the run log.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Ctx {
    fn note(&self, message: String) {
        let line = format!(
            "[{:>7.1}s] nemesis: {message}",
            self.recorder.now_ns() as f64 / 1e9
        );
        self.log.lock().expect("log lock").push(line);
    }

    pub(super) fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        // Cluster calls fork `ip`/`nft` or signal processes: short, blocking.
        tokio::task::block_in_place(|| f(&mut self.cluster.lock().expect("cluster lock")))
    }

    async fn leader(&self) -> Option<u64> {
        self.client.status().await.leader.map(|l| l.node_id)
    }

    pub(super) async fn resolve(&self, target: &Target) -> Result<Vec<u64>, String> {
        match target {
            Target::Node(n) => Ok(vec![*n]),
            Target::Nodes(ns) => Ok(ns.clone()),
            Target::Leader => self
                .leader()
                .await
                .map(|l| vec![l])
                .ok_or_else(|| "no leader to target".to_string()),
        }
    }
}

/// The actions needed to undo an applied fault.
pub(super) enum Undo {
    Heal,
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    ClockReset(Vec<u64>, Option<tokio::task::JoinHandle<()>>),
    ReAdd(u64, Option<Box<Undo>>),
    /// The operator's procedure for a replaced disk: remove, then re-add.
    RemoveReAdd(u64),
}

impl Undo {
    /// The nodes whose clocks the fault moved (and this undo resets).
    pub(super) fn clocks_moved(&self) -> Vec<u64> {
        match self {
            Undo::ClockReset(nodes, _) => nodes.clone(),
            Undo::ReAdd(_, Some(inner)) => inner.clocks_moved(),
            _ => Vec::new(),
        }
    }
}

/// Applies `fault`; returns how to undo it and what was done.
pub(super) async fn apply(ctx: &Ctx, fault: &Fault) -> Result<(Undo, String), String> {
    match fault {
        Fault::PartitionIsolate { .. }
        | Fault::PartitionHalves { .. }
        | Fault::PartitionBridge { .. }
        | Fault::PartitionMajoritiesRing { .. }
        | Fault::PartitionOneWayFromLeader => partition::apply(ctx, fault).await,
        Fault::Kill { target } => {
            let nodes = ctx.resolve(target).await?;
            ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.kill(n)))?;
            Ok((Undo::Restart(nodes.clone()), format!("killed {nodes:?}")))
        }
        Fault::PowerCut { target } => {
            let nodes = ctx.resolve(target).await?;
            let cuts = ctx.with_cluster(|c| {
                nodes.iter().try_for_each(|&n| c.kill(n))?;
                nodes
                    .iter()
                    .map(|&n| c.power_cut(n).map(|r| (n, r)))
                    .collect::<Result<Vec<_>, String>>()
            })?;
            let lost: Vec<String> = cuts
                .iter()
                .map(|(n, r)| {
                    format!(
                        "node {n}: {} files rolled back {:?}, {} bytes lost, {} inodes dropped",
                        r.files_rolled_back, r.rolled_back_paths, r.bytes_lost, r.inodes_dropped
                    )
                })
                .collect();
            Ok((
                Undo::Restart(nodes.clone()),
                format!("killed and cut {nodes:?} ({})", lost.join("; ")),
            ))
        }
        Fault::DiskLoss {
            target,
            operator_first,
        } => {
            let node = ctx.resolve(target).await?[0];
            // One lost disk at a time: wiping a second node while another is
            // not yet re-admitted would exceed what 3 nodes tolerate.
            let status = ctx.client.status().await;
            let mut voters_seen_by_leader = None;
            for e in &status.endpoints {
                match &e.status {
                    Ok(s) if s.admission == "admitted" => {
                        if s.is_leader() {
                            voters_seen_by_leader =
                                Some(s.members.iter().filter(|m| m.voter).count());
                        }
                    }
                    Ok(s) => return Err(format!("node {} is not admitted yet", s.node_id)),
                    Err(err) => return Err(format!("{} does not answer: {err}", e.endpoint)),
                }
            }
            // Admitted is not enough: a re-added node whose promotion has not
            // finished is a learner, and wiping another voter then leaves no
            // majority to re-add either of them.
            match voters_seen_by_leader {
                Some(voters) if voters == status.endpoints.len() => {}
                Some(voters) => {
                    return Err(format!(
                        "only {voters} of {} nodes are voters yet",
                        status.endpoints.len()
                    ))
                }
                None => return Err("no leader to confirm every node is a voter".into()),
            }
            ctx.with_cluster(|c| {
                c.kill(node)?;
                c.wipe_data_dir(node)
            })?;
            let undo = match operator_first {
                true => match membership::remove_node(ctx, node).await {
                    Ok(_) => Undo::ReAdd(node, None),
                    Err(_) => Undo::RemoveReAdd(node),
                },
                false => Undo::RemoveReAdd(node),
            };
            ctx.with_cluster(|c| c.restart(node))?;
            let how = if *operator_first {
                "removed it, restarted it empty"
            } else {
                "restarted it empty (refused until the operator acts)"
            };
            Ok((
                undo,
                format!("killed node {node}, wiped its data directory, {how}"),
            ))
        }
        Fault::CrashInSnapshot {
            lagging_pick,
            lag_ms,
            kill_after_ms,
            victims,
        } => {
            let leader = ctx.leader().await.ok_or("no leader to lag behind")?;
            let ids = ctx.with_cluster(|c| c.ids());
            let followers: Vec<u64> = ids.iter().copied().filter(|&n| n != leader).collect();
            let lagging = *followers
                .get(*lagging_pick as usize % followers.len().max(1))
                .ok_or("no follower to lag")?;
            // Down (not paused: openraft does not purge what it is still
            // sending to a follower), so the others snapshot and purge past it.
            ctx.with_cluster(|c| c.kill(lagging))?;
            tokio::time::sleep(Duration::from_millis(*lag_ms)).await;
            ctx.with_cluster(|c| c.restart(lagging))?;
            // Its snapshot comes once it answers again: count the delay from then.
            let answering = async {
                loop {
                    let status = ctx.client.status().await;
                    if status
                        .endpoints
                        .iter()
                        .any(|e| e.status.as_ref().is_ok_and(|s| s.node_id == lagging))
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(STATUS_POLL_MS)).await;
                }
            };
            tokio::time::timeout(Duration::from_millis(ANSWER_WAIT_MS), answering)
                .await
                .map_err(|_| {
                    format!(
                        "node {lagging} did not answer within {ANSWER_WAIT_MS} ms of its restart"
                    )
                })?;
            tokio::time::sleep(Duration::from_millis(*kill_after_ms)).await;
            let nodes = match victims {
                SnapshotVictims::Lagging => vec![lagging],
                SnapshotVictims::Leader => vec![leader],
                SnapshotVictims::All => ids,
            };
            ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.kill(n)))?;
            Ok((
                Undo::Restart(nodes.clone()),
                format!(
                    "killed node {lagging} (leader {leader}) for {lag_ms} ms, restarted it, killed {nodes:?} {kill_after_ms} ms after it answered"
                ),
            ))
        }
        Fault::Pause { target } => {
            let nodes = ctx.resolve(target).await?;
            ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.pause(n)))?;
            Ok((Undo::Resume(nodes.clone()), format!("paused {nodes:?}")))
        }
        Fault::ClockBump { target, offset_ms } => clock::bump(ctx, target, *offset_ms).await,
        Fault::ClockStrobe {
            target,
            offset_ms,
            period_ms,
        } => clock::strobe(ctx, target, *offset_ms, *period_ms).await,
        Fault::Membership { target, during } => {
            membership::remove(ctx, target, during.as_deref()).await
        }
    }
}

fn undo(
    ctx: &Ctx,
    action: Undo,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
    Box::pin(async move {
        match action {
            Undo::Heal => ctx.with_cluster(|c| c.net().map_or(Ok(()), |n| n.heal())),
            Undo::Restart(nodes) => {
                ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.restart(n)))
            }
            Undo::Resume(nodes) => {
                ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.resume(n)))
            }
            Undo::ClockReset(nodes, task) => {
                if let Some(task) = task {
                    task.abort();
                    let _ = task.await;
                }
                ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.set_clock_offset_ms(n, 0)))
            }
            Undo::RemoveReAdd(node) => {
                membership::remove_node(ctx, node).await?;
                membership::re_add(ctx, node).await
            }
            Undo::ReAdd(node, inner) => {
                // The concurrent fault first: the re-add needs a working majority.
                if let Some(inner) = inner {
                    undo(ctx, *inner).await?;
                }
                membership::re_add(ctx, node).await
            }
        }
    })
}

/// Runs the schedule against the cluster, healing each fault at its end.
/// Returns when the schedule is done or `stop` fires (then it heals the fault
/// in progress first).
pub async fn execute(ctx: &Ctx, steps: &[Step], mut stop: tokio::sync::watch::Receiver<bool>) {
    for step in steps {
        let start = Duration::from_millis(step.start_ms);
        let now = Duration::from_nanos(ctx.recorder.now_ns());
        if start > now {
            tokio::select! {
                _ = tokio::time::sleep(start - now) => {}
                _ = stop.changed() => return,
            }
        }
        let applied = apply(ctx, &step.fault).await;
        let (undo_action, window) = match applied {
            Ok((u, detail)) => {
                ctx.note(format!("{} started: {detail}", step.fault.name()));
                let w = ctx
                    .recorder
                    .fault_started(step.fault.name(), detail, u.clocks_moved());
                (u, w)
            }
            Err(e) => {
                ctx.note(format!("{} could not start: {e}", step.fault.name()));
                continue;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(step.duration_ms)) => {}
            _ = stop.changed() => {}
        }
        match undo(ctx, undo_action).await {
            Ok(()) => ctx.note(format!("{} healed", step.fault.name())),
            Err(e) => ctx.note(format!(
                "{} heal failed (the final heal retries): {e}",
                step.fault.name()
            )),
        }
        ctx.recorder.fault_healed(window);
        if *stop.borrow() {
            return;
        }
    }
}

/// The final heal: everything back, then every configured node a voter again.
pub async fn heal_everything(ctx: &Ctx) -> Vec<String> {
    let mut errors = ctx.with_cluster(|c| c.heal_all());
    ctx.recorder.close_all_faults();
    let ids = ctx.with_cluster(|c| c.ids());
    if let Err(e) = ctx.client.wait_for_leader(Duration::from_secs(30)).await {
        errors.push(format!("no leader after heal: {e}"));
        return errors;
    }
    let Some(leader) = ctx.client.status().await.leader else {
        errors.push("no leader after heal".into());
        return errors;
    };
    // A node left refused (a wiped disk whose procedure failed): the
    // operator's remove and re-add.
    let status = ctx.client.status().await;
    for s in status
        .endpoints
        .iter()
        .filter_map(|e| e.status.as_ref().ok())
    {
        if s.admission == "refused" {
            ctx.note(format!(
                "final heal: node {} is refused (emptied disk); removing and re-adding it",
                s.node_id
            ));
            if let Err(e) = membership::remove_node(ctx, s.node_id).await {
                errors.push(e);
            }
        }
    }
    let leader = ctx.client.status().await.leader.unwrap_or(leader);
    for id in ids {
        let voter = leader.members.iter().any(|m| m.node_id == id && m.voter);
        if !voter {
            ctx.note(format!(
                "final heal: node {id} is not a voter; adding it back"
            ));
            if let Err(e) = membership::re_add(ctx, id).await {
                errors.push(e);
            }
        }
    }
    errors
}
