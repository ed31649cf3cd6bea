//! Goal: `SubmitBatchCompact` carries hot commands and their outcomes as
//! protobuf end to end on a real cluster, shares the exactly-once table with
//! the JSON form (the same ids through `Submit` answer the first outcome, in
//! JSON), answers outcomes without a protobuf form as JSON, refuses a
//! malformed request as INVALID_ARGUMENT (nothing applied), and `Submit` /
//! `SubmitBatch` keep answering JSON for older clients.

mod common;

use common::*;
use proto::booking as pb;
use proto::hot::{command_to_pb, outcome_from_pb};
use state_machine::{BookingError, Command, Outcome, Reply};

fn compact(client_id: u64, request_id: u64, command: &Command) -> pb::SubmitRequest {
    pb::SubmitRequest {
        client_id,
        request_id,
        command_json: Vec::new(),
        first_send: false,
        hot_command: Some(command_to_pb(command).expect("a hot command")),
    }
}

fn json_outcome(r: &pb::SubmitResponse) -> Outcome {
    assert_eq!(r.hot_outcome, None, "a JSON answer carries no hot outcome");
    serde_json::from_slice(&r.outcome_json).expect("outcome json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_commands_travel_as_protobuf_and_share_exactly_once_with_json() {
    let _serial = serial().await;
    let mut c = Cluster::new("compact", 1, raft_section());
    c.start(1, true);
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 1, 1, &event_command("k", 1, 10, 600_000))
        .await;
    c.submit_ok(leader, 1, 2, &open_sale("k")).await;
    let mut node = c.client(leader).await;

    let hold = hold_command("k", "ann", &["A-1-1"]);
    let contender = hold_command("k", "bob", &["A-1-1"]);
    let extend = Command::ExtendHold {
        hold_id: 1,
        holder: "ann".into(),
    };
    let json_extend = pb::SubmitRequest {
        client_id: 2,
        request_id: 3,
        command_json: serde_json::to_vec(&extend).unwrap(),
        first_send: false,
        hot_command: None,
    };
    let answers = node
        .submit_batch_compact(pb::SubmitBatchRequest {
            requests: vec![compact(2, 1, &hold), compact(2, 2, &contender), json_extend],
        })
        .await
        .expect("batch answered")
        .into_inner()
        .responses;
    assert_eq!(answers.len(), 3);
    let held = outcome_from_pb(answers[0].hot_outcome.clone().expect("hot outcome")).unwrap();
    let Ok(Reply::Held { hold_id, seats, .. }) = &held else {
        panic!("expected held, got {held:?}");
    };
    assert_eq!(seats, &vec!["A-1-1".to_string()]);
    assert!(answers[0].outcome_json.is_empty());
    let refused = outcome_from_pb(answers[1].hot_outcome.clone().expect("hot outcome")).unwrap();
    assert_eq!(
        refused,
        Err(BookingError::SeatUnavailable {
            seats: vec!["A-1-1".into()]
        })
    );
    // ExtendHold's reply has no protobuf form: JSON in the same batch.
    assert!(matches!(
        json_outcome(&answers[2]),
        Ok(Reply::HoldExtended { hold_id: 1, .. }) | Err(BookingError::ExtendLimitReached { .. })
    ));
    assert_eq!(*hold_id, 1);

    // The same ids as JSON through Submit (an older client's retry): the
    // remembered outcome, in JSON, at the same log index, applied once.
    let again = node
        .submit(pb::SubmitRequest {
            client_id: 2,
            request_id: 1,
            command_json: serde_json::to_vec(&hold).unwrap(),
            first_send: false,
            hot_command: None,
        })
        .await
        .expect("answered")
        .into_inner();
    assert_eq!(json_outcome(&again), held);
    assert_eq!(again.log_index, answers[0].log_index);

    // SubmitBatch answers JSON even for a hot command sent in protobuf.
    let old_rpc = node
        .submit_batch(pb::SubmitBatchRequest {
            requests: vec![compact(2, 1, &hold)],
        })
        .await
        .expect("answered")
        .into_inner()
        .responses;
    assert_eq!(json_outcome(&old_rpc[0]), held);

    // Malformed: no kind, or both forms at once. Refused, nothing applied.
    let empty = pb::SubmitRequest {
        hot_command: Some(pb::HotCommand { kind: None }),
        ..compact(2, 9, &hold)
    };
    let both = pb::SubmitRequest {
        command_json: serde_json::to_vec(&hold).unwrap(),
        ..compact(2, 10, &hold)
    };
    for bad in [empty, both] {
        let status = node
            .submit_batch_compact(pb::SubmitBatchRequest {
                requests: vec![bad],
            })
            .await
            .expect_err("malformed");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    let (read, _) = c
        .read(
            leader,
            pb::Consistency::Linearizable,
            &state_machine::Query::Event {
                event_id: "k".into(),
            },
        )
        .await
        .expect("read");
    assert_eq!(event_counts(&read), (9, 1, 0), "one seat held, once");
}
