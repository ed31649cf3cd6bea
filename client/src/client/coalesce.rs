//! Write coalescing: concurrent write attempts to one node leave together in
//! one `SubmitBatchCompact` (`SubmitBatch` for nodes without it:
//! `compact.rs`), so a busy caller (the HTTP gateway, a load generator)
//! pays one RPC, one set of HTTP/2 frames and one TLS record per batch
//! instead of per write.
//!
//! Owns: one bounded queue and one batching task per node endpoint, and
//! turning a batch answer back into each attempt's own result. A request's
//! failure inside a batch comes back as exactly the status its own `Submit`
//! would have failed with (`SubmitResponse.error`), and a failed batch call
//! fails every attempt in it with the call's status, so the retry loop
//! (`retry.rs`) classifies a coalesced attempt exactly like a lone one: same
//! ids, same first-send marking, same "may have been applied" rules.
//!
//! Must not: retry (an attempt's failure goes back to the retry loop), change
//! a request (ids, command or first-send marking), or queue without a bound:
//! when a node's queue is full the attempt waits for room, within its
//! attempt deadline (the retry loop's). Until 2026-12 it went out as its
//! own `Submit` instead, so a burst of 4 096 fans through the gateway sent
//! most writes alone, an RPC each, exactly when the node was busiest; the
//! gateway's CPU per HTTP request fell from 108–129 µs to 81–84 µs with
//! the wait (`bench flash-sale --fans 72000 --rate 2400`, two runs each on
//! a busy box).
//!
//! Batching is natural, not timed: a batch leaves as soon as one of the
//! node's `write_batches_in_flight_max` slots is free, carrying whatever
//! queued meanwhile (up to `write_batch_max`). An idle client therefore adds
//! no delay; a loaded one sends bigger batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;

use super::compact::{self, CompactSupport};
use super::{lock, Client};

/// One queued write attempt and where its answer goes.
struct Pending {
    message: pb::SubmitRequest,
    reply: oneshot::Sender<Result<pb::SubmitResponse, tonic::Status>>,
}

/// The per-endpoint queues of one client (shared by its clones).
#[derive(Default)]
pub(super) struct Coalescers {
    queues: std::sync::Mutex<HashMap<String, mpsc::Sender<Pending>>>,
}

impl Client {
    /// One write attempt to `endpoint`: coalesced with concurrent ones into
    /// a `SubmitBatchCompact` when enabled and the node's queue has room, else
    /// sent alone as a JSON `Submit`.
    pub(super) async fn submit_attempt(
        &self,
        endpoint: &str,
        mut node: BookingClient<Channel>,
        message: pb::SubmitRequest,
    ) -> Result<tonic::Response<pb::SubmitResponse>, tonic::Status> {
        let batch_max = self
            .inner
            .options
            .write_batch_max
            .min(proto::SUBMIT_BATCH_MAX);
        if batch_max <= 1 {
            return node.submit(compact::as_json(message)).await;
        }
        let queue = self.coalescer(endpoint, &node, batch_max);
        let (reply, answer) = oneshot::channel();
        // A full queue means the node's batches are all in flight: wait for
        // room (the retry loop's attempt deadline bounds the wait) rather
        // than send alone, which would cost the node and this process a
        // whole RPC per write exactly when both are busiest.
        match queue.send(Pending { message, reply }).await {
            Ok(()) => match answer.await {
                Ok(result) => result.map(tonic::Response::new),
                // The batching task ended with the attempt queued or sent:
                // no metadata, so the retry loop treats it as "may have been
                // applied" and resends with the same ids.
                Err(_) => Err(tonic::Status::unavailable(
                    "the write batch ended without an answer",
                )),
            },
            // The batching task is gone (its runtime is shutting down):
            // send alone.
            Err(mpsc::error::SendError(p)) => node.submit(compact::as_json(p.message)).await,
        }
    }

    /// The queue of `endpoint`, with its batching task started on first use.
    fn coalescer(
        &self,
        endpoint: &str,
        node: &BookingClient<Channel>,
        batch_max: usize,
    ) -> mpsc::Sender<Pending> {
        let mut queues = lock(&self.inner.coalescers.queues);
        if let Some(queue) = queues.get(endpoint).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let in_flight_max = self.inner.options.write_batches_in_flight_max.max(1);
        let (queue, pending) = mpsc::channel(batch_max * in_flight_max);
        let timeout = self.inner.options.request_timeout();
        tokio::spawn(run_batches(
            pending,
            node.clone(),
            batch_max,
            in_flight_max,
            timeout,
        ));
        queues.insert(endpoint.to_string(), queue.clone());
        queue
    }
}

/// The batching task of one endpoint: ends when every sender is gone (the
/// client and its clones dropped).
async fn run_batches(
    mut pending: mpsc::Receiver<Pending>,
    node: BookingClient<Channel>,
    batch_max: usize,
    in_flight_max: usize,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(in_flight_max));
    let support = Arc::new(CompactSupport::default());
    while let Some(first) = pending.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Whatever queued while every slot was busy leaves now, together.
        let mut batch = vec![first];
        while batch.len() < batch_max {
            match pending.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let node = node.clone();
        let support = support.clone();
        tokio::spawn(async move {
            let _slot = slot;
            send_batch(node, batch, timeout, &support).await;
        });
    }
}

/// Sends one batch (a lone write too: a batch of one keeps the compact
/// form) and answers each attempt.
async fn send_batch(
    mut node: BookingClient<Channel>,
    batch: Vec<Pending>,
    timeout: Duration,
    support: &CompactSupport,
) {
    let (requests, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.message, p.reply)).unzip();
    let sent = requests.len();
    let answer =
        tokio::time::timeout(timeout, compact::send_batch(&mut node, requests, support)).await;
    match answer {
        Ok(Ok(response)) => {
            let responses = response.into_inner().responses;
            if responses.len() != sent {
                // Not our node's answer shape: each request may or may not
                // have been applied.
                let status = tonic::Status::internal(format!(
                    "a SubmitBatch of {sent} requests was answered with {} responses",
                    responses.len()
                ));
                for reply in replies {
                    let _ = reply.send(Err(status.clone()));
                }
                return;
            }
            for (reply, response) in replies.into_iter().zip(responses) {
                let answer = match &response.error {
                    Some(error) => Err(status_of(error)),
                    None => Ok(response),
                };
                let _ = reply.send(answer);
            }
        }
        Ok(Err(status)) => {
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
        Err(_) => {
            let status = no_answer(timeout);
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}

/// A batch that outlived the attempt deadline: no metadata, so "may have
/// been applied".
fn no_answer(timeout: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!(
        "no answer to the write batch within {} ms",
        timeout.as_millis()
    ))
}

/// The status a request's own `Submit` would have failed with, rebuilt from
/// its `SubmitBatch` error (code, message and the contract's metadata).
pub(crate) fn status_of(error: &pb::SubmitError) -> tonic::Status {
    let mut status = tonic::Status::new(tonic::Code::from(error.grpc_code), error.message.clone());
    let md = status.metadata_mut();
    for (key, value) in &error.metadata {
        // Keys and values a node sends are ASCII by construction; anything
        // else is dropped, which only loses a hint (the status code stays).
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            md.insert(key, value);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{classify, AttemptFailure};

    // Goal: a request's failure inside a batch is classified exactly like
    // the same failure of a lone Submit (leader hint kept, outcome kept).
    #[test]
    fn a_batch_error_classifies_like_the_status_it_carries() {
        let error = pb::SubmitError {
            grpc_code: tonic::Code::FailedPrecondition as i32,
            message: "not the leader".into(),
            metadata: [
                ("booking-error".to_string(), "not_leader".to_string()),
                ("booking-outcome".to_string(), "not_applied".to_string()),
                ("booking-leader-id".to_string(), "2".to_string()),
                (
                    "booking-leader-addr".to_string(),
                    "127.0.0.1:7002".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
        };
        match classify(&status_of(&error)) {
            AttemptFailure::NotLeader {
                leader_id,
                leader_addr,
                ..
            } => {
                assert_eq!(leader_id, Some(2));
                assert_eq!(leader_addr.as_deref(), Some("http://127.0.0.1:7002"));
            }
            other => panic!("expected not_leader, got {other:?}"),
        }
        let unknown = pb::SubmitError {
            grpc_code: tonic::Code::Unavailable as i32,
            message: "leadership lost with the entry queued".into(),
            metadata: [
                ("booking-error".to_string(), "outcome_unknown".to_string()),
                ("booking-outcome".to_string(), "unknown".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        assert!(matches!(
            classify(&status_of(&unknown)),
            AttemptFailure::Unknown { .. }
        ));
    }
}
