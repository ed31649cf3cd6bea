//! The peer-to-peer Raft service (`booking.raft.v1.Raft`): AppendEntries,
//! Vote, InstallSnapshot, ReadIndex and the Clock sample, each from a node
//! certificate only.
//!
//! Owns: the envelope check (cluster, node id, Raft group) and the admission
//! check before anything is decoded, decoding openraft's messages, and
//! recording the sending leader's incarnation in the witness record before
//! openraft sees its entries (`store/witness.rs`).
//! Must not: act on a message of another cluster, node or group, or let a
//! node that is not admitted vote or acknowledge.

use std::sync::Arc;

use cluster_tls::{Authorizer, Role};
use openraft::raft::InstallSnapshotRequest;
use proto::raft as pr;
use proto::raft::raft_server::Raft as RaftRpc;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::network::{decode_body, encode_reply, ChunkHeader, WITNESS_INDEX_MIN};
use crate::node::NodeCore;
use crate::store::GroupId;
use crate::types::{NodeId, TypeConfig};

/// The peer-to-peer Raft service: every RPC needs a node certificate.
pub(super) struct RaftService {
    pub(super) core: Arc<NodeCore>,
    pub(super) auth: Authorizer,
}

impl RaftService {
    /// Refuses, before anything is decoded or applied, a message for another
    /// cluster, another node id or another Raft group. A node runs only
    /// [`GroupId::SOLE`] until events are sharded; a message for any other
    /// group can only come from a newer or miswired sender, and handing it to
    /// this group's Raft would mix two logs.
    fn check_envelope(
        &self,
        cluster_name: &str,
        to_node_id: u64,
        group_id: u64,
    ) -> Result<(), Status> {
        if cluster_name != self.core.cluster_name || to_node_id != self.core.id {
            return Err(Status::failed_precondition(format!(
                "this is cluster {:?} node {}, not cluster {cluster_name:?} node {to_node_id}",
                self.core.cluster_name, self.core.id
            )));
        }
        if GroupId(group_id) != GroupId::SOLE {
            return Err(Status::failed_precondition(format!(
                "cluster {:?} node {} runs only Raft group {}, not group {group_id}; \
                 the message was not applied",
                self.core.cluster_name,
                self.core.id,
                GroupId::SOLE.0
            )));
        }
        Ok(())
    }

    /// A data directory that is not admitted (new, or an emptied disk under
    /// an old id) answers no vote, append or snapshot: to the sender it is
    /// unreachable, so it neither votes nor counts toward a quorum.
    fn check_admitted(&self) -> Result<(), Status> {
        if self.core.admission.is_admitted() {
            return Ok(());
        }
        tracing::debug!(node_id = self.core.id, "refusing a Raft RPC: not admitted");
        Err(self.core.admission.refusal(self.core.id))
    }

    /// Records durably, before openraft sees the message, that the sending
    /// leader's incarnation holds entries up to `index` (see
    /// `store::witness`); nothing at or below the new-cluster prefix, and
    /// nothing for a sender of an older build (no incarnation).
    async fn witness_leader(
        &self,
        from: NodeId,
        incarnation: &str,
        index: u64,
    ) -> Result<(), Status> {
        if index <= WITNESS_INDEX_MIN || incarnation.is_empty() || from == self.core.id {
            return Ok(());
        }
        self.core
            .witness
            .record(from, incarnation)
            .await
            .map_err(Status::unavailable)
    }

    fn reply(&self, body: Result<Vec<u8>, String>) -> Result<Response<pr::RaftReply>, Status> {
        body.map(|b| {
            Response::new(pr::RaftReply {
                body: b.into(),
                incarnation: self.core.admission.incarnation.clone(),
            })
        })
        .map_err(Status::internal)
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<pr::RaftRequest>,
    ) -> Result<Response<pr::RaftReply>, Status> {
        self.auth.check(&request, Role::Node)?;
        let r = request.into_inner();
        self.check_envelope(&r.cluster_name, r.to_node_id, r.group_id)?;
        self.check_admitted()?;
        let req: openraft::raft::AppendEntriesRequest<TypeConfig> = decode_body(&r.body)
            .map_err(|e| Status::invalid_argument(format!("append_entries body: {e}")))?;
        let leader_index = req
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(req.prev_log_id.map(|l| l.index))
            .unwrap_or(0);
        self.witness_leader(r.from_node_id, &r.from_incarnation, leader_index)
            .await?;
        let span = tracing::debug_span!(
            "append_entries",
            node_id = self.core.id,
            from = r.from_node_id,
            entries = req.entries.len()
        );
        let res = self.core.raft.append_entries(req).instrument(span).await;
        self.reply(encode_reply(res))
    }

    async fn vote(
        &self,
        request: Request<pr::RaftRequest>,
    ) -> Result<Response<pr::RaftReply>, Status> {
        self.auth.check(&request, Role::Node)?;
        let r = request.into_inner();
        self.check_envelope(&r.cluster_name, r.to_node_id, r.group_id)?;
        self.check_admitted()?;
        let req: openraft::raft::VoteRequest<NodeId> = decode_body(&r.body)
            .map_err(|e| Status::invalid_argument(format!("vote body: {e}")))?;
        let span = tracing::info_span!("vote", node_id = self.core.id, from = r.from_node_id);
        let res = self.core.raft.vote(req).instrument(span).await;
        self.reply(encode_reply(res))
    }

    async fn install_snapshot(
        &self,
        request: Request<pr::SnapshotChunk>,
    ) -> Result<Response<pr::RaftReply>, Status> {
        self.auth.check(&request, Role::Node)?;
        let r = request.into_inner();
        self.check_envelope(&r.cluster_name, r.to_node_id, r.group_id)?;
        self.check_admitted()?;
        let (vote, meta, offset, done): ChunkHeader = decode_body(&r.header)
            .map_err(|e| Status::invalid_argument(format!("snapshot chunk header: {e}")))?;
        let snapshot_index = meta.last_log_id.map_or(0, |l| l.index);
        self.witness_leader(r.from_node_id, &r.from_incarnation, snapshot_index)
            .await?;
        let span = tracing::info_span!(
            "install_snapshot",
            node_id = self.core.id,
            from = r.from_node_id,
            offset,
            done,
            bytes = r.data.len()
        );
        let req = InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta,
            offset,
            data: r.data.to_vec(),
            done,
        };
        let res = self.core.raft.install_snapshot(req).instrument(span).await;
        self.reply(encode_reply(res))
    }

    async fn clock(
        &self,
        request: Request<pr::ClockRequest>,
    ) -> Result<Response<pr::ClockReply>, Status> {
        let r = request.into_inner();
        // A node has one wall clock whatever groups it runs: the sample is
        // not a group's message, so it is checked as the sole group's.
        self.check_envelope(&r.cluster_name, r.to_node_id, GroupId::SOLE.0)?;
        Ok(Response::new(pr::ClockReply {
            wall_ms: self.core.clock.now_ms(),
            command_set: self.core.command_sets.own(),
        }))
    }

    async fn read_index(
        &self,
        request: Request<pr::ReadIndexRequest>,
    ) -> Result<Response<pr::ReadIndexReply>, Status> {
        self.auth.check(&request, Role::Node)?;
        let r = request.into_inner();
        self.check_envelope(&r.cluster_name, r.to_node_id, r.group_id)?;
        let span =
            tracing::debug_span!("read_index", node_id = self.core.id, from = r.from_node_id);
        async move {
            self.core.ensure_leader()?;
            let read_index = self.core.read_index_coalesced().await?;
            Ok(Response::new(pr::ReadIndexReply { read_index }))
        }
        .instrument(span)
        .await
    }
}
