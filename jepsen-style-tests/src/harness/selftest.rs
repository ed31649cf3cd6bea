//! `jepsen selftest`: proof that the suite can fail. It runs deliberately
//! broken builds of the store and expects a checker to catch each bug, plus
//! one run of the unbroken build that must pass.
//!
//! Owns: the selftest case of every bug ([`BUGS`]: which workload and nemesis
//! expose it), and the verdict of the selftest (every bug caught, the control
//! run valid). The bugs, their names, the environment variable and the log
//! line are the `fault-bugs` crate's.
//!
//! The hooks live in the store's crates, not here (see the README, "Hooks the
//! selftest needs"): the `booking` binary built with the cargo feature
//! `fault-injection-bugs` reads the environment variable
//! [`fault_bugs::ENV`] = one of the bug names and, at start, logs the line
//! `fault-injection bug enabled: <name>` ([`fault_bugs::ENABLED_MARKER`]). The selftest looks
//! for that line in the node logs: a binary without the hook is reported as
//! "hook missing", never as "bug not caught".
//!
//! Must not: decide anything from the bug name beyond choosing the run; the
//! verdict comes from the same checkers as any run.

use std::path::{Path, PathBuf};

use super::nemesis::{self, Fault, NemesisKind, Step, Target};
use super::run::{self, RunOptions, RunOutcome, Verdict3};
use super::workload::WorkloadKind;

use fault_bugs::{Bug, ENABLED_MARKER};

/// One deliberately broken build.
pub struct BugCase {
    pub bug: Bug,
    /// Where the bug lives and what it does.
    pub what: &'static str,
    pub workload: WorkloadKind,
    pub nemesis: NemesisKind,
    /// The nemesis when partitions are not available.
    pub nemesis_without_network: NemesisKind,
    /// Which checker is expected to catch it.
    pub caught_by: &'static str,
    /// Seconds of workload for this case (`None`: the selftest's `--time-limit`).
    pub time_limit_s: Option<u64>,
    /// A fault schedule that can expose the bug: the selftest uses the first
    /// seed from `--seed` on (at most [`SEED_SEARCH_MAX`] further) whose
    /// schedule passes this test, so the case does not depend on luck.
    pub schedule_fits: fn(&[Step], u64) -> bool,
}

impl BugCase {
    /// The bug's name (`BOOKING_FAULT_BUG`, the report's case name).
    pub fn name(&self) -> &'static str {
        self.bug.name()
    }
}

/// How many seeds past `--seed` a case looks at for a schedule that fits.
pub const SEED_SEARCH_MAX: u64 = 1_000;

fn any_schedule(_: &[Step], _: u64) -> bool {
    true
}

/// At least one leap (or strobe) of the leader's clock, alone, forward: a
/// leap back only freezes log time under the bug (holds live longer,
/// nothing to catch), a follower's clock does not stamp, and a majority's
/// leap moves cluster time legitimately (the checkers skip it).
fn leaps_forward(steps: &[Step], _: u64) -> bool {
    steps.iter().any(|s| {
        matches!(
            &s.fault,
            Fault::ClockBump { target: Target::Leader, offset_ms }
                | Fault::ClockStrobe { target: Target::Leader, offset_ms, .. }
                if *offset_ms > 0
        )
    })
}

/// At least two kills of every node at once. `ack-without-flush` keeps
/// acknowledged entries in each process for up to 5 s; only a kill of every
/// node loses them everywhere (after a kill of a majority, the survivor still
/// has them and hands them back). Two such kills, so that one landing just
/// after the bug's write-back (little lost) does not decide the case.
fn kills_every_node_twice(steps: &[Step], nodes: u64) -> bool {
    steps
        .iter()
        .filter(|s| match &s.fault {
            Fault::Kill {
                target: Target::Nodes(ns),
            } => ns.len() as u64 == nodes,
            _ => false,
        })
        .count()
        >= 1
}

/// At least two power cuts of every node at once: `skip-fdatasync` leaves
/// acknowledged writes in the page cache (a kill keeps them) until sled's
/// 500 ms background sync, so only a cut of every node can lose them
/// everywhere; two, so that one landing just after a background sync (little
/// lost) does not decide the case.
fn cuts_every_node_twice(steps: &[Step], nodes: u64) -> bool {
    steps
        .iter()
        .filter(|s| match &s.fault {
            Fault::PowerCut {
                target: Target::Nodes(ns),
            } => ns.len() as u64 == nodes,
            _ => false,
        })
        .count()
        >= 2
}

/// Every bug of [`Bug::ALL`], once.
pub const BUGS: &[BugCase] = &[
    BugCase {
        bug: Bug::StaleLocalReads,
        what: "raft-node: linearizable reads answered from local state without ReadIndex",
        workload: WorkloadKind::Register,
        nemesis: NemesisKind::Partition,
        nemesis_without_network: NemesisKind::Pause,
        caught_by: "linearizable per seat",
        time_limit_s: None,
        schedule_fits: any_schedule,
    },
    BugCase {
        bug: Bug::AckWithoutFlush,
        what: "raft-node: log appends and the committed id acknowledged from an in-process buffer written to sled every 5 s",
        workload: WorkloadKind::Register,
        nemesis: NemesisKind::Kill,
        nemesis_without_network: NemesisKind::Kill,
        caught_by: "ids_issued_once / no_resurrections / linearizable per seat / acknowledged_bookings_present",
        time_limit_s: None,
        schedule_fits: kills_every_node_twice,
    },
    BugCase {
        bug: Bug::ClockInApply,
        what:
            "raft-node/state-machine glue: apply reads the local clock instead of the entry's stamp",
        workload: WorkloadKind::Expiry,
        nemesis: NemesisKind::Clock,
        nemesis_without_network: NemesisKind::Clock,
        caught_by: "replica_hashes_equal / no_confirm_past_expiry",
        time_limit_s: None,
        schedule_fits: any_schedule,
    },
    BugCase {
        bug: Bug::GatewayRetryNewId,
        what: "http-gateway: a hold or checkout whose cluster call timed out is retried by the gateway with a new request id",
        // Kills (of the leader, a majority, all) leave gateway calls in flight
        // that commit after the gateway's 1 s cluster timeout fired.
        workload: WorkloadKind::Gateway,
        nemesis: NemesisKind::Kill,
        nemesis_without_network: NemesisKind::Kill,
        caught_by: "no_unrequested_holds / no_phantom_bookings",
        time_limit_s: None,
        schedule_fits: any_schedule,
    },
    BugCase {
        bug: Bug::SkipFdatasync,
        what: "raft-node: the durability step after sled's flush (fsync of blobs and directories, fdatasync of sled's db) skipped",
        workload: WorkloadKind::Register,
        nemesis: NemesisKind::PowerLoss,
        nemesis_without_network: NemesisKind::PowerLoss,
        caught_by: "ids_issued_once / no_resurrections / linearizable per seat / replica_hashes_equal",
        time_limit_s: None,
        schedule_fits: cuts_every_node_twice,
    },
    BugCase {
        bug: Bug::UnboundedStamp,
        what: "raft-node: the leader stamps max(its own clock, last stamp): one clock an hour fast moves log time",
        workload: WorkloadKind::Register,
        nemesis: NemesisKind::ClockLeap,
        nemesis_without_network: NemesisKind::ClockLeap,
        caught_by: "log_time_follows_real_time / no_early_expiry",
        time_limit_s: None,
        schedule_fits: leaps_forward,
    },
];

/// What one selftest case came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    /// The checkers flagged the broken build: what we want.
    Caught,
    /// The run passed although the bug was active: the suite is too weak.
    Missed,
    /// The binary does not have the hook (no marker in the node logs).
    HookMissing,
    /// The harness cannot run this case here (e.g. the gateway workload).
    NotRunnable(String),
    /// The control run (no bug) passed: what we want.
    ControlValid,
    /// The control run failed: a real bug, or a harness problem.
    ControlInvalid,
    Unknown,
    HarnessError(String),
}

/// The marker in any log under `cluster/logs/` (the nodes' and the gateway's).
fn marker_in_logs(out: &Path, bug: &str) -> bool {
    let logs = out.join("cluster").join("logs");
    let Ok(dir) = std::fs::read_dir(&logs) else {
        return false;
    };
    let needle = format!("{ENABLED_MARKER}{bug}");
    dir.flatten()
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)))
}

/// Runs the control case and every bug; `base` supplies binary, nodes, time limit and seed.
pub async fn selftest(base: RunOptions, only: Option<String>) -> Vec<(String, CaseResult)> {
    let mut results = Vec::new();
    let network = super::net::Net::check_available().is_ok() && base.allow_netns;
    if only.is_none() {
        let out = base.out.join("control");
        let opts = RunOptions {
            out,
            node_env: Vec::new(),
            ..base.clone()
        };
        let r = match run::run(opts).await {
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Valid,
                ..
            }) => CaseResult::ControlValid,
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Invalid,
                ..
            }) => CaseResult::ControlInvalid,
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Unknown,
                ..
            }) => CaseResult::Unknown,
            Ok(RunOutcome::Skipped(why)) => CaseResult::NotRunnable(why),
            Err(e) => CaseResult::HarnessError(e),
        };
        results.push(("control (no bug)".to_string(), r));
    }
    for bug in BUGS {
        if only.as_deref().is_some_and(|o| o != bug.name()) {
            continue;
        }
        let out: PathBuf = base.out.join(bug.name());
        let nemesis = if network {
            bug.nemesis
        } else {
            bug.nemesis_without_network
        };
        let time_limit_s = bug.time_limit_s.unwrap_or(base.time_limit_s);
        let Some(seed) = seed_for(bug, nemesis, &base, time_limit_s, network) else {
            results.push((
                bug.name().to_string(),
                CaseResult::HarnessError(format!(
                    "no seed in {}..={} gives a {nemesis:?} schedule that can expose the bug \
                     in {time_limit_s} s (raise --time-limit)",
                    base.seed,
                    base.seed + SEED_SEARCH_MAX
                )),
            ));
            continue;
        };
        let opts = RunOptions {
            out: out.clone(),
            workload: bug.workload,
            nemesis,
            seed,
            time_limit_s,
            // The bug selector goes to the process that has the bug.
            node_env: if bug.workload == WorkloadKind::Gateway {
                Vec::new()
            } else {
                vec![(fault_bugs::ENV.to_string(), bug.name().to_string())]
            },
            gateway_env: if bug.workload == WorkloadKind::Gateway {
                vec![(fault_bugs::ENV.to_string(), bug.name().to_string())]
            } else {
                Vec::new()
            },
            ..base.clone()
        };
        eprintln!(
            "jepsen selftest: {} ({}); {:?} x {nemesis:?}, seed {seed}, {time_limit_s} s; \
             expect {} to catch it",
            bug.name(),
            bug.what,
            bug.workload,
            bug.caught_by
        );
        let outcome = run::run(opts).await;
        let hooked = marker_in_logs(&out, bug.name());
        let r = match outcome {
            _ if !hooked => CaseResult::HookMissing,
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Invalid,
                ..
            }) => CaseResult::Caught,
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Valid,
                ..
            }) => CaseResult::Missed,
            Ok(RunOutcome::Checked {
                verdict: Verdict3::Unknown,
                ..
            }) => CaseResult::Unknown,
            Ok(RunOutcome::Skipped(why)) => CaseResult::NotRunnable(why),
            Err(e) => CaseResult::HarnessError(e),
        };
        results.push((bug.name().to_string(), r));
    }
    results
}

/// The first seed from `base.seed` on whose schedule fits `bug`.
fn seed_for(
    bug: &BugCase,
    nemesis: NemesisKind,
    base: &RunOptions,
    time_limit_s: u64,
    network: bool,
) -> Option<u64> {
    let ids: Vec<u64> = (1..=base.nodes).collect();
    (base.seed..=base.seed.saturating_add(SEED_SEARCH_MAX)).find(|&seed| {
        let steps = nemesis::schedule(nemesis, seed, time_limit_s * 1000, &ids, network);
        (bug.schedule_fits)(&steps, base.nodes)
    })
}

/// Whether one case's result lets the selftest pass: the control run valid,
/// every bug caught.
pub fn case_passes(result: &CaseResult) -> bool {
    matches!(result, CaseResult::Caught | CaseResult::ControlValid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kill_case_finds_a_seed_with_two_kills_of_every_node_in_30_s() {
        let bug = BUGS.iter().find(|b| b.bug == Bug::AckWithoutFlush).unwrap();
        let ids = [1, 2, 3];
        for from in 1..=6 {
            let seed = (from..=from + SEED_SEARCH_MAX)
                .find(|&s| {
                    let steps = nemesis::schedule(NemesisKind::Kill, s, 30_000, &ids, false);
                    (bug.schedule_fits)(&steps, 3)
                })
                .expect("a seed fits");
            assert!(seed < from + 100, "seed {seed}: the search should be short");
            let steps = nemesis::schedule(NemesisKind::Kill, seed, 30_000, &ids, false);
            eprintln!("--seed {from}: schedule seed {seed}: {steps:?}");
        }
    }

    #[test]
    fn every_bug_has_one_case() {
        // Goal: a bug added to `fault_bugs::Bug` cannot be left out of the selftest.
        let cases: Vec<Bug> = BUGS.iter().map(|c| c.bug).collect();
        assert_eq!(cases, Bug::ALL.to_vec());
    }

    #[test]
    fn only_caught_bugs_and_a_valid_control_pass() {
        assert!(!case_passes(&CaseResult::NotRunnable("x".into())));
        assert!(!case_passes(&CaseResult::Missed));
        assert!(!case_passes(&CaseResult::ControlInvalid));
        assert!(case_passes(&CaseResult::Caught));
        assert!(case_passes(&CaseResult::ControlValid));
    }
}
