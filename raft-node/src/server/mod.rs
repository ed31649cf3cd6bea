//! The gRPC services a node serves: `booking.v1.Booking` (clients) and
//! `booking.raft.v1.Raft` (peers), as thin adapters from protobuf to
//! `NodeCore` and openraft.
//!
//! Owns: who may call what (each RPC asks [`cluster_tls::Authorizer`] for
//! the role it needs, from the caller's verified certificate: peer RPCs a
//! node, membership and snapshots an admin, the rest any client of the
//! cluster's CA), decoding and validating every client byte (undecodable JSON or
//! postcard is INVALID_ARGUMENT, never a panic), request size bounds, and a
//! `tracing` span per RPC. Must not: hold state or make decisions beyond
//! "is this request well formed and meant for this node".
//!
//! Layout: this file has the router and the client service; `submit.rs`
//! its writes (`Submit`, `SubmitBatch`); `raft.rs` the peer service
//! (envelope, group and admission checks).

mod raft;
mod submit;

use raft::RaftService;
use submit::Form;

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use cluster_tls::{Authorizer, Role};
use futures::{Stream, StreamExt};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};
use proto::booking as pb;
use proto::booking::booking_server::{Booking, BookingServer};
use proto::raft::raft_server::RaftServer;
use state_machine::Query;
use tonic::transport::ServerTlsConfig;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::error::NodeError;
use crate::metrics::Counters;
use crate::node::{fatal_to_error, role_name, NodeCore};
use crate::types::NodeId;
use crate::watch::{ResyncReason, SubscribeRefused};

/// Builds the tonic router with both services and the raised message limits,
/// serving mutual TLS with `tls` (`None`: plaintext, `[tls] mode = "off"`).
pub fn router(
    core: Arc<NodeCore>,
    tls: Option<ServerTlsConfig>,
    auth: Authorizer,
) -> Result<tonic::transport::server::Router, NodeError> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| NodeError::Config(format!("[tls]: the node's certificate or key: {e}")))?;
    }
    Ok(builder
        .add_service(
            BookingServer::new(BookingService {
                core: core.clone(),
                auth: auth.clone(),
            })
            .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(proto::MAX_MESSAGE_BYTES),
        )
        .add_service(
            RaftServer::new(RaftService { core, auth })
                .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(proto::MAX_MESSAGE_BYTES),
        ))
}

fn invalid(what: &str, e: impl std::fmt::Display) -> Status {
    NodeError::InvalidArgument(format!("{what}: {e}")).to_status()
}

fn membership_error(
    core: &NodeCore,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> NodeError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_id {
            Some(id) if id != core.id => match f.leader_node {
                Some(n) => NodeError::NotLeader {
                    leader_id: id,
                    leader_addr: n.addr,
                },
                None => core.not_leader(Some(id)),
            },
            _ => NodeError::NoLeader,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::InProgress(_)
            | ChangeMembershipError::EmptyMembership(_)
            | ChangeMembershipError::LearnerNotFound(_) => NodeError::Membership(e.to_string()),
        },
        RaftError::Fatal(f) => fatal_to_error(f),
    }
}

fn members_of(core: &NodeCore) -> Vec<pb::Member> {
    let m = core.raft.metrics().borrow().membership_config.clone();
    let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
    m.membership()
        .nodes()
        .map(|(id, n)| pb::Member {
            node_id: *id,
            addr: n.addr.clone(),
            voter: voters.contains(id),
        })
        .collect()
}

/// The client API.
pub struct BookingService {
    core: Arc<NodeCore>,
    /// Who may call what (admin RPCs need the admin role).
    auth: Authorizer,
}

impl BookingService {
    /// The applied index and the state hash at it (`Status`): cached per
    /// applied index and hashed off the state lock by the store, since
    /// `/readyz`, `/v1/cluster` and `bookctl status` call `Status` often.
    async fn applied_and_hash(&self) -> Result<(u64, Vec<u8>), Status> {
        let (index, hash) = self
            .core
            .sm
            .applied_and_hash()
            .await
            .map_err(|e| e.to_status())?;
        Ok((index, hash.to_vec()))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchMessage, Status>> + Send>>;
type SnapshotSaveStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotSaveChunk, Status>> + Send>>;
/// Bytes of snapshot data per `SnapshotSave` message.
const SNAPSHOT_SAVE_CHUNK_BYTES: usize = 1 << 20;

fn resync(reason: ResyncReason, oldest_index: u64, applied_index: u64) -> pb::WatchMessage {
    let reason = match reason {
        ResyncReason::TooOld => pb::resync::Reason::TooOld,
        ResyncReason::SlowSubscriber => pb::resync::Reason::SlowSubscriber,
        ResyncReason::SnapshotInstalled => pb::resync::Reason::SnapshotInstalled,
        ResyncReason::Shutdown | ResyncReason::None => pb::resync::Reason::Shutdown,
    };
    pb::WatchMessage {
        kind: Some(pb::watch_message::Kind::Resync(pb::Resync {
            reason: reason as i32,
            oldest_index,
            applied_index,
        })),
    }
}

#[tonic::async_trait]
impl Booking for BookingService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.submit_one(request).await
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        self.submit_many(request, Form::Json).await
    }

    async fn submit_batch_compact(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        self.submit_many(request, Form::Compact).await
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        self.auth.check(&request, Role::Client)?;
        let r = request.into_inner();
        let span = tracing::info_span!("read", node_id = self.core.id, consistency = r.consistency);
        async move {
            let query: Query =
                serde_json::from_slice(&r.query_json).map_err(|e| invalid("query_json", e))?;
            match pb::Consistency::try_from(r.consistency) {
                Ok(pb::Consistency::Linearizable) => {
                    // BUG (fault-injection-bugs, stale-local-reads): answer from
                    // this node's applied state with no ReadIndex round and no
                    // leader check. Caught by the selftest's register workload
                    // (reads spread over every node): "linearizable per seat".
                    if !crate::bugs::active(crate::bugs::Bug::StaleLocalReads) {
                        self.core.linearizable_barrier().await?;
                    }
                }
                Ok(pb::Consistency::Stale) => Counters::add(&self.core.counters.reads_stale, 1),
                Err(_) => return Err(invalid("consistency", r.consistency)),
            }
            let (result, applied_index) = {
                let s = self.core.sm.read();
                (
                    s.booking.query(&query),
                    s.last_applied.map(|l| l.index).unwrap_or(0),
                )
            };
            let result_json = serde_json::to_vec(&result)
                .map_err(|e| NodeError::Internal(e.to_string()).to_status())?;
            Ok(Response::new(pb::ReadResponse {
                result_json,
                applied_index,
                node_id: self.core.id,
            }))
        }
        .instrument(span)
        .await
    }

    type WatchStream = WatchStream;
    type SnapshotSaveStream = SnapshotSaveStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.auth.check(&request, Role::Client)?;
        let r = request.into_inner();
        let _span = tracing::info_span!("watch", node_id = self.core.id, event = %r.event_id, from = r.from_index).entered();
        let hub = self.core.sm.hub().clone();
        let sub = match hub.subscribe(&r.event_id, r.from_index) {
            Ok(s) => s,
            Err(SubscribeRefused::TooManyWatchers) => {
                return Err(
                    NodeError::Overloaded("too many watchers on this node".into()).to_status(),
                )
            }
            Err(SubscribeRefused::TooOld {
                oldest_index,
                applied_index,
            }) => {
                let msg = resync(ResyncReason::TooOld, oldest_index, applied_index);
                let s: WatchStream = Box::pin(futures::stream::iter(vec![Ok(msg)]));
                return Ok(Response::new(s));
            }
        };
        // Each item: the next changes; when the hub drops the sender, one
        // final resync saying why, then the end of the stream.
        let stream = futures::stream::unfold(Some((sub, hub)), |state| async move {
            let (mut sub, hub) = state?;
            match sub.rx.recv().await {
                Some(c) => {
                    let changes = c
                        .changes
                        .into_iter()
                        .map(|ch| pb::SeatChange {
                            state_json: serde_json::to_vec(&ch.state).unwrap_or_default(),
                            event_id: ch.event_id,
                            seat: ch.seat,
                        })
                        .collect();
                    let msg = pb::WatchMessage {
                        kind: Some(pb::watch_message::Kind::Changes(pb::SeatChanges {
                            log_index: c.log_index,
                            changes,
                        })),
                    };
                    Some((Ok(msg), Some((sub, hub))))
                }
                None => {
                    let (applied, oldest) = hub.applied_and_oldest();
                    Some((Ok(resync(sub.end_reason(), oldest, applied)), None))
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        self.auth.check(&request, Role::Client)?;
        // Before the span guard: an entered span must not live across an await.
        let (applied_index, state_hash) = self.applied_and_hash().await?;
        let core = &self.core;
        let _span = tracing::debug_span!("status", node_id = core.id).entered();
        let m = core.raft.metrics().borrow().clone();
        let replication = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| pb::ReplicationProgress {
                        node_id: *id,
                        matched_index: l.map(|l| l.index),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let leader_addr = m
            .current_leader
            .and_then(|l| core.addr_of(l))
            .unwrap_or_default();
        let is_leader = m.current_leader == Some(core.id);
        Ok(Response::new(pb::StatusResponse {
            node_id: core.id,
            cluster_name: core.cluster_name.clone(),
            role: role_name(m.state).to_string(),
            term: m.current_term,
            leader_id: m.current_leader,
            leader_addr,
            last_log_index: m.last_log_index.unwrap_or(0),
            commit_index: core.log.committed_index().max(applied_index),
            applied_index,
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            members: members_of(core),
            replication,
            state_hash,
            answered_without_log_write: core
                .counters
                .answered_without_log_write
                .load(std::sync::atomic::Ordering::Relaxed),
            admission: core.admission.name().to_string(),
            incarnation: core.admission.incarnation.clone(),
            // Only the leader samples clocks; elsewhere these stay unset.
            cluster_time_agreed: is_leader && core.clock.cluster_time_agreed(),
            own_clock_agrees: is_leader && core.clock.own_clock_agrees(),
            clock_skew_ms: if is_leader { core.clock.skew_ms() } else { 0 },
            witnessed: core
                .witness
                .seen()
                .into_iter()
                .map(|(node_id, incarnation)| pb::PeerIncarnation {
                    node_id,
                    incarnation,
                })
                .collect(),
            witnessed_since_creation: core.witness.since_creation,
            command_set: core.command_sets.own(),
            cluster_command_set: if is_leader {
                core.command_set_floor().set
            } else {
                0
            },
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.auth.check(&request, Role::Admin)?;
        let r = request.into_inner();
        let span = tracing::info_span!("add_learner", node_id = self.core.id, learner = r.node_id, addr = %r.addr);
        async move {
            if r.addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("addr", format!("{:?} is not host:port", r.addr)));
            }
            self.core.ensure_leader()?;
            let resp = self
                .core
                .raft
                .add_learner(r.node_id, BasicNode { addr: r.addr }, r.blocking)
                .await
                .map_err(|e| membership_error(&self.core, e))?;
            Ok(Response::new(pb::MembershipResponse {
                log_index: resp.log_id.index,
                members: members_of(&self.core),
            }))
        }
        .instrument(span)
        .await
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.auth.check(&request, Role::Admin)?;
        let r = request.into_inner();
        let span = tracing::info_span!("change_membership", node_id = self.core.id, voters = ?r.voter_ids, retain = r.retain);
        async move {
            let voters: BTreeSet<NodeId> = r.voter_ids.iter().copied().collect();
            if voters.is_empty() {
                return Err(invalid("voter_ids", "empty"));
            }
            self.core.ensure_leader()?;
            // A learner becomes a voter only after it acknowledged entries:
            // one that is not admitted (an emptied disk) never does.
            let m = self.core.raft.metrics().borrow().clone();
            let current_voters: BTreeSet<NodeId> =
                m.membership_config.membership().voter_ids().collect();
            for id in voters.difference(&current_voters) {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).copied().flatten());
                if matched.is_none() {
                    return Err(Status::unavailable(format!(
                        "node {id} has acknowledged no entry as a learner yet (not admitted, or still \
                         catching up); retry the promotion"
                    )));
                }
            }
            let resp = self
                .core
                .raft
                .change_membership(voters, r.retain)
                .await
                .map_err(|e| membership_error(&self.core, e))?;
            Ok(Response::new(pb::MembershipResponse {
                log_index: resp.log_id.index,
                members: members_of(&self.core),
            }))
        }
        .instrument(span)
        .await
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        self.auth.check(&request, Role::Admin)?;
        let r = request.into_inner();
        let span = tracing::info_span!("remove_node", node_id = self.core.id, remove = r.node_id);
        async move {
            self.core.ensure_leader()?;
            let m = self.core.raft.metrics().borrow().membership_config.clone();
            let is_voter = m.membership().voter_ids().any(|v| v == r.node_id);
            let is_member = m.membership().get_node(&r.node_id).is_some();
            if !is_member {
                return Ok(Response::new(pb::MembershipResponse {
                    log_index: 0,
                    members: members_of(&self.core),
                }));
            }
            let change: ChangeMembers<NodeId, BasicNode> = if is_voter {
                ChangeMembers::RemoveVoters(BTreeSet::from([r.node_id]))
            } else {
                ChangeMembers::RemoveNodes(BTreeSet::from([r.node_id]))
            };
            let resp = self
                .core
                .raft
                .change_membership(change, false)
                .await
                .map_err(|e| membership_error(&self.core, e))?;
            Ok(Response::new(pb::MembershipResponse {
                log_index: resp.log_id.index,
                members: members_of(&self.core),
            }))
        }
        .instrument(span)
        .await
    }

    async fn trigger_snapshot(
        &self,
        request: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        self.auth.check(&request, Role::Admin)?;
        let span = tracing::info_span!("trigger_snapshot", node_id = self.core.id);
        self.core
            .raft
            .trigger()
            .snapshot()
            .instrument(span)
            .await
            .map_err(|e| fatal_to_error(e).to_status())?;
        let snapshot_index = self
            .core
            .raft
            .metrics()
            .borrow()
            .snapshot
            .map(|l| l.index)
            .unwrap_or(0);
        Ok(Response::new(pb::TriggerSnapshotResponse {
            snapshot_index,
        }))
    }

    async fn snapshot_save(
        &self,
        request: Request<pb::SnapshotSaveRequest>,
    ) -> Result<Response<SnapshotSaveStream>, Status> {
        // A backup is the whole state, every holder's data: admin only.
        self.auth.check(&request, Role::Admin)?;
        let span = tracing::info_span!("snapshot_save", node_id = self.core.id);
        let backup = crate::backup::backup_snapshot(&self.core)
            .instrument(span)
            .await
            .map_err(|e| e.to_status())?;
        tracing::info!(
            node_id = self.core.id,
            index = backup.last_log_id.index,
            bytes = backup.data.len(),
            "backup: streaming the snapshot"
        );
        let header = pb::SnapshotSaveHeader {
            cluster_name: self.core.cluster_name.clone(),
            last_log_index: backup.last_log_id.index,
            last_log_term: backup.last_log_id.leader_id.term,
            last_log_node: backup.last_log_id.leader_id.node_id,
            state_hash: backup.state_hash.to_vec(),
            data_bytes: backup.data.len() as u64,
            data_blake3: blake3::hash(&backup.data).as_bytes().to_vec(),
        };
        let data = Arc::new(backup.data);
        let chunks = data.len().div_ceil(SNAPSHOT_SAVE_CHUNK_BYTES);
        let first = futures::stream::once(async move {
            Ok(pb::SnapshotSaveChunk {
                part: Some(pb::snapshot_save_chunk::Part::Header(header)),
            })
        });
        // One chunk is copied at a time, when the client asks for it.
        let rest = futures::stream::iter(0..chunks).map(move |i| {
            let start = i * SNAPSHOT_SAVE_CHUNK_BYTES;
            let end = (start + SNAPSHOT_SAVE_CHUNK_BYTES).min(data.len());
            Ok(pb::SnapshotSaveChunk {
                part: Some(pb::snapshot_save_chunk::Part::Data(
                    data[start..end].to_vec(),
                )),
            })
        });
        Ok(Response::new(Box::pin(first.chain(rest))))
    }

    async fn handover(
        &self,
        request: Request<pb::HandoverRequest>,
    ) -> Result<Response<pb::HandoverResponse>, Status> {
        // Moving leadership is administration, like a membership change.
        self.auth.check(&request, Role::Admin)?;
        let r = request.into_inner();
        let core = &self.core;
        match pb::HandoverAction::try_from(r.action) {
            Ok(pb::HandoverAction::QuietLeader) => core.handover_quiet(r.pause_ms).await,
            Ok(pb::HandoverAction::HoldElections) => core.handover_hold_elections(r.pause_ms),
            Ok(pb::HandoverAction::Stand) => core.handover_stand().await,
            Ok(pb::HandoverAction::Resume) => {
                core.handover_resume();
                Ok(())
            }
            Ok(pb::HandoverAction::Unspecified) | Err(_) => Err(NodeError::InvalidArgument(
                format!("unknown handover action {}", r.action),
            )),
        }
        .map_err(|e| e.to_status())?;
        let m = core.raft.metrics().borrow().clone();
        Ok(Response::new(pb::HandoverResponse {
            role: role_name(m.state).to_string(),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
        }))
    }
}
