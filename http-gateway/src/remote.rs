//! [`Cluster`] over the real cluster: an adapter around `client::Client`
//! (gRPC with leader discovery and same-id retries).
//!
//! Owns: mapping `ClientError` to [`ClusterError`], watch items to
//! [`WatchItem`], and the node status to [`ClusterStatus`]. Must not: retry
//! on its own (the client's bounded retry loop already does, with the same
//! ids) or know protobuf.
//!
//! Exactly-once across gateways: a request whose ids the gateway derived
//! (an `Idempotency-Key`, a payment step of a hold; [`crate::ids`], top bit
//! set) is sent as `client::Ids::Derived` under exactly those
//! `(client_id, request_id)`, so the same key through ANY gateway, or through
//! this one after a restart, names the same request in the replicated
//! exactly-once table and gets the remembered outcome. Derived ids always go
//! through the log. A request with new ids (a repeat must be judged anew) is
//! sent as `client::Ids::New`: the client mints ids of its own in place of
//! the gateway's (both are random per process and never sent before, so the
//! semantics are the same), and the send is a first send.

use std::time::Duration;

use client::{Ids, RequestIds};
use futures::StreamExt;
use state_machine::{Outcome, Query, Request};

use crate::cluster::{
    BoxFuture, Cluster, ClusterError, ClusterStatus, Consistency, FirstSendAnswer, MemberStatus,
    ReadAnswer, WatchItem, WatchStream,
};

/// `Retry-After` hint when the cluster has no leader, in ms: about one
/// election timeout.
const NO_LEADER_RETRY_AFTER_MS: u64 = 1_000;
/// Retry-After of `upgrade_pending`: a rolling upgrade takes a node at a
/// time, so the refusal lasts minutes rather than seconds.
const UPGRADE_PENDING_RETRY_AFTER_MS: u64 = 30_000;

/// The real cluster, reached through `client::Client`.
#[derive(Clone)]
pub struct ClientCluster {
    client: client::Client,
}

impl ClientCluster {
    pub fn new(client: client::Client) -> ClientCluster {
        ClientCluster { client }
    }

    /// A client for every node of the config, with default options.
    pub fn from_config(
        config: &cluster_config::ClusterConfig,
    ) -> Result<ClientCluster, ClusterError> {
        client::Client::from_config(config, client::ClientOptions::default())
            .map(ClientCluster::new)
            .map_err(|e| ClusterError::Internal {
                reason: e.to_string(),
            })
    }
}

fn cluster_error(e: client::ClientError) -> ClusterError {
    use client::ClientError as E;
    match e {
        E::Unavailable { last_error, .. } => ClusterError::Unavailable {
            retry_after_ms: NO_LEADER_RETRY_AFTER_MS,
            reason: last_error,
        },
        E::OutcomeUnknown { last_error, .. } => ClusterError::OutcomeUnknown { reason: last_error },
        E::Protocol { reason } => ClusterError::OutcomeUnknown { reason },
        E::Rejected { code, message } if code == "overloaded" => {
            let _ = message;
            ClusterError::Overloaded {
                retry_after_ms: NO_LEADER_RETRY_AFTER_MS,
            }
        }
        E::Rejected { code, message } if code == "upgrade_pending" => {
            ClusterError::UpgradePending {
                retry_after_ms: UPGRADE_PENDING_RETRY_AFTER_MS,
                reason: message,
            }
        }
        E::Rejected { code, message } => ClusterError::Invalid {
            reason: format!("{code}: {message}"),
        },
        other => ClusterError::Internal {
            reason: other.to_string(),
        },
    }
}

impl ClientCluster {
    /// One write, from either trait method. Derived (keyed) ids are sent as
    /// [`Ids::Derived`], always via the log, since another gateway may have
    /// sent the same key. New gateway ids are sent as [`Ids::New`] (new ids of
    /// this client, never sent before), so the send is a first send and the
    /// leader may answer a refusal without a log write.
    async fn submit_routed(&self, request: Request) -> Result<FirstSendAnswer, ClusterError> {
        let ids = if crate::ids::is_derived(request.client_id) {
            Ids::Derived(RequestIds {
                client_id: request.client_id,
                request_id: request.request_id,
            })
        } else {
            Ids::New
        };
        let submitted = self.client.submit(ids, request.command).await;
        match submitted {
            Ok(submitted) => Ok(FirstSendAnswer {
                outcome: submitted.outcome,
                answered_without_log_write: submitted.answered_without_log_write,
            }),
            // `submit` returns refusals inside `Ok`; only
            // `Submitted::into_reply` makes this error. Keep the contract anyway.
            Err(client::ClientError::Refused(e)) => Ok(FirstSendAnswer {
                outcome: Err(e),
                answered_without_log_write: false,
            }),
            Err(e) => Err(cluster_error(e)),
        }
    }
}

impl Cluster for ClientCluster {
    fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move { Ok(self.submit_routed(request).await?.outcome) })
    }

    fn submit_first_send(
        &self,
        request: Request,
    ) -> BoxFuture<'_, Result<FirstSendAnswer, ClusterError>> {
        // `submit_routed` already sends new ids as first sends.
        Box::pin(self.submit_routed(request))
    }

    fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> BoxFuture<'_, Result<ReadAnswer, ClusterError>> {
        Box::pin(async move {
            let consistency = match consistency {
                Consistency::Linearizable => client::Consistency::Linearizable,
                Consistency::Stale => client::Consistency::Stale,
            };
            let (result, applied_index) = self
                .client
                .read(query, consistency)
                .await
                .map_err(cluster_error)?;
            Ok(ReadAnswer {
                result,
                applied_index,
            })
        })
    }

    fn watch(
        &self,
        event_id: String,
        from_index: u64,
    ) -> BoxFuture<'_, Result<WatchStream, ClusterError>> {
        Box::pin(async move {
            let stream = self
                .client
                .watch(&event_id, from_index)
                .await
                .map_err(cluster_error)?;
            let mapped = stream.map(|item| match item {
                Ok(client::WatchItem::Changes { log_index, changes }) => WatchItem::Changes {
                    index: log_index,
                    changes,
                },
                Ok(client::WatchItem::Resync {
                    reason,
                    oldest_index,
                    applied_index,
                }) => WatchItem::Resync {
                    reason: format!(
                        "{reason:?} (oldest kept {oldest_index}, applied {applied_index})"
                    ),
                },
                // A broken stream is a gap as far as the watcher knows.
                Err(e) => WatchItem::Resync {
                    reason: e.to_string(),
                },
            });
            // Stop after the first resync, as the trait promises.
            let mut ended = false;
            let bounded = mapped.take_while(move |item| {
                let keep = !ended;
                ended = ended || matches!(item, WatchItem::Resync { .. });
                futures::future::ready(keep)
            });
            Ok(bounded.boxed())
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<ClusterStatus, ClusterError>> {
        Box::pin(async move {
            let status = self.client.status().await;
            let node = match status.leader.clone() {
                Some(leader) => leader,
                None => status
                    .endpoints
                    .iter()
                    .find_map(|e| e.status.as_ref().ok().cloned())
                    .ok_or_else(|| ClusterError::Unavailable {
                        retry_after_ms: NO_LEADER_RETRY_AFTER_MS,
                        reason: "no node answered status".into(),
                    })?,
            };
            Ok(ClusterStatus {
                node_id: node.node_id,
                role: node.role,
                term: node.term,
                leader_id: node.leader_id,
                applied_index: node.applied_index,
                commit_index: node.commit_index,
                members: node
                    .members
                    .into_iter()
                    .map(|m| MemberStatus {
                        node_id: m.node_id,
                        addr: m.addr,
                        voter: m.voter,
                    })
                    .collect(),
            })
        })
    }
}

/// How long `booking gateway` should wait for a leader before serving anyway
/// (`/readyz` answers 503 until one exists).
pub const STARTUP_LEADER_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the node's `upgrade_pending` refusal reaches the gateway as its own error (definitely not applied), not as a malformed request.
    #[test]
    fn an_upgrade_pending_rejection_is_its_own_cluster_error() {
        let e = cluster_error(client::ClientError::Rejected {
            code: "upgrade_pending".into(),
            message: "node 3 applies only set 2".into(),
        });
        assert!(
            matches!(e, ClusterError::UpgradePending { retry_after_ms, .. } if retry_after_ms == UPGRADE_PENDING_RETRY_AFTER_MS),
            "{e:?}"
        );
        assert!(e.is_definitely_not_applied());
        assert!(!e.is_retryable(), "a retry at once cannot help");
    }
}
