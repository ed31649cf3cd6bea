//! What a deposed leader answers the caller of an entry it had queued, in
//! both ways such an entry can end with five voters: a follower it reached
//! is elected and commits it, or a leader it never reached replaces it.
//! The first is never answered "not applied"; the second is answered
//! `outcome_unknown` (`node::proposer::lost_leadership_in_flight`), and a
//! same-id resend holds the seat once.
//!
//! What openraft 0.9 gives the caller (`RaftCore::client_resp_channels`, a
//! responder per log index, kept when the leader steps down): the applied
//! outcome when the entry at that index applies on the deposed leader, or
//! `ForwardToLeader` when that index is truncated there
//! (`DeleteConflictLog`). A truncated entry conflicts with the next
//! leader's entry at its index, so it never commits: for an entry that
//! commits `ForwardToLeader` cannot be forced, and the deposed leader
//! answers the applied outcome, or `outcome_unknown` if the proposer's own
//! wait (`PROPOSE_WAIT_MS`, 10 s) ran out first. The proposer cannot tell
//! the two endings apart when `ForwardToLeader` arrives, so it says
//! `outcome_unknown`, and the second test checks that branch exactly.
//!
//! How the tests force the case, with real `booking node` processes
//! (`<repo>/target/release/booking` or `$BOOKING_BIN`):
//! - the hold is the only entry after the sale: `[booking]
//!   expiry_sweep_ms` is an hour, so the leader's tick task proposes no
//!   `Tick` or `ForgetRequests` (checked: the leader's last log index is the
//!   sale's, then the sale's plus one);
//! - a follower that must not get the hold is killed (SIGKILL) before it
//!   is proposed and restarted from its data directory after the leader is
//!   stopped. A stopped (SIGSTOP) process still accepts on its sockets:
//!   the earlier version paused those followers, and once resumed they
//!   read the leader's buffered AppendEntries, appended the hold, and one
//!   of them could win (seen in the nodes' logs of its failing runs);
//! - the leader is stopped (SIGSTOP) once the hold is on every log it
//!   should reach, so it keeps its caller's connection and its responder
//!   and sends no heartbeat, and resumed once the next leader committed;
//! - the outcome of the election is forced by the logs: in the first test
//!   the two restarted followers lack the hold and the follower that has it
//!   grants no vote to a shorter log, so only that follower can gather
//!   three of five votes.
//!
//! Must not: sleep for conditions (every wait is a bounded poll).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use proto::booking::booking_client::BookingClient;
use state_machine::{Outcome, Reply};
use testkit::ConfigFile;

const TEST: &str = "truncate_then_commit";
/// The sweep of the leader's tick task: longer than any run of these
/// tests, so no entry but the tests' own is ever proposed.
const NO_TICKS_SWEEP_MS: u64 = 3_600_000;
/// How long the deposed leader's caller may wait for its answer once the
/// leader is resumed.
const ANSWER_WAIT: Duration = Duration::from_secs(60);

/// What the deposed leader answered its one caller.
#[derive(Debug)]
enum Answer {
    Applied(Outcome, u64),
    /// gRPC code, `booking-error`, `booking-outcome`, message.
    Error(tonic::Code, String, String, String),
}

impl Answer {
    /// Whether this is the `outcome_unknown` status.
    fn is_outcome_unknown(&self) -> bool {
        matches!(self, Answer::Error(code, error, outcome, _)
            if *code == tonic::Code::Unavailable && error == "outcome_unknown" && outcome == "unknown")
    }
}

/// Five voters, an event with an open sale applied everywhere, and nothing
/// else in the log.
struct Setup {
    c: NodeCluster,
    leader: u64,
    /// The other four, in id order.
    followers: Vec<u64>,
    /// The sale's log index: the last entry of every log.
    sale_index: u64,
    /// The leader's term: a new leader's is higher.
    leader_term: u64,
}

async fn five_voters_with_an_open_sale(bin: &Path) -> Setup {
    let mut file = ConfigFile::new("truncate").with_free_nodes(5);
    file.booking.expiry_sweep_ms = NO_TICKS_SWEEP_MS;
    let c = NodeCluster::start(bin, file);
    let leader = c.wait_leader_of(5).await;
    c.rpc
        .submit_ok(leader, 1, 1, &event_command("e", 1, 10, 600_000))
        .await;
    let sale_index = c.rpc.submit_ok(leader, 1, 2, &open_sale("e")).await;
    wait_for("every node applied the sale", WAIT, || async {
        for id in 1..=5 {
            if c.rpc.status(id).await?.applied_index < sale_index {
                return None;
            }
        }
        Some(())
    })
    .await;
    let l = c.rpc.status(leader).await.expect("the leader answers");
    assert_eq!(
        (l.role.as_str(), l.last_log_index),
        ("Leader", sale_index),
        "nothing may follow the sale (the tick task is off): {l:?}"
    );
    Setup {
        leader,
        followers: (1..=5).filter(|id| *id != leader).collect(),
        sale_index,
        leader_term: l.term,
        c,
    }
}

/// Sends the hold (client 7, request 1) straight to `leader`, once: no
/// redirect, no retry; the answer is whatever that node says.
fn spawn_hold(s: &Setup) -> tokio::task::JoinHandle<Answer> {
    let channel = s.c.rpc.channel_to(&s.c.nodes.addr(s.leader).to_string());
    let body = serde_json::to_vec(&the_hold()).unwrap();
    tokio::spawn(async move {
        let mut client = BookingClient::new(channel);
        let mut request = tonic::Request::new(proto::booking::SubmitRequest {
            client_id: 7,
            request_id: 1,
            command_json: body,
            first_send: false,
            hot_command: None,
        });
        request.set_timeout(Duration::from_secs(120));
        match client.submit(request).await {
            Ok(r) => {
                let r = r.into_inner();
                Answer::Applied(
                    serde_json::from_slice(&r.outcome_json).unwrap(),
                    r.log_index,
                )
            }
            Err(status) => {
                let meta = |k: &str| {
                    status
                        .metadata()
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                Answer::Error(
                    status.code(),
                    meta("booking-error"),
                    meta("booking-outcome"),
                    status.message().to_string(),
                )
            }
        }
    })
}

fn the_hold() -> state_machine::Command {
    hold_command("e", "deposed", &["A-1-1"])
}

/// Waits until the leader's log holds exactly one entry past the sale (the
/// hold) and every node of `reached` acknowledged it (the leader's match
/// index: on the follower's disk, not only in the leader's memory).
async fn wait_hold_logged(s: &Setup, reached: &[u64]) -> u64 {
    let hold_index = s.sale_index + 1;
    let l = wait_for("the hold on the leader's log", WAIT, || async {
        let l = s.c.rpc.status(s.leader).await?;
        let acknowledged = reached.iter().all(|f| {
            l.replication
                .iter()
                .any(|r| r.node_id == *f && r.matched_index >= Some(l.last_log_index))
        });
        (l.last_log_index > s.sale_index && acknowledged).then_some(l)
    })
    .await;
    assert_eq!(
        l.last_log_index, hold_index,
        "only the hold may follow the sale: {l:?}"
    );
    assert!(
        l.commit_index < hold_index,
        "with three of five voters down nothing may commit: {l:?}"
    );
    hold_index
}

/// The client's course after `outcome_unknown`: resend under the same ids
/// through `via`; answers the outcome and index, after checking that the
/// event holds exactly one seat.
async fn resend(s: &Setup, via: u64) -> (Outcome, u64) {
    let (outcome, index) = s.c.rpc.submit(via, 7, 1, &the_hold()).await;
    assert!(
        matches!(outcome, Ok(Reply::Held { .. })),
        "the resend answered {outcome:?}"
    );
    let (r, _) =
        s.c.rpc
            .read(
                via,
                proto::booking::Consistency::Linearizable,
                &state_machine::Query::Event {
                    event_id: "e".into(),
                },
            )
            .await
            .unwrap();
    assert_eq!(event_counts(&r).1, 1, "exactly one seat held, once");
    (outcome, index)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_the_deposed_leader_queued_and_a_follower_it_reached_committed_is_never_answered_not_applied(
) {
    // Goal: a hold on the deposed leader and the one follower it reached,
    // committed by that follower once elected, is answered applied or
    // `outcome_unknown` (never `not_applied`), and a resend finds it.
    let Some(bin) = booking_bin_or_skip(TEST) else {
        return;
    };
    let _serial = serial().await;
    let mut s = five_voters_with_an_open_sale(&bin).await;
    let (leader, holder) = (s.leader, s.followers[0]);
    let revived = s.followers[1..3].to_vec();
    let late = s.followers[3];
    for &f in &s.followers[1..] {
        s.c.nodes.kill(f).unwrap();
    }

    let call = spawn_hold(&s);
    let hold_index = wait_hold_logged(&s, &[holder]).await;
    let h = s.c.rpc.status(holder).await.unwrap();
    assert_eq!(h.last_log_index, hold_index, "{h:?}");
    assert!(!call.is_finished(), "answered before it could commit");

    s.c.nodes.pause(leader).unwrap();
    for &f in &revived {
        s.c.nodes.restart(f).unwrap();
    }
    // Three of five votes are needed among the holder and the two
    // restarted followers; the holder grants none to their shorter logs.
    let candidates: Vec<u64> = [holder]
        .into_iter()
        .chain(revived.iter().copied())
        .collect();
    let new_leader = wait_for("a leader in a new term", WAIT, || async {
        for &id in &candidates {
            let st = s.c.rpc.status(id).await?;
            if st.role == "Leader" && st.term > s.leader_term {
                return Some(id);
            }
        }
        None
    })
    .await;
    assert_eq!(
        new_leader, holder,
        "only the follower holding the hold can win"
    );
    wait_for("the new leader applied the hold", WAIT, || async {
        (s.c.rpc.status(holder).await?.applied_index >= hold_index).then_some(())
    })
    .await;

    s.c.nodes.resume(leader).unwrap();
    s.c.nodes.restart(late).unwrap();
    let answer = tokio::time::timeout(ANSWER_WAIT, call)
        .await
        .expect("the deposed leader answers within a minute")
        .unwrap();
    eprintln!("{TEST}: the deposed leader answered {answer:?}");
    match &answer {
        Answer::Applied(outcome, index) => {
            assert!(
                matches!(outcome, Ok(Reply::Held { .. })),
                "the committed hold answered {outcome:?}"
            );
            assert_eq!(*index, hold_index, "the hold applied elsewhere");
        }
        // The proposer's wait ran out while the leader was stopped.
        Answer::Error(..) => assert!(
            answer.is_outcome_unknown(),
            "a hold that committed was answered {answer:?}"
        ),
    }
    let (_, index) = resend(&s, holder).await;
    assert_eq!(
        index, hold_index,
        "the resend is answered from the entry the deposed leader queued"
    );
    s.c.nodes.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_the_deposed_leader_queued_and_the_next_leader_replaced_is_answered_outcome_unknown_and_a_resend_holds_it_once(
) {
    // Goal: a hold on the deposed leader only, replaced by the next leader's
    // entry, is answered `outcome_unknown` through openraft's
    // `ForwardToLeader`, and a same-id resend holds the seat once.
    let Some(bin) = booking_bin_or_skip(TEST) else {
        return;
    };
    let _serial = serial().await;
    let mut s = five_voters_with_an_open_sale(&bin).await;
    let leader = s.leader;
    for &f in &s.followers {
        s.c.nodes.kill(f).unwrap();
    }

    let proposed = Instant::now();
    let call = spawn_hold(&s);
    let hold_index = wait_hold_logged(&s, &[]).await;

    s.c.nodes.pause(leader).unwrap();
    for &f in &s.followers {
        s.c.nodes.restart(f).unwrap();
    }
    // The four lack the hold; whoever wins writes its own first entry at
    // the hold's index.
    let followers = s.followers.clone();
    let new_leader = wait_for(
        "a leader in a new term that applied its first entry",
        WAIT,
        || async {
            for &id in &followers {
                let st = s.c.rpc.status(id).await?;
                if st.role == "Leader" && st.term > s.leader_term && st.applied_index >= hold_index
                {
                    return Some(id);
                }
            }
            None
        },
    )
    .await;

    s.c.nodes.resume(leader).unwrap();
    let answer = tokio::time::timeout(ANSWER_WAIT, call)
        .await
        .expect("the deposed leader answers within a minute")
        .unwrap();
    let waited = proposed.elapsed();
    eprintln!("{TEST}: the deposed leader answered {answer:?} {waited:?} after the proposal");
    match &answer {
        Answer::Error(.., message) if answer.is_outcome_unknown() => assert!(
            message.contains("leadership moved"),
            "not the ForwardToLeader branch ({waited:?} after the proposal; the proposer's own wait is 10 s): {message}"
        ),
        _ => panic!("a hold the next leader replaced was answered {answer:?}"),
    }
    let (_, index) = resend(&s, new_leader).await;
    assert!(
        index > hold_index,
        "the resend applied at {index}, but {hold_index} holds the new leader's entry"
    );
    s.c.nodes.stop_all();
}
