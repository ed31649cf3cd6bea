//! [`Client`]: who the client is (its random client id and request-id
//! counter), which nodes it knows, one pooled gRPC channel per node, and the
//! cached leader. Every call goes through the one bounded retry loop of
//! `retry.rs`.
//!
//! Layout (each submodule adds methods to [`Client`]):
//! - this file: construction, the endpoint list (seeds plus addresses learned
//!   from redirects and membership, at most [`ENDPOINTS_MAX`]), the channel
//!   pool and the leader cache;
//! - `retry.rs`: the retry loop and its exact semantics;
//! - `write.rs`: [`Client::submit`], the only write, with [`Ids`] saying who
//!   named the request and so whether the leader may answer without a log
//!   write;
//! - `coalesce.rs`: concurrent write attempts to one node leave together in
//!   one `SubmitBatchCompact`;
//! - `compact.rs`: hot commands and outcomes as protobuf, and the JSON
//!   fallback for nodes without the compact RPC;
//! - `read.rs`: queries and the watch stream;
//! - `admin.rs`: status, leader wait, membership and snapshots;
//! - `handover.rs`: leadership transfer and the steps of a rolling restart.
//!
//! Must not: know openraft or sled, let a protobuf type out of this crate, or
//! retry anywhere but in `retry.rs`.

mod admin;
mod coalesce;
mod compact;
mod handover;
mod read;
mod retry;
mod write;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proto::booking::booking_client::BookingClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{normalize_endpoint, ClientError};
use crate::options::ClientOptions;

pub use handover::{Rejoined, Transfer, HANDOVER_PAUSE_MS};
pub use write::{Ids, RequestIds, Submitted};

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
    /// Per-node queues of write attempts waiting to leave in a `SubmitBatch`.
    coalescers: coalesce::Coalescers,
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

    /// A client for every node of a cluster config. Without
    /// [`ClientOptions::tls`], it presents the config's client certificate
    /// (`[tls] client_cert_file`) when the config has TLS on.
    pub fn from_config(
        config: &cluster_config::ClusterConfig,
        mut options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if options.tls.is_none() {
            options.tls = cluster_tls::ClientTls::load(config, cluster_tls::TlsIdentity::Client)
                .map_err(|e| ClientError::Tls {
                    reason: e.to_string(),
                })?;
        }
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
                coalescers: coalesce::Coalescers::default(),
            }),
        })
    }

    /// This client's id, carried by every command it sends under
    /// [`Ids::New`] or ids from [`Client::mint_ids`].
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// Mints new ids: this client's id and a request id it never handed out
    /// before (strictly increasing per client). Send them first as
    /// [`Ids::FirstSend`], and any later time as [`Ids::Resend`].
    pub fn mint_ids(&self) -> RequestIds {
        RequestIds {
            client_id: self.inner.client_id,
            request_id: self.inner.next_request_id.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The endpoints this client knows, seeds first.
    pub fn endpoints(&self) -> Vec<String> {
        lock(&self.inner.endpoints).clone()
    }

    /// The endpoint currently believed to lead, if any.
    pub fn cached_leader(&self) -> Option<String> {
        lock(&self.inner.leader).clone()
    }

    /// The pooled channel to `endpoint`, created (lazily connected) on first
    /// use. Endpoints are kept as `http://host:port` (their identity in the
    /// leader cache); with TLS settings the channel dials `https` with them.
    fn channel(&self, endpoint: &str) -> Result<BookingClient<Channel>, ClientError> {
        let mut channels = lock(&self.inner.channels);
        let channel = match channels.get(endpoint) {
            Some(channel) => channel.clone(),
            None => {
                let invalid = |e: tonic::transport::Error| ClientError::InvalidEndpoint {
                    endpoint: endpoint.to_string(),
                    reason: e.to_string(),
                };
                let tls = self.inner.options.tls.as_ref();
                let uri = match (tls, endpoint.strip_prefix("http://")) {
                    (Some(_), Some(rest)) => format!("https://{rest}"),
                    _ => endpoint.to_string(),
                };
                let mut builder = Endpoint::from_shared(uri)
                    .map_err(invalid)?
                    .connect_timeout(self.inner.options.connect_timeout())
                    .tcp_nodelay(true);
                if let Some(tls) = tls {
                    builder = builder.tls_config(tls.tonic_config()).map_err(invalid)?;
                }
                let channel = builder.connect_lazy();
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

    /// The next endpoint in round-robin order, for a call with no leader known.
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

    // Goal: minted ids carry this client's id and never repeat a request id.
    #[test]
    fn minted_ids_are_this_clients_and_increase() {
        let client = Client::connect(["127.0.0.1:1"]).unwrap();
        let (a, b) = (client.mint_ids(), client.mint_ids());
        assert_eq!(a.client_id, client.client_id());
        assert_eq!(b.client_id, client.client_id());
        assert!(a.request_id < b.request_id, "{a:?} {b:?}");
    }
}
