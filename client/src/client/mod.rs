//! [`Client`]: one pooled gRPC channel per node, a cached leader, and the one
//! bounded retry loop every call goes through.
//!
//! Retry semantics (exact):
//! - A write gets one `request_id` when it is created; every attempt of it
//!   carries the same `(client_id, request_id)`, so the state machine applies
//!   it at most once and answers a duplicate with the remembered outcome.
//! - An attempt goes to the cached leader, else to the next endpoint in
//!   round-robin order. `not_leader` with a leader hint sends the next attempt
//!   straight to that leader without a pause (after two redirects in a row the
//!   loop pauses, so two nodes with stale views cannot spin it).
//! - `no_leader`, `overloaded` and refused connections are "not applied":
//!   pause (exponential backoff with jitter) and try again, forgetting the
//!   cached leader.
//! - A timeout, a lost connection, `outcome_unknown`, `shutting_down`,
//!   `storage` or `internal` mean "may have been applied": pause and try again
//!   with the same ids (that is what makes the retry safe).
//! - `invalid_argument`, `membership`, or an unknown code marked `not_applied`
//!   end the call at once with [`ClientError::Rejected`].
//! - First sends: a write whose request id this client just minted
//!   ([`Client::submit`], [`Client::submit_detailed`], or
//!   [`Client::submit_new_with_id`]) is marked `first_send` until an attempt
//!   of it has an unknown outcome. The leader may answer such a send's
//!   refusal without a log write. Every later attempt, and every call of
//!   [`Client::submit_with_id`] (a caller's resend), is unmarked and goes
//!   through the log: an earlier copy may still be in flight and commit, so
//!   "refused" from the current state could be a lie.
//! - The loop stops after `attempts_max` attempts or `retry_budget_ms`, then
//!   answers [`ClientError::OutcomeUnknown`] if any attempt of a write may have
//!   been applied, else [`ClientError::Unavailable`] (definite: nothing applied).
//!   Reads have no effects, so an exhausted read is always `Unavailable`.
//!
//! Must not: know openraft or sled, or let a protobuf type out of this crate.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use state_machine::{
    Command, Outcome, Query, QueryResult, Reply, Request, SeatChange, SeatStatus, Selection,
};
use tonic::transport::{Channel, Endpoint};

use crate::error::{classify, normalize_endpoint, AttemptFailure, ClientError};
use crate::options::ClientOptions;
use crate::types::{
    ClusterStatus, Consistency, EndpointStatus, Member, MembershipChange, NodeStatus, ResyncReason,
    Submitted, WatchItem,
};

/// Most endpoints a client remembers (seeds plus addresses learned from
/// redirects and membership). Past it, new addresses are ignored with a
/// warning: a cluster is 3 to 5 nodes, and the list is walked round-robin.
pub const ENDPOINTS_MAX: usize = 64;

/// An async client of the booking cluster. Cheap to clone: clones share the
/// client id, the request-id counter, the channels and the leader cache, so
/// many tasks can use one client concurrently.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Random per client instance; never 0 (0 means "no dedupe" to the state machine).
    client_id: u64,
    /// The next request id to hand out; strictly increasing per client.
    next_request_id: AtomicU64,
    options: ClientOptions,
    /// Normalised endpoints (`http://host:port`): the seeds first, then learned
    /// ones. At most [`ENDPOINTS_MAX`].
    endpoints: Mutex<Vec<String>>,
    /// One lazily connected channel per endpoint; a channel reconnects by
    /// itself after its node comes back.
    channels: Mutex<HashMap<String, Channel>>,
    /// Node id → endpoint, learned from membership and redirects, for leader
    /// hints that carry only an id.
    addr_by_id: Mutex<HashMap<u64, String>>,
    /// The endpoint believed to lead, if any.
    leader: Mutex<Option<String>>,
    /// Round-robin position for calls with no leader known.
    cursor: AtomicUsize,
}

/// What a call is, for the retry loop: whether an exhausted call may have
/// changed state, and whether the answering node is the leader.
#[derive(Clone, Copy)]
enum CallKind {
    /// A command carrying a dedupe key; answered by the leader only.
    /// `fresh`: no earlier call sent this request id (of this client id).
    Write {
        client_id: u64,
        request_id: u64,
        fresh: bool,
    },
    /// Membership administration: answered by the leader, no dedupe key,
    /// idempotent by value.
    Admin,
    /// No effects; any node may answer.
    Read,
}

impl CallKind {
    fn answered_by_leader(self) -> bool {
        !matches!(self, CallKind::Read)
    }
}

struct Routed<T> {
    value: T,
    attempts: u32,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (each
/// critical section is a single assignment or lookup).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Client {
    /// A client for the cluster reachable at `endpoints` (`host:port` or
    /// `http://host:port`), with default options. Connects lazily: nodes that
    /// are down now are tried again on later calls.
    pub fn connect<I, S>(endpoints: I) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_options(endpoints, ClientOptions::default())
    }

    /// A client for every node of a cluster config.
    pub fn from_config(
        config: &cluster_config::ClusterConfig,
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        let client = Self::with_options(config.endpoints(), options)?;
        for node in &config.nodes {
            lock(&client.inner.addr_by_id)
                .insert(node.id, normalize_endpoint(&node.addr.to_string()));
        }
        Ok(client)
    }

    /// Like [`Client::connect`], with explicit bounds.
    pub fn with_options<I, S>(endpoints: I, options: ClientOptions) -> Result<Client, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = Vec::new();
        for endpoint in endpoints {
            let endpoint = normalize_endpoint(endpoint.as_ref());
            Endpoint::from_shared(endpoint.clone()).map_err(|e| ClientError::InvalidEndpoint {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
            if !list.contains(&endpoint) {
                list.push(endpoint);
            }
        }
        if list.is_empty() {
            return Err(ClientError::InvalidEndpoint {
                endpoint: String::new(),
                reason: "no endpoints given".into(),
            });
        }
        list.truncate(ENDPOINTS_MAX);
        let client_id = rand::random::<u64>().max(1);
        Ok(Client {
            inner: Arc::new(Inner {
                client_id,
                next_request_id: AtomicU64::new(1),
                options,
                endpoints: Mutex::new(list),
                channels: Mutex::new(HashMap::new()),
                addr_by_id: Mutex::new(HashMap::new()),
                leader: Mutex::new(None),
                cursor: AtomicUsize::new(0),
            }),
        })
    }

    /// This client's id, carried by every command it sends.
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// Hands out the next request id (strictly increasing per client).
    pub fn next_request_id(&self) -> u64 {
        self.inner.next_request_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The endpoints this client knows, seeds first.
    pub fn endpoints(&self) -> Vec<String> {
        lock(&self.inner.endpoints).clone()
    }

    /// The endpoint currently believed to lead, if any.
    pub fn cached_leader(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    // ----- writes -------------------------------------------------------

    /// Proposes one command and returns the store's outcome (a refusal is an
    /// `Ok(Err(BookingError))`). Retries as described in the module docs.
    pub async fn submit(&self, command: Command) -> Result<Outcome, ClientError> {
        Ok(self.submit_detailed(command).await?.outcome)
    }

    /// [`Client::submit`], also telling the request id, log index, answering
    /// leader and number of attempts.
    pub async fn submit_detailed(&self, command: Command) -> Result<Submitted, ClientError> {
        let request_id = self.next_request_id();
        self.submit_inner(self.inner.client_id, request_id, command, true)
            .await
    }

    /// Proposes `command` under an explicit request id of this client: how a
    /// caller resolves [`ClientError::OutcomeUnknown`] (same id, same command:
    /// the store returns the first outcome if the first attempt applied).
    /// Treated as a resend: always answered through the log.
    pub async fn submit_with_id(
        &self,
        request_id: u64,
        command: Command,
    ) -> Result<Submitted, ClientError> {
        self.submit_inner(self.inner.client_id, request_id, command, false)
            .await
    }

    /// Proposes `command` under a caller-chosen `(client_id, request_id)`,
    /// for callers whose retries may come through another process: the HTTP
    /// gateway derives both ids from (user, `Idempotency-Key`), so the same
    /// key sent to any gateway, or to one after a restart, names the same
    /// request and gets the outcome the state machine remembered.
    ///
    /// The caller owns the uniqueness of its ids: a pair reused for a
    /// different command is answered with the first command's outcome.
    /// `client_id` must not be 0 (0 means "never deduplicated" to the state
    /// machine; such a call is rejected here with `invalid_argument`, nothing
    /// sent). Callers should keep their client ids apart from random ones
    /// (the gateway sets the top bit on derived ids).
    ///
    /// The command always goes through the log, on every attempt: its outcome
    /// must be in the exactly-once table, or a retry through another process
    /// could be judged anew and answered differently.
    pub async fn submit_as(
        &self,
        client_id: u64,
        request_id: u64,
        command: Command,
    ) -> Result<Submitted, ClientError> {
        if client_id == 0 {
            return Err(ClientError::Rejected {
                code: "invalid_argument".into(),
                message: "client_id 0 is never deduplicated; submit_as needs a non-zero id".into(),
            });
        }
        self.submit_inner(client_id, request_id, command, false)
            .await
    }

    /// [`Client::submit_with_id`] for an id the caller guarantees was never
    /// sent before by this client (a fresh id of its own scheme): the first
    /// attempt is marked `first_send`, so the leader may answer a refusal
    /// without a log write. Never use it to resend.
    pub async fn submit_new_with_id(
        &self,
        request_id: u64,
        command: Command,
    ) -> Result<Submitted, ClientError> {
        self.submit_inner(self.inner.client_id, request_id, command, true)
            .await
    }

    async fn submit_inner(
        &self,
        client_id: u64,
        request_id: u64,
        command: Command,
        fresh: bool,
    ) -> Result<Submitted, ClientError> {
        let request = Request {
            client_id,
            request_id,
            command,
        };
        let command_json =
            serde_json::to_vec(&request.command).map_err(|e| ClientError::Protocol {
                reason: format!("command does not encode: {e}"),
            })?;
        let message = pb::SubmitRequest {
            client_id: request.client_id,
            request_id,
            command_json,
            first_send: false,
        };
        let routed = self
            .route_marked(
                CallKind::Write {
                    client_id,
                    request_id,
                    fresh,
                },
                move |mut c, first_send| {
                    let mut message = message.clone();
                    message.first_send = first_send;
                    async move { c.submit(message).await }
                },
            )
            .await?;
        let response = routed.value;
        Ok(Submitted {
            outcome: decode_outcome(&response.outcome_json)?,
            request_id,
            log_index: response.log_index,
            leader_id: response.leader_id,
            attempts: routed.attempts,
            answered_without_log_write: response.answered_without_log_write,
        })
    }

    /// Proposes several commands together; each gets its own request id and
    /// outcome, in order. All-or-nothing at the RPC level: on an unknown
    /// outcome the whole batch is retried with the same ids.
    pub async fn submit_many(&self, commands: Vec<Command>) -> Result<Vec<Submitted>, ClientError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let n = commands.len() as u64;
        let first_id = self.inner.next_request_id.fetch_add(n, Ordering::Relaxed);
        let mut requests = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let command_json = serde_json::to_vec(command).map_err(|e| ClientError::Protocol {
                reason: format!("command does not encode: {e}"),
            })?;
            requests.push(pb::SubmitRequest {
                client_id: self.inner.client_id,
                request_id: first_id + i as u64,
                command_json,
                // SubmitBatch always goes through the log.
                first_send: false,
            });
        }
        let message = pb::SubmitBatchRequest { requests };
        let routed = self
            .route(
                CallKind::Write {
                    client_id: self.inner.client_id,
                    request_id: first_id,
                    fresh: false,
                },
                move |mut c| {
                    let message = message.clone();
                    async move { c.submit_batch(message).await }
                },
            )
            .await?;
        let responses = routed.value.responses;
        if responses.len() != commands.len() {
            return Err(ClientError::Protocol {
                reason: format!(
                    "{} outcomes for {} commands",
                    responses.len(),
                    commands.len()
                ),
            });
        }
        responses
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Ok(Submitted {
                    outcome: decode_outcome(&r.outcome_json)?,
                    request_id: first_id + i as u64,
                    log_index: r.log_index,
                    leader_id: r.leader_id,
                    attempts: routed.attempts,
                    answered_without_log_write: r.answered_without_log_write,
                })
            })
            .collect()
    }

    /// Proposes a command and flattens the store's refusal into
    /// [`ClientError::Refused`].
    pub async fn execute(&self, command: Command) -> Result<Reply, ClientError> {
        self.submit(command).await?.map_err(ClientError::Refused)
    }

    /// Holds seats for `holder`: see [`Selection`].
    pub async fn hold(
        &self,
        event_id: &str,
        holder: &str,
        selection: Selection,
    ) -> Result<Reply, ClientError> {
        self.execute(Command::Hold {
            event_id: event_id.to_string(),
            holder: holder.to_string(),
            selection,
        })
        .await
    }

    /// Releases a hold (owner only).
    pub async fn release(&self, hold_id: u64, holder: &str) -> Result<Reply, ClientError> {
        self.execute(Command::Release {
            hold_id,
            holder: holder.to_string(),
        })
        .await
    }

    /// Confirms a hold into a booking with a payment reference (owner only).
    pub async fn confirm(
        &self,
        hold_id: u64,
        holder: &str,
        payment_ref: &str,
    ) -> Result<Reply, ClientError> {
        self.execute(Command::Confirm {
            hold_id,
            holder: holder.to_string(),
            payment_ref: payment_ref.to_string(),
        })
        .await
    }

    // ----- reads --------------------------------------------------------

    /// Answers a query at the requested consistency, with the applied index
    /// the answer reflects. Any node may answer.
    pub async fn read(
        &self,
        query: Query,
        consistency: Consistency,
    ) -> Result<(QueryResult, u64), ClientError> {
        let query_json = serde_json::to_vec(&query).map_err(|e| ClientError::Protocol {
            reason: format!("query does not encode: {e}"),
        })?;
        let consistency = match consistency {
            Consistency::Linearizable => pb::Consistency::Linearizable,
            Consistency::Stale => pb::Consistency::Stale,
        } as i32;
        let message = pb::ReadRequest {
            consistency,
            query_json,
        };
        let routed = self
            .route(CallKind::Read, move |mut c| {
                let message = message.clone();
                async move { c.read(message).await }
            })
            .await?;
        let result: QueryResult =
            serde_json::from_slice(&routed.value.result_json).map_err(|e| {
                ClientError::Protocol {
                    reason: format!("query result does not decode: {e}"),
                }
            })?;
        Ok((result, routed.value.applied_index))
    }

    /// Committed seat changes of `event_id` from log index `from_index` (0:
    /// from now on). The stream ends after a [`WatchItem::Resync`] or an
    /// error; resume by watching again from the last index seen + 1.
    pub async fn watch(
        &self,
        event_id: &str,
        from_index: u64,
    ) -> Result<impl Stream<Item = Result<WatchItem, ClientError>> + Send + 'static, ClientError>
    {
        let message = pb::WatchRequest {
            event_id: event_id.to_string(),
            from_index,
        };
        let routed = self
            .route(CallKind::Read, move |mut c| {
                let message = message.clone();
                async move { c.watch(message).await }
            })
            .await?;
        let stream = futures::stream::unfold(Some(routed.value), |state| async move {
            let mut streaming = state?;
            match streaming.message().await {
                Ok(Some(message)) => match convert_watch(message) {
                    Ok(item @ WatchItem::Resync { .. }) => Some((Ok(item), None)),
                    Ok(item) => Some((Ok(item), Some(streaming))),
                    Err(e) => Some((Err(e), None)),
                },
                Ok(None) => None,
                Err(status) => Some((
                    Err(ClientError::Unavailable {
                        attempts: 1,
                        last_error: format!("watch stream broke: {status}"),
                    }),
                    None,
                )),
            }
        });
        Ok(stream)
    }

    // ----- cluster ------------------------------------------------------

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

    // ----- routing ------------------------------------------------------

    fn channel(&self, endpoint: &str) -> Result<BookingClient<Channel>, ClientError> {
        let mut channels = lock(&self.inner.channels);
        let channel = match channels.get(endpoint) {
            Some(channel) => channel.clone(),
            None => {
                let channel = Endpoint::from_shared(endpoint.to_string())
                    .map_err(|e| ClientError::InvalidEndpoint {
                        endpoint: endpoint.to_string(),
                        reason: e.to_string(),
                    })?
                    .connect_timeout(self.inner.options.connect_timeout())
                    .tcp_nodelay(true)
                    .connect_lazy();
                channels.insert(endpoint.to_string(), channel.clone());
                channel
            }
        };
        Ok(BookingClient::new(channel)
            .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(proto::MAX_MESSAGE_BYTES))
    }

    /// Remembers a node's address (from membership or a redirect).
    fn learn(&self, node_id: u64, addr: &str) {
        let endpoint = normalize_endpoint(addr);
        lock(&self.inner.addr_by_id).insert(node_id, endpoint.clone());
        let mut endpoints = lock(&self.inner.endpoints);
        if !endpoints.contains(&endpoint) {
            if endpoints.len() < ENDPOINTS_MAX {
                endpoints.push(endpoint);
            } else {
                tracing::warn!(%endpoint, limit = ENDPOINTS_MAX, "endpoint list full; not remembering a new node address");
            }
        }
    }

    fn next_endpoint(&self) -> String {
        let endpoints = lock(&self.inner.endpoints);
        let i = self.inner.cursor.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints[i].clone()
    }

    /// Forgets the cached leader if it is `endpoint` (another task may have
    /// learned a newer one meanwhile).
    fn forget_leader(&self, endpoint: &str) {
        let mut leader = lock(&self.inner.leader);
        if leader.as_deref() == Some(endpoint) {
            *leader = None;
        }
    }

    async fn route<T, F, Fut>(&self, kind: CallKind, mut call: F) -> Result<Routed<T>, ClientError>
    where
        F: FnMut(BookingClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.route_marked(kind, move |c, _first_send| call(c)).await
    }

    /// The retry loop. `call` also gets whether this attempt is a first send:
    /// a fresh write none of whose earlier attempts may have been applied
    /// (redirects and "not applied" refusals leave nothing in flight).
    async fn route_marked<T, F, Fut>(
        &self,
        kind: CallKind,
        mut call: F,
    ) -> Result<Routed<T>, ClientError>
    where
        F: FnMut(BookingClient<Channel>, bool) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        /// Redirects followed in a row without pausing.
        const REDIRECTS_IN_A_ROW_MAX: u32 = 2;
        let options = &self.inner.options;
        let started = Instant::now();
        let budget = options.retry_budget();
        let mut attempts: u32 = 0;
        let mut failures: u32 = 0;
        let mut redirects_in_a_row: u32 = 0;
        let mut maybe_applied = false;
        let mut last_error = String::from("no attempt made");
        let mut redirect_to: Option<String> = None;
        while attempts < options.attempts_max.max(1) {
            let elapsed = started.elapsed();
            if elapsed >= budget {
                break;
            }
            let target = redirect_to
                .take()
                .or_else(|| self.cached_leader())
                .unwrap_or_else(|| self.next_endpoint());
            attempts += 1;
            let timeout = options.request_timeout().min(budget - elapsed);
            let client = self.channel(&target)?;
            let first_send = matches!(kind, CallKind::Write { fresh: true, .. }) && !maybe_applied;
            let failure = match tokio::time::timeout(timeout, call(client, first_send)).await {
                Ok(Ok(response)) => {
                    if kind.answered_by_leader() {
                        *lock(&self.inner.leader) = Some(target);
                    }
                    return Ok(Routed {
                        value: response.into_inner(),
                        attempts,
                    });
                }
                Ok(Err(status)) => classify(&status),
                Err(_) => AttemptFailure::Unknown {
                    message: format!("no answer within {} ms", timeout.as_millis()),
                },
            };
            tracing::debug!(%target, attempt = attempts, ?failure, "attempt failed");
            match failure {
                AttemptFailure::NotLeader {
                    leader_id,
                    leader_addr,
                    message,
                } => {
                    last_error = format!("{target}: {message}");
                    let hint = leader_addr.or_else(|| {
                        leader_id.and_then(|id| lock(&self.inner.addr_by_id).get(&id).cloned())
                    });
                    if let (Some(id), Some(addr)) = (leader_id, &hint) {
                        self.learn(id, addr);
                    }
                    match hint {
                        Some(leader)
                            if leader != target && redirects_in_a_row < REDIRECTS_IN_A_ROW_MAX =>
                        {
                            redirects_in_a_row += 1;
                            *lock(&self.inner.leader) = Some(leader.clone());
                            redirect_to = Some(leader);
                            continue;
                        }
                        Some(leader) => {
                            // Stale views pointing at each other: pause, then try the hint.
                            *lock(&self.inner.leader) = Some(leader);
                        }
                        None => self.forget_leader(&target),
                    }
                }
                AttemptFailure::NotApplied { message } => {
                    last_error = format!("{target}: {message}");
                    self.forget_leader(&target);
                }
                AttemptFailure::Unknown { message } => {
                    last_error = format!("{target}: {message}");
                    maybe_applied = true;
                    self.forget_leader(&target);
                }
                AttemptFailure::Definite { code, message } => {
                    return Err(ClientError::Rejected {
                        code,
                        message: format!("{target}: {message}"),
                    });
                }
            }
            redirects_in_a_row = 0;
            let pause = options.backoff(failures);
            failures += 1;
            if started.elapsed() + pause >= budget || attempts >= options.attempts_max {
                break;
            }
            tokio::time::sleep(pause).await;
        }
        Err(match kind {
            CallKind::Write {
                client_id,
                request_id,
                ..
            } if maybe_applied => ClientError::OutcomeUnknown {
                client_id,
                request_id: Some(request_id),
                attempts,
                last_error,
            },
            CallKind::Admin if maybe_applied => ClientError::OutcomeUnknown {
                client_id: self.inner.client_id,
                request_id: None,
                attempts,
                last_error,
            },
            _ => ClientError::Unavailable {
                attempts,
                last_error,
            },
        })
    }
}

// ----- conversions at the protobuf boundary ---------------------------------

fn decode_outcome(bytes: &[u8]) -> Result<Outcome, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Protocol {
        reason: format!("outcome does not decode: {e}"),
    })
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
    }
}

fn convert_watch(message: pb::WatchMessage) -> Result<WatchItem, ClientError> {
    use pb::watch_message::Kind;
    match message.kind {
        Some(Kind::Changes(c)) => {
            let mut changes = Vec::with_capacity(c.changes.len());
            for change in c.changes {
                let state: SeatStatus =
                    serde_json::from_slice(&change.state_json).map_err(|e| {
                        ClientError::Protocol {
                            reason: format!("seat state does not decode: {e}"),
                        }
                    })?;
                changes.push(SeatChange {
                    event_id: change.event_id,
                    seat: change.seat,
                    state,
                });
            }
            Ok(WatchItem::Changes {
                log_index: c.log_index,
                changes,
            })
        }
        Some(Kind::Resync(r)) => {
            let reason = match pb::resync::Reason::try_from(r.reason) {
                Ok(pb::resync::Reason::TooOld) => ResyncReason::TooOld,
                Ok(pb::resync::Reason::SlowSubscriber) => ResyncReason::SlowSubscriber,
                Ok(pb::resync::Reason::SnapshotInstalled) => ResyncReason::SnapshotInstalled,
                Ok(pb::resync::Reason::Shutdown) => ResyncReason::Shutdown,
                _ => ResyncReason::Unspecified,
            };
            Ok(WatchItem::Resync {
                reason,
                oldest_index: r.oldest_index,
                applied_index: r.applied_index,
            })
        }
        None => Err(ClientError::Protocol {
            reason: "watch message without a kind".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: endpoints are normalised to one form, with or without a scheme.
    #[test]
    fn endpoints_are_normalised_and_deduplicated() {
        let client =
            Client::connect(["127.0.0.1:1", "http://127.0.0.1:1/", "http://127.0.0.1:2"]).unwrap();
        assert_eq!(
            client.endpoints(),
            vec!["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        assert_eq!(strip_scheme("http://10.0.0.1:7101/"), "10.0.0.1:7101");
    }

    // Goal: submit_as refuses client id 0 (never deduplicated) before sending anything.
    #[tokio::test]
    async fn submit_as_refuses_client_id_zero() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        let e = client
            .submit_as(0, 1, Command::Tick)
            .await
            .expect_err("client id 0 is refused");
        assert_eq!(e.code(), "invalid_argument");
        assert!(e.is_definite());
    }

    // Goal: learned addresses are bounded by ENDPOINTS_MAX.
    #[test]
    fn learned_endpoints_are_bounded() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        for port in 2..(ENDPOINTS_MAX as u64 + 20) {
            client.learn(port, &format!("127.0.0.1:{port}"));
        }
        assert_eq!(client.endpoints().len(), ENDPOINTS_MAX);
    }

    // Goal: every backoff pause stays within [cap/2, cap] and the cap holds.
    #[test]
    fn backoff_is_bounded() {
        let options = ClientOptions {
            backoff_ms_initial: 10,
            backoff_ms_max: 200,
            ..ClientOptions::default()
        };
        for failures in 0..40 {
            let pause = options.backoff(failures).as_millis() as u64;
            let cap = (10u64 << failures.min(16)).min(200);
            assert!(
                pause >= cap / 2 && pause <= cap,
                "failures {failures}: {pause} ms"
            );
        }
    }

    // Goal: gRPC statuses map to the documented retry classes.
    #[test]
    fn statuses_are_classified_as_documented() {
        let with = |code: &'static str, outcome: &'static str| {
            let mut status = tonic::Status::unavailable("x");
            status
                .metadata_mut()
                .insert("booking-error", code.parse().unwrap());
            status
                .metadata_mut()
                .insert("booking-outcome", outcome.parse().unwrap());
            classify(&status)
        };
        assert!(matches!(
            with("no_leader", "not_applied"),
            AttemptFailure::NotApplied { .. }
        ));
        assert!(matches!(
            with("overloaded", "not_applied"),
            AttemptFailure::NotApplied { .. }
        ));
        assert!(matches!(
            with("outcome_unknown", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            with("shutting_down", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            with("membership", "not_applied"),
            AttemptFailure::Definite { .. }
        ));
        assert!(matches!(
            with("some_new_code", "not_applied"),
            AttemptFailure::Definite { .. }
        ));
        assert!(matches!(
            with("some_new_code", "unknown"),
            AttemptFailure::Unknown { .. }
        ));
        let mut redirect = tonic::Status::failed_precondition("not leader");
        redirect
            .metadata_mut()
            .insert("booking-error", "not_leader".parse().unwrap());
        redirect
            .metadata_mut()
            .insert("booking-leader-id", "3".parse().unwrap());
        redirect
            .metadata_mut()
            .insert("booking-leader-addr", "127.0.0.1:7103".parse().unwrap());
        assert_eq!(
            classify(&redirect),
            AttemptFailure::NotLeader {
                leader_id: Some(3),
                leader_addr: Some("http://127.0.0.1:7103".into()),
                message: "FailedPrecondition: not leader".into()
            }
        );
        // No metadata: a transport failure after sending may have been delivered.
        assert!(matches!(
            classify(&tonic::Status::unavailable("connection reset")),
            AttemptFailure::Unknown { .. }
        ));
        assert!(matches!(
            classify(&tonic::Status::unavailable(
                "tcp connect error: Connection refused"
            )),
            AttemptFailure::NotApplied { .. }
        ));
    }
}
