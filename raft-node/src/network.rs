//! The Raft network over tonic: the client side openraft calls to reach peers
//! (`RaftNetworkFactory`/`RaftNetwork`) and the codec both sides share.
//!
//! Owns: one pooled, lazily connected `Channel` per peer address (reused across
//! openraft's replication streams; mutual TLS with the node's own certificate
//! unless `[tls] mode = "off"`), per-RPC timeouts from config, and the
//! mapping of transport failures to `Unreachable` (connection-level: openraft
//! backs off) or `NetworkError` (timeouts, undecodable replies).
//!
//! Snapshots: sent by openraft's chunked transport (0.9), chunk size
//! `SNAPSHOT_CHUNK_BYTES`, each chunk with `install_snapshot_timeout_ms`; the
//! gRPC message limit (`proto::MAX_MESSAGE_BYTES`) is far above a chunk.
//!
//! AppendEntries bounds (so a follower that fell behind always catches up):
//! openraft sends at most `max_payload_entries` ([`APPEND_ENTRIES_ENTRIES_MAX`])
//! entries per RPC, and this client refuses to send a payload whose encoded
//! body passes [`APPEND_ENTRIES_BYTES_MAX`]; that refusal, and a peer's
//! "message too large" answer (tonic `OutOfRange`/`ResourceExhausted`), become
//! openraft's `PayloadTooLarge` with a smaller entries hint, so openraft
//! retries at once with fewer entries (for its next 10 RPCs). Caveat: openraft
//! 0.9.25 bounds each AppendEntries by `heartbeat_interval` whatever this
//! client asks (`replication/mod.rs`), the follower's fsync included; the
//! bounds here keep one RPC's work small, `startup` checks the heartbeat.
//!
//! Must not: retry on its own (openraft owns retries and backoff).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use proto::raft::raft_client::RaftClient;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tracing::Instrument;

use crate::metrics::Counters;
use crate::store::witness::Witness;
use crate::store::GroupId;
use crate::types::{Node, NodeId, SnapshotMeta, TypeConfig, Vote};

/// Bytes of snapshot data per InstallSnapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Entries per AppendEntries (openraft's `max_payload_entries`). An entry is
/// at most `ENTRY_BYTES_MAX` (96 KiB), so 64 entries are at most 6 MiB before
/// the byte cap below cuts in; in practice entries are a few KiB.
pub const APPEND_ENTRIES_ENTRIES_MAX: u64 = 64;
/// Encoded bytes of one AppendEntries body. A larger payload is not sent: the
/// client answers `PayloadTooLarge` with a proportionally smaller entries hint.
/// Far below `proto::MAX_MESSAGE_BYTES`, so a peer never refuses our own
/// bound; small enough that one RPC's transfer and fsync stay well inside the
/// heartbeat on a slow link or disk.
pub const APPEND_ENTRIES_BYTES_MAX: usize = 1024 * 1024;
/// Highest log index whose exchange proves nothing worth recording in the
/// witness record: the initial membership entry (0) and the first leader's
/// blank entry (1) are on every new cluster's logs.
pub const WITNESS_INDEX_MIN: u64 = 1;
/// TCP connect timeout to a peer.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Encodes a request body (postcard).
pub fn encode_body<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(v).map_err(|e| format!("encode: {e}"))
}

/// Decodes a request body; a peer's bad bytes become an error, never a panic.
pub fn decode_body<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    postcard::from_bytes(b).map_err(|e| format!("decode: {e}"))
}

/// A reply body: postcard of `Result<T, Vec<u8>>`, the error side being the
/// JSON of openraft's `RaftError` (errors are rare and JSON carries every
/// serde shape openraft's error types use).
pub fn encode_reply<T: Serialize, E: Serialize>(r: Result<T, E>) -> Result<Vec<u8>, String> {
    let r: Result<T, Vec<u8>> = match r {
        Ok(v) => Ok(v),
        Err(e) => Err(serde_json::to_vec(&e).map_err(|e| format!("encode error: {e}"))?),
    };
    encode_body(&r)
}

fn decode_reply<T: DeserializeOwned, E: DeserializeOwned>(
    b: &[u8],
) -> Result<Result<T, E>, String> {
    let r: Result<T, Vec<u8>> = decode_body(b)?;
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(
            serde_json::from_slice(&e).map_err(|e| format!("decode error: {e}"))?
        )),
    }
}

/// The header of one snapshot chunk: (vote, meta, offset, done).
pub type ChunkHeader = (Vote, SnapshotMeta, u64, bool);

/// Channels shared by every client the factory makes, keyed by address.
#[derive(Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// How this node dials its peers: its own certificate and the cluster's
    /// CA; `None` only with `[tls] mode = "off"` (plaintext).
    tls: Option<ClientTlsConfig>,
}

impl ChannelPool {
    /// A pool dialling with `tls` (`None`: plaintext).
    pub fn new(tls: Option<ClientTlsConfig>) -> ChannelPool {
        ChannelPool {
            channels: Arc::default(),
            tls,
        }
    }

    /// The pooled channel to `addr` ("host:port"), created lazily: nothing
    /// connects until the first RPC, and a dead peer costs nothing until then.
    pub fn get(&self, addr: &str) -> Result<Channel, String> {
        let mut g = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = g.get(addr) {
            return Ok(c.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .tcp_nodelay(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("TLS settings for peer {addr:?}: {e}"))?;
        }
        let channel = endpoint.connect_lazy();
        g.insert(addr.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Makes one `PeerClient` per target for openraft.
#[derive(Clone)]
pub struct NetworkFactory {
    pub cluster_name: String,
    pub self_id: NodeId,
    pub pool: ChannelPool,
    pub rpc_timeout: Duration,
    pub snapshot_timeout: Duration,
    /// Where the too-large payloads are counted.
    pub counters: Arc<Counters>,
    /// This data directory's incarnation, sent with every request.
    pub incarnation: String,
    /// Where a follower's incarnation is recorded before its
    /// acknowledgement counts.
    pub witness: Arc<Witness>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let client = self.pool.get(&node.addr).map(|ch| {
            RaftClient::new(ch)
                .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(proto::MAX_MESSAGE_BYTES)
        });
        PeerClient {
            target,
            addr: node.addr.clone(),
            client,
            cluster_name: self.cluster_name.clone(),
            self_id: self.self_id,
            rpc_timeout: self.rpc_timeout,
            snapshot_timeout: self.snapshot_timeout,
            counters: self.counters.clone(),
            incarnation: self.incarnation.clone(),
            witness: self.witness.clone(),
        }
    }
}

/// openraft's handle on one peer.
pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Result<RaftClient<Channel>, String>,
    cluster_name: String,
    self_id: NodeId,
    rpc_timeout: Duration,
    snapshot_timeout: Duration,
    counters: Arc<Counters>,
    incarnation: String,
    witness: Arc<Witness>,
}

type RpcErr<E> = RPCError<NodeId, Node, E>;

fn unreachable<E: std::error::Error>(msg: String) -> RpcErr<E> {
    RPCError::Unreachable(Unreachable::new(&AnyError::error(msg)))
}

fn network<E: std::error::Error>(msg: String) -> RpcErr<E> {
    RPCError::Network(NetworkError::new(&AnyError::error(msg)))
}

impl PeerClient {
    fn client<E: std::error::Error>(&self) -> Result<RaftClient<Channel>, RpcErr<E>> {
        self.client.clone().map_err(unreachable)
    }

    fn status_to_err<E: std::error::Error>(&self, rpc: &str, s: tonic::Status) -> RpcErr<E> {
        let msg = format!(
            "{rpc} to node {} at {}: {}: {}",
            self.target,
            self.addr,
            s.code(),
            s.message()
        );
        match s.code() {
            // Connection refused/reset, DNS, TLS: the peer is not there.
            tonic::Code::Unavailable | tonic::Code::Unknown => unreachable(msg),
            _ => network(msg),
        }
    }

    fn request(&self, body: Vec<u8>) -> proto::raft::RaftRequest {
        proto::raft::RaftRequest {
            cluster_name: self.cluster_name.clone(),
            from_node_id: self.self_id,
            to_node_id: self.target,
            body: body.into(),
            group_id: GroupId::SOLE.0,
            from_incarnation: self.incarnation.clone(),
        }
    }

    /// Records that the peer's incarnation acknowledged entries up to
    /// `index`, durably, before openraft hears the acknowledgement (see
    /// `store::witness`). Only past the new-cluster prefix; a peer of an
    /// older build sends no incarnation and is not recorded.
    async fn witness_ack<E: std::error::Error>(
        &self,
        index: u64,
        incarnation: &str,
    ) -> Result<(), RpcErr<E>> {
        if index <= WITNESS_INDEX_MIN || incarnation.is_empty() {
            return Ok(());
        }
        self.witness
            .record(self.target, incarnation)
            .await
            .map_err(|e| network(format!("node {}: {e}", self.target)))
    }

    fn remote<T: DeserializeOwned, E: DeserializeOwned + std::error::Error>(
        &self,
        body: &[u8],
    ) -> Result<T, RpcErr<RaftError<NodeId, E>>>
    where
        RaftError<NodeId, E>: DeserializeOwned,
    {
        match decode_reply::<T, RaftError<NodeId, E>>(body) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            Err(e) => Err(network(format!("reply from node {}: {e}", self.target))),
        }
    }
}

/// How many of `entries` entries fit in `bytes_max` when they took
/// `bytes_total`: proportional, with a margin of one eighth, at least 1 and
/// fewer than `entries` (so every hint shrinks the batch).
pub fn entries_hint(entries: usize, bytes_total: usize, bytes_max: usize) -> u64 {
    let entries = entries.max(1) as u128;
    let fit = entries * bytes_max as u128 / bytes_total.max(1) as u128;
    let fit = fit - fit / 8;
    fit.clamp(1, (entries - 1).max(1)) as u64
}

/// Whether a transport status means "the message was too large" (tonic's
/// encoder or the peer's decoder limit).
fn is_too_large(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
    ) || s.message().contains("message length too large")
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        let span = tracing::debug_span!(
            "rpc_append_entries",
            target = self.target,
            entries = rpc.entries.len()
        );
        let entries = rpc.entries.len();
        let sent_last_index = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index))
            .unwrap_or(0);
        let body = encode_body(&rpc).map_err(network)?;
        let body_bytes = body.len();
        if entries > 1 && body_bytes > APPEND_ENTRIES_BYTES_MAX {
            let hint = entries_hint(entries, body_bytes, APPEND_ENTRIES_BYTES_MAX);
            Counters::add(&self.counters.append_entries_too_large, 1);
            tracing::debug!(
                target_node = self.target,
                entries,
                body_bytes,
                hint,
                "append_entries payload over the byte cap; asking openraft for fewer entries"
            );
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(hint),
            ));
        }
        let mut req = tonic::Request::new(self.request(body));
        req.set_timeout(self.rpc_timeout.min(option.hard_ttl()));
        let reply = match self.client()?.append_entries(req).instrument(span).await {
            Ok(r) => r,
            Err(s) if entries > 1 && is_too_large(&s) => {
                let hint = entries_hint(entries, body_bytes, body_bytes / 2);
                Counters::add(&self.counters.append_entries_too_large, 1);
                tracing::warn!(
                    target_node = self.target,
                    entries,
                    body_bytes,
                    hint,
                    "append_entries refused as too large ({}); asking openraft for fewer entries",
                    s.message()
                );
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
            Err(s) => return Err(self.status_to_err("append_entries", s)),
        };
        let reply = reply.into_inner();
        let response: AppendEntriesResponse<NodeId> =
            self.remote::<_, openraft::error::Infallible>(&reply.body)?;
        let matched = match &response {
            AppendEntriesResponse::Success => sent_last_index,
            AppendEntriesResponse::PartialSuccess(m) => m.map_or(0, |l| l.index),
            AppendEntriesResponse::Conflict | AppendEntriesResponse::HigherVote(_) => 0,
        };
        self.witness_ack(matched, &reply.incarnation).await?;
        Ok(response)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        let span = tracing::info_span!(
            "rpc_install_snapshot",
            target = self.target,
            offset = rpc.offset,
            done = rpc.done
        );
        let done = rpc.done;
        let snapshot_index = rpc.meta.last_log_id.map_or(0, |l| l.index);
        let header: ChunkHeader = (rpc.vote, rpc.meta, rpc.offset, rpc.done);
        let chunk = proto::raft::SnapshotChunk {
            cluster_name: self.cluster_name.clone(),
            from_node_id: self.self_id,
            to_node_id: self.target,
            header: encode_body(&header).map_err(network)?.into(),
            data: rpc.data.into(),
            group_id: GroupId::SOLE.0,
            from_incarnation: self.incarnation.clone(),
        };
        let mut req = tonic::Request::new(chunk);
        req.set_timeout(self.snapshot_timeout);
        let reply = self
            .client()?
            .install_snapshot(req)
            .instrument(span)
            .await
            .map_err(|s| self.status_to_err("install_snapshot", s))?;
        let reply = reply.into_inner();
        let response = self.remote::<_, InstallSnapshotError>(&reply.body)?;
        // The last chunk installed the snapshot: the follower now holds
        // everything it covers (a refusal recorded too is only cautious).
        if done {
            self.witness_ack(snapshot_index, &reply.incarnation).await?;
        }
        Ok(response)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<RaftError<NodeId>>> {
        let span = tracing::debug_span!("rpc_vote", target = self.target);
        let body = encode_body(&rpc).map_err(network)?;
        let mut req = tonic::Request::new(self.request(body));
        req.set_timeout(self.rpc_timeout.min(option.hard_ttl()));
        let reply = self
            .client()?
            .vote(req)
            .instrument(span)
            .await
            .map_err(|s| self.status_to_err("vote", s))?;
        self.remote::<_, openraft::error::Infallible>(&reply.into_inner().body)
    }
}

#[cfg(test)]
mod tests {
    use super::entries_hint;

    // Goal: a hint always shrinks the batch, never to zero, and scales with the byte cap.
    #[test]
    fn entries_hint_shrinks_proportionally() {
        assert_eq!(entries_hint(64, 8 << 20, 2 << 20), 14);
        assert_eq!(entries_hint(64, 3 << 20, 1 << 20), 19);
        assert_eq!(entries_hint(2, 10 << 20, 2 << 20), 1);
        assert_eq!(entries_hint(64, (2 << 20) + 1, 2 << 20), 56);
        assert_eq!(entries_hint(1, 10 << 20, 1), 1);
        assert_eq!(entries_hint(10, 0, 2 << 20), 9);
    }
}
