//! The deliberate bugs that prove `jepsen selftest` can fail: their names, the
//! environment variable that asks for one ([`ENV`], `BOOKING_FAULT_BUG=<name>`),
//! and the one rule that decides, at start, whether a process runs broken.
//!
//! Owns: the list of every deliberate bug ([`Bug`]) and which process has it
//! ([`Component`]); reading [`ENV`] and the process-wide choice
//! ([`select_from_env`], [`active`]); the refusal to start when a bug is asked
//! of a binary that does not contain the bugs; the line a broken process logs
//! ([`ENABLED_MARKER`]), which the selftest looks for.
//!
//! Must not: contain a bug, or depend on anything. The bugs live beside the
//! code they break, in their crates, behind each crate's cargo feature
//! `fault-injection-bugs` ([`FEATURE`]); a crate tells this one whether its
//! bugs are compiled in (`compiled_in`, its `cfg!(feature = ...)`), so the
//! rule cannot be fooled by cargo unifying features across crates.
//!
//! The rule ([`choose`]): unset or empty runs clean; any name in a binary
//! without the bugs refuses to start (so a selftest never runs a clean binary
//! believing it broken); an unknown name refuses to start; a known name is
//! chosen. A process breaks only for a bug of its own [`Component`]: one
//! variable may be set for a whole `booking up`, and the other processes run
//! unbroken.
//!
//! Caveat: the choice is process-wide (a `OnceLock`), so every node and
//! gateway in one process shares it; the selftest runs one per process.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that asks for a bug.
pub const ENV: &str = "BOOKING_FAULT_BUG";
/// The start of the line a process logs when one of its bugs is active,
/// followed by the bug's name; `jepsen selftest` looks for it in the logs.
pub const ENABLED_MARKER: &str = "fault-injection bug enabled: ";
/// The cargo feature (of `booking`, `raft-node` and `http-gateway`) that
/// compiles the bugs in.
pub const FEATURE: &str = "fault-injection-bugs";

/// The process a bug lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `booking node` (crate `raft-node`).
    Node,
    /// `booking gateway` (crate `http-gateway`).
    Gateway,
}

/// One deliberate bug. Each names the selftest case that catches it where it
/// lives (`BUG (fault-injection-bugs, <name>)` at its site).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bug {
    /// raft-node: linearizable reads answered from local applied state on any
    /// node, without a ReadIndex round or a leader check.
    StaleLocalReads,
    /// raft-node: log appends (and the committed id) acknowledged to openraft
    /// while they sit in an in-process buffer that reaches sled every 5 s.
    AckWithoutFlush,
    /// raft-node: the apply glue gives the state machine the local
    /// (offset-able) wall clock as the entry's log time instead of the
    /// leader's stamp.
    ClockInApply,
    /// http-gateway: a hold, begin-payment or confirm whose cluster call ended
    /// with an unknown outcome is retried by the gateway with NEW request ids.
    GatewayRetryNewId,
    /// raft-node: the durability step after sled's flush (fsync of new blobs
    /// and directories, fdatasync of sled's `db`) is skipped, so an
    /// acknowledged write survives a kill but not a power cut.
    SkipFdatasync,
    /// raft-node: the leader stamps `max(its own clock, last stamp, state
    /// clock)`, the rule before cluster time: one leader's clock an hour
    /// fast moves log time an hour and expires every hold at once.
    UnboundedStamp,
}

impl Bug {
    /// Every deliberate bug.
    pub const ALL: [Bug; 6] = [
        Bug::StaleLocalReads,
        Bug::AckWithoutFlush,
        Bug::ClockInApply,
        Bug::GatewayRetryNewId,
        Bug::SkipFdatasync,
        Bug::UnboundedStamp,
    ];

    /// The name [`ENV`] takes.
    pub const fn name(self) -> &'static str {
        match self {
            Bug::StaleLocalReads => "stale-local-reads",
            Bug::AckWithoutFlush => "ack-without-flush",
            Bug::ClockInApply => "clock-in-apply",
            Bug::GatewayRetryNewId => "gateway-retry-new-id",
            Bug::SkipFdatasync => "skip-fdatasync",
            Bug::UnboundedStamp => "unbounded-stamp",
        }
    }

    /// The process the bug lives in.
    pub const fn component(self) -> Component {
        match self {
            Bug::StaleLocalReads
            | Bug::AckWithoutFlush
            | Bug::ClockInApply
            | Bug::SkipFdatasync
            | Bug::UnboundedStamp => Component::Node,
            Bug::GatewayRetryNewId => Component::Gateway,
        }
    }

    /// The bug named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The rule, on the value of [`ENV`] (`None`: unset). `Ok(None)` runs clean,
/// `Ok(Some(bug))` runs broken (if the bug is of the caller's component),
/// `Err(reason)` must refuse to start (exit 2).
pub fn choose(requested: Option<&str>, compiled_in: bool) -> Result<Option<Bug>, String> {
    let Some(name) = requested.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if !compiled_in {
        return Err(format!(
            "{ENV}={name:?} is set, but this binary was built without \
             {FEATURE} (build it with `cargo build --release -p booking \
             --features {FEATURE}`)"
        ));
    }
    match Bug::from_name(name) {
        Some(bug) => Ok(Some(bug)),
        None => {
            let known: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
            Err(format!(
                "{ENV}={name:?} is not a known bug (known: {})",
                known.join(", ")
            ))
        }
    }
}

/// What [`select_from_env`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    /// The bug asked for, of any component (`None`: running clean).
    pub bug: Option<Bug>,
    /// True for the call that made the process-wide choice: only it should
    /// log (a binary may select before it loads its config, and the library
    /// it calls selects again for embedders).
    pub first: bool,
}

impl Selected {
    /// The bug, if it is one of `component`'s (the caller runs broken).
    pub fn of(self, component: Component) -> Option<Bug> {
        self.bug.filter(|b| b.component() == component)
    }
}

static CHOSEN: OnceLock<Option<Bug>> = OnceLock::new();

/// Reads [`ENV`] and applies [`choose`]; the first successful call fixes the
/// process-wide choice that [`active`] reports. `compiled_in` is the calling
/// crate's `cfg!(feature = "fault-injection-bugs")`. `Err(reason)`: the
/// caller must refuse to start (exit 2).
pub fn select_from_env(compiled_in: bool) -> Result<Selected, String> {
    let value = std::env::var_os(ENV).map(|v| v.to_string_lossy().into_owned());
    let chosen = choose(value.as_deref(), compiled_in)?;
    let mut first = false;
    let set = *CHOSEN.get_or_init(|| {
        first = true;
        chosen
    });
    if set != chosen {
        return Err(format!(
            "{ENV}: bug {:?} already selected in this process",
            set.map(Bug::name)
        ));
    }
    Ok(Selected { bug: set, first })
}

/// Whether `bug` was chosen at start. Always false before
/// [`select_from_env`] ran, and in a binary without the bugs (which refuses
/// any choice). Crates wrap it in a function that is a constant `false`
/// without their feature, so a bug's site reads the same either way.
pub fn active(bug: Bug) -> bool {
    CHOSEN.get().copied().flatten() == Some(bug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        // Goal: every bug has one name and parses back from it.
        for bug in Bug::ALL {
            assert_eq!(Bug::from_name(bug.name()), Some(bug));
            assert_eq!(bug.to_string(), bug.name());
        }
        let mut names: Vec<&str> = Bug::ALL.iter().map(|b| b.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Bug::ALL.len());
    }

    #[test]
    fn the_rule() {
        // Goal: unset runs clean; a build without the bugs refuses any name;
        // an unknown name is refused; a known one is chosen.
        assert_eq!(choose(None, false), Ok(None));
        assert_eq!(choose(Some(""), false), Ok(None));
        assert_eq!(choose(None, true), Ok(None));
        let refused = choose(Some("stale-local-reads"), false).unwrap_err();
        assert!(
            refused.contains("built without fault-injection-bugs"),
            "{refused}"
        );
        assert!(choose(Some("nonsense"), false).is_err());
        let unknown = choose(Some("nonsense"), true).unwrap_err();
        assert!(unknown.contains("gateway-retry-new-id"), "{unknown}");
        for bug in Bug::ALL {
            assert_eq!(choose(Some(bug.name()), true), Ok(Some(bug)));
        }
    }

    #[test]
    fn a_process_breaks_only_for_its_own_bugs() {
        // Goal: one variable for a whole `booking up` breaks only the process
        // that has the bug.
        let node_bug = Selected {
            bug: Some(Bug::AckWithoutFlush),
            first: true,
        };
        assert_eq!(node_bug.of(Component::Node), Some(Bug::AckWithoutFlush));
        assert_eq!(node_bug.of(Component::Gateway), None);
        let gateway_bug = Selected {
            bug: Some(Bug::GatewayRetryNewId),
            first: true,
        };
        assert_eq!(gateway_bug.of(Component::Node), None);
    }
}
