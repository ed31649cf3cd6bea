//! The proposer: stamps and batches writes on the leader, and proposes the
//! expiry `Tick`.
//!
//! Owns: [`NodeCore::submit`] (a batch queued whole or refused whole), the
//! proposer task (commands packed into entries of at most
//! `propose_batch_max`, lingering `propose_linger_us`, stamped with the stamp
//! clock, at most [`PROPOSE_INFLIGHT_MAX`] entries in flight), answering each
//! caller of an entry, and the tick task (expiry ticks, and the exactly-once
//! table's `ForgetRequests` by this node's monotonic clock). Must not:
//! interpret commands (beyond the full-table refusal), or
//! hold the state-machine lock across an `.await`.
//!
//! Bounds (what happens when full): a command whose encoded bytes pass
//! [`COMMAND_BYTES_MAX`] is refused (`invalid_argument`, nothing applied); an
//! entry holds at most [`ENTRY_BYTES_MAX`] bytes of commands (the next
//! command waits for the next entry), so every log entry stays below sled's
//! blob threshold (see `store::durable`); the queue holds `propose_batch_max *`
//! [`PROPOSE_QUEUE_BATCHES`] commands, and a submit that does not fit is
//! refused with `overloaded` (RESOURCE_EXHAUSTED, not applied); with
//! [`PROPOSE_INFLIGHT_MAX`] entries in flight the proposer waits, so the queue
//! fills; a write waits [`PROPOSE_WAIT_MS`] for its entry, then answers
//! `outcome_unknown` (the entry may still commit; a retry is deduplicated).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::ClientWriteError;
use openraft::BasicNode;
use state_machine::forgetting::ForgetCutoff;
use state_machine::{Batch, Command, Outcome, Request};
use tokio::sync::{mpsc, oneshot, watch};

use super::{fatal_to_error, NodeCore};
use crate::error::NodeError;
use crate::metrics::Counters;
use crate::types::{EntryResponse, NodeId};

/// Queue depth of the proposer, in batches of `propose_batch_max` commands.
pub const PROPOSE_QUEUE_BATCHES: usize = 8;
/// Entries proposed and not yet answered.
pub const PROPOSE_INFLIGHT_MAX: usize = 64;
/// How long a write waits for its entry to be applied.
pub const PROPOSE_WAIT_MS: u64 = 10_000;
/// Largest command, in postcard-encoded bytes (ids included). A large event
/// (1 000 rows listed one by one) is about 10 KiB.
pub const COMMAND_BYTES_MAX: usize = 64 * 1024;
/// Largest sum of encoded command bytes in one entry: with the entry's own
/// header and sled's message header it stays below sled 0.34's blob threshold
/// (131 052 bytes with the default 512 KiB segment), so an entry is never a
/// blob file of its own.
pub const ENTRY_BYTES_MAX: usize = 96 * 1024;

/// The encoded size of `request`, or why it is refused (too large).
pub fn request_bytes(request: &Request) -> Result<usize, NodeError> {
    let bytes = postcard::to_stdvec(request)
        .map_err(|e| NodeError::InvalidArgument(format!("command does not encode: {e}")))?
        .len();
    if bytes > COMMAND_BYTES_MAX {
        return Err(NodeError::InvalidArgument(format!(
            "command of {bytes} bytes exceeds COMMAND_BYTES_MAX {COMMAND_BYTES_MAX}"
        )));
    }
    Ok(bytes)
}

type WriteReply = oneshot::Sender<Result<(Outcome, u64), NodeError>>;

pub(super) struct Pending {
    pub(super) request: Request,
    /// `request`'s encoded size ([`request_bytes`]).
    pub(super) bytes: usize,
    pub(super) reply: WriteReply,
}

impl NodeCore {
    /// Proposes `requests` (one or more entries, batched with other callers'
    /// commands) and answers each one's outcome and log index, in order.
    pub async fn submit(&self, requests: Vec<Request>) -> Result<Vec<(Outcome, u64)>, NodeError> {
        if requests.is_empty() {
            return Err(NodeError::InvalidArgument("empty batch".into()));
        }
        // Sized (and refused if too large) before anything is queued.
        let sizes = requests
            .iter()
            .map(request_bytes)
            .collect::<Result<Vec<_>, _>>()?;
        self.ensure_leader()?;
        // A command some member could not decode is never proposed.
        if let Some(refusal) = self.command_set_refusal(&requests) {
            return Err(refusal);
        }
        // A request the exactly-once table has no room for would be refused
        // by apply anyway; refuse it here without a log write.
        let table_full = {
            let sm = self.sm.read();
            requests.iter().any(|r| sm.booking.refuses_as_overloaded(r))
        };
        if table_full {
            Counters::add(&self.counters.dedupe_full_refusals, requests.len() as u64);
            return Err(NodeError::Overloaded(
                "the exactly-once table is full of live outcomes".into(),
            ));
        }
        // Reserve room for the whole batch first, so it is queued whole or
        // refused whole (never half proposed).
        let mut permits = Vec::with_capacity(requests.len());
        for _ in 0..requests.len() {
            match self.propose_tx.try_reserve() {
                Ok(p) => permits.push(p),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    Counters::add(
                        &self.counters.proposals_rejected_full,
                        requests.len() as u64,
                    );
                    return Err(NodeError::Overloaded("proposer queue is full".into()));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Err(NodeError::ShuttingDown),
            }
        }
        let mut replies = Vec::with_capacity(requests.len());
        for ((permit, request), bytes) in permits.into_iter().zip(requests).zip(sizes) {
            let (tx, rx) = oneshot::channel();
            permit.send(Pending {
                request,
                bytes,
                reply: tx,
            });
            replies.push(rx);
        }
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            out.push(rx.await.map_err(|_| NodeError::ShuttingDown)??);
        }
        // One request refused by apply because the exactly-once table was
        // full: nothing was applied or remembered, so it is the node's
        // `overloaded` (not applied, retry under the same ids). In a batch
        // the refusal stays a per-request outcome, since others may have
        // applied.
        if let [(Err(state_machine::BookingError::Overloaded { reason }), _)] = out.as_slice() {
            return Err(NodeError::Overloaded(reason.clone()));
        }
        Ok(out)
    }
}

/// Answers every caller of one entry.
fn answer_entry(
    replies: Vec<WriteReply>,
    result: Result<
        Result<
            openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
            ClientWriteError<NodeId, BasicNode>,
        >,
        NodeError,
    >,
    counters: &Counters,
) {
    match result {
        Ok(Ok(resp)) => {
            let EntryResponse { outcomes, indexes } = resp.data;
            let refused_full = outcomes
                .iter()
                .filter(|o| matches!(o, Err(state_machine::BookingError::Overloaded { .. })))
                .count();
            Counters::add(&counters.dedupe_full_refusals, refused_full as u64);
            assert_eq!(
                outcomes.len(),
                replies.len(),
                "entry {} answered {} outcomes for {} requests",
                resp.log_id.index,
                outcomes.len(),
                replies.len()
            );
            for (i, (reply, outcome)) in replies.into_iter().zip(outcomes).enumerate() {
                // A deduplicated retry answers with the index of the entry
                // that first applied it, not this one.
                let index = indexes.get(i).copied().unwrap_or(resp.log_id.index);
                let _ = reply.send(Ok((outcome, index)));
            }
        }
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
            for reply in replies {
                let _ = reply.send(Err(lost_leadership_in_flight(&f)));
            }
        }
        Ok(Err(ClientWriteError::ChangeMembershipError(e))) => {
            for reply in replies {
                let _ = reply.send(Err(NodeError::Internal(format!(
                    "unexpected membership error on a write: {e}"
                ))));
            }
        }
        Err(e) => {
            let text = e.to_string();
            let class_unknown = matches!(e, NodeError::OutcomeUnknown(_));
            for reply in replies {
                let _ = reply.send(Err(if class_unknown {
                    NodeError::OutcomeUnknown(text.clone())
                } else {
                    NodeError::ShuttingDown
                }));
            }
        }
    }
}

/// The answer to an entry's callers when openraft says "forward to the
/// leader" after the entry was handed to it. The entry may have been
/// appended here and replicated to a follower before this node lost
/// leadership, and a new leader whose log holds it commits it (with five
/// voters a deposed leader can reach two followers that then elect one of
/// themselves). openraft's answer does not say whether the entry was
/// appended, so "not applied" would sometimes be a lie: the outcome is
/// unknown, and the client resends under the same ids (deduplicated if it
/// did commit). The leader hint rides in the text for the logs only.
///
/// openraft 0.9.25 as read: it keeps the responder (per log index) when
/// the leader steps down and answers the applied outcome if that entry
/// commits; `ForwardToLeader` comes when the entry was never appended, or
/// when its index is truncated here (so it never commits). That is its
/// behaviour, not its documented contract, so this answer stays the one
/// that is right either way (`tests/truncate_then_commit.rs` drives both).
fn lost_leadership_in_flight(f: &openraft::error::ForwardToLeader<NodeId, BasicNode>) -> NodeError {
    let to = match f.leader_id {
        Some(id) => format!("node {id}"),
        None => "no known leader".to_string(),
    };
    NodeError::OutcomeUnknown(format!(
        "leadership moved to {to} while the entry was in flight; it may still commit"
    ))
}

/// Collects queued commands into entries and proposes them in queue order.
pub(super) async fn proposer_task(
    core: Arc<NodeCore>,
    mut rx: mpsc::Receiver<Pending>,
    linger: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let inflight = core.propose_inflight.clone();
    let max = core.propose_batch_max.max(1);
    // A command that did not fit the previous entry's byte bound: it opens
    // the next entry.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => break },
                _ = stop.changed() => break,
            },
        };
        let mut batch = EntryBatch {
            bytes: first.bytes,
            items: vec![first],
            max,
        };
        batch.drain(&mut rx, &mut carry);
        if batch.open(&carry) && !linger.is_zero() {
            if linger >= Duration::from_millis(1) {
                let deadline = tokio::time::Instant::now() + linger;
                while batch.open(&carry) {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(p)) => {
                            batch.push_or_carry(p, &mut carry);
                            batch.drain(&mut rx, &mut carry);
                        }
                        _ => break,
                    }
                }
            } else {
                tokio::task::yield_now().await;
                batch.drain(&mut rx, &mut carry);
            }
        }
        let batch = batch.items;
        // A leader quieted for a handover proposes nothing (an append would
        // renew the followers' leases); waiting before the permit lets the
        // handover see every earlier entry applied. The stamp comes after.
        core.wait_not_quiet().await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        // Callers that gave up (client hung up) are still proposed: a retry of
        // theirs is deduplicated, and dropping here would not save much.
        let (requests, replies): (Vec<Request>, Vec<WriteReply>) =
            batch.into_iter().map(|p| (p.request, p.reply)).unzip();
        let term = core.raft.metrics().borrow().current_term;
        core.clock.await_first_agreement(term).await;
        let floor_ms = core.sm.read().booking.clock_ms();
        let stamp_ms = core.clock.stamp(floor_ms, term);
        Counters::add(&core.counters.entries_proposed, 1);
        Counters::add(&core.counters.commands_proposed, requests.len() as u64);
        // `client_write_ff` only enqueues into openraft, in order, so entries
        // reach the log in stamp order; the wait for the outcome is spawned.
        let rx_result = core
            .raft
            .client_write_ff(Batch { stamp_ms, requests })
            .await;
        let counters = core.counters.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let result = match rx_result {
                Err(fatal) => Err(fatal_to_error(fatal)),
                Ok(rx) => {
                    match tokio::time::timeout(Duration::from_millis(PROPOSE_WAIT_MS), rx).await {
                        Err(_) => Err(NodeError::OutcomeUnknown(format!(
                            "entry not applied within {PROPOSE_WAIT_MS} ms"
                        ))),
                        Ok(Err(_)) => Err(NodeError::ShuttingDown),
                        Ok(Ok(r)) => Ok(r),
                    }
                }
            };
            answer_entry(replies, result, &counters);
        });
    }
}

/// The commands of the entry being packed, within both bounds.
struct EntryBatch {
    items: Vec<Pending>,
    /// Encoded bytes of `items`.
    bytes: usize,
    /// `propose_batch_max`.
    max: usize,
}

impl EntryBatch {
    /// Whether more may join: room left and nothing carried over.
    fn open(&self, carry: &Option<Pending>) -> bool {
        self.items.len() < self.max && carry.is_none()
    }

    /// Adds `p`, or keeps it for the next entry when the bytes would pass
    /// [`ENTRY_BYTES_MAX`].
    fn push_or_carry(&mut self, p: Pending, carry: &mut Option<Pending>) {
        if self.bytes + p.bytes > ENTRY_BYTES_MAX {
            *carry = Some(p);
        } else {
            self.bytes += p.bytes;
            self.items.push(p);
        }
    }

    /// Takes what is queued now, while the entry is open.
    fn drain(&mut self, rx: &mut mpsc::Receiver<Pending>, carry: &mut Option<Pending>) {
        while self.open(carry) {
            match rx.try_recv() {
                Ok(p) => self.push_or_carry(p, carry),
                Err(_) => break,
            }
        }
    }
}

/// Every `expiry_sweep_ms`, on every node: sample (monotonic time, applied
/// log time) for forgetting. On the leader, then: propose `ForgetRequests`
/// when its own samples show outcomes a TTL old (`state_machine::forgetting`),
/// and, if a deadline has passed, one `Tick`. Each is at most one in flight
/// and dropped when the queue is full, since losing either changes nothing
/// a client asked for.
pub(super) async fn tick_task(
    core: Arc<NodeCore>,
    sweep: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(sweep.max(Duration::from_millis(10)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // This node's monotonic clock: `Instant` never jumps with the wall clock
    // (and the fault hook's offset never reaches it).
    let started = Instant::now();
    let mut forget = ForgetCutoff::new();
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => break,
        }
        let mono_ms = started.elapsed().as_millis() as u64;
        let (clock_ms, ttl_ms) = {
            let sm = core.sm.read();
            (sm.booking.clock_ms(), sm.booking.settings().dedupe_ttl_ms)
        };
        forget.record(mono_ms, clock_ms, ttl_ms);
        if core.current_leader() != Some(core.id) {
            continue;
        }
        if let Some(before_ms) = forget.cutoff(mono_ms, ttl_ms) {
            // Judged at the stamp the entry would carry: on an idle log the
            // state's clock stands still, and the entry itself moves it.
            let term = core.raft.metrics().borrow().current_term;
            let due = {
                let sm = core.sm.read();
                let floor_ms = sm.booking.clock_ms();
                sm.booking
                    .forget_due(before_ms, core.clock.peek(floor_ms, term))
            };
            // Not while some member applies only an older command set: it
            // could not decode the entry (the version handshake).
            let floor = core.command_set_floor();
            if due && floor.set < state_machine::command_set::FORGET_REQUESTS {
                tracing::warn!(
                    lowest_member = ?floor.lowest,
                    set = floor.set,
                    "exactly-once table not forgetting: a member's build does not apply ForgetRequests yet; finish the rolling upgrade"
                );
            } else if due {
                let request = Request {
                    client_id: 0,
                    request_id: 0,
                    command: Command::ForgetRequests { before_ms },
                };
                Counters::add(&core.counters.forgets_proposed, 1);
                if let Err(e) = core.submit(vec![request]).await {
                    tracing::debug!(error = %e, "forgetting not applied");
                }
            }
        }
        let (due, floor_ms) = {
            let sm = core.sm.read();
            (sm.booking.next_deadline_ms(), sm.booking.clock_ms())
        };
        let Some(due) = due else { continue };
        // Due by the stamp a Tick would carry (cluster time), not by this
        // node's own wall clock, which may be the one that is wrong.
        let term = core.raft.metrics().borrow().current_term;
        if due > core.clock.peek(floor_ms, term) {
            continue;
        }
        let tick = Request {
            client_id: 0,
            request_id: 0,
            command: Command::Tick,
        };
        Counters::add(&core.counters.ticks_proposed, 1);
        match core.submit(vec![tick]).await {
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "tick not applied"),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::ForwardToLeader;

    use super::*;

    // Goal: a write whose entry was handed to openraft and then answered "forward to the leader" is reported as outcome unknown (it may commit through the new leader), never as not applied.
    #[test]
    fn forward_to_leader_after_queueing_is_outcome_unknown() {
        let cases = [
            ForwardToLeader::new(2, BasicNode::new("127.0.0.1:2")),
            ForwardToLeader::empty(),
        ];
        for f in cases {
            let error = lost_leadership_in_flight(&f);
            assert!(
                matches!(error, NodeError::OutcomeUnknown(_)),
                "{f:?} answered {error:?}"
            );
            assert_eq!(error.code(), "outcome_unknown");
        }
    }
}
