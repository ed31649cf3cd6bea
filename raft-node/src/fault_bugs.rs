//! Deliberate bugs for `jepsen selftest` (proof that the Jepsen-style suite
//! can fail), selected at start by the environment variable
//! [`FAULT_BUG_ENV`] (`BOOKING_FAULT_BUG=<name>`).
//!
//! Owns: the list of bug names, the choice made at start, and the refusal to
//! start when a bug is asked of a binary that does not contain them.
//!
//! Must not: be compiled into a normal build. Everything but
//! [`select_from_env`] and [`FAULT_BUG_ENV`] exists only with the cargo
//! feature `fault-injection-bugs`; without it, a set `BOOKING_FAULT_BUG`
//! makes the node refuse to start, so a selftest can never silently run a
//! clean binary. Each bug is a few lines at its site, marked `BUG
//! (fault-injection-bugs, <name>)`, saying which selftest case catches it.
//!
//! Caveat: the choice is process-wide (a `OnceLock`), so all nodes in one
//! process share it; the selftest runs one node per process.

/// The environment variable that selects a bug.
pub const FAULT_BUG_ENV: &str = "BOOKING_FAULT_BUG";

/// One deliberate bug.
#[cfg(feature = "fault-injection-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultBug {
    /// Linearizable reads answered from local applied state on any node,
    /// without a ReadIndex round or a leader check.
    StaleLocalReads,
    /// Log appends (and the committed id) acknowledged to openraft while they
    /// sit in an in-process buffer that reaches sled every 5 s (`store.rs`,
    /// `WriteBack`).
    AckWithoutFlush,
    /// The apply glue gives the state machine the local (offset-able) wall
    /// clock as the entry's log time instead of the leader's stamp.
    ClockInApply,
}

#[cfg(feature = "fault-injection-bugs")]
impl FaultBug {
    pub const ALL: [FaultBug; 3] = [
        FaultBug::StaleLocalReads,
        FaultBug::AckWithoutFlush,
        FaultBug::ClockInApply,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultBug::StaleLocalReads => "stale-local-reads",
            FaultBug::AckWithoutFlush => "ack-without-flush",
            FaultBug::ClockInApply => "clock-in-apply",
        }
    }
}

#[cfg(feature = "fault-injection-bugs")]
static ACTIVE: std::sync::OnceLock<Option<FaultBug>> = std::sync::OnceLock::new();

/// Whether `bug` was selected at start.
#[cfg(feature = "fault-injection-bugs")]
pub fn active(bug: FaultBug) -> bool {
    ACTIVE.get().copied().flatten() == Some(bug)
}

/// Reads [`FAULT_BUG_ENV`] once, at start. `Ok(())` when unset (or empty), or
/// when this build has the bugs and the name is known (then it logs
/// `fault-injection bug enabled: <name>`, the line the selftest looks for).
/// `Err(reason)` otherwise: the caller must refuse to start (exit 2).
#[cfg(feature = "fault-injection-bugs")]
pub fn select_from_env() -> Result<(), String> {
    let chosen = match requested_bug() {
        None => None,
        Some(name) => Some(
            FaultBug::ALL
                .into_iter()
                .find(|b| b.name() == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = FaultBug::ALL.iter().map(|b| b.name()).collect();
                    format!(
                        "{FAULT_BUG_ENV}={name:?} is not a known bug (known: {})",
                        known.join(", ")
                    )
                })?,
        ),
    };
    // `booking node` selects before it loads the config, and `run_node`
    // selects again (for embedders): only the call that made the choice logs.
    let mut first = false;
    let set = *ACTIVE.get_or_init(|| {
        first = true;
        chosen
    });
    if set != chosen {
        return Err(format!(
            "{FAULT_BUG_ENV}: bug {:?} already selected in this process",
            set.map(FaultBug::name)
        ));
    }
    if let (true, Some(bug)) = (first, chosen) {
        tracing::warn!("fault-injection bug enabled: {}", bug.name());
    }
    Ok(())
}

/// Without the feature: refuses any requested bug, so a selftest never runs a
/// clean binary believing it broken.
#[cfg(not(feature = "fault-injection-bugs"))]
pub fn select_from_env() -> Result<(), String> {
    match requested_bug() {
        None => Ok(()),
        Some(name) => Err(format!(
            "{FAULT_BUG_ENV}={name:?} is set, but this binary was built without \
             fault-injection-bugs (build it with `cargo build --release -p booking \
             --features fault-injection-bugs`)"
        )),
    }
}

fn requested_bug() -> Option<String> {
    std::env::var(FAULT_BUG_ENV).ok().filter(|v| !v.is_empty())
}
