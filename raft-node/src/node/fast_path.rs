//! Refusals without a log write: a client's first send of a request id that
//! the leader can prove would be refused is answered from its applied state
//! (ARCHITECTURE.md, "Refusals without a log write").
//!
//! Owns: [`NodeCore::submit_first_send`] and the rules that make such an answer
//! safe. Must not: answer anything but a refusal or a remembered outcome
//! (`BookingState::precheck` decides, with the same code as apply), answer on
//! a follower, or write anything; any doubt falls back to the proposer.

use std::time::Duration;

use state_machine::{Outcome, Request};

use super::read::READ_WAIT_MS;
use super::NodeCore;
use crate::error::NodeError;
use crate::metrics::Counters;

impl NodeCore {
    /// A client's first send of a request id (see `SubmitRequest.first_send`):
    /// a refusal the leader can prove current is answered without a log write
    /// (`true` in the answer, with the applied index it reflects); anything
    /// else is proposed exactly as [`NodeCore::submit`] does.
    pub async fn submit_first_send(
        &self,
        request: Request,
    ) -> Result<(Outcome, u64, bool), NodeError> {
        if let Some((outcome, applied)) = self.answer_without_log_write(&request).await {
            Counters::add(&self.counters.answered_without_log_write, 1);
            return Ok((outcome, applied, true));
        }
        let (outcome, index) = self
            .submit(vec![request])
            .await?
            .pop()
            .expect("one answer per request");
        Ok((outcome, index, false))
    }

    /// The fast path. Safe only because every step holds (ARCHITECTURE.md,
    /// "Refusals without a log write"):
    /// 1. this node leads; a follower never answers a write (no leases either:
    ///    leadership is confirmed by a quorum round, never by a clock);
    /// 2. a ReadIndex round started after the request arrived, and the local
    ///    apply reached its index, so the state reflects every write
    ///    acknowledged before the request (the answer is linearizable at the
    ///    applied index);
    /// 3. no deadline (expiry, lapse, scheduled opening, admission) is due by
    ///    the stamp a proposal would carry now, so the log would not
    ///    first change the state this answer reads;
    /// 4. `BookingState::precheck` answers: a hold refusal or a remembered
    ///    outcome, decided by the same code as `apply`.
    ///
    /// A cheap look at the local state first means only likely refusals pay
    /// for the ReadIndex round; successes go straight to the proposer. Any
    /// doubt (round failed, leadership moved, state changed) returns `None`:
    /// the log then answers, which is always correct.
    async fn answer_without_log_write(&self, request: &Request) -> Option<(Outcome, u64)> {
        if self.current_leader() != Some(self.id) {
            return None;
        }
        let likely_refusal = self.sm.read().booking.precheck(request).is_some();
        if !likely_refusal {
            return None;
        }
        let read_index = self.join_read_round(true).await.ok()?;
        self.wait_applied(read_index, Duration::from_millis(READ_WAIT_MS))
            .await
            .ok()?;
        if self.current_leader() != Some(self.id) {
            return None;
        }
        let s = self.sm.read();
        // The stamp a proposal would carry now (ahead of the wall clock after
        // a clock step back).
        let term = self.raft.metrics().borrow().current_term;
        let stamp_ms = self.clock.peek(s.booking.clock_ms(), term);
        let applied = s.last_applied.map(|l| l.index).unwrap_or(0);
        let answer = if applied < read_index
            || s.booking
                .next_deadline_ms()
                .is_some_and(|due| due <= stamp_ms)
        {
            None
        } else {
            s.booking
                .precheck(request)
                .map(|outcome| (outcome, applied))
        };
        drop(s);
        if answer.is_none() {
            Counters::add(&self.counters.fast_path_fallbacks, 1);
        }
        answer
    }
}
