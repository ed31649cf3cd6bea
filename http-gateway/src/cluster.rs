//! The narrow interface through which the gateway reaches the replicated
//! store: submit a command, read a query, watch seat changes, ask for status.
//!
//! Owns: the [`Cluster`] trait, its error enum [`ClusterError`] (with the
//! retry classification handlers need), the shapes of read answers and
//! watch streams, and [`TimedWrites`], the bound on every write (a write that
//! times out has an unknown outcome). Must not: know gRPC, openraft or HTTP. The real
//! implementation wraps the `client` crate; the in-memory
//! [`crate::fake::FakeCluster`] backs the fast tests.
//!
//! Caveats:
//! - Methods return boxed futures so the trait is object-safe and the app can
//!   hold an `Arc<dyn Cluster>`; one allocation per call is noise next to a
//!   network round trip.
//! - `submit` must carry the caller's `(client_id, request_id)` unchanged
//!   through every retry: the state machine's exactly-once table is what
//!   makes a retried write safe, and idempotency keys rely on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::Serialize;
use state_machine::{Outcome, Query, QueryResult, Request, SeatChange};

/// A boxed, sendable future: what every [`Cluster`] method returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream of [`WatchItem`]s for one event. It ends after a
/// [`WatchItem::Resync`] or when the cluster side closes it.
pub type WatchStream = Pin<Box<dyn Stream<Item = WatchItem> + Send>>;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (ReadIndex).
    Linearizable,
    /// Whatever one node has applied; may trail the leader. Says its index.
    Stale,
}

/// A query's answer and the log index of the state it was computed from.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadAnswer {
    pub result: QueryResult,
    /// The applied index of the state that answered.
    pub applied_index: u64,
}

/// One message of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchItem {
    /// The changes to the watched event made by the entry at `index`.
    /// Entries that did not touch the event are skipped.
    Changes {
        index: u64,
        changes: Vec<SeatChange>,
    },
    /// The stream cannot continue without a gap (the start index is older
    /// than the retained changes, or the subscriber fell behind). The caller
    /// reads availability again and watches from its index + 1. Always last.
    Resync { reason: String },
}

/// One member of the cluster as the status call reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub node_id: u64,
    pub addr: String,
    pub voter: bool,
}

/// What `GET /v1/cluster` shows; fields the backend cannot know stay `None`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node_id: u64,
    pub role: String,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub applied_index: u64,
    pub commit_index: u64,
    pub members: Vec<MemberStatus>,
}

/// The answer to [`Cluster::submit_first_send`].
#[derive(Clone, Debug, PartialEq)]
pub struct FirstSendAnswer {
    pub outcome: Outcome,
    /// True when the leader answered without a log write (a refusal).
    pub answered_without_log_write: bool,
}

/// Why the cluster could not answer. Domain refusals (seat taken, hold
/// expired) are not errors here: they are the `Err` side of an [`Outcome`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// No leader, or no node reachable; the command was definitely not
    /// applied. Retry after the hint.
    #[error("cluster unavailable: {reason}")]
    Unavailable { retry_after_ms: u64, reason: String },
    /// The cluster shed load (proposer queue full); definitely not applied.
    #[error("cluster overloaded")]
    Overloaded { retry_after_ms: u64 },
    /// The write may or may not have been applied (timeout or leader change
    /// after proposing). Retrying with the same `(client_id, request_id)` is
    /// safe and gives the remembered result.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },
    /// A rolling upgrade is under way and some member's build cannot apply
    /// this command yet; definitely not applied, and it succeeds once every
    /// member runs the new build.
    #[error("upgrade pending: {reason}")]
    UpgradePending { retry_after_ms: u64, reason: String },
    /// The cluster refused the request as malformed (a gateway bug).
    #[error("request refused by the cluster: {reason}")]
    Invalid { reason: String },
    /// Anything else on the cluster side.
    #[error("cluster error: {reason}")]
    Internal { reason: String },
}

impl ClusterError {
    /// True when the same call may simply be tried again (after a pause).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClusterError::Unavailable { .. }
                | ClusterError::Overloaded { .. }
                | ClusterError::OutcomeUnknown { .. }
        )
    }

    /// True when the command definitely did not change state.
    pub fn is_definitely_not_applied(&self) -> bool {
        matches!(
            self,
            ClusterError::Unavailable { .. }
                | ClusterError::Overloaded { .. }
                | ClusterError::UpgradePending { .. }
                | ClusterError::Invalid { .. }
        )
    }
}

/// The gateway's only way into the replicated store.
///
/// Implementations must be cheap to call concurrently: handlers share one
/// instance behind an `Arc`.
pub trait Cluster: Send + Sync + 'static {
    /// Proposes one command and waits for its outcome.
    fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>>;

    /// [`Cluster::submit`] for a first send: a request whose
    /// `(client_id, request_id)` was never sent before (new ids from
    /// [`crate::ids::NewIds`]; never a retry, never an `Idempotency-Key`):
    /// the leader may answer a refusal it proves current without a log
    /// write, and the answer says so. The default proposes through `submit`.
    fn submit_first_send(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<FirstSendAnswer, ClusterError>> {
        Box::pin(async move {
            Ok(FirstSendAnswer {
                outcome: self.submit(request).await?,
                answered_without_log_write: false,
            })
        })
    }

    /// Answers a query at the asked consistency.
    fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<ReadAnswer, ClusterError>>;

    /// Streams the seat changes of `event_id` committed at log indexes
    /// `>= from_index`; `0` means "only changes applied from now on".
    fn watch(
        &self,
        event_id: String,
        from_index: u64,
    ) -> BoxFuture<'_, Result<WatchStream, ClusterError>>;

    /// Leader, term, members and indexes as one node sees them.
    fn status(&self) -> BoxFuture<'_, Result<ClusterStatus, ClusterError>>;
}

/// A [`Cluster`] whose writes (`submit`, `submit_first_send`) end after
/// `cluster_timeout_ms` with [`ClusterError::OutcomeUnknown`] (the write may
/// still commit); reads, watches and status pass through (their handlers
/// bound them and answer a timeout differently). The app wraps every cluster
/// in it at start, so anything wrapped around it (the deliberate bug
/// `gateway-retry-new-id`) bounds each of its calls the same way.
pub(crate) struct TimedWrites {
    inner: Arc<dyn Cluster>,
    /// `cluster_timeout_ms` of the settings.
    timeout: Duration,
}

impl TimedWrites {
    pub(crate) fn new(inner: Arc<dyn Cluster>, timeout: Duration) -> TimedWrites {
        TimedWrites { inner, timeout }
    }

    fn timed_out() -> ClusterError {
        ClusterError::OutcomeUnknown {
            reason: "timed out".into(),
        }
    }
}

impl Cluster for TimedWrites {
    fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.inner.submit(request))
                .await
                .unwrap_or_else(|_| Err(TimedWrites::timed_out()))
        })
    }

    fn submit_first_send(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<FirstSendAnswer, ClusterError>> {
        Box::pin(async move {
            tokio::time::timeout(self.timeout, self.inner.submit_first_send(request))
                .await
                .unwrap_or_else(|_| Err(TimedWrites::timed_out()))
        })
    }

    fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<ReadAnswer, ClusterError>> {
        self.inner.read(query, consistency)
    }

    fn watch(
        &self,
        event_id: String,
        from_index: u64,
    ) -> BoxFuture<'_, Result<WatchStream, ClusterError>> {
        self.inner.watch(event_id, from_index)
    }

    fn status(&self) -> BoxFuture<'_, Result<ClusterStatus, ClusterError>> {
        self.inner.status()
    }
}

#[cfg(test)]
mod tests {
    use state_machine::Command;

    use super::*;

    /// A cluster that never answers.
    struct Stuck;

    impl Cluster for Stuck {
        fn submit(&self, _request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
            Box::pin(std::future::pending())
        }

        fn read(
            &self,
            _query: Query,
            _consistency: Consistency,
        ) -> BoxFuture<'_, Result<ReadAnswer, ClusterError>> {
            Box::pin(std::future::pending())
        }

        fn watch(
            &self,
            _event_id: String,
            _from_index: u64,
        ) -> BoxFuture<'_, Result<WatchStream, ClusterError>> {
            Box::pin(std::future::pending())
        }

        fn status(&self) -> BoxFuture<'_, Result<ClusterStatus, ClusterError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_write_that_outlasts_the_bound_has_an_unknown_outcome() {
        // Goal: both kinds of write end at `cluster_timeout_ms` as "outcome unknown".
        let cluster = TimedWrites::new(Arc::new(Stuck), Duration::from_millis(20));
        let request = Request {
            client_id: 1,
            request_id: 1,
            command: Command::Tick,
        };
        let timed_out = ClusterError::OutcomeUnknown {
            reason: "timed out".into(),
        };
        assert_eq!(
            cluster.submit(request.clone()).await.unwrap_err(),
            timed_out
        );
        assert_eq!(
            cluster.submit_first_send(request).await.unwrap_err(),
            timed_out
        );
    }
}
