//! Cluster administration: every node's status and the leader they point
//! at, waiting for a leader, membership changes (add a learner, promote,
//! remove) and on-demand snapshots.
//!
//! Must not: write commands (that is [`super::write`]), or change membership
//! by anything but the node's membership RPCs (each is idempotent by value,
//! so a retry after an unknown outcome repeats it safely).

use std::time::{Duration, Instant};

use proto::booking as pb;

use super::retry::CallKind;
use super::{lock, Client};
use crate::backup::{hex, BackupError, BackupHeader, BackupWriter};
use crate::error::{normalize_endpoint, ClientError};
use crate::types::{ClusterStatus, EndpointStatus, Member, MembershipChange, NodeStatus};

impl Client {
    /// Asks every known endpoint for its status (concurrently, each within
    /// the request timeout) and picks the leader: the node that says it leads
    /// with the highest term. Learns member addresses and the leader.
    pub async fn status(&self) -> ClusterStatus {
        let endpoints = self.endpoints();
        let timeout = self.inner.options.request_timeout();
        let asks = endpoints.iter().map(|endpoint| {
            let endpoint = endpoint.clone();
            async move {
                let status = match self.channel(&endpoint) {
                    Err(e) => Err(e.to_string()),
                    Ok(mut c) => {
                        match tokio::time::timeout(timeout, c.status(pb::StatusRequest {})).await {
                            Ok(Ok(response)) => Ok(convert_status(response.into_inner())),
                            Ok(Err(status)) => {
                                Err(format!("{:?}: {}", status.code(), status.message()))
                            }
                            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
                        }
                    }
                };
                EndpointStatus { endpoint, status }
            }
        });
        let answers = futures::future::join_all(asks).await;
        let leader = answers
            .iter()
            .filter_map(|a| a.status.as_ref().ok())
            .filter(|s| s.is_leader())
            .max_by_key(|s| s.term)
            .cloned();
        for answer in &answers {
            if let Ok(status) = &answer.status {
                for member in &status.members {
                    self.learn(member.node_id, &member.addr);
                }
            }
        }
        if let Some(leader) = &leader {
            let endpoint = answers
                .iter()
                .find(|a| {
                    a.status
                        .as_ref()
                        .is_ok_and(|s| s.node_id == leader.node_id && s.is_leader())
                })
                .map(|a| a.endpoint.clone());
            *lock(&self.inner.leader) = endpoint;
        }
        ClusterStatus {
            endpoints: answers,
            leader,
        }
    }

    /// One endpoint's status.
    pub async fn node_status(&self, endpoint: &str) -> Result<NodeStatus, ClientError> {
        let endpoint = normalize_endpoint(endpoint);
        let mut c = self.channel(&endpoint)?;
        let timeout = self.inner.options.request_timeout();
        match tokio::time::timeout(timeout, c.status(pb::StatusRequest {})).await {
            Ok(Ok(response)) => Ok(convert_status(response.into_inner())),
            Ok(Err(status)) => Err(ClientError::Unavailable {
                attempts: 1,
                last_error: format!("{endpoint}: {status}"),
            }),
            Err(_) => Err(ClientError::Unavailable {
                attempts: 1,
                last_error: format!("{endpoint}: no answer within {} ms", timeout.as_millis()),
            }),
        }
    }

    /// Polls [`Client::status`] until some node leads, for at most `timeout`.
    /// Polls every 100 ms, so the loop is bounded by `timeout / 100 ms` rounds.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeStatus, ClientError> {
        const POLL_INTERVAL: Duration = Duration::from_millis(100);
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await;
            if let Some(leader) = status.leader {
                return Ok(leader);
            }
            let last_error = match status
                .endpoints
                .iter()
                .find_map(|e| e.status.as_ref().err())
            {
                Some(e) => e.clone(),
                None => "nodes answered, none leads".to_string(),
            };
            if Instant::now() + POLL_INTERVAL > deadline {
                return Err(ClientError::Unavailable {
                    attempts: 0,
                    last_error: format!(
                        "no leader within {} ms: {last_error}",
                        timeout.as_millis()
                    ),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Adds `node_id` at `addr` (`host:port`) as a learner; with `blocking`,
    /// answers once it has caught up with the leader's log.
    pub async fn add_learner(
        &self,
        node_id: u64,
        addr: &str,
        blocking: bool,
    ) -> Result<MembershipChange, ClientError> {
        let message = pb::AddLearnerRequest {
            node_id,
            addr: strip_scheme(addr),
            blocking,
        };
        self.learn(node_id, addr);
        let routed = self
            .route(CallKind::Admin, move |mut c| {
                let message = message.clone();
                async move { c.add_learner(message).await }
            })
            .await?;
        Ok(convert_membership(routed.value))
    }

    /// Makes `voter_ids` the complete voter set; `retain` keeps removed
    /// voters as learners.
    pub async fn change_membership(
        &self,
        voter_ids: Vec<u64>,
        retain: bool,
    ) -> Result<MembershipChange, ClientError> {
        let message = pb::ChangeMembershipRequest { voter_ids, retain };
        let routed = self
            .route(CallKind::Admin, move |mut c| {
                let message = message.clone();
                async move { c.change_membership(message).await }
            })
            .await?;
        Ok(convert_membership(routed.value))
    }

    /// Promotes a learner to voter: the leader's current voters plus `node_id`.
    pub async fn promote(&self, node_id: u64) -> Result<MembershipChange, ClientError> {
        let leader = self
            .wait_for_leader(self.inner.options.retry_budget())
            .await?;
        let mut voters: Vec<u64> = leader
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect();
        if !leader.members.iter().any(|m| m.node_id == node_id) {
            return Err(ClientError::Rejected {
                code: "membership".into(),
                message: format!("node {node_id} is not a member; add it as a learner first"),
            });
        }
        if !voters.contains(&node_id) {
            voters.push(node_id);
        }
        voters.sort_unstable();
        self.change_membership(voters, true).await
    }

    /// Removes a node from voters and learners.
    pub async fn remove_node(&self, node_id: u64) -> Result<MembershipChange, ClientError> {
        let message = pb::RemoveNodeRequest { node_id };
        let routed = self
            .route(CallKind::Admin, move |mut c| async move {
                c.remove_node(message).await
            })
            .await?;
        Ok(convert_membership(routed.value))
    }

    /// Asks one endpoint to build a snapshot now; returns its snapshot index
    /// when the request was accepted (the snapshot is built in the background).
    pub async fn trigger_snapshot(&self, endpoint: &str) -> Result<u64, ClientError> {
        let endpoint = normalize_endpoint(endpoint);
        let mut c = self.channel(&endpoint)?;
        let timeout = self.inner.options.request_timeout();
        match tokio::time::timeout(timeout, c.trigger_snapshot(pb::TriggerSnapshotRequest {})).await
        {
            Ok(Ok(response)) => Ok(response.into_inner().snapshot_index),
            Ok(Err(status)) => Err(ClientError::Unavailable {
                attempts: 1,
                last_error: format!("{endpoint}: {status}"),
            }),
            Err(_) => Err(ClientError::Unavailable {
                attempts: 1,
                last_error: format!("{endpoint}: no answer within {} ms", timeout.as_millis()),
            }),
        }
    }
}

impl Client {
    /// Saves a consistent backup of the cluster to `path`: the leader's
    /// snapshot at or after a linearizable read index (every write
    /// acknowledged before the call is in it), streamed into a temporary
    /// file, checked against its header, then renamed into place. One
    /// attempt at the current leader: a backup that failed is simply taken
    /// again.
    pub async fn save_snapshot(&self, path: &std::path::Path) -> Result<BackupHeader, ClientError> {
        let leader = self
            .wait_for_leader(self.inner.options.retry_budget())
            .await?;
        let endpoint = leader
            .members
            .iter()
            .find(|m| m.node_id == leader.node_id)
            .map(|m| normalize_endpoint(&m.addr))
            .ok_or_else(|| ClientError::Unavailable {
                attempts: 1,
                last_error: format!("leader {} is not in its own membership", leader.node_id),
            })?;
        let unavailable = |e: String| ClientError::Unavailable {
            attempts: 1,
            last_error: format!("{endpoint}: {e}"),
        };
        let mut c = self.channel(&endpoint)?;
        let mut stream = c
            .snapshot_save(pb::SnapshotSaveRequest {})
            .await
            .map_err(|s| unavailable(s.to_string()))?
            .into_inner();
        let header = match stream.message().await {
            Ok(Some(pb::SnapshotSaveChunk {
                part: Some(pb::snapshot_save_chunk::Part::Header(h)),
            })) => h,
            Ok(other) => {
                return Err(unavailable(format!(
                    "expected a header first, got {other:?}"
                )))
            }
            Err(s) => return Err(unavailable(s.to_string())),
        };
        let header = BackupHeader {
            cluster_name: header.cluster_name,
            last_log_index: header.last_log_index,
            last_log_term: header.last_log_term,
            last_log_node: header.last_log_node,
            state_hash: hex(&header.state_hash),
            data_bytes: header.data_bytes,
            data_blake3: hex(&header.data_blake3),
            saved_at_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let file_error = |e: BackupError| ClientError::Rejected {
            code: "backup".into(),
            message: e.to_string(),
        };
        let mut writer = BackupWriter::create(path, header).map_err(file_error)?;
        loop {
            match stream.message().await {
                Ok(Some(pb::SnapshotSaveChunk {
                    part: Some(pb::snapshot_save_chunk::Part::Data(d)),
                })) => writer.append(&d).map_err(file_error)?,
                Ok(None) => break,
                Ok(Some(other)) => {
                    return Err(unavailable(format!("unexpected message {other:?}")))
                }
                Err(s) => return Err(unavailable(format!("the stream broke: {s}"))),
            }
        }
        writer.finish().map_err(file_error)
    }
}

fn strip_scheme(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    addr.split_once("://")
        .map_or(addr, |(_, rest)| rest)
        .to_string()
}

fn convert_member(m: pb::Member) -> Member {
    Member {
        node_id: m.node_id,
        addr: m.addr,
        voter: m.voter,
    }
}

fn convert_membership(m: pb::MembershipResponse) -> MembershipChange {
    MembershipChange {
        log_index: m.log_index,
        members: m.members.into_iter().map(convert_member).collect(),
    }
}

fn convert_status(s: pb::StatusResponse) -> NodeStatus {
    NodeStatus {
        node_id: s.node_id,
        cluster_name: s.cluster_name,
        role: s.role,
        term: s.term,
        leader_id: s.leader_id,
        leader_addr: s.leader_addr,
        last_log_index: s.last_log_index,
        commit_index: s.commit_index,
        applied_index: s.applied_index,
        snapshot_index: s.snapshot_index,
        purged_index: s.purged_index,
        members: s.members.into_iter().map(convert_member).collect(),
        replication: s
            .replication
            .into_iter()
            .map(|r| (r.node_id, r.matched_index))
            .collect(),
        state_hash: s.state_hash.iter().map(|b| format!("{b:02x}")).collect(),
        answered_without_log_write: s.answered_without_log_write,
        admission: s.admission,
        incarnation: s.incarnation,
        cluster_time_agreed: s.cluster_time_agreed,
        own_clock_agrees: s.own_clock_agrees,
        clock_skew_ms: s.clock_skew_ms,
        command_set: s.command_set,
        cluster_command_set: s.cluster_command_set,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a membership address loses its scheme and trailing slash.
    #[test]
    fn addresses_lose_their_scheme() {
        assert_eq!(strip_scheme("http://10.0.0.1:7101/"), "10.0.0.1:7101");
        assert_eq!(strip_scheme("10.0.0.1:7101"), "10.0.0.1:7101");
    }
}
