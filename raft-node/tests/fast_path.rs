//! Goal: a first send that the leader can prove refused is answered without a
//! log write (ReadIndex, then the applied state), and everything else — a
//! resend, a hold that would succeed, a first send to a follower — still goes
//! through the log, exactly as before.

mod common;

use common::*;
use proto::booking as pb;
use state_machine::{BookingError, Command, Outcome};

async fn send(
    c: &Cluster,
    node: u64,
    request_id: u64,
    command: &Command,
    first_send: bool,
) -> Result<pb::SubmitResponse, tonic::Status> {
    let mut client = c.client(node).await;
    client
        .submit(pb::SubmitRequest {
            client_id: 9,
            request_id,
            command_json: serde_json::to_vec(command).unwrap(),
            first_send,
            hot_command: None,
        })
        .await
        .map(|r| r.into_inner())
}

fn outcome(r: &pb::SubmitResponse) -> Outcome {
    serde_json::from_slice(&r.outcome_json).expect("outcome json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provable_refusals_skip_the_log_and_resends_do_not() {
    let _serial = serial().await;
    let mut c = Cluster::new("fastpath", 3, raft_section());
    for id in 1..=3 {
        c.start(id, id == 1);
    }
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.submit_ok(leader, 1, 1, &event_command("f", 1, 10, 600_000))
        .await;
    c.submit_ok(leader, 1, 2, &open_sale("f")).await;

    // A first send that would succeed goes through the log.
    let taken = hold_command("f", "ann", &["A-1-1"]);
    let r = send(&c, leader, 1, &taken, true).await.unwrap();
    assert!(outcome(&r).is_ok(), "{r:?}");
    assert!(!r.answered_without_log_write);
    let hold_index = r.log_index;

    // A first send on a taken seat: refused without a log write, at an
    // applied index that already includes the hold.
    let before = c.status(leader).await.unwrap();
    let contender = hold_command("f", "bob", &["A-1-1"]);
    let r = send(&c, leader, 2, &contender, true).await.unwrap();
    assert!(
        matches!(
            outcome(&r),
            Err(BookingError::SeatUnavailable { ref seats }) if seats == &["A-1-1".to_string()]
        ),
        "{r:?}"
    );
    assert!(r.answered_without_log_write, "{r:?}");
    assert!(r.log_index >= hold_index);
    let after = c.status(leader).await.unwrap();
    assert_eq!(
        after.last_log_index, before.last_log_index,
        "the refusal wrote nothing to the log"
    );
    assert_eq!(
        after.answered_without_log_write,
        before.answered_without_log_write + 1
    );

    // The same request id resent (first_send unset): through the log, which
    // refuses it too and remembers the refusal.
    let r = send(&c, leader, 2, &contender, false).await.unwrap();
    assert!(!r.answered_without_log_write, "{r:?}");
    assert!(r.log_index > after.last_log_index);
    assert!(matches!(
        outcome(&r),
        Err(BookingError::SeatUnavailable { .. })
    ));

    // A first send of an id the log already answered: the remembered outcome,
    // without a log write.
    let r = send(&c, leader, 1, &taken, true).await.unwrap();
    assert!(r.answered_without_log_write);
    assert!(outcome(&r).is_ok(), "the remembered success: {r:?}");

    // A follower never answers: it redirects, first send or not.
    let err = send(&c, follower, 3, &contender, true).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Other refusals the fast path knows.
    let r = send(
        &c,
        leader,
        4,
        &hold_command("nope", "bob", &["A-1-2"]),
        true,
    )
    .await
    .unwrap();
    assert!(r.answered_without_log_write);
    assert!(matches!(
        outcome(&r),
        Err(BookingError::UnknownEvent { .. })
    ));
    let r = send(&c, leader, 5, &hold_command("f", "bob", &["Q-1-2"]), true)
        .await
        .unwrap();
    assert!(r.answered_without_log_write);
    assert!(matches!(outcome(&r), Err(BookingError::UnknownSeat { .. })));

    // The seat frees up (release through the log): the next first send
    // succeeds through the log, never a stale refusal.
    let hold_id = match outcome(&send(&c, leader, 1, &taken, false).await.unwrap()) {
        Ok(state_machine::Reply::Held { hold_id, .. }) => hold_id,
        other => panic!("{other:?}"),
    };
    c.submit_ok(
        leader,
        1,
        3,
        &Command::Release {
            hold_id,
            holder: "ann".into(),
        },
    )
    .await;
    let r = send(&c, leader, 6, &contender, true).await.unwrap();
    assert!(outcome(&r).is_ok(), "{r:?}");
    assert!(!r.answered_without_log_write);
    c.stop_all().await;
}
