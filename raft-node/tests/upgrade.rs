//! The version handshake of rolling upgrades, end to end on real `booking
//! node` processes: a member whose build applies an older command set (the
//! fault hook `BOOKING_FAULT_COMMAND_SET` makes a node report one) keeps
//! the leader from proposing the newer commands, which are refused as
//! `upgrade_pending` without a log write, while the older commands go on;
//! once the member runs the current build again, the same commands succeed.

mod common;

use common::*;
use proto::booking as pb;
use raft_node::node::command_sets::{COMMAND_SET_FILE, FAULT_COMMAND_SET_ENV};
use state_machine::{command_set, Command, Outcome, Reply, WaitingRoomSpec};
use testkit::nodes::Launch;
use testkit::ConfigFile;

const TEST: &str = "upgrade";

/// Attempts at [`submit_raw`] that may meet an election (a redirect, or no leader).
const SUBMIT_ATTEMPTS_MAX: usize = 20;

/// One `Submit` of `command`, as JSON, not a first send, to `node` and then
/// to whichever node it names as leader: the answer of the leader, success
/// or error (an election on a loaded machine must not fail the test).
async fn submit_raw(
    c: &NodeCluster,
    mut node: u64,
    request_id: u64,
    command: &Command,
) -> Result<pb::SubmitResponse, tonic::Status> {
    let mut last = None;
    for _ in 0..SUBMIT_ATTEMPTS_MAX {
        let mut client = c.rpc.client(node).await;
        let request = tonic::Request::new(pb::SubmitRequest {
            client_id: 7,
            request_id,
            command_json: serde_json::to_vec(command).expect("a command serialises"),
            first_send: false,
            hot_command: None,
        });
        let status = match client.submit(request).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(status) => status,
        };
        let meta = |key: &str| {
            status
                .metadata()
                .get(key)?
                .to_str()
                .ok()
                .map(str::to_string)
        };
        match meta("booking-error").as_deref() {
            Some("not_leader") => {
                node = meta("booking-leader-id")
                    .and_then(|id| id.parse().ok())
                    .expect("a redirect names the leader");
            }
            Some("no_leader") => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            _ => return Err(status),
        }
        last = Some(status);
    }
    panic!("no leader answered within {SUBMIT_ATTEMPTS_MAX} attempts: {last:?}");
}

/// The leader's `Status` once it reports `cluster_command_set == set`.
async fn wait_cluster_set(c: &NodeCluster, set: u32) -> pb::StatusResponse {
    wait_for(
        &format!("a leader reporting cluster command set {set}"),
        WAIT,
        || async {
            let leader = c.rpc.status(1).await?.leader_id?;
            let s = c.rpc.status(leader).await?;
            (s.role == "Leader" && s.cluster_command_set == set).then_some(s)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_an_older_member_cannot_decode_waits_for_the_upgrade() {
    // Goal: while one member reports an older command set, the leader
    // refuses a command of a newer set with `upgrade_pending` (not applied)
    // and still commits the older commands; once that member runs the
    // current build again, the newer command succeeds, and the refused one
    // left no trace in the state.
    let Some(bin) = booking_bin_or_skip(TEST) else {
        return;
    };
    let _serial = serial().await;
    let file = ConfigFile::new("upgrade")
        .with_free_nodes(3)
        .with_free_metrics();
    let mut launch = Launch::logging("info");
    launch
        .env
        .push((FAULT_COMMAND_SET_ENV.to_string(), "1".to_string()));
    let mut c = NodeCluster::start_with(&bin, file, launch);
    let leader = c.wait_leader_of(3).await;
    let mut create = event_command("e", 2, 10, 600_000);
    if let Command::CreateEvent(spec) = &mut create {
        spec.waiting_room = Some(WaitingRoomSpec {
            enabled: true,
            admit_batch: 10,
        });
    }
    c.rpc.submit_ok(leader, 1, 1, &create).await;
    let reserve = |count| Command::ReserveQueueBlock {
        event_id: "e".into(),
        count,
    };
    assert_eq!(
        reserve(1).command_set(),
        command_set::BLOCK_WAITING_ROOM,
        "the test needs a command newer than the set it makes a member report"
    );

    // "Downgrade" a follower: it reports the set from before the waiting room.
    let old = c
        .nodes
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    c.nodes.stop(old).expect("the follower stops");
    let data_dir = c.nodes.config().node_data_dir(old);
    std::fs::write(
        data_dir.join(COMMAND_SET_FILE),
        command_set::FORGET_REQUESTS.to_string(),
    )
    .expect("the hook's file");
    c.nodes.start(old, false).expect("the follower restarts");
    let status = wait_cluster_set(&c, command_set::FORGET_REQUESTS).await;
    let leader = status.node_id;
    assert_eq!(status.command_set, command_set::CURRENT);

    // The operator sees it: the leader's gauges, and `bookctl status`
    // naming the older member.
    let metrics_of = |id: u64| {
        c.nodes
            .config()
            .node(id)
            .and_then(|n| n.metrics_addr)
            .expect("a metrics address")
    };
    wait_for(
        "the leader's booking_cluster_command_set gauge at 2",
        WAIT,
        || async {
            let leader = wait_cluster_set(&c, command_set::FORGET_REQUESTS)
                .await
                .node_id;
            let gauge = metric(metrics_of(leader), "booking_cluster_command_set").await?;
            (gauge == u64::from(command_set::FORGET_REQUESTS)).then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(metrics_of(old), "booking_command_set").await,
        Some(u64::from(command_set::FORGET_REQUESTS))
    );
    let bookctl = bin.with_file_name("bookctl");
    if bookctl.is_file() {
        let out = std::process::Command::new(&bookctl)
            .arg("--config")
            .arg(c.nodes.config_path())
            .arg("status")
            .output()
            .expect("bookctl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "bookctl status: {text}");
        assert!(
            text.contains("upgrade pending") && text.contains(&format!("node {old} (set 2)")),
            "bookctl status names the older member: {text}"
        );
    } else {
        testkit::skip_or_fail(
            TEST,
            "no bookctl beside the booking binary: the status line is unchecked",
        );
    }

    // The newer command is refused, saying why; nothing reaches the log.
    let applied_before = status.applied_index;
    let refused = submit_raw(&c, leader, 100, &reserve(5))
        .await
        .expect_err("a command the older member cannot decode is refused");
    let meta = |key: &str| {
        refused
            .metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(meta("booking-error").as_deref(), Some("upgrade_pending"));
    assert_eq!(meta("booking-outcome").as_deref(), Some("not_applied"));
    assert!(
        refused.message().contains(&format!("node {old}")),
        "the refusal names the older member: {}",
        refused.message()
    );
    // Nothing is due before the sale opens (no holds, no schedule), so the
    // leader's log stands still unless the refused command reached it (or
    // an election committed its blank entry, which the term shows; the
    // position checked at the end covers that case).
    let after = c.rpc.status(leader).await.expect("the leader answers");
    if after.term == status.term {
        assert_eq!(
            after.applied_index, applied_before,
            "the refused command reached the log"
        );
    }
    // In a batch, only that request is refused; the others are committed.
    // Sent again (same ids: deduplicated) if an election intervened.
    let batch = pb::SubmitBatchRequest {
        requests: vec![
            pb::SubmitRequest {
                client_id: 7,
                request_id: 101,
                command_json: serde_json::to_vec(&reserve(5)).unwrap(),
                ..Default::default()
            },
            pb::SubmitRequest {
                client_id: 7,
                request_id: 102,
                command_json: serde_json::to_vec(&open_sale("e")).unwrap(),
                ..Default::default()
            },
        ],
    };
    let redirected = |r: &pb::SubmitResponse| {
        r.error.as_ref().is_some_and(|e| {
            matches!(
                e.metadata.get("booking-error").map(String::as_str),
                Some("not_leader" | "no_leader")
            )
        })
    };
    let mut answers = Vec::new();
    for _ in 0..SUBMIT_ATTEMPTS_MAX {
        let leader = wait_cluster_set(&c, command_set::FORGET_REQUESTS)
            .await
            .node_id;
        let mut client = c.rpc.client(leader).await;
        answers = client
            .submit_batch(batch.clone())
            .await
            .expect("the batch is answered")
            .into_inner()
            .responses;
        if !answers.iter().any(redirected) {
            break;
        }
    }
    let error = answers[0].error.as_ref().expect("the reserve is refused");
    assert_eq!(error.grpc_code, tonic::Code::FailedPrecondition as i32);
    assert!(
        error
            .metadata
            .get("booking-error")
            .is_some_and(|e| e == "upgrade_pending"),
        "{error:?}"
    );
    assert!(answers[1].error.is_none(), "{:?}", answers[1]);
    let opened: Outcome = serde_json::from_slice(&answers[1].outcome_json).unwrap();
    assert!(matches!(opened, Ok(Reply::SaleOpened { .. })), "{opened:?}");

    // The member runs the current build again: the refusal lifts.
    c.nodes.stop(old).expect("the follower stops");
    std::fs::remove_file(data_dir.join(COMMAND_SET_FILE)).expect("the hook's file goes");
    c.nodes.start(old, false).expect("the follower restarts");
    let status = wait_cluster_set(&c, command_set::CURRENT).await;
    let (outcome, _) = c.rpc.submit(status.node_id, 7, 103, &reserve(5)).await;
    match outcome {
        Ok(Reply::QueueBlock { first_position, .. }) => assert_eq!(
            first_position, 1,
            "the refused reservations took no positions"
        ),
        other => panic!("the reservation after the upgrade: {other:?}"),
    }
    c.nodes.stop_all();
}
