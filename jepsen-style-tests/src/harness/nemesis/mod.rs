//! The nemesis: a fault schedule derived from a seed, and its execution.
//!
//! Owns, by concept: the [`Fault`] vocabulary and how a step reads (this
//! file); [`schedule`] (`schedule.rs`: a pure function of kind, seed,
//! duration and node ids: the same seed and commit give the same schedule,
//! printed before the run); [`execute`] and the final heal
//! (`execute.rs`: applying each step at its time and undoing it at its
//! end), with one file per fault family that needs more than a signal:
//! partitions (`partition.rs`), clocks (`clock.rs`) and membership changes
//! (`membership.rs`); kills and pauses are plain signals through the
//! cluster, and a power cut is a kill followed by a cut of the node's lazy
//! file system (the cluster's).
//!
//! Must not: judge anything or record client operations; it only reports fault
//! windows to the recorder. Which node is "the leader" is resolved when the
//! step starts (that part is not determined by the seed).
//!
//! Caveats: pauses last longer than the election timeout so a new leader is
//! elected; clock offsets reach the node through its clock-offset file, which
//! it re-reads every 100 ms, so a bump takes effect within about that.

mod clock;
mod execute;
mod membership;
mod partition;
mod schedule;

use serde::Serialize;

pub use execute::{execute, heal_everything, Ctx};
pub use schedule::schedule;

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
    /// Every node's data directory on a lazy file system; kill every node
    /// or a majority, roll their files back to the last fsync, restart.
    PowerLoss,
    /// One node's data directory wiped and the node restarted empty under
    /// its old id, with or without the operator's remove-and-re-add first.
    DiskLoss,
    /// Snapshots every 100 entries and a short kept log; a follower down
    /// until it needs a snapshot, restarted, and then it, the leader or
    /// every node killed, so snapshot builds, installs and purges overlap
    /// with kills.
    CrashInSnapshot,
    /// Clocks leap an hour forward or back for the window: the leader's, a
    /// random minority's or a random majority's, or the leader's strobes
    /// between an hour off and right. Log time must follow the majority's
    /// clocks, not a minority's; what overlaps a majority's leap is not
    /// judged for expiry or log time.
    ClockLeap,
}

impl NemesisKind {
    pub const ALL: [&'static str; 11] = [
        "none",
        "partition",
        "kill",
        "pause",
        "clock",
        "membership",
        "mixed",
        "power-loss",
        "disk-loss",
        "crash-in-snapshot",
        "clock-leap",
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
            "power-loss" => NemesisKind::PowerLoss,
            "disk-loss" => NemesisKind::DiskLoss,
            "crash-in-snapshot" => NemesisKind::CrashInSnapshot,
            "clock-leap" => NemesisKind::ClockLeap,
            _ => return None,
        })
    }

    pub fn needs_network(self) -> bool {
        self == NemesisKind::Partition
    }

    /// Whether the cluster takes snapshots often and keeps a short log
    /// after them (`cluster::Timing::snapshot_heavy`).
    pub fn needs_frequent_snapshots(self) -> bool {
        self == NemesisKind::CrashInSnapshot
    }

    /// Whether the nodes' data directories must be lazy file systems.
    pub fn needs_lazy_disks(self) -> bool {
        self == NemesisKind::PowerLoss
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

/// Who a [`Fault::CrashInSnapshot`] kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotVictims {
    /// The lagging follower, while it receives or installs its snapshot.
    Lagging,
    /// The leader, while it sends the snapshot (and builds its own).
    Leader,
    /// Every node: builds, installs and purges all cut short at once.
    All,
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
    /// SIGKILL, then every file of the nodes' data directories back to its
    /// last fsync (a power cut); restart at the end of the window.
    PowerCut { target: Target },
    /// SIGKILL, the data directory emptied, restart at once (an emptied or
    /// replaced disk). With `operator_first` the node is removed from the
    /// membership before it restarts; otherwise it runs refused (neither
    /// voting nor counted) for the window and is removed at its end. Either
    /// way it is added back (learner, then voter) at the end.
    DiskLoss {
        target: Target,
        operator_first: bool,
    },
    /// SIGKILL a follower (the `lagging_pick`-th of the followers when the
    /// step starts) for `lag_ms`, long enough that the others snapshot and
    /// purge past its log; restart it; `kill_after_ms` after it answers
    /// again, while its snapshot is on its way, SIGKILL `victims`; restart
    /// them at the end of the window. The lag and the delay come before the
    /// window.
    CrashInSnapshot {
        lagging_pick: u64,
        lag_ms: u64,
        kill_after_ms: u64,
        victims: SnapshotVictims,
    },
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
            Fault::PowerCut { .. } => "power-cut",
            Fault::DiskLoss { .. } => "disk-loss",
            Fault::CrashInSnapshot { .. } => "crash-in-snapshot",
            Fault::Pause { .. } => "pause",
            Fault::ClockBump { .. } => "clock-bump",
            Fault::ClockStrobe { .. } => "clock-strobe",
            Fault::Membership { .. } => "membership",
        }
    }

    /// Time the fault takes to set up before its window opens.
    pub fn lead_ms(&self) -> u64 {
        match self {
            Fault::CrashInSnapshot {
                lag_ms,
                kill_after_ms,
                ..
            } => lag_ms + kill_after_ms,
            _ => 0,
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

fn describe(fault: &Fault) -> String {
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
        Fault::PowerCut { target } => format!(
            "kill -9 {} and cut their disks' power, restart at the end",
            target_text(target)
        ),
        Fault::DiskLoss {
            target,
            operator_first,
        } => format!(
            "kill -9 {}, wipe its data directory, restart it{}, re-add at the end",
            target_text(target),
            if *operator_first {
                " after removing it"
            } else {
                " (refused until removed at the end)"
            }
        ),
        Fault::CrashInSnapshot {
            lagging_pick,
            lag_ms,
            kill_after_ms,
            victims,
        } => format!(
            "kill -9 follower #{lagging_pick} for {lag_ms} ms, restart it, {kill_after_ms} ms after it answers kill -9 {}, restart at the end",
            match victims {
                SnapshotVictims::Lagging => "it",
                SnapshotVictims::Leader => "the leader",
                SnapshotVictims::All => "every node",
            }
        ),
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
