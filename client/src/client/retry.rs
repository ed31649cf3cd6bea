//! The one bounded retry loop every call of [`Client`] goes through.
//!
//! Retry semantics (exact):
//! - A write carries one `(client_id, request_id)` ([`super::Ids`]); every
//!   attempt of it carries the same pair, so the state machine applies it at
//!   most once and answers a duplicate with the remembered outcome.
//! - An attempt goes to the cached leader, else to the next endpoint in
//!   round-robin order. `not_leader` with a leader hint sends the next attempt
//!   straight to that leader without a pause (after two redirects in a row the
//!   loop pauses, so two nodes with stale views cannot spin it).
//! - `no_leader`, `overloaded` and refused connections are "not applied":
//!   pause (exponential backoff with jitter) and try again, forgetting the
//!   cached leader.
//! - A timeout, a lost connection, `outcome_unknown`, `shutting_down`,
//!   `storage` or `internal` mean "may have been applied": pause and try again
//!   with the same ids (that is what makes the retry safe).
//! - `invalid_argument`, `membership`, or an unknown code marked `not_applied`
//!   end the call at once with [`ClientError::Rejected`].
//! - First sends: an attempt of a write sent as a first send
//!   ([`super::Ids::New`] or [`super::Ids::FirstSend`]) is marked
//!   `first_send` until an attempt of it has an unknown outcome (redirects
//!   and "not applied" refusals leave nothing in flight). The leader may
//!   answer such an attempt's refusal without a log write. Every later
//!   attempt, and every attempt of a resend or of derived ids, is unmarked
//!   and goes through the log: an earlier copy may still be in flight and
//!   commit, so "refused" from the current state could be a lie.
//! - The loop stops after `attempts_max` attempts or `retry_budget_ms`, then
//!   answers [`ClientError::OutcomeUnknown`] if any attempt of a write may have
//!   been applied, else [`ClientError::Unavailable`] (definite: nothing applied).
//!   Reads have no effects, so an exhausted read is always `Unavailable`.
//!
//! Must not: build requests or decode answers (the callers do), or sleep
//! without a bound.

use std::future::Future;
use std::time::Instant;

use proto::booking::booking_client::BookingClient;
use tonic::transport::Channel;

use super::{lock, Client};
use crate::error::{classify, AttemptFailure, ClientError};

/// Redirects followed in a row without pausing.
const REDIRECTS_IN_A_ROW_MAX: u32 = 2;

/// What a call is, for the retry loop: whether an exhausted call may have
/// changed state, and whether the answering node is the leader.
#[derive(Clone, Copy)]
pub(super) enum CallKind {
    /// A command carrying a dedupe key; answered by the leader only.
    /// `first_send`: no earlier call sent these ids, so attempts are marked
    /// `first_send` until one may have been applied.
    Write {
        client_id: u64,
        request_id: u64,
        first_send: bool,
    },
    /// Membership administration: answered by the leader, no dedupe key,
    /// idempotent by value.
    Admin,
    /// No effects; any node may answer.
    Read,
}

impl CallKind {
    fn answered_by_leader(self) -> bool {
        !matches!(self, CallKind::Read)
    }
}

/// A call's answer and the attempts it took.
pub(super) struct Routed<T> {
    pub(super) value: T,
    pub(super) attempts: u32,
}

impl Client {
    /// The retry loop for a call whose message does not depend on the attempt.
    pub(super) async fn route<T, F, Fut>(
        &self,
        kind: CallKind,
        mut call: F,
    ) -> Result<Routed<T>, ClientError>
    where
        F: FnMut(BookingClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.route_marked(kind, move |_endpoint, c, _first_send| call(c))
            .await
    }

    /// The retry loop. `call` gets the attempt's endpoint and node, and
    /// whether this attempt is a first send:
    /// a first-send write none of whose earlier attempts may have been applied
    /// (redirects and "not applied" refusals leave nothing in flight).
    pub(super) async fn route_marked<T, F, Fut>(
        &self,
        kind: CallKind,
        mut call: F,
    ) -> Result<Routed<T>, ClientError>
    where
        F: FnMut(&str, BookingClient<Channel>, bool) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let options = &self.inner.options;
        let started = Instant::now();
        let budget = options.retry_budget();
        let mut attempts: u32 = 0;
        let mut failures: u32 = 0;
        let mut redirects_in_a_row: u32 = 0;
        let mut maybe_applied = false;
        let mut last_error = String::from("no attempt made");
        let mut redirect_to: Option<String> = None;
        while attempts < options.attempts_max.max(1) {
            let elapsed = started.elapsed();
            if elapsed >= budget {
                break;
            }
            let target = redirect_to
                .take()
                .or_else(|| self.cached_leader())
                .unwrap_or_else(|| self.next_endpoint());
            attempts += 1;
            let timeout = options.request_timeout().min(budget - elapsed);
            let client = self.channel(&target)?;
            let first_send = matches!(
                kind,
                CallKind::Write {
                    first_send: true,
                    ..
                }
            ) && !maybe_applied;
            let failure =
                match tokio::time::timeout(timeout, call(&target, client, first_send)).await {
                    Ok(Ok(response)) => {
                        if kind.answered_by_leader() {
                            *lock(&self.inner.leader) = Some(target);
                        }
                        return Ok(Routed {
                            value: response.into_inner(),
                            attempts,
                        });
                    }
                    Ok(Err(status)) => classify(&status),
                    Err(_) => AttemptFailure::Unknown {
                        message: format!("no answer within {} ms", timeout.as_millis()),
                    },
                };
            tracing::debug!(%target, attempt = attempts, ?failure, "attempt failed");
            match failure {
                AttemptFailure::NotLeader {
                    leader_id,
                    leader_addr,
                    message,
                } => {
                    last_error = format!("{target}: {message}");
                    let hint = leader_addr.or_else(|| {
                        leader_id.and_then(|id| lock(&self.inner.addr_by_id).get(&id).cloned())
                    });
                    if let (Some(id), Some(addr)) = (leader_id, &hint) {
                        self.learn(id, addr);
                    }
                    match hint {
                        Some(leader)
                            if leader != target && redirects_in_a_row < REDIRECTS_IN_A_ROW_MAX =>
                        {
                            redirects_in_a_row += 1;
                            *lock(&self.inner.leader) = Some(leader.clone());
                            redirect_to = Some(leader);
                            continue;
                        }
                        Some(leader) => {
                            // Stale views pointing at each other: pause, then try the hint.
                            *lock(&self.inner.leader) = Some(leader);
                        }
                        None => self.forget_leader(&target),
                    }
                }
                AttemptFailure::NotApplied { message } => {
                    last_error = format!("{target}: {message}");
                    self.forget_leader(&target);
                }
                AttemptFailure::Unknown { message } => {
                    last_error = format!("{target}: {message}");
                    maybe_applied = true;
                    self.forget_leader(&target);
                }
                AttemptFailure::Definite { code, message } => {
                    return Err(ClientError::Rejected {
                        code,
                        message: format!("{target}: {message}"),
                    });
                }
            }
            redirects_in_a_row = 0;
            let pause = options.backoff(failures);
            failures += 1;
            if started.elapsed() + pause >= budget || attempts >= options.attempts_max {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(match kind {
            CallKind::Write {
                client_id,
                request_id,
                ..
            } if maybe_applied => ClientError::OutcomeUnknown {
                client_id,
                request_id: Some(request_id),
                attempts,
                last_error,
            },
            CallKind::Admin if maybe_applied => ClientError::OutcomeUnknown {
                client_id: self.inner.client_id,
                request_id: None,
                attempts,
                last_error,
            },
            _ => ClientError::Unavailable {
                attempts,
                last_error,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::error::{classify, AttemptFailure};
    use crate::options::ClientOptions;

    // Goal: every backoff pause stays within [cap/2, cap] and the cap holds.
    #[test]
    fn backoff_is_bounded() {
        let options = ClientOptions {
            backoff_ms_initial: 10,
            backoff_ms_max: 200,
            ..ClientOptions::default()
        };
        for failures in 0..40 {
            let pause = options.backoff(failures).as_millis() as u64;
            let cap = (10u64 << failures.min(16)).min(200);
            assert!(
                pause >= cap / 2 && pause <= cap,
                "failures {failures}: {pause} ms"
            );
        }
    }

    // Goal: gRPC statuses map to the documented retry classes.
    #[test]
    fn statuses_are_classified_as_documented() {
        let with = |code: &'static str, outcome: &'static str| {
            let mut status = tonic::Status::unavailable("x");
            status
                .metadata_mut()
                .insert("booking-error", code.parse().unwrap());
            status
                .metadata_mut()
                .insert("booking-outcome", outcome.parse().unwrap());
            classify(&status)
        };
        assert!(matches!(
            with("no_leader", "not_applied"),
            AttemptFailure::NotApplied { .. }
        ));
        assert!(matches!(
            with("overloaded", "not_applied"),
            AttemptFailure::NotApplied { .. }
        ));
        assert!(matches!(
            with("outcome_unknown", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            with("shutting_down", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            with("membership", "not_applied"),
            AttemptFailure::Definite { .. }
        ));
        assert!(matches!(
            with("upgrade_pending", "not_applied"),
            AttemptFailure::Definite { .. }
        ));
        assert!(matches!(
            with("some_new_code", "not_applied"),
            AttemptFailure::Definite { .. }
        ));
        assert!(matches!(
            with("some_new_code", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        let mut redirect = tonic::Status::failed_precondition("not leader");
        redirect
            .metadata_mut()
            .insert("booking-error", "not_leader".parse().unwrap());
        redirect
            .metadata_mut()
            .insert("booking-leader-id", "3".parse().unwrap());
        redirect
            .metadata_mut()
            .insert("booking-leader-addr", "127.0.0.1:7103".parse().unwrap());
        assert_eq!(
            classify(&redirect),
            AttemptFailure::NotLeader {
                leader_id: Some(3),
                leader_addr: Some("http://127.0.0.1:7103".into()),
                message: "FailedPrecondition: not leader".into()
            }
        );
        // No metadata: a transport failure after sending may have been delivered.
        assert!(matches!(
            classify(&tonic::Status::unavailable("connection reset")),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            classify(&tonic::Status::unavailable(
                "tcp connect error: Connection refused"
            )),
            AttemptFailure::NotApplied { .. }
        ));
    }
}
