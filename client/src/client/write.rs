//! Writes: [`Client::submit`], the one way to propose a command, and
//! [`Ids`], which says who named the request and so whether the leader may
//! answer it without a log write (ARCHITECTURE.md, "Refusals without a log
//! write").
//!
//! Must not: choose the fast path for anything but a first send of ids never
//! sent before, or retry outside [`super::retry`] (the loop already retries
//! with the same ids).

use state_machine::{Command, Outcome, Reply, Request};

use super::compact;
use super::retry::CallKind;
use super::Client;
use crate::error::ClientError;

/// A request's exactly-once key: the state machine applies a
/// `(client_id, request_id)` at most once and answers a repeat with the
/// outcome it remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestIds {
    /// Never 0 (0 means "never deduplicated" to the state machine).
    pub client_id: u64,
    pub request_id: u64,
}

/// Who named a write's [`RequestIds`], and so whether they may have been sent
/// before. Only a first send of ids never sent before may be answered without
/// a log write: a refusal the leader proves current from its applied state.
/// Anything that may have been sent before goes through the log on every
/// attempt, since an earlier copy may still be in flight and commit, and
/// "refused" would then be a lie.
///
/// Within one call, a first send stays a first send across redirects and
/// "not applied" refusals and stops being one after an attempt with an
/// unknown outcome (the retry semantics are in `client/retry.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ids {
    /// The client mints the ids ([`Client::mint_ids`]: its own client id, a
    /// request id never handed out before). A first send: the leader may
    /// answer a refusal without a log write. The ids are in
    /// [`Submitted::ids`], or in [`ClientError::OutcomeUnknown`] to resend.
    New,
    /// Ids the caller minted and guarantees were never sent before, usually
    /// from [`Client::mint_ids`], kept so that an unknown outcome can be
    /// resolved with [`Ids::Resend`]. A first send, like [`Ids::New`]. Never
    /// use it to resend.
    FirstSend(RequestIds),
    /// Ids sent before: how a caller resolves [`ClientError::OutcomeUnknown`]
    /// (same ids, same command; the store answers with the first outcome if
    /// an earlier send applied). Always through the log.
    Resend(RequestIds),
    /// Ids derived from something outside this process, so that another
    /// process may have sent them, or will: the HTTP gateway derives them
    /// from (user, `Idempotency-Key`) and from a hold's payment steps, so the
    /// same key through any gateway names the same request. Always through
    /// the log, on every attempt: the outcome must be in the exactly-once
    /// table, or a retry through another process could be judged anew and
    /// answered differently. The caller owns the uniqueness of its ids (a
    /// pair reused for another command gets the first command's outcome)
    /// and should keep its client ids apart from random ones (the gateway
    /// sets the top bit).
    Derived(RequestIds),
}

impl Ids {
    /// True for a first send: its first attempt may be answered without a
    /// log write.
    fn is_first_send(self) -> bool {
        matches!(self, Ids::New | Ids::FirstSend(_))
    }
}

/// A command's outcome with where and how it was decided.
#[derive(Clone, Debug, PartialEq)]
pub struct Submitted {
    /// The store's answer (a refusal is `Err` inside).
    pub outcome: Outcome,
    /// The ids the command carried (every attempt used these).
    pub ids: RequestIds,
    /// Log index of the entry that decided it (for a deduplicated retry,
    /// the entry that first applied the request).
    pub log_index: u64,
    /// The node that answered (the leader at the time).
    pub leader_id: u64,
    /// Attempts it took, redirects included (1 = first try).
    pub attempts: u32,
    /// The leader answered from its applied state after a ReadIndex round,
    /// without a log write (only ever a refusal or a remembered outcome of a
    /// first send); `log_index` is then the applied index it reflects.
    pub answered_without_log_write: bool,
}

impl Submitted {
    /// The reply, with the store's refusal flattened into
    /// [`ClientError::Refused`], for callers that treat a refusal as an error.
    pub fn into_reply(self) -> Result<Reply, ClientError> {
        self.outcome.map_err(ClientError::Refused)
    }
}

impl Client {
    /// Proposes one command under `ids` and returns the store's outcome (a
    /// refusal is `Ok` with `Err` in [`Submitted::outcome`]). Retries with the
    /// same ids as described in `client/retry.rs`; only [`Ids::New`] and
    /// [`Ids::FirstSend`] may be answered without a log write.
    ///
    /// Explicit ids with client id 0 (never deduplicated) are rejected here
    /// with `invalid_argument`, nothing sent.
    pub async fn submit(&self, ids: Ids, command: Command) -> Result<Submitted, ClientError> {
        let first_send = ids.is_first_send();
        let ids = match ids {
            Ids::New => self.mint_ids(),
            Ids::FirstSend(ids) | Ids::Resend(ids) | Ids::Derived(ids) => ids,
        };
        if ids.client_id == 0 {
            return Err(ClientError::Rejected {
                code: "invalid_argument".into(),
                message:
                    "client_id 0 is never deduplicated; explicit ids need a non-zero client id"
                        .into(),
            });
        }
        let request = Request {
            client_id: ids.client_id,
            request_id: ids.request_id,
            command,
        };
        let message = compact::request(request.client_id, request.request_id, &request.command)?;
        let routed = self
            .route_marked(
                CallKind::Write {
                    client_id: ids.client_id,
                    request_id: ids.request_id,
                    first_send,
                },
                move |endpoint, node, first_send| {
                    let mut message = message.clone();
                    message.first_send = first_send;
                    let endpoint = endpoint.to_string();
                    let client = self.clone();
                    async move { client.submit_attempt(&endpoint, node, message).await }
                },
            )
            .await?;
        let mut response = routed.value;
        Ok(Submitted {
            outcome: compact::outcome(&mut response)?,
            ids,
            log_index: response.log_index,
            leader_id: response.leader_id,
            attempts: routed.attempts,
            answered_without_log_write: response.answered_without_log_write,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: explicit ids with client id 0 (never deduplicated) are refused
    // before anything is sent, whichever variant carries them.
    #[tokio::test]
    async fn explicit_ids_refuse_client_id_zero() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        let zero = RequestIds {
            client_id: 0,
            request_id: 1,
        };
        for ids in [Ids::FirstSend(zero), Ids::Resend(zero), Ids::Derived(zero)] {
            let e = client
                .submit(ids, Command::Tick)
                .await
                .expect_err("client id 0 is refused");
            assert_eq!(e.code(), "invalid_argument", "{ids:?}");
            assert!(e.is_definite());
        }
    }

    // Goal: only a first send of never-sent ids may use the fast path.
    #[test]
    fn only_new_and_first_send_are_first_sends() {
        let ids = RequestIds {
            client_id: 1,
            request_id: 1,
        };
        assert!(Ids::New.is_first_send());
        assert!(Ids::FirstSend(ids).is_first_send());
        assert!(!Ids::Resend(ids).is_first_send());
        assert!(!Ids::Derived(ids).is_first_send());
    }
}
