//! The nemesis: a fault schedule derived from a seed, and its execution.
//!
//! Owns: [`schedule`] (a pure function of kind, seed, duration and node ids:
//! the same seed and commit give the same schedule, printed before the run),
//! the [`Fault`] vocabulary (partitions, kill -9 and restart, SIGSTOP/SIGCONT,
//! clock bumps and strobes, membership changes during faults) and
//! [`execute`], which applies each step at its time and heals it at its end.
//!
//! Must not: judge anything or record client operations; it only reports fault
//! windows to the recorder. Which node is "the leader" is resolved when the
//! step starts (that part is not determined by the seed).
//!
//! Caveats: pauses last longer than the election timeout so a new leader is
//! elected; clock offsets reach the node through its clock-offset file, which
//! it re-reads every 100 ms, so a bump takes effect within about that.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::Client;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::cluster::Cluster;
use super::recorder::Recorder;

/// Which faults a run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NemesisKind {
    None,
    Partition,
    Kill,
    Pause,
    Clock,
    Membership,
    Mixed,
}

impl NemesisKind {
    pub const ALL: [&'static str; 7] = [
        "none",
        "partition",
        "kill",
        "pause",
        "clock",
        "membership",
        "mixed",
    ];

    pub fn parse(s: &str) -> Option<NemesisKind> {
        Some(match s {
            "none" => NemesisKind::None,
            "partition" => NemesisKind::Partition,
            "kill" => NemesisKind::Kill,
            "pause" => NemesisKind::Pause,
            "clock" => NemesisKind::Clock,
            "membership" => NemesisKind::Membership,
            "mixed" => NemesisKind::Mixed,
            _ => return None,
        })
    }

    pub fn needs_network(self) -> bool {
        self == NemesisKind::Partition
    }
}

/// Which node(s) a fault hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Node(u64),
    /// Resolved when the step starts.
    Leader,
    Nodes(Vec<u64>),
}

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum Fault {
    /// The node and everyone else drop each other's packets.
    PartitionIsolate { target: Target },
    /// A random minority and the majority drop each other's packets.
    PartitionHalves { minority: Vec<u64> },
    /// Two halves that cannot talk, and one node that talks to both.
    PartitionBridge {
        bridge: u64,
        left: Vec<u64>,
        right: Vec<u64>,
    },
    /// Each node sees a majority, no two nodes the same one (ring order given).
    PartitionMajoritiesRing { ring: Vec<u64> },
    /// Everyone drops the leader's packets; the leader still hears them.
    PartitionOneWayFromLeader,
    /// SIGKILL, restart at the end of the window.
    Kill { target: Target },
    /// SIGSTOP, SIGCONT at the end of the window.
    Pause { target: Target },
    /// The node's clock jumps by `offset_ms` for the window.
    ClockBump { target: Target, offset_ms: i64 },
    /// The node's clock flips between `+offset_ms` and 0 every `period_ms`.
    ClockStrobe {
        target: Target,
        offset_ms: i64,
        period_ms: u64,
    },
    /// Remove the node from the membership (through the client's admin API),
    /// with `during` injected at the same time; add it back at the end.
    Membership {
        target: Target,
        during: Option<Box<Fault>>,
    },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::PartitionIsolate {
                target: Target::Leader,
            } => "partition-isolate-leader",
            Fault::PartitionIsolate { .. } => "partition-isolate-node",
            Fault::PartitionHalves { .. } => "partition-halves",
            Fault::PartitionBridge { .. } => "partition-bridge",
            Fault::PartitionMajoritiesRing { .. } => "partition-majorities-ring",
            Fault::PartitionOneWayFromLeader => "partition-one-way-from-leader",
            Fault::Kill { .. } => "kill",
            Fault::Pause { .. } => "pause",
            Fault::ClockBump { .. } => "clock-bump",
            Fault::ClockStrobe { .. } => "clock-strobe",
            Fault::Membership { .. } => "membership",
        }
    }

    fn needs_network(&self) -> bool {
        match self {
            Fault::Membership { during, .. } => during.as_ref().is_some_and(|f| f.needs_network()),
            f => f.name().starts_with("partition"),
        }
    }
}

/// One step: `fault` from `start_ms` (since the run started) for `duration_ms`.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub start_ms: u64,
    pub duration_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// Before the first fault: the workload gets going and a leader is elected.
const WARMUP_MS: u64 = 2_000;
/// Faults end this long before the time limit, so the last part of every run
/// shows the cluster recovering (and operations succeeding) after a heal.
const COOLDOWN_MS: u64 = 3_000;

fn target_text(t: &Target) -> String {
    match t {
        Target::Node(n) => format!("node {n}"),
        Target::Leader => "the leader".into(),
        Target::Nodes(ns) => format!("nodes {ns:?}"),
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.1}s +{:>5.1}s  {}",
            self.start_ms as f64 / 1000.0,
            self.duration_ms as f64 / 1000.0,
            describe(&self.fault)
        )
    }
}

pub fn describe(fault: &Fault) -> String {
    match fault {
        Fault::PartitionIsolate { target } => format!("isolate {}", target_text(target)),
        Fault::PartitionHalves { minority } => {
            format!("cut minority {minority:?} from the majority")
        }
        Fault::PartitionBridge {
            bridge,
            left,
            right,
        } => format!("bridge: {left:?} | {right:?}, node {bridge} sees both"),
        Fault::PartitionMajoritiesRing { ring } => format!("majorities ring {ring:?}"),
        Fault::PartitionOneWayFromLeader => "drop packets from the leader (one way)".into(),
        Fault::Kill { target } => format!("kill -9 {}, restart at the end", target_text(target)),
        Fault::Pause { target } => format!("SIGSTOP {}, SIGCONT at the end", target_text(target)),
        Fault::ClockBump { target, offset_ms } => {
            format!("clock of {} {offset_ms:+} ms", target_text(target))
        }
        Fault::ClockStrobe {
            target,
            offset_ms,
            period_ms,
        } => {
            format!(
                "clock of {} strobes {offset_ms:+} ms / 0 every {period_ms} ms",
                target_text(target)
            )
        }
        Fault::Membership { target, during } => format!(
            "remove {} from the membership{}, add it back at the end",
            target_text(target),
            during
                .as_ref()
                .map(|d| format!(" while: {}", describe(d)))
                .unwrap_or_default()
        ),
    }
}

fn random_majority(rng: &mut StdRng, ids: &[u64]) -> Vec<u64> {
    let mut v = ids.to_vec();
    v.shuffle(rng);
    v.truncate(ids.len() / 2 + 1);
    v.sort_unstable();
    v
}

fn partition_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let pick = |rng: &mut StdRng| ids[rng.random_range(0..ids.len())];
    match rng.random_range(0..6) {
        0 => Fault::PartitionIsolate {
            target: Target::Node(pick(rng)),
        },
        1 => Fault::PartitionIsolate {
            target: Target::Leader,
        },
        2 => {
            let mut v = ids.to_vec();
            v.shuffle(rng);
            v.truncate((ids.len() - 1) / 2);
            v.sort_unstable();
            Fault::PartitionHalves { minority: v }
        }
        3 => {
            let mut v = ids.to_vec();
            v.shuffle(rng);
            let bridge = v.pop().expect("at least one node");
            let half = v.len() / 2;
            let right = v.split_off(half);
            Fault::PartitionBridge {
                bridge,
                left: v,
                right,
            }
        }
        4 => {
            let mut ring = ids.to_vec();
            ring.shuffle(rng);
            Fault::PartitionMajoritiesRing { ring }
        }
        _ => Fault::PartitionOneWayFromLeader,
    }
}

fn kill_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let target = match rng.random_range(0..4) {
        0 => Target::Node(ids[rng.random_range(0..ids.len())]),
        1 => Target::Leader,
        2 => Target::Nodes(random_majority(rng, ids)),
        _ => Target::Nodes(ids.to_vec()),
    };
    Fault::Kill { target }
}

fn pause_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let target = match rng.random_range(0..3) {
        0 => Target::Node(ids[rng.random_range(0..ids.len())]),
        1 => Target::Leader,
        _ => Target::Nodes(random_majority(rng, ids)),
    };
    Fault::Pause { target }
}

fn clock_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let target = if rng.random_bool(0.4) {
        Target::Leader
    } else {
        Target::Node(ids[rng.random_range(0..ids.len())])
    };
    // Seconds to minutes, either way.
    let magnitude_ms: i64 = match rng.random_range(0..3) {
        0 => rng.random_range(1_000..10_000),
        1 => rng.random_range(10_000..60_000),
        _ => rng.random_range(60_000..300_000),
    };
    let offset_ms = if rng.random_bool(0.5) {
        magnitude_ms
    } else {
        -magnitude_ms
    };
    if rng.random_bool(0.35) {
        Fault::ClockStrobe {
            target,
            offset_ms,
            period_ms: rng.random_range(50..500),
        }
    } else {
        Fault::ClockBump { target, offset_ms }
    }
}

fn membership_fault(rng: &mut StdRng, ids: &[u64], network: bool) -> Fault {
    let target = if rng.random_bool(0.3) {
        Target::Leader
    } else {
        Target::Node(ids[rng.random_range(0..ids.len())])
    };
    // Only faults that leave the rest a working majority (of the remaining
    // voters), so the removal and the re-add can both go through.
    let during = match rng.random_range(0..4) {
        0 => None,
        1 => Some(clock_fault(rng, ids)),
        2 if network => Some(Fault::PartitionOneWayFromLeader),
        _ => Some(Fault::Pause {
            target: Target::Leader,
        }),
    };
    Fault::Membership {
        target,
        during: during.map(Box::new),
    }
}

/// The fault schedule of a run: deterministic in its arguments.
pub fn schedule(
    kind: NemesisKind,
    seed: u64,
    time_limit_ms: u64,
    ids: &[u64],
    network: bool,
) -> Vec<Step> {
    assert!(!ids.is_empty(), "a schedule needs nodes");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    if kind == NemesisKind::None {
        return steps;
    }
    let mut t_ms = WARMUP_MS;
    let end_ms = time_limit_ms.saturating_sub(COOLDOWN_MS);
    loop {
        let fault = match kind {
            NemesisKind::None => unreachable!("returned above"),
            NemesisKind::Partition => partition_fault(&mut rng, ids),
            NemesisKind::Kill => kill_fault(&mut rng, ids),
            NemesisKind::Pause => pause_fault(&mut rng, ids),
            NemesisKind::Clock => clock_fault(&mut rng, ids),
            NemesisKind::Membership => membership_fault(&mut rng, ids, network),
            NemesisKind::Mixed => match rng.random_range(0..5) {
                0 if network => partition_fault(&mut rng, ids),
                1 => pause_fault(&mut rng, ids),
                2 => clock_fault(&mut rng, ids),
                3 => membership_fault(&mut rng, ids, network),
                _ => kill_fault(&mut rng, ids),
            },
        };
        // Pauses are 1.5-4 s: well past the 800 ms election timeout.
        let duration_ms = match fault {
            Fault::Pause { .. } => rng.random_range(1_500..4_000),
            _ => rng.random_range(3_000..8_000),
        };
        if t_ms + duration_ms > end_ms {
            break;
        }
        debug_assert!(
            network || !fault.needs_network(),
            "partition scheduled without a network"
        );
        steps.push(Step {
            start_ms: t_ms,
            duration_ms,
            fault,
        });
        t_ms += duration_ms + rng.random_range(1_500..4_000);
    }
    steps
}

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

    fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        // Cluster calls fork `ip`/`nft` or signal processes: short, blocking.
        tokio::task::block_in_place(|| f(&mut self.cluster.lock().expect("cluster lock")))
    }

    async fn leader(&self) -> Option<u64> {
        self.client.status().await.leader.map(|l| l.node_id)
    }

    async fn resolve(&self, target: &Target) -> Result<Vec<u64>, String> {
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
enum Undo {
    Heal,
    Restart(Vec<u64>),
    Resume(Vec<u64>),
    ClockReset(Vec<u64>, Option<tokio::task::JoinHandle<()>>),
    ReAdd(u64, Option<Box<Undo>>),
}

fn drops_isolating(ids: &[u64], node: u64) -> Vec<(u64, u64)> {
    ids.iter()
        .filter(|&&o| o != node)
        .flat_map(|&o| [(o, node), (node, o)])
        .collect()
}

fn drops_between(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter()
        .flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)]))
        .collect()
}

fn drops_ring(ring: &[u64]) -> Vec<(u64, u64)> {
    let n = ring.len();
    let m = n / 2 + 1;
    let back = (m - 1) / 2;
    let mut drops = Vec::new();
    for p in 0..n {
        let visible: Vec<u64> = (0..m).map(|k| ring[(p + n - back + k) % n]).collect();
        for &other in ring {
            if !visible.contains(&other) {
                drops.push((ring[p], other));
            }
        }
    }
    drops
}

async fn apply(ctx: &Ctx, fault: &Fault) -> Result<(Undo, String), String> {
    let ids = ctx.with_cluster(|c| c.ids());
    let partition = |drops: Vec<(u64, u64)>, detail: String| -> Result<(Undo, String), String> {
        ctx.with_cluster(|c| {
            c.net()
                .ok_or("partitions need network namespaces (root)".to_string())?
                .partition(&drops)
        })?;
        Ok((Undo::Heal, detail))
    };
    match fault {
        Fault::PartitionIsolate { target } => {
            let node = ctx.resolve(target).await?[0];
            partition(drops_isolating(&ids, node), format!("isolated node {node}"))
        }
        Fault::PartitionHalves { minority } => {
            let majority: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !minority.contains(i))
                .collect();
            partition(
                drops_between(minority, &majority),
                format!("{minority:?} | {majority:?}"),
            )
        }
        Fault::PartitionBridge {
            bridge,
            left,
            right,
        } => partition(
            drops_between(left, right),
            format!("{left:?} | {right:?} via node {bridge}"),
        ),
        Fault::PartitionMajoritiesRing { ring } => {
            partition(drops_ring(ring), format!("ring {ring:?}"))
        }
        Fault::PartitionOneWayFromLeader => {
            let leader = ctx.resolve(&Target::Leader).await?[0];
            let drops = ids
                .iter()
                .filter(|&&o| o != leader)
                .map(|&o| (o, leader))
                .collect();
            partition(drops, format!("nobody hears leader {leader}"))
        }
        Fault::Kill { target } => {
            let nodes = ctx.resolve(target).await?;
            ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.kill(n)))?;
            Ok((Undo::Restart(nodes.clone()), format!("killed {nodes:?}")))
        }
        Fault::Pause { target } => {
            let nodes = ctx.resolve(target).await?;
            ctx.with_cluster(|c| nodes.iter().try_for_each(|&n| c.pause(n)))?;
            Ok((Undo::Resume(nodes.clone()), format!("paused {nodes:?}")))
        }
        Fault::ClockBump { target, offset_ms } => {
            let nodes = ctx.resolve(target).await?;
            ctx.with_cluster(|c| {
                nodes
                    .iter()
                    .try_for_each(|&n| c.set_clock_offset_ms(n, *offset_ms))
            })?;
            Ok((
                Undo::ClockReset(nodes.clone(), None),
                format!("clock of {nodes:?} {offset_ms:+} ms"),
            ))
        }
        Fault::ClockStrobe {
            target,
            offset_ms,
            period_ms,
        } => {
            let nodes = ctx.resolve(target).await?;
            let cluster = ctx.cluster.clone();
            let (offset_ms, period) = (*offset_ms, Duration::from_millis(*period_ms));
            let strobe_nodes = nodes.clone();
            // Aborted by the heal; each round is one small file write.
            let task = tokio::spawn(async move {
                let mut on = true;
                loop {
                    let value = if on { offset_ms } else { 0 };
                    {
                        let c = cluster.lock().expect("cluster lock");
                        for &n in &strobe_nodes {
                            let _ = c.set_clock_offset_ms(n, value);
                        }
                    }
                    on = !on;
                    tokio::time::sleep(period).await;
                }
            });
            Ok((
                Undo::ClockReset(nodes.clone(), Some(task)),
                format!("clock of {nodes:?} strobing {offset_ms:+} ms"),
            ))
        }
        Fault::Membership { target, during } => {
            let node = ctx.resolve(target).await?[0];
            let removed =
                tokio::time::timeout(Duration::from_secs(10), ctx.client.remove_node(node)).await;
            let mut detail = match removed {
                Ok(Ok(change)) => format!("removed node {node} (log index {})", change.log_index),
                Ok(Err(e)) => return Err(format!("remove node {node}: {e}")),
                Err(_) => return Err(format!("remove node {node}: no answer in 10 s")),
            };
            let inner = match during {
                Some(f) => match Box::pin(apply(ctx, f)).await {
                    Ok((undo, d)) => {
                        detail.push_str(&format!("; {d}"));
                        Some(Box::new(undo))
                    }
                    Err(e) => {
                        detail.push_str(&format!("; concurrent fault failed: {e}"));
                        None
                    }
                },
                None => None,
            };
            Ok((Undo::ReAdd(node, inner), detail))
        }
    }
}

/// Adds `node` back as a learner and promotes it, within bounded time.
pub async fn re_add(ctx: &Ctx, node: u64) -> Result<(), String> {
    let addr = ctx.with_cluster(|c| c.addr(node).to_string());
    let deadline = Duration::from_secs(20);
    tokio::time::timeout(deadline, async {
        ctx.client
            .add_learner(node, &addr, true)
            .await
            .map_err(|e| format!("add learner {node}: {e}"))?;
        ctx.client
            .promote(node)
            .await
            .map_err(|e| format!("promote {node}: {e}"))?;
        Ok::<(), String>(())
    })
    .await
    .map_err(|_| {
        format!(
            "re-adding node {node}: no answer in {} s",
            deadline.as_secs()
        )
    })?
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
            Undo::ReAdd(node, inner) => {
                // The concurrent fault first: the re-add needs a working majority.
                if let Some(inner) = inner {
                    undo(ctx, *inner).await?;
                }
                re_add(ctx, node).await
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
                let w = ctx.recorder.fault_started(step.fault.name(), detail);
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
    for id in ids {
        let voter = leader.members.iter().any(|m| m.node_id == id && m.voter);
        if !voter {
            ctx.note(format!(
                "final heal: node {id} is not a voter; adding it back"
            ));
            if let Err(e) = re_add(ctx, id).await {
                errors.push(e);
            }
        }
    }
    errors
}

/// The node-pair drop list of a fault, for tests of the partition shapes.
pub fn partition_drops(fault: &Fault, ids: &[u64], leader: u64) -> Vec<(u64, u64)> {
    match fault {
        Fault::PartitionIsolate {
            target: Target::Node(n),
        } => drops_isolating(ids, *n),
        Fault::PartitionIsolate { .. } => drops_isolating(ids, leader),
        Fault::PartitionHalves { minority } => {
            let majority: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !minority.contains(i))
                .collect();
            drops_between(minority, &majority)
        }
        Fault::PartitionBridge { left, right, .. } => drops_between(left, right),
        Fault::PartitionMajoritiesRing { ring } => drops_ring(ring),
        Fault::PartitionOneWayFromLeader => ids
            .iter()
            .filter(|&&o| o != leader)
            .map(|&o| (o, leader))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the same seed gives the same schedule, and a different seed a different one.
    #[test]
    fn schedule_is_a_function_of_the_seed() {
        let ids = [1, 2, 3];
        let a = format!("{:?}", schedule(NemesisKind::Mixed, 7, 60_000, &ids, true));
        let b = format!("{:?}", schedule(NemesisKind::Mixed, 7, 60_000, &ids, true));
        let c = format!("{:?}", schedule(NemesisKind::Mixed, 8, 60_000, &ids, true));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    /// Goal: every step ends before the cool-down, and no partition is scheduled without a network.
    #[test]
    fn schedule_respects_bounds_and_network() {
        for seed in 0..50 {
            for step in schedule(NemesisKind::Mixed, seed, 30_000, &[1, 2, 3], false) {
                assert!(step.start_ms + step.duration_ms <= 30_000 - COOLDOWN_MS);
                assert!(!step.fault.needs_network(), "seed {seed}: {step}");
            }
        }
    }

    /// Goal: in a majorities ring every node sees a majority (itself included) and no two see the same one.
    #[test]
    fn majorities_ring_gives_each_node_its_own_majority() {
        for ring in [vec![1, 2, 3], vec![3, 1, 5, 2, 4]] {
            let drops = drops_ring(&ring);
            let n = ring.len();
            let mut seen = Vec::new();
            for &node in &ring {
                let visible: Vec<u64> = ring
                    .iter()
                    .copied()
                    .filter(|o| !drops.contains(&(node, *o)))
                    .collect();
                assert!(visible.len() > n / 2, "{node} sees {visible:?}");
                assert!(visible.contains(&node));
                seen.push(visible);
            }
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), n);
        }
    }
}
