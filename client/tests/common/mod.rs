//! A scripted fake node for the client's test binaries: a tonic server that
//! answers Submit and SubmitBatch by a per-node plan and records what it
//! received, so every branch of the retry and batching semantics is checked
//! without a real cluster. Must not: grow real node behaviour; a test that
//! needs a real cluster belongs in raft-node's tests.

// Each test binary uses part of the fake (retry.rs never reads the batch
// log, batching.rs never scripts errors), so the unused rest is expected.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::state_machine::{Command, Outcome, Reply};
use client::ClientOptions;
use proto::booking as pb;
use proto::booking::booking_server::{Booking, BookingServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// What a fake node does with one Submit.
#[derive(Clone, Debug)]
pub enum Action {
    Ok,
    NotLeader {
        leader_addr: String,
    },
    Error {
        code: &'static str,
        outcome: &'static str,
    },
    /// Answers only after this long (longer than the client's timeout).
    Hang(Duration),
    /// Waits this long (shorter than the client's timeout), then acts.
    After(Duration, Box<Action>),
}

#[derive(Clone)]
pub struct FakeNode {
    pub id: u64,
    pub plan: Arc<Mutex<VecDeque<Action>>>,
    /// `(client_id, request_id)` of every Submit received, in order.
    pub seen: Arc<Mutex<Vec<(u64, u64)>>>,
    /// `first_send` of every Submit received, in order.
    pub first_sends: Arc<Mutex<Vec<bool>>>,
    /// The length of every SubmitBatch received, in order.
    pub batches: Arc<Mutex<Vec<usize>>>,
    /// SubmitBatchCompact calls refused (this fake predates the RPC).
    pub compact_calls: Arc<std::sync::atomic::AtomicUsize>,
    /// Per request received: it carried its command as JSON only (what a
    /// node without the compact RPC can read).
    pub json_only: Arc<Mutex<Vec<bool>>>,
}

fn error_status(code: &'static str, outcome: &'static str) -> Status {
    let mut status = Status::unavailable(format!("fake {code}"));
    status
        .metadata_mut()
        .insert("booking-error", MetadataValue::from_static(code));
    status
        .metadata_mut()
        .insert("booking-outcome", MetadataValue::from_static(outcome));
    status
}

type WatchStream = Pin<Box<dyn futures::Stream<Item = Result<pb::WatchMessage, Status>> + Send>>;

impl FakeNode {
    /// One request by the plan (a Submit, or one request of a SubmitBatch).
    async fn answer(&self, request: pb::SubmitRequest) -> Result<pb::SubmitResponse, Status> {
        self.seen
            .lock()
            .unwrap()
            .push((request.client_id, request.request_id));
        self.first_sends.lock().unwrap().push(request.first_send);
        self.json_only
            .lock()
            .unwrap()
            .push(request.hot_command.is_none() && !request.command_json.is_empty());
        let mut action = self.plan.lock().unwrap().pop_front().unwrap_or(Action::Ok);
        if let Action::After(delay, then) = action {
            tokio::time::sleep(delay).await;
            action = *then;
        }
        match action {
            Action::Ok => {
                let outcome: Outcome = Ok(Reply::Released {
                    hold_id: request.request_id,
                });
                Ok(pb::SubmitResponse {
                    outcome_json: serde_json::to_vec(&outcome).unwrap(),
                    log_index: 7,
                    leader_id: self.id,
                    answered_without_log_write: false,
                    error: None,
                    hot_outcome: None,
                })
            }
            Action::NotLeader { leader_addr } => {
                let mut status = Status::failed_precondition("not the leader");
                status
                    .metadata_mut()
                    .insert("booking-error", MetadataValue::from_static("not_leader"));
                status
                    .metadata_mut()
                    .insert("booking-outcome", MetadataValue::from_static("not_applied"));
                status
                    .metadata_mut()
                    .insert("booking-leader-addr", leader_addr.parse().unwrap());
                Err(status)
            }
            Action::Error { code, outcome } => Err(error_status(code, outcome)),
            Action::Hang(d) => {
                tokio::time::sleep(d).await;
                Err(error_status("outcome_unknown", "unknown"))
            }
            Action::After(..) => unreachable!("unwrapped above"),
        }
    }
}

#[tonic::async_trait]
impl Booking for FakeNode {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.answer(request.into_inner()).await.map(Response::new)
    }
    /// The fake is a node that predates the compact RPC: clients must fall
    /// back to `SubmitBatch` with JSON commands.
    async fn submit_batch_compact(
        &self,
        _request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        self.compact_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(Status::unimplemented("SubmitBatchCompact"))
    }
    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        let requests = request.into_inner().requests;
        self.batches.lock().unwrap().push(requests.len());
        let mut responses = Vec::new();
        for r in requests {
            responses.push(match self.answer(r).await {
                Ok(response) => response,
                Err(status) => pb::SubmitResponse {
                    error: Some(pb::SubmitError {
                        grpc_code: status.code() as i32,
                        message: status.message().to_string(),
                        metadata: status
                            .metadata()
                            .clone()
                            .into_headers()
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
                            .collect(),
                    }),
                    ..Default::default()
                },
            });
        }
        Ok(Response::new(pb::SubmitBatchResponse { responses }))
    }
    async fn read(
        &self,
        _: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type WatchStream = WatchStream;
    async fn watch(
        &self,
        _: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn add_learner(
        &self,
        _: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn change_membership(
        &self,
        _: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_node(
        &self,
        _: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn trigger_snapshot(
        &self,
        _: Request<pb::TriggerSnapshotRequest>,
    ) -> Result<Response<pb::TriggerSnapshotResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn handover(
        &self,
        _: Request<pb::HandoverRequest>,
    ) -> Result<Response<pb::HandoverResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type SnapshotSaveStream = futures::stream::Empty<Result<pb::SnapshotSaveChunk, Status>>;

    async fn snapshot_save(
        &self,
        _: Request<pb::SnapshotSaveRequest>,
    ) -> Result<Response<Self::SnapshotSaveStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Starts a fake node on a free loopback port with the given plan.
pub async fn fake_node(id: u64, plan: Vec<Action>) -> (SocketAddr, FakeNode) {
    let node = FakeNode {
        id,
        plan: Arc::new(Mutex::new(plan.into())),
        seen: Arc::new(Mutex::new(Vec::new())),
        first_sends: Arc::new(Mutex::new(Vec::new())),
        batches: Arc::new(Mutex::new(Vec::new())),
        compact_calls: Arc::default(),
        json_only: Arc::new(Mutex::new(Vec::new())),
    };
    let incoming =
        tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let service = BookingServer::new(node.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, node)
}

pub fn fast_options() -> ClientOptions {
    // The fake node below serves plaintext.
    ClientOptions {
        tls: None,
        request_timeout_ms: 300,
        connect_timeout_ms: 300,
        attempts_max: 5,
        retry_budget_ms: 10_000,
        backoff_ms_initial: 5,
        backoff_ms_max: 20,
        ..ClientOptions::default()
    }
}

pub fn command() -> Command {
    Command::Release {
        hold_id: 1,
        holder: "alice".into(),
    }
}
