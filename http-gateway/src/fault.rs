//! The gateway's deliberate bug for `jepsen selftest`, and the choice made at
//! start.
//!
//! Owns: [`select_from_env`] (the rule of the `fault-bugs` crate, told whether
//! this crate has its bug compiled in, plus the start-up log line the selftest
//! looks for) and [`wrap`], which puts the bug around the cluster when it was
//! chosen. The one gateway bug, `gateway-retry-new-id` (cargo feature
//! `fault-injection-bugs` only): `RetryNewId`, a [`Cluster`] around the real
//! one that, when a hold, begin-payment or confirm ends with an unknown or
//! unavailable outcome, retries it itself with FRESH request ids, so a first
//! attempt that did commit is applied again. The correct gateway answers 503
//! and lets the caller retry with the same Idempotency-Key. Caught by the
//! selftest's gateway x kill case (`no_unrequested_holds`,
//! `no_phantom_bookings`).
//!
//! Must not: change anything unless `BOOKING_FAULT_BUG` names the gateway's
//! bug. Names of the node's bugs are accepted and ignored (one variable may
//! be set for a whole `booking up`); any other name, or any name in a build
//! without the feature, is refused, so the process exits 2. Without the
//! feature [`wrap`] returns the cluster it was given.

use std::sync::Arc;

use fault_bugs::{Bug, Component};

use crate::cluster::Cluster;

/// Whether this build has the gateway's bug (the cargo feature
/// `fault-injection-bugs`).
pub const COMPILED_IN: bool = cfg!(feature = "fault-injection-bugs");

/// Reads `BOOKING_FAULT_BUG` once, at start; logs
/// `fault-injection bug enabled: <name>` for the gateway's bug. `Err` names
/// the reason to refuse to start (the caller exits 2).
pub fn select_from_env() -> Result<(), String> {
    let selected = fault_bugs::select_from_env(COMPILED_IN)?;
    if selected.first {
        match selected.bug {
            Some(bug) if selected.of(Component::Gateway).is_some() => {
                tracing::warn!("{}{bug}", fault_bugs::ENABLED_MARKER);
            }
            Some(bug) => {
                tracing::info!(
                    "{}={bug} is a node bug; the gateway runs unbroken",
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

/// The cluster the handlers use: `cluster` itself, or `cluster` inside the
/// deliberate bug when `gateway-retry-new-id` was chosen at start. Wraps the
/// cluster whose writes are already bounded by `cluster_timeout_ms`, so each
/// buggy retry gets its own bound, as a handler's own retry would.
pub(crate) fn wrap(cluster: Arc<dyn Cluster>) -> Arc<dyn Cluster> {
    #[cfg(feature = "fault-injection-bugs")]
    if active(Bug::GatewayRetryNewId) {
        return Arc::new(retry_new_id::RetryNewId::new(cluster));
    }
    cluster
}

/// The bug itself (feature `fault-injection-bugs` only).
#[cfg(feature = "fault-injection-bugs")]
mod retry_new_id {
    use std::sync::Arc;
    use std::time::Duration;

    use state_machine::{Command, Outcome, Query, Request};

    use crate::cluster::{
        BoxFuture, Cluster, ClusterError, ClusterStatus, Consistency, FirstSendAnswer, ReadAnswer,
        WatchStream,
    };
    use crate::ids::NewIds;

    /// Extra attempts (each with fresh ids) the buggy retry makes.
    const RETRY_NEW_ID_ATTEMPTS_MAX: u32 = 3;
    /// Pause before each buggy retry, in ms.
    const RETRY_NEW_ID_PAUSE_MS: u64 = 200;

    /// BUG (fault-injection-bugs, gateway-retry-new-id): every call goes to
    /// `inner`; a hold, begin-payment or confirm that fails retryably is sent
    /// again under NEW ids, up to [`RETRY_NEW_ID_ATTEMPTS_MAX`] times.
    pub struct RetryNewId {
        inner: Arc<dyn Cluster>,
        /// Where the new ids come from (fresh: never sent before).
        new_ids: NewIds,
    }

    impl RetryNewId {
        pub fn new(inner: Arc<dyn Cluster>) -> RetryNewId {
            RetryNewId {
                inner,
                new_ids: NewIds::new(),
            }
        }
    }

    impl Cluster for RetryNewId {
        fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
            Box::pin(async move {
                let retry_command = matches!(
                    request.command,
                    Command::Hold { .. }
                        | Command::BeginCharge { .. }
                        | Command::ConfirmCharge { .. }
                )
                .then(|| request.command.clone());
                let mut result = self.inner.submit(request).await;
                // The deliberate bug: an unknown outcome is retried here with
                // NEW ids, so a first attempt that committed is applied twice.
                if let Some(command) = retry_command {
                    let mut extra = 0;
                    while extra < RETRY_NEW_ID_ATTEMPTS_MAX
                        && matches!(&result, Err(e) if e.is_retryable())
                    {
                        extra += 1;
                        tokio::time::sleep(Duration::from_millis(RETRY_NEW_ID_PAUSE_MS)).await;
                        let (client_id, request_id) = self.new_ids.next();
                        tracing::warn!(
                            command = command.name(),
                            attempt = extra,
                            "fault-injection bug: retrying an unknown outcome with new request ids"
                        );
                        result = self
                            .inner
                            .submit(Request {
                                client_id,
                                request_id,
                                command: command.clone(),
                            })
                            .await;
                    }
                }
                result
            })
        }

        fn submit_first_send(
            &self,
            request: Request,
        ) -> BoxFuture<'_, Result<FirstSendAnswer, ClusterError>> {
            self.inner.submit_first_send(request)
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
}
