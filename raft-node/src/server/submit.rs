//! The write RPCs of the client service: `Submit`, `SubmitBatch` and
//! `SubmitBatchCompact`.
//!
//! Owns: decoding and bounding each request (a command as JSON or, for the
//! hot commands, as protobuf: `proto::hot`), choosing the path a request
//! takes (a first send may be answered without a log write, the rest go to
//! the proposer), and encoding each answer in the form the RPC promises
//! ([`Form`]); in a batch, a request's failure as exactly the status its own
//! `Submit` would have had. Must not: decide anything about bookings or retry
//! (the client's retry loop does), or answer protobuf outcomes on `Submit`
//! and `SubmitBatch`, whose older clients read only `outcome_json`.

use cluster_tls::Role;
use proto::booking as pb;
use state_machine::{Command, Request as SmRequest};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{invalid, BookingService};
use crate::error::NodeError;

/// How a write RPC answers outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// `outcome_json` always (`Submit`, `SubmitBatch`: older clients).
    Json,
    /// `hot_outcome` when the outcome has a protobuf form, else
    /// `outcome_json` (`SubmitBatchCompact`).
    Compact,
}

impl BookingService {
    pub(super) async fn submit_one(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.auth.check(&request, Role::Client)?;
        let r = request.into_inner();
        let span = tracing::info_span!(
            "submit",
            node_id = self.core.id,
            client_id = r.client_id,
            request_id = r.request_id
        );
        async move {
            let first_send = r.first_send;
            let mut reqs = self.requests(vec![r])?;
            if first_send {
                let request = reqs.pop().expect("one request");
                let (outcome, log_index, without_log) =
                    self.core.submit_first_send(request).await?;
                let mut resp = self
                    .responses(vec![(outcome, log_index)], Form::Json)?
                    .remove(0);
                resp.answered_without_log_write = without_log;
                return Ok(Response::new(resp));
            }
            let outs = self.core.submit(reqs).await?;
            let mut resp = self.responses(outs, Form::Json)?;
            Ok(Response::new(resp.remove(0)))
        }
        .instrument(span)
        .await
    }

    pub(super) async fn submit_many(
        &self,
        request: Request<pb::SubmitBatchRequest>,
        form: Form,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        self.auth.check(&request, Role::Client)?;
        let r = request.into_inner();
        let span = tracing::info_span!(
            "submit_batch",
            node_id = self.core.id,
            requests = r.requests.len()
        );
        async move {
            if r.requests.len() > proto::SUBMIT_BATCH_MAX {
                return Err(invalid(
                    "requests",
                    format!(
                        "{} requests exceed SUBMIT_BATCH_MAX {}",
                        r.requests.len(),
                        proto::SUBMIT_BATCH_MAX
                    ),
                ));
            }
            let first_sends: Vec<bool> = r.requests.iter().map(|r| r.first_send).collect();
            let reqs = self.requests(r.requests)?;
            // Each request as its own Submit would be: a first send may be
            // answered without a log write, the others go to the proposer
            // together (one admission, so they share log entries).
            let mut answers: Vec<Option<pb::SubmitResponse>> = vec![None; reqs.len()];
            let mut logged = Vec::new();
            let mut logged_at = Vec::new();
            let mut fast = Vec::new();
            let leads = self.core.current_leader() == Some(self.core.id);
            for (i, (req, first_send)) in reqs.into_iter().zip(first_sends).enumerate() {
                // A command some member could not decode is refused on its
                // own, so the rest of the batch still goes to the log (the
                // proposer would refuse the whole group). Only a leader
                // knows the members' sets; a follower redirects anyway.
                if leads {
                    if let Some(refusal) = self.core.command_set_refusal(std::slice::from_ref(&req))
                    {
                        answers[i] = Some(failed_response(&refusal));
                        continue;
                    }
                }
                if first_send {
                    fast.push(async move { (i, self.core.submit_first_send(req).await) });
                } else {
                    logged_at.push(i);
                    logged.push(req);
                }
            }
            let logged_answer = async {
                if logged.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.core.submit(logged).await
                }
            };
            let (fast_answers, logged_answer) =
                futures::join!(futures::future::join_all(fast), logged_answer);
            for (i, answer) in fast_answers {
                answers[i] = Some(match answer {
                    Ok((outcome, log_index, without_log)) => {
                        self.response(outcome, log_index, without_log, form)
                    }
                    Err(e) => failed_response(&e),
                });
            }
            match logged_answer {
                Ok(outs) => {
                    for (i, (outcome, log_index)) in logged_at.into_iter().zip(outs) {
                        answers[i] = Some(self.response(outcome, log_index, false, form));
                    }
                }
                Err(e) => {
                    let failed = failed_response(&e);
                    for i in logged_at {
                        answers[i] = Some(failed.clone());
                    }
                }
            }
            let responses = answers
                .into_iter()
                .map(|a| {
                    a.unwrap_or_else(|| {
                        failed_response(&NodeError::Internal("request left unanswered".into()))
                    })
                })
                .collect();
            Ok(Response::new(pb::SubmitBatchResponse { responses }))
        }
        .instrument(span)
        .await
    }

    fn requests(&self, reqs: Vec<pb::SubmitRequest>) -> Result<Vec<SmRequest>, Status> {
        reqs.into_iter()
            .enumerate()
            .map(|(i, r)| {
                // A bound on the JSON first: decoding a huge body costs
                // memory before its encoded size could be checked.
                if r.command_json.len() > crate::node::COMMAND_BYTES_MAX * 4 {
                    return Err(invalid(
                        &format!("requests[{i}].command_json"),
                        format!(
                            "{} bytes of JSON is far past COMMAND_BYTES_MAX {}",
                            r.command_json.len(),
                            crate::node::COMMAND_BYTES_MAX
                        ),
                    ));
                }
                let command: Command = match r.hot_command {
                    Some(_) if !r.command_json.is_empty() => {
                        return Err(invalid(
                            &format!("requests[{i}]"),
                            "both command_json and hot_command are set; send exactly one",
                        ))
                    }
                    Some(hot) => proto::hot::command_from_pb(hot)
                        .map_err(|e| invalid(&format!("requests[{i}].hot_command"), e))?,
                    None => serde_json::from_slice(&r.command_json)
                        .map_err(|e| invalid(&format!("requests[{i}].command_json"), e))?,
                };
                let request = SmRequest {
                    client_id: r.client_id,
                    request_id: r.request_id,
                    command,
                };
                // Refused at the API, before any path (fast refusal or log).
                crate::node::request_bytes(&request)
                    .map_err(|e| invalid(&format!("requests[{i}]"), e))?;
                Ok(request)
            })
            .collect()
    }

    fn responses(
        &self,
        outs: Vec<(state_machine::Outcome, u64)>,
        form: Form,
    ) -> Result<Vec<pb::SubmitResponse>, Status> {
        outs.into_iter()
            .map(|(outcome, log_index)| {
                let (outcome_json, hot_outcome) = encode_outcome(&outcome, form)
                    .map_err(|e| NodeError::Internal(e.to_string()).to_status())?;
                Ok(pb::SubmitResponse {
                    outcome_json,
                    log_index,
                    leader_id: self.core.id,
                    answered_without_log_write: false,
                    error: None,
                    hot_outcome,
                })
            })
            .collect()
    }

    /// One request's answer in a SubmitBatch (an outcome that does not
    /// encode becomes that request's `internal` error).
    fn response(
        &self,
        outcome: state_machine::Outcome,
        log_index: u64,
        answered_without_log_write: bool,
        form: Form,
    ) -> pb::SubmitResponse {
        match encode_outcome(&outcome, form) {
            Ok((outcome_json, hot_outcome)) => pb::SubmitResponse {
                outcome_json,
                log_index,
                leader_id: self.core.id,
                answered_without_log_write,
                error: None,
                hot_outcome,
            },
            Err(e) => failed_response(&NodeError::Internal(format!(
                "outcome does not encode: {e}"
            ))),
        }
    }
}

/// `(outcome_json, hot_outcome)` of an answer: exactly one is non-empty.
fn encode_outcome(
    outcome: &state_machine::Outcome,
    form: Form,
) -> Result<(Vec<u8>, Option<pb::HotOutcome>), serde_json::Error> {
    if form == Form::Compact {
        if let Some(hot) = proto::hot::outcome_to_pb(outcome) {
            return Ok((Vec::new(), Some(hot)));
        }
    }
    Ok((serde_json::to_vec(outcome)?, None))
}

/// A SubmitBatch answer for a request that failed: exactly the status its
/// own Submit would have failed with, so the client classifies it alike.
fn failed_response(e: &NodeError) -> pb::SubmitResponse {
    let status = e.to_status();
    let metadata = status
        .metadata()
        .iter()
        .filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
            }
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    pb::SubmitResponse {
        error: Some(pb::SubmitError {
            grpc_code: status.code() as i32,
            message: status.message().to_string(),
            metadata,
        }),
        ..Default::default()
    }
}
