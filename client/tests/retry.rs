//! The client's routing and retry loop against scripted fake nodes (a tonic
//! server that answers Submit by a per-node plan), so every branch of the
//! retry semantics is checked without a real cluster.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::state_machine::{Command, Outcome, Reply};
use client::{Client, ClientError, ClientOptions, Ids, RequestIds};
use proto::booking as pb;
use proto::booking::booking_server::{Booking, BookingServer};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

/// What a fake node does with one Submit.
#[derive(Clone, Debug)]
enum Action {
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
struct FakeNode {
    id: u64,
    plan: Arc<Mutex<VecDeque<Action>>>,
    /// `(client_id, request_id)` of every Submit received, in order.
    seen: Arc<Mutex<Vec<(u64, u64)>>>,
    /// `first_send` of every Submit received, in order.
    first_sends: Arc<Mutex<Vec<bool>>>,
    /// The length of every SubmitBatch received, in order.
    batches: Arc<Mutex<Vec<usize>>>,
    /// SubmitBatchCompact calls refused (this fake predates the RPC).
    compact_calls: Arc<std::sync::atomic::AtomicUsize>,
    /// Per request received: it carried its command as JSON only (what a
    /// node without the compact RPC can read).
    json_only: Arc<Mutex<Vec<bool>>>,
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
async fn fake_node(id: u64, plan: Vec<Action>) -> (SocketAddr, FakeNode) {
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

fn fast_options() -> ClientOptions {
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

fn command() -> Command {
    Command::Release {
        hold_id: 1,
        holder: "alice".into(),
    }
}

// Goal: a follower's not_leader hint sends the write to the leader, which is then cached.
#[tokio::test]
async fn follows_the_leader_hint_and_caches_it() {
    let (leader_addr, leader) = fake_node(2, vec![]).await;
    let (follower_addr, follower) = fake_node(
        1,
        vec![
            Action::NotLeader {
                leader_addr: leader_addr.to_string()
            };
            3
        ],
    )
    .await;
    let client = Client::with_options([follower_addr.to_string()], fast_options()).unwrap();
    let first = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(first.attempts, 2);
    assert_eq!(first.leader_id, 2);
    assert_eq!(
        client.cached_leader(),
        Some(format!("http://{leader_addr}"))
    );
    let second = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(second.attempts, 1, "the cached leader is asked first");
    assert_eq!(follower.seen.lock().unwrap().len(), 1);
    assert_eq!(leader.seen.lock().unwrap().len(), 2);
}

// Goal: a write whose outcome is unknown is retried with the SAME (client_id, request_id).
#[tokio::test]
async fn unknown_outcome_is_retried_with_the_same_ids() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Hang(Duration::from_millis(2_000)),
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.attempts, 3);
    let seen = node.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|&ids| ids == (submitted.ids.client_id, submitted.ids.request_id)),
        "{seen:?}"
    );
    assert_eq!(submitted.ids.client_id, client.client_id());
    assert_eq!(
        submitted.outcome,
        Ok(Reply::Released {
            hold_id: submitted.ids.request_id
        })
    );
}

// Goal: request ids increase per write, and client ids are never 0.
#[tokio::test]
async fn request_ids_increase() {
    let (addr, node) = fake_node(1, vec![]).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    for _ in 0..3 {
        assert!(client
            .submit(Ids::New, command())
            .await
            .unwrap()
            .outcome
            .is_ok());
    }
    let seen = node.seen.lock().unwrap().clone();
    assert_ne!(client.client_id(), 0);
    assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "{seen:?}");
}

// Goal: exhausting retries after a possibly-applied attempt reports an unknown outcome, with the id to retry.
#[tokio::test]
async fn exhausted_after_unknown_is_outcome_unknown() {
    let plan = vec![
        Action::Error {
            code: "outcome_unknown",
            outcome: "unknown"
        };
        10
    ];
    let (addr, _node) = fake_node(1, plan).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::OutcomeUnknown {
                attempts: 5,
                request_id: Some(1),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.is_definite());
    assert!(err.is_retryable());
}

// Goal: a resend under the ids an unknown outcome reported carries exactly those ids.
#[tokio::test]
async fn resend_reuses_the_reported_ids() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown"
            };
            5
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ClientError::OutcomeUnknown {
        client_id,
        request_id: Some(request_id),
        ..
    } = client.submit(Ids::New, command()).await.unwrap_err()
    else {
        panic!("five unknown answers end in OutcomeUnknown with the ids")
    };
    let ids = RequestIds {
        client_id,
        request_id,
    };
    let submitted = client.submit(Ids::Resend(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    let seen = node.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    assert!(
        seen.iter().all(|&s| s == (client_id, request_id)),
        "{seen:?}"
    );
}

// Goal: exhausting retries that were all refused before proposing is a definite Unavailable.
#[tokio::test]
async fn exhausted_without_proposal_is_definite_unavailable() {
    let plan = vec![
        Action::Error {
            code: "no_leader",
            outcome: "not_applied"
        };
        10
    ];
    let (addr, _node) = fake_node(1, plan).await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { attempts: 5, .. }),
        "{err:?}"
    );
    assert!(err.is_definite());
    assert!(err.is_retryable());
}

// Goal: a node that refuses the request as malformed ends the call at once.
#[tokio::test]
async fn invalid_argument_is_rejected_without_retry() {
    let (addr, node) = fake_node(
        1,
        vec![Action::Error {
            code: "invalid_argument",
            outcome: "not_applied",
        }],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let err = client.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Rejected { code, .. } if code == "invalid_argument"),
        "{err:?}"
    );
    assert!(err.is_definite());
    assert!(!err.is_retryable());
    assert_eq!(node.seen.lock().unwrap().len(), 1);
}

// Goal: a dead endpoint (connection refused) is skipped for a live one, and counts as not applied.
#[tokio::test]
async fn refused_connection_moves_on_to_the_next_endpoint() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (addr, node) = fake_node(3, vec![]).await;
    let client =
        Client::with_options([dead_addr.to_string(), addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.leader_id, 3);
    assert_eq!(node.seen.lock().unwrap().len(), 1);

    let only_dead = Client::with_options([dead_addr.to_string()], fast_options()).unwrap();
    let err = only_dead.submit(Ids::New, command()).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Unavailable { .. }),
        "a refused connection applied nothing: {err:?}"
    );
}

// Goal: no endpoints, or an unusable one, is refused up front.
#[test]
fn bad_endpoints_are_refused() {
    let none: [&str; 0] = [];
    assert!(matches!(
        Client::connect(none),
        Err(ClientError::InvalidEndpoint { .. })
    ));
    assert!(matches!(
        Client::connect(["http://bad host:1"]),
        Err(ClientError::InvalidEndpoint { .. })
    ));
}

// Goal: only a first send is marked `first_send`: it stays marked across
// "not applied" refusals, and is unmarked from the first attempt after an
// unknown outcome on; explicit ids are a first send only as `Ids::FirstSend`.
#[tokio::test]
async fn only_first_sends_are_marked() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "no_leader",
                outcome: "not_applied",
            },
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let submitted = client.submit(Ids::New, command()).await.unwrap();
    assert_eq!(submitted.attempts, 3);
    assert!(!submitted.answered_without_log_write);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![true, true, false]);
    node.first_sends.lock().unwrap().clear();
    let own = |request_id| RequestIds {
        client_id: client.client_id(),
        request_id,
    };
    client
        .submit(Ids::Resend(own(77)), command())
        .await
        .unwrap();
    client
        .submit(Ids::FirstSend(own(78)), command())
        .await
        .unwrap();
    assert_eq!(*node.first_sends.lock().unwrap(), vec![false, true]);
}

// Goal: `Ids::FirstSend` follows the same rule as `Ids::New` within a call:
// marked across "not applied", unmarked after an unknown outcome.
#[tokio::test]
async fn first_send_ids_are_unmarked_after_an_unknown_outcome() {
    let (addr, node) = fake_node(
        1,
        vec![
            Action::Error {
                code: "overloaded",
                outcome: "not_applied",
            },
            Action::Error {
                code: "outcome_unknown",
                outcome: "unknown",
            },
            Action::Ok,
        ],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ids = client.mint_ids();
    let submitted = client.submit(Ids::FirstSend(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![true, true, false]);
}

// Goal: derived ids (another process may send them too) are sent unchanged
// and never marked `first_send`, not even on their first attempt.
#[tokio::test]
async fn derived_ids_are_never_marked_and_sent_unchanged() {
    let (addr, node) = fake_node(
        1,
        vec![Action::Error {
            code: "no_leader",
            outcome: "not_applied",
        }],
    )
    .await;
    let client = Client::with_options([addr.to_string()], fast_options()).unwrap();
    let ids = RequestIds {
        client_id: (1 << 63) | 5,
        request_id: 9,
    };
    let submitted = client.submit(Ids::Derived(ids), command()).await.unwrap();
    assert_eq!(submitted.ids, ids);
    assert_eq!(submitted.attempts, 2);
    assert_eq!(*node.first_sends.lock().unwrap(), vec![false, false]);
    assert_eq!(
        *node.seen.lock().unwrap(),
        vec![(ids.client_id, 9), (ids.client_id, 9)]
    );
}

/// Options for the coalescing tests: one batch in flight at a time, and an
/// attempt deadline far past the fake's deliberate delay.
fn batching_options() -> ClientOptions {
    ClientOptions {
        request_timeout_ms: 10_000,
        write_batch_max: 64,
        write_batches_in_flight_max: 1,
        ..fast_options()
    }
}

/// Writes `n` commands concurrently under new ids; returns their answers.
async fn concurrent_writes(client: &Client, n: usize) -> Vec<client::Submitted> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.submit(Ids::New, command()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every write succeeds"));
    }
    answers
}

// Goal: writes that arrive while a batch is in flight leave together in one
// SubmitBatch, and every caller gets its own request's answer (the fake
// answers `Released { hold_id: request_id }`), first sends still marked.
#[tokio::test]
async fn concurrent_writes_leave_in_batches_with_their_own_answers() {
    // The first request the node sees is slow, so the rest queue behind the
    // one batch slot and must leave in batches.
    let slow_first = vec![Action::After(
        Duration::from_millis(1_000),
        Box::new(Action::Ok),
    )];
    let (addr, node) = fake_node(1, slow_first).await;
    let client = Client::with_options([addr.to_string()], batching_options()).unwrap();
    let answers = concurrent_writes(&client, 40).await;
    for a in &answers {
        assert_eq!(
            a.outcome,
            Ok(Reply::Released {
                hold_id: a.ids.request_id
            }),
            "{a:?}"
        );
        assert_eq!(a.attempts, 1);
    }
    let batches = node.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|&len| len > 1),
        "no batch of more than one write: {batches:?}"
    );
    assert!(batches.iter().all(|&len| len <= 64), "{batches:?}");
    assert_eq!(node.seen.lock().unwrap().len(), 40, "each write sent once");
    assert!(node.first_sends.lock().unwrap().iter().all(|&f| f));
    // The fake predates SubmitBatchCompact: the client asked it once or a
    // few times (batches in flight together), then every write reached it
    // as JSON, each exactly once (the refused compact batches applied
    // nothing and were resent as JSON, not retried).
    let compact_calls = node
        .compact_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=batching_options().write_batches_in_flight_max).contains(&compact_calls),
        "{compact_calls} compact calls"
    );
    let json_only = node.json_only.lock().unwrap().clone();
    assert_eq!(json_only.len(), 40);
    assert!(
        json_only.iter().all(|&j| j),
        "a write reached the old node without JSON"
    );
}

// Goal: a request's failure inside a batch is handled like the same failure
// of a lone Submit: a follower's not_leader hint sends each write on to the
// leader, where it succeeds under the same ids.
#[tokio::test]
async fn a_not_leader_inside_a_batch_redirects_each_write() {
    let (leader_addr, leader) = fake_node(2, vec![]).await;
    let not_leader = Action::NotLeader {
        leader_addr: leader_addr.to_string(),
    };
    let mut plan = vec![Action::After(
        Duration::from_millis(1_000),
        Box::new(not_leader.clone()),
    )];
    plan.extend(std::iter::repeat_n(not_leader, 100));
    let (follower_addr, follower) = fake_node(1, plan).await;
    let client = Client::with_options([follower_addr.to_string()], batching_options()).unwrap();
    let answers = concurrent_writes(&client, 30).await;
    for a in &answers {
        assert_eq!(a.leader_id, 2, "{a:?}");
        assert!(a.attempts >= 2, "{a:?}");
    }
    assert!(
        follower.batches.lock().unwrap().iter().any(|&len| len > 1),
        "the follower saw no batch"
    );
    let mut sent_to_follower = follower.seen.lock().unwrap().clone();
    let mut answered_by_leader = leader.seen.lock().unwrap().clone();
    sent_to_follower.sort_unstable();
    answered_by_leader.sort_unstable();
    answered_by_leader.dedup();
    assert_eq!(sent_to_follower.len(), 30);
    assert_eq!(
        sent_to_follower, answered_by_leader,
        "every write went on to the leader under its own ids"
    );
}
