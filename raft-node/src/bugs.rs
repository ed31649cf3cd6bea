//! The node's deliberate bugs for `jepsen selftest`: the choice made at start
//! and the check each bug's site makes.
//!
//! Owns: [`select_from_env`] (the rule of the `fault-bugs` crate, told
//! whether this crate has its bugs compiled in, plus the start-up log line the
//! selftest looks for) and [`active`].
//!
//! Must not: hold a bug. The bugs live beside the code they break, each marked
//! `BUG (fault-injection-bugs, <name>)` and naming the selftest case that
//! catches it: `stale-local-reads` in `server.rs` (the linearizable read),
//! `ack-without-flush` in `store/write_back.rs` (compiled only with the cargo
//! feature `fault-injection-bugs`), `clock-in-apply` in `store/sm.rs` (apply),
//! `skip-fdatasync` in `store/durable.rs` (the durability step),
//! `unbounded-stamp` in `node/clock.rs` (the leader's stamp).
//! Without the feature [`active`] is a constant `false`, so the sites read the
//! same in both builds and a normal build contains none of the bugs; a set
//! `BOOKING_FAULT_BUG` then refuses to start.

pub use fault_bugs::Bug;

/// Whether this build has the node's bugs (the cargo feature
/// `fault-injection-bugs`).
pub const COMPILED_IN: bool = cfg!(feature = "fault-injection-bugs");

/// Reads `BOOKING_FAULT_BUG` once, at start. `Ok(())` when unset (or empty),
/// or when this build has the bugs and the name is known (a node bug is then
/// logged as `fault-injection bug enabled: <name>`, the line the selftest
/// looks for; a gateway bug leaves the node unbroken). `Err(reason)`
/// otherwise: the caller must refuse to start (exit 2).
pub fn select_from_env() -> Result<(), String> {
    let selected = fault_bugs::select_from_env(COMPILED_IN)?;
    if selected.first {
        match selected.bug {
            Some(bug) if selected.of(fault_bugs::Component::Node).is_some() => {
                tracing::warn!("{}{bug}", fault_bugs::ENABLED_MARKER);
            }
            Some(bug) => {
                tracing::info!(
                    "{}={bug} is not a node bug; the node runs unbroken",
                    fault_bugs::ENV
                );
            }
            None => {}
        }
    }
    Ok(())
}

/// Whether `bug` was chosen at start; a constant `false` without the feature.
#[inline]
pub fn active(bug: Bug) -> bool {
    COMPILED_IN && fault_bugs::active(bug)
}
