//! The fault schedule of a run: which fault, when, for how long. A pure
//! function of the nemesis kind, the seed, the time limit, the node ids and
//! whether partitions are possible; the same seed and commit give the same
//! schedule, which the harness prints before the run.
//!
//! Owns: the warm-up and cool-down around the faults, each family's random
//! shapes (which nodes, how long, how far a clock jumps), and the gaps
//! between steps. Must not: touch the cluster, read a clock, or resolve
//! "the leader" (that happens when a step starts).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{Fault, NemesisKind, SnapshotVictims, Step, Target};

/// Before the first fault: the workload gets going and a leader is elected.
const WARMUP_MS: u64 = 2_000;
/// Faults end this long before the time limit, so the last part of every run
/// shows the cluster recovering (and operations succeeding) after a heal.
const COOLDOWN_MS: u64 = 3_000;

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

/// Every node most of the time (only then can the whole cluster lose an
/// unsynced tail), otherwise a majority (the survivors must not hand back
/// what the cut nodes lost and then lose it in an election).
fn power_cut_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let target = if rng.random_bool(0.6) {
        Target::Nodes(ids.to_vec())
    } else {
        Target::Nodes(random_majority(rng, ids))
    };
    Fault::PowerCut { target }
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

/// How far the `clock-leap` nemesis moves clocks.
const CLOCK_LEAP_MS: i64 = 3_600_000;

/// An hour forward or back, on the leader, on a random minority or on a
/// random majority, or the leader's clock strobing between an hour off and
/// right. A minority's leap must not move log time (the majority's clocks
/// outvote it); a majority's may (the checkers judge nothing that overlaps
/// it: see `checkers::majority_clock_windows`).
fn clock_leap_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let offset_ms = if rng.random_bool(0.5) {
        CLOCK_LEAP_MS
    } else {
        -CLOCK_LEAP_MS
    };
    let mut shuffled = ids.to_vec();
    shuffled.shuffle(rng);
    match rng.random_range(0..4) {
        0 => Fault::ClockBump {
            target: Target::Leader,
            offset_ms,
        },
        1 => {
            shuffled.truncate((ids.len() - 1) / 2);
            shuffled.sort_unstable();
            Fault::ClockBump {
                target: Target::Nodes(shuffled),
                offset_ms,
            }
        }
        2 => Fault::ClockBump {
            target: Target::Nodes(random_majority(rng, ids)),
            offset_ms,
        },
        _ => Fault::ClockStrobe {
            target: Target::Leader,
            offset_ms,
            period_ms: rng.random_range(50..500),
        },
    }
}

fn disk_loss_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    let target = if rng.random_bool(0.3) {
        Target::Leader
    } else {
        Target::Node(ids[rng.random_range(0..ids.len())])
    };
    Fault::DiskLoss {
        target,
        operator_first: rng.random_bool(0.5),
    }
}

/// A follower down 2-5 s: at the register workload's rate (~60 entries a
/// second) the others pass a kept log of 20 entries after snapshots every
/// 100 (`Timing::snapshot_heavy`), so it is sent a snapshot when it is back.
/// The kill follows 0-300 ms after it answers: the leader sends the snapshot
/// within a few hundred milliseconds of that and an install of this small
/// state takes milliseconds, so only some kills land inside one (chance, not
/// a hook: the harness never reaches into a node); every node also builds
/// its own snapshot every ~100 entries, which the kills of the leader or of
/// every node cut short.
fn crash_in_snapshot_fault(rng: &mut StdRng, ids: &[u64]) -> Fault {
    Fault::CrashInSnapshot {
        lagging_pick: rng.random_range(0..ids.len().max(2) as u64 - 1),
        lag_ms: rng.random_range(2_000..5_000),
        kill_after_ms: rng.random_range(0..300),
        victims: match rng.random_range(0..3) {
            0 => SnapshotVictims::Lagging,
            1 => SnapshotVictims::Leader,
            _ => SnapshotVictims::All,
        },
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
            NemesisKind::PowerLoss => power_cut_fault(&mut rng, ids),
            NemesisKind::DiskLoss => disk_loss_fault(&mut rng, ids),
            NemesisKind::CrashInSnapshot => crash_in_snapshot_fault(&mut rng, ids),
            NemesisKind::ClockLeap => clock_leap_fault(&mut rng, ids),
            NemesisKind::Mixed => match rng.random_range(0..5) {
                0 if network => partition_fault(&mut rng, ids),
                1 => pause_fault(&mut rng, ids),
                2 => clock_fault(&mut rng, ids),
                3 => membership_fault(&mut rng, ids, network),
                _ => kill_fault(&mut rng, ids),
            },
        };
        // Pauses are 1.5-4 s: well past the 800 ms election timeout. Power
        // stays off 0.5-2 s: the point is the cut, and short outages leave
        // room for more cuts in a short run.
        let duration_ms = match fault {
            Fault::Pause { .. } => rng.random_range(1_500..4_000),
            Fault::PowerCut { .. } | Fault::CrashInSnapshot { .. } => rng.random_range(500..2_000),
            _ => rng.random_range(3_000..8_000),
        };
        // A fault that sets itself up first (a pause before its kill) opens
        // its window that much later.
        let lead_ms = fault.lead_ms();
        if t_ms + lead_ms + duration_ms > end_ms {
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
        t_ms += lead_ms + duration_ms + rng.random_range(1_500..4_000);
    }
    steps
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

    /// Goal: a crash-in-snapshot step's set-up (the follower's time down and
    /// the delay to the kill) counts toward its place in the run: every
    /// step ends before the cool-down and none overlaps the next.
    #[test]
    fn crash_in_snapshot_steps_fit_the_run_with_their_lead() {
        for seed in 0..50 {
            let steps = schedule(
                NemesisKind::CrashInSnapshot,
                seed,
                30_000,
                &[1, 2, 3],
                false,
            );
            assert!(!steps.is_empty(), "seed {seed}: no step in 30 s");
            for pair in steps.windows(2) {
                let first_ends = pair[0].start_ms + pair[0].fault.lead_ms() + pair[0].duration_ms;
                assert!(
                    first_ends < pair[1].start_ms,
                    "seed {seed}: {} overlaps {}",
                    pair[0],
                    pair[1]
                );
            }
            for step in &steps {
                assert!(
                    matches!(step.fault, Fault::CrashInSnapshot { .. }),
                    "{step}"
                );
                let end = step.start_ms + step.fault.lead_ms() + step.duration_ms;
                assert!(end <= 30_000 - COOLDOWN_MS, "seed {seed}: {step}");
            }
        }
    }

    /// Goal: over a few seeds `clock-leap` leaps an hour both ways, on a
    /// minority (the leader or a random one) and on a majority, and
    /// strobes; never less than an hour, never on no node.
    #[test]
    fn clock_leap_covers_minority_majority_both_ways_and_strobe() {
        let ids = [1, 2, 3];
        let (mut minority, mut majority, mut strobe) = (false, false, false);
        let (mut forward, mut backward) = (false, false);
        for seed in 0..20 {
            for step in schedule(NemesisKind::ClockLeap, seed, 30_000, &ids, false) {
                let (target, offset_ms) = match &step.fault {
                    Fault::ClockBump { target, offset_ms } => (target, *offset_ms),
                    Fault::ClockStrobe {
                        target, offset_ms, ..
                    } => {
                        strobe = true;
                        (target, *offset_ms)
                    }
                    other => panic!("seed {seed}: not a clock fault: {other:?}"),
                };
                assert_eq!(offset_ms.abs(), CLOCK_LEAP_MS, "seed {seed}: {step}");
                forward |= offset_ms > 0;
                backward |= offset_ms < 0;
                match target {
                    Target::Leader => minority = true,
                    Target::Nodes(ns) if ns.len() == 1 => minority = true,
                    Target::Nodes(ns) if ns.len() == 2 => majority = true,
                    other => panic!("seed {seed}: target {other:?}"),
                }
            }
        }
        assert!(minority && majority && strobe && forward && backward);
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
}
