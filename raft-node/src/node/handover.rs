//! Leadership handover: the node's side of `bookctl leader transfer`.
//!
//! openraft 0.9.25 has no leader transfer, and a voter refuses every vote
//! while its leader's lease lasts (`election_timeout_max` since the leader's
//! last message, `engine_impl.rs` `handle_vote_req`). So a handover is three
//! steps, each asked of one node by the client library
//! (`client/src/client/handover.rs` sequences them):
//! - *quiet* the leader: no heartbeats, no ReadIndex round, no proposal (the
//!   proposer and the reader wait here), no election of its own; the
//!   followers' leases then lapse;
//! - *hold* elections on the voters that must not win (they still vote);
//! - the target *stands* (`trigger().elect()`), and wins once the leases
//!   lapsed, with the most up-to-date log (the client waits for that first).
//!
//! Owns: the pause deadlines and the runtime switches they flip. Every pause
//! ends by itself within [`HANDOVER_PAUSE_MS_MAX`], so a handover that dies
//! half way leaves no node muted. Must not: decide the target or the order of
//! steps (the client does), or change membership.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::NodeCore;
use crate::error::NodeError;

/// The longest pause one handover step may ask for.
pub const HANDOVER_PAUSE_MS_MAX: u64 = 10_000;
/// How long a quieted leader waits for the entries it proposed before.
pub const QUIET_DRAIN_MS: u64 = 3_000;
/// How often a quieted proposer or reader looks whether it is still leader.
const QUIET_POLL_MS: u64 = 20;

/// The pauses in force on this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pauses {
    /// Until then: no heartbeat, no ReadIndex round, no proposal.
    quiet_until: Option<Instant>,
    /// Until then: this node starts no election.
    hold_until: Option<Instant>,
}

/// Handover state of one node (in [`NodeCore`]).
pub struct Handover {
    pauses: watch::Sender<Pauses>,
    /// Serialises the flips of openraft's runtime switches.
    flip: Mutex<()>,
}

impl Default for Handover {
    fn default() -> Self {
        Handover {
            pauses: watch::Sender::new(Pauses::default()),
            flip: Mutex::new(()),
        }
    }
}

fn pause_of(pause_ms: u64) -> Result<Duration, NodeError> {
    if pause_ms == 0 || pause_ms > HANDOVER_PAUSE_MS_MAX {
        return Err(NodeError::InvalidArgument(format!(
            "pause_ms must be in 1..={HANDOVER_PAUSE_MS_MAX}, not {pause_ms}"
        )));
    }
    Ok(Duration::from_millis(pause_ms))
}

impl NodeCore {
    /// Leader only: quiet this node for `pause_ms` (see the module doc), then
    /// wait (at most [`QUIET_DRAIN_MS`]) until every entry proposed before
    /// was applied here, so the log index it then reports is the last one
    /// this leader will write: the target must have it to win.
    pub async fn handover_quiet(self: &Arc<Self>, pause_ms: u64) -> Result<(), NodeError> {
        let pause = pause_of(pause_ms)?;
        self.ensure_leader()?;
        let until = Instant::now() + pause;
        self.handover.pauses.send_modify(|p| {
            p.quiet_until = Some(until);
            p.hold_until = Some(p.hold_until.map_or(until, |h| h.max(until)));
        });
        tracing::warn!(
            node_id = self.id,
            pause_ms,
            "handover: leader quiet (no heartbeats, proposals or read rounds) so another voter can win"
        );
        self.apply_pauses();
        self.expire_later(until);
        let all = super::PROPOSE_INFLIGHT_MAX as u32;
        match tokio::time::timeout(
            Duration::from_millis(QUIET_DRAIN_MS),
            self.propose_inflight.acquire_many(all),
        )
        .await
        {
            Ok(Ok(permits)) => drop(permits),
            Ok(Err(_closed)) => return Err(NodeError::ShuttingDown),
            Err(_) => {
                self.handover_resume();
                return Err(NodeError::OutcomeUnknown(format!(
                    "handover: entries still in flight after {QUIET_DRAIN_MS} ms; quiet ended"
                )));
            }
        }
        self.ensure_leader()
    }

    /// Start no election for `pause_ms` (votes are still granted).
    pub fn handover_hold_elections(self: &Arc<Self>, pause_ms: u64) -> Result<(), NodeError> {
        let pause = pause_of(pause_ms)?;
        let until = Instant::now() + pause;
        self.handover.pauses.send_modify(|p| {
            p.hold_until = Some(p.hold_until.map_or(until, |h| h.max(until)));
        });
        tracing::info!(node_id = self.id, pause_ms, "handover: holding elections");
        self.apply_pauses();
        self.expire_later(until);
        Ok(())
    }

    /// End every pause on this node now.
    pub fn handover_resume(&self) {
        self.handover.pauses.send_replace(Pauses::default());
        self.apply_pauses();
    }

    /// Stand for election now (the handover's target).
    pub async fn handover_stand(&self) -> Result<(), NodeError> {
        // A held node must not stand, whoever asks: the hold exists so that
        // the handover's target wins.
        self.handover_resume();
        tracing::info!(node_id = self.id, "handover: standing for election");
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(super::fatal_to_error)
    }

    /// Waits while this node is a quiet leader: returns when the quiet ends
    /// or the node no longer leads (its proposal then fails with the usual
    /// redirect, and the client retries on the new leader).
    pub(super) async fn wait_not_quiet(&self) {
        // The hot path (every proposed entry, every read round): no quiet
        // in force, so no receiver is made.
        if self.handover.pauses.borrow().quiet_until.is_none() {
            return;
        }
        let mut rx = self.handover.pauses.subscribe();
        loop {
            let until = match rx.borrow_and_update().quiet_until {
                Some(until) if until > Instant::now() => until,
                _ => return,
            };
            if self.current_leader() != Some(self.id) {
                return;
            }
            let poll = Instant::now() + Duration::from_millis(QUIET_POLL_MS);
            tokio::select! {
                _ = tokio::time::sleep_until(until.min(poll)) => {}
                _ = rx.changed() => {}
            }
        }
    }

    /// Sets openraft's heartbeat and election switches from the pauses in
    /// force now (expired ones count as ended).
    fn apply_pauses(&self) {
        let _flip = self.handover.flip.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let p = *self.handover.pauses.borrow();
        let quiet = p.quiet_until.is_some_and(|t| t > now);
        let hold = p.hold_until.is_some_and(|t| t > now);
        let rc = self.raft.runtime_config();
        rc.heartbeat(!quiet);
        rc.elect(!hold);
    }

    /// Re-applies the switches once `until` has passed, so every pause ends
    /// by itself.
    fn expire_later(self: &Arc<Self>, until: Instant) {
        let core = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep_until(until + Duration::from_millis(1)).await;
            if let Some(core) = core.upgrade() {
                core.handover.pauses.send_if_modified(|p| {
                    let now = Instant::now();
                    let mut changed = false;
                    if p.quiet_until.is_some_and(|t| t <= now) {
                        p.quiet_until = None;
                        changed = true;
                    }
                    if p.hold_until.is_some_and(|t| t <= now) {
                        p.hold_until = None;
                        changed = true;
                    }
                    changed
                });
                core.apply_pauses();
                tracing::info!(node_id = core.id, "handover: pause over");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_is_bounded() {
        assert!(pause_of(0).is_err());
        assert!(pause_of(HANDOVER_PAUSE_MS_MAX + 1).is_err());
        assert_eq!(pause_of(500).unwrap(), Duration::from_millis(500));
    }
}
