//! [`Cluster`] over the real cluster: an adapter around `client::Client`
//! (gRPC with leader discovery and same-id retries).
//!
//! Owns: mapping `ClientError` to [`ClusterError`], watch items to
//! [`WatchItem`], and the node status to [`ClusterStatus`]. Must not: retry
//! on its own (the client's bounded retry loop already does, with the same
//! ids) or know protobuf.
//!
//! Caveat (exactly-once across gateways): `client::Client` sends every
//! command under its own random `client_id`; it has no call that takes the
//! caller's. So the gateway's `(client_id, request_id)` is folded into a
//! request id under the client's id: `request_id' = H(client_id, request_id)`
//! with the top bit set (the client's own counter never reaches it). Retries
//! through THIS gateway process (a repeated Idempotency-Key, a repeated
//! checkout) get the remembered outcome; a different gateway, or this one
//! after a restart, does not. Lifting this needs
//! `Client::submit_as(client_id, request_id, command)` in the client crate;
//! then [`ClientCluster::submit`] passes the ids through unchanged.

use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use state_machine::{Outcome, Query, Request};

use crate::cluster::{
    BoxFuture, Cluster, ClusterError, ClusterStatus, Consistency, MemberStatus, ReadAnswer,
    WatchItem, WatchStream,
};

/// `Retry-After` hint when the cluster has no leader, in ms: about one
/// election timeout.
const NO_LEADER_RETRY_AFTER_MS: u64 = 1_000;

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

    /// The request id under this client's id that stands for the gateway's
    /// `(client_id, request_id)`.
    fn folded_request_id(request: &Request) -> u64 {
        let digest = Sha256::new()
            .chain_update(b"booking-gateway-fold-v1")
            .chain_update(request.client_id.to_be_bytes())
            .chain_update(request.request_id.to_be_bytes())
            .finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) | (1 << 63)
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
        E::Rejected { code, message } => ClusterError::Invalid {
            reason: format!("{code}: {message}"),
        },
        other => ClusterError::Internal {
            reason: other.to_string(),
        },
    }
}

impl Cluster for ClientCluster {
    fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            let request_id = Self::folded_request_id(&request);
            match self
                .client
                .submit_with_id(request_id, request.command)
                .await
            {
                Ok(submitted) => Ok(submitted.outcome),
                // Only the flattening helpers return refusals as errors; keep
                // the contract anyway.
                Err(client::ClientError::Refused(e)) => Ok(Err(e)),
                Err(e) => Err(cluster_error(e)),
            }
        })
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

    #[test]
    fn folded_ids_are_stable_and_distinct() {
        // Goal: the same gateway ids fold to the same client request id; different ones do not.
        let r = |c, q| Request {
            client_id: c,
            request_id: q,
            command: state_machine::Command::Tick,
        };
        assert_eq!(
            ClientCluster::folded_request_id(&r(1, 2)),
            ClientCluster::folded_request_id(&r(1, 2))
        );
        assert_ne!(
            ClientCluster::folded_request_id(&r(1, 2)),
            ClientCluster::folded_request_id(&r(2, 1))
        );
        assert!(ClientCluster::folded_request_id(&r(1, 2)) >= 1 << 63);
    }
}
