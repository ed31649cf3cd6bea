//! The compact form of writes: hot commands as protobuf through
//! `SubmitBatchCompact`, with a fallback to JSON for nodes that predate it.
//!
//! Owns: which form a request leaves in (protobuf only through
//! `SubmitBatchCompact`; `Submit` and `SubmitBatch` always carry JSON, so
//! an older node never sees a command it would read as empty JSON), the
//! per-endpoint memory that a node answered UNIMPLEMENTED, and reading an
//! answer's outcome in either form. Must not: retry (UNIMPLEMENTED means the
//! node decoded nothing and applied nothing, so the same requests going out
//! once more as JSON is the same attempt, not a retry), or change ids,
//! commands or first-send marks.
//!
//! Rolling upgrades (ARCHITECTURE.md, "Compact submits"): a new client
//! against an old node pays one UNIMPLEMENTED round trip (the batch is then
//! resent as JSON from a copy kept until the node is known to serve the
//! compact RPC), then sends JSON to that endpoint for [`COMPACT_REPROBE`]
//! before trying the compact RPC again (the node may have been upgraded
//! meanwhile). An old client never calls the new RPC and always gets JSON
//! outcomes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use state_machine::Outcome;
use tonic::transport::Channel;

use super::lock;
use crate::error::ClientError;

/// How long an endpoint that answered UNIMPLEMENTED to `SubmitBatchCompact`
/// gets JSON before the client tries the compact RPC again.
pub(super) const COMPACT_REPROBE: Duration = Duration::from_secs(30);

/// One endpoint's answer to whether it serves `SubmitBatchCompact`.
#[derive(Default)]
pub(super) struct CompactSupport {
    state: Mutex<Support>,
}

#[derive(Clone, Copy, Default)]
enum Support {
    /// Not asked yet (or a refusal is old enough to ask again): batches keep
    /// a copy of their requests to resend as JSON if the node refuses.
    #[default]
    Unknown,
    /// The node answered a compact batch: no copy is kept. If it refuses
    /// later (downgraded in place), each request of that batch is answered
    /// "not applied" and the retry loop sends it again, as JSON by then.
    Served,
    /// The node answered UNIMPLEMENTED at this instant.
    Refused(Instant),
}

impl CompactSupport {
    fn get(&self) -> Support {
        let mut state = lock(&self.state);
        if let Support::Refused(at) = *state {
            if at.elapsed() >= COMPACT_REPROBE {
                *state = Support::Unknown;
            }
        }
        *state
    }

    fn set(&self, support: Support) {
        *lock(&self.state) = support;
    }
}

/// What each request of a compact batch the node refused after it had
/// served compact batches is answered with: not applied (the node decoded
/// nothing), so the retry loop sends it again, as JSON by then.
pub(super) fn unsupported_status() -> tonic::Status {
    let mut status = tonic::Status::unavailable(
        "the node stopped serving SubmitBatchCompact (downgraded?); nothing was applied",
    );
    status.metadata_mut().insert(
        crate::error::META_ERROR,
        tonic::metadata::MetadataValue::from_static(crate::error::COMPACT_UNSUPPORTED),
    );
    status
}

/// A request with its command in the form the client prefers: protobuf for
/// a hot command, JSON for the rest.
pub(super) fn request(
    client_id: u64,
    request_id: u64,
    command: &state_machine::Command,
) -> Result<pb::SubmitRequest, ClientError> {
    let hot_command = proto::hot::command_to_pb(command);
    let command_json = if hot_command.is_some() {
        Vec::new()
    } else {
        serde_json::to_vec(command).map_err(|e| ClientError::Protocol {
            reason: format!("command does not encode: {e}"),
        })?
    };
    Ok(pb::SubmitRequest {
        client_id,
        request_id,
        command_json,
        first_send: false,
        hot_command,
    })
}

/// The same request with its command as JSON, for `Submit`, `SubmitBatch`
/// and nodes without the compact RPC.
pub(super) fn as_json(mut message: pb::SubmitRequest) -> pb::SubmitRequest {
    if let Some(hot) = message.hot_command.take() {
        // A message this client built from a Command converts back exactly
        // (`proto::hot` round-trips every variant); if it somehow did not,
        // the node refuses the empty JSON as invalid, nothing applied.
        if let Ok(command) = proto::hot::command_from_pb(hot) {
            message.command_json = serde_json::to_vec(&command).unwrap_or_default();
        }
    }
    message
}

/// Sends a batch through `SubmitBatchCompact`, or as JSON through
/// `SubmitBatch` when the node lacks it (now or recently).
pub(super) async fn send_batch(
    node: &mut BookingClient<Channel>,
    requests: Vec<pb::SubmitRequest>,
    support: &CompactSupport,
) -> Result<tonic::Response<pb::SubmitBatchResponse>, tonic::Status> {
    let requests = match support.get() {
        Support::Refused(_) => requests,
        Support::Served => {
            let answer = node
                .submit_batch_compact(pb::SubmitBatchRequest { requests })
                .await;
            if matches!(&answer, Err(s) if s.code() == tonic::Code::Unimplemented) {
                support.set(Support::Refused(Instant::now()));
                return Err(unsupported_status());
            }
            return answer;
        }
        Support::Unknown => {
            // Kept until the node shows it serves the compact RPC, to resend
            // as JSON at once if it does not.
            let copy = requests.clone();
            match node
                .submit_batch_compact(pb::SubmitBatchRequest { requests })
                .await
            {
                Err(s) if s.code() == tonic::Code::Unimplemented => {
                    support.set(Support::Refused(Instant::now()));
                    copy
                }
                answer => {
                    if answer.is_ok() {
                        support.set(Support::Served);
                    }
                    return answer;
                }
            }
        }
    };
    let requests = requests.into_iter().map(as_json).collect();
    node.submit_batch(pb::SubmitBatchRequest { requests }).await
}

/// The outcome an answer carries, in whichever form it came.
pub(super) fn outcome(response: &mut pb::SubmitResponse) -> Result<Outcome, ClientError> {
    if let Some(hot) = response.hot_outcome.take() {
        return proto::hot::outcome_from_pb(hot).map_err(|reason| ClientError::Protocol {
            reason: format!("outcome does not decode: {reason}"),
        });
    }
    serde_json::from_slice(&response.outcome_json).map_err(|e| ClientError::Protocol {
        reason: format!("outcome does not decode: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use state_machine::{Command, Selection};

    // Goal: a hot command leaves as protobuf, anything else as JSON, and the
    // JSON fallback of a hot request is exactly the JSON an older client sends.
    #[test]
    fn hot_commands_go_compact_and_fall_back_to_the_same_json() {
        let hold = Command::Hold {
            event_id: "e".into(),
            holder: "fan".into(),
            selection: Selection::Seats(vec!["A-1-1".into()]),
        };
        let compact = request(1, 2, &hold).unwrap();
        assert!(compact.hot_command.is_some());
        assert!(compact.command_json.is_empty());
        let json = as_json(compact);
        assert_eq!(json.hot_command, None);
        assert_eq!(json.command_json, serde_json::to_vec(&hold).unwrap());

        let tick = request(1, 3, &Command::Tick).unwrap();
        assert_eq!(tick.hot_command, None);
        assert_eq!(
            tick.command_json,
            serde_json::to_vec(&Command::Tick).unwrap()
        );
    }

    // Goal: a refusal is remembered for the re-probe interval only.
    #[test]
    fn a_refusal_is_remembered_then_probed_again() {
        let support = CompactSupport::default();
        assert!(matches!(support.get(), Support::Unknown));
        support.set(Support::Refused(Instant::now()));
        assert!(matches!(support.get(), Support::Refused(_)));
        support.set(Support::Refused(Instant::now() - COMPACT_REPROBE));
        assert!(matches!(support.get(), Support::Unknown));
    }

    // Goal: a downgraded node's refusal sends the request round again as
    // "not applied", never as a definite failure or an unknown outcome.
    #[test]
    fn a_late_refusal_is_not_applied() {
        assert!(matches!(
            crate::error::classify(&unsupported_status()),
            crate::error::AttemptFailure::NotApplied { .. }
        ));
    }
}
