//! Leadership transfer and the steps of a rolling restart.
//!
//! A transfer sequences the node's handover steps (raft-node
//! `node/handover.rs`): hold elections on the voters that must not win,
//! quiet the leader (no heartbeats, proposals or read rounds: writes and
//! reads wait, they do not fail), wait until the target's log has every
//! entry of the leader's, then let the target stand until it leads. Every
//! step ends with a resume on each voter, and every pause also ends by itself
//! on the node, so a transfer that dies half way leaves no node muted.
//!
//! A rolling restart is, per member (the leader last): wait until the
//! cluster is healthy, move leadership away from the member, let the caller
//! restart it, wait until it is back, admitted and caught up. This module
//! owns the waiting and the transfer; the caller owns the processes (bookctl
//! runs a command, a test its supervisor).
//!
//! Must not: restart anything itself, or change membership.

use std::time::{Duration, Instant};

use proto::booking as pb;
use serde::Serialize;

use super::Client;
use crate::error::{normalize_endpoint, ClientError};
use crate::types::NodeStatus;

/// How long each pause asked of a node lasts (the node caps it at 10 s):
/// longer than a leader lease (`election_timeout_max_ms`, 800 ms by default)
/// plus an election, with room for a slow machine. Writes wait at most this
/// long on the quieted leader.
pub const HANDOVER_PAUSE_MS: u64 = 8_000;
/// How often a transfer or a restart step polls the nodes' status.
const POLL_MS: u64 = 50;
/// How often the target is asked to stand again while it does not lead (a
/// vote refused under a lease that has not lapsed yet is not retried by
/// openraft before the target's own election timeout).
const RESTAND_MS: u64 = 600;

/// What a leadership transfer did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Transfer {
    /// The leader before.
    pub from: u64,
    /// The leader after.
    pub to: u64,
    /// The new leader's term.
    pub term: u64,
    /// Wall time of the transfer, from quieting the old leader to the new
    /// one leading (0 when no transfer was needed).
    pub took_ms: u64,
}

/// What one member's restart waited for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rejoined {
    pub node_id: u64,
    /// From the call until the member answered, admitted, with every entry
    /// the leader had committed when it answered.
    pub catch_up_ms: u64,
    pub applied_index: u64,
}

fn rejected(message: String) -> ClientError {
    ClientError::Rejected {
        code: "invalid_argument".into(),
        message,
    }
}

fn unavailable(message: String) -> ClientError {
    ClientError::Unavailable {
        attempts: 0,
        last_error: message,
    }
}

impl Client {
    /// The endpoint of member `node_id`, from `leader`'s membership.
    fn member_endpoint(leader: &NodeStatus, node_id: u64) -> Result<String, ClientError> {
        leader
            .members
            .iter()
            .find(|m| m.node_id == node_id)
            .map(|m| normalize_endpoint(&m.addr))
            .ok_or_else(|| rejected(format!("node {node_id} is not a member")))
    }

    /// One handover step asked of `endpoint`.
    async fn handover_step(
        &self,
        endpoint: &str,
        action: pb::HandoverAction,
        pause_ms: u64,
    ) -> Result<pb::HandoverResponse, ClientError> {
        let mut c = self.channel(endpoint)?;
        let timeout = self.inner.options.request_timeout();
        let request = pb::HandoverRequest {
            action: action as i32,
            pause_ms,
        };
        match tokio::time::timeout(timeout, c.handover(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(unavailable(format!(
                "{endpoint}: handover {action:?}: {status}"
            ))),
            Err(_) => Err(unavailable(format!(
                "{endpoint}: handover {action:?}: no answer within {} ms",
                timeout.as_millis()
            ))),
        }
    }

    /// Moves leadership to voter `to` (or, with `None`, to the voter whose
    /// log is most up to date), within `timeout`. Writes and reads sent
    /// meanwhile wait on the old leader and are answered, or redirected to
    /// the new one, when it takes over.
    pub async fn transfer_leader(
        &self,
        to: Option<u64>,
        timeout: Duration,
    ) -> Result<Transfer, ClientError> {
        let deadline = Instant::now() + timeout;
        let leader = self.wait_for_leader(timeout).await?;
        let voters: Vec<u64> = leader
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect();
        let target = match to {
            Some(t) if t == leader.node_id => {
                return Ok(Transfer {
                    from: t,
                    to: t,
                    term: leader.term,
                    took_ms: 0,
                })
            }
            Some(t) if voters.contains(&t) => t,
            Some(t) => return Err(rejected(format!("node {t} is not a voter"))),
            None => leader
                .replication
                .iter()
                .filter(|(id, _)| *id != leader.node_id && voters.contains(id))
                .max_by_key(|(id, matched)| (*matched, std::cmp::Reverse(*id)))
                .map(|(id, _)| *id)
                .ok_or_else(|| rejected("no other voter to hand leadership to".into()))?,
        };
        let started = Instant::now();
        let outcome = self.hand_over(&leader, &voters, target, deadline).await;
        // Resume every voter whatever happened (their pauses also end by
        // themselves); a node that does not answer now is not muted for long.
        for &v in &voters {
            if let Ok(endpoint) = Self::member_endpoint(&leader, v) {
                let _ = self
                    .handover_step(&endpoint, pb::HandoverAction::Resume, 0)
                    .await;
            }
        }
        let term = outcome?;
        // The cached leader is stale now.
        self.status().await;
        Ok(Transfer {
            from: leader.node_id,
            to: target,
            term,
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// The steps of a transfer; returns the target's term once it leads.
    async fn hand_over(
        &self,
        leader: &NodeStatus,
        voters: &[u64],
        target: u64,
        deadline: Instant,
    ) -> Result<u64, ClientError> {
        let target_endpoint = Self::member_endpoint(leader, target)?;
        for &v in voters {
            if v != target && v != leader.node_id {
                // A voter that does not answer cannot stand either.
                let endpoint = Self::member_endpoint(leader, v)?;
                let _ = self
                    .handover_step(
                        &endpoint,
                        pb::HandoverAction::HoldElections,
                        HANDOVER_PAUSE_MS,
                    )
                    .await;
            }
        }
        let leader_endpoint = Self::member_endpoint(leader, leader.node_id)?;
        let quiet = self
            .handover_step(
                &leader_endpoint,
                pb::HandoverAction::QuietLeader,
                HANDOVER_PAUSE_MS,
            )
            .await?;
        let quiet_ends = Instant::now() + Duration::from_millis(HANDOVER_PAUSE_MS);
        let deadline = deadline.min(quiet_ends);
        // The target must have every entry the quiet leader has: otherwise
        // the voters that have them refuse it.
        loop {
            let s = self.node_status(&target_endpoint).await;
            if let Ok(s) = &s {
                if s.last_log_index >= quiet.last_log_index {
                    break;
                }
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "node {target} did not catch up with the leader's log (index {}) in time: {s:?}",
                    quiet.last_log_index
                )));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        let mut last_stand: Option<Instant> = None;
        loop {
            if last_stand.is_none_or(|t| t.elapsed() >= Duration::from_millis(RESTAND_MS)) {
                self.handover_step(&target_endpoint, pb::HandoverAction::Stand, 0)
                    .await?;
                last_stand = Some(Instant::now());
            }
            if let Ok(s) = self.node_status(&target_endpoint).await {
                if s.is_leader() && s.term > leader.term {
                    return Ok(s.term);
                }
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "node {target} did not take over from node {} in time",
                    leader.node_id
                )));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
    }

    /// Members in rolling-restart order: learners, then voters, the leader
    /// last (one transfer for the whole restart), each group by id.
    pub async fn restart_order(&self, timeout: Duration) -> Result<Vec<u64>, ClientError> {
        let leader = self.wait_for_leader(timeout).await?;
        let mut order: Vec<(bool, bool, u64)> = leader
            .members
            .iter()
            .map(|m| (m.voter, m.node_id == leader.node_id, m.node_id))
            .collect();
        order.sort_unstable();
        Ok(order.into_iter().map(|(_, _, id)| id).collect())
    }

    /// Before restarting `node_id`: waits (within `timeout`) until every
    /// member answers, admitted, with every committed entry, then moves
    /// leadership away if `node_id` leads. Returns the transfer, if any.
    pub async fn prepare_restart(
        &self,
        node_id: u64,
        timeout: Duration,
    ) -> Result<Option<Transfer>, ClientError> {
        let deadline = Instant::now() + timeout;
        // A fixed mark: under load the leader's commit index moves on, and a
        // follower is always a little behind the newest one.
        let mut commit_to_reach: Option<u64> = None;
        let leader = loop {
            let leader = self.wait_for_leader(timeout).await?;
            let target = *commit_to_reach.get_or_insert(leader.commit_index);
            let mut healthy = true;
            for m in &leader.members {
                let s = self.node_status(&normalize_endpoint(&m.addr)).await;
                healthy &= s.is_ok_and(|s| s.admission == "admitted" && s.applied_index >= target);
            }
            if healthy {
                break leader;
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "the cluster did not become healthy (every member answering, admitted, caught up) within {} ms",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS * 4)).await;
        };
        if leader.node_id != node_id {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.transfer_leader(None, left.max(Duration::from_secs(1)))
            .await
            .map(Some)
    }

    /// After restarting `node_id`: waits (within `timeout`) until it answers,
    /// admitted, with every entry the leader had committed when it first
    /// answered, and some node leads.
    pub async fn wait_rejoined(
        &self,
        node_id: u64,
        timeout: Duration,
    ) -> Result<Rejoined, ClientError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut commit_to_reach: Option<u64> = None;
        loop {
            let leader = self.wait_for_leader(timeout).await?;
            let endpoint = Self::member_endpoint(&leader, node_id)?;
            let target = *commit_to_reach.get_or_insert(leader.commit_index);
            let s = self.node_status(&endpoint).await;
            if let Ok(s) = &s {
                if s.admission == "admitted" && s.applied_index >= target {
                    return Ok(Rejoined {
                        node_id,
                        catch_up_ms: started.elapsed().as_millis() as u64,
                        applied_index: s.applied_index,
                    });
                }
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "node {node_id} did not rejoin (answer, admitted, applied index {target}) within {} ms: {s:?}",
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS * 2)).await;
        }
    }
}
