//! The answer a deposed leader gives for an entry it had queued, when that
//! entry still commits under the next leader: never "not applied".
//!
//! With five voters, a leader that reaches one follower and then loses
//! leadership leaves its entry on two logs; the other three may elect that
//! follower, which commits the entry. The deposed leader's caller then
//! hears openraft's `ForwardToLeader` for an entry that did commit
//! (`node::proposer::lost_leadership_in_flight` answers `outcome_unknown`),
//! or, if its log catches up first, the applied outcome. What this test
//! constructs, with real `booking node` processes (`<repo>/target/release/
//! booking` or `$BOOKING_BIN`) so nodes can be stopped (SIGSTOP) while they
//! keep their connections:
//! 1. five voters, leader L; three followers stopped, so L's next entry
//!    reaches only the fourth follower F (two of five: not committed);
//! 2. a hold submitted straight to L (no redirects, no retries), waited on
//!    until F's log holds it;
//! 3. L stopped; two of the three stopped followers resumed: with L and
//!    the third still stopped, a winner needs the votes of F and both of
//!    them, and F votes for nobody whose log lacks the entry, so F is
//!    elected (a new term) and commits the entry;
//! 4. L resumed: it hears the new term and answers its caller.
//!
//! The answer must be the hold's outcome or `outcome_unknown`; a same-id
//! resend must then be answered, deduplicated, with the hold at the entry's
//! index. Seen so far: the hold's outcome (openraft 0.9 keeps the deposed
//! leader's responder and answers it when the entry applies there), so the
//! `ForwardToLeader` branch itself is covered by the proposer's unit test.
//! Must not: sleep for conditions (every wait is a bounded poll).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use proto::booking::booking_client::BookingClient;
use state_machine::{Outcome, Reply};
use testkit::nodes::{Launch, NodeProcs};
use testkit::ConfigFile;

const TEST: &str = "truncate_then_commit";

fn booking_bin() -> Option<PathBuf> {
    let path = std::env::var_os("BOOKING_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/booking")
        });
    path.is_file().then_some(path)
}

/// What the deposed leader answered its one caller.
#[derive(Debug)]
enum Answer {
    Applied(Outcome, u64),
    /// gRPC code, `booking-error`, `booking-outcome`, message.
    Error(tonic::Code, String, String, String),
}

// Ignored: it passed 5 of 11 runs on a loaded 2-core box; the others timed
// out waiting for the follower that holds the entry to win. Seen once in
// the nodes' logs: another follower won with a log one entry shorter than
// the hold, so the wait below for "the follower holds the hold" was met by
// an earlier entry (an expiry tick); turning the ticks off and waiting for
// the leader's log to grow past its length at the pause did not fix it
// (0 of 4), so the cause is not known yet. Run it by hand with
// `--ignored`.
#[ignore = "flaky (5 of 11 runs passed): the follower holding the entry does not always win; see the comment"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_the_deposed_leader_queued_and_the_next_leader_committed_is_never_answered_not_applied(
) {
    let Some(bin) = booking_bin() else {
        testkit::skip_or_fail(
            TEST,
            "no booking binary: build it (cargo build --release --bin booking) or set BOOKING_BIN",
        );
        return;
    };
    let _serial = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let file = ConfigFile::new("truncate")
        .with_free_nodes(5)
        .with_data_dir(dir.path().join("data"));
    let mut procs = NodeProcs::create(&bin, dir.path(), file, Launch::logging("info")).unwrap();
    // Only for its raw gRPC helpers (status, submit); starts no node.
    let rpc = Cluster::with_config(procs.config().clone());
    procs.start_all().unwrap();

    let voters_ready = || async {
        let s = rpc.status(1).await?;
        let l = s.leader_id?;
        let ls = rpc.status(l).await?;
        (ls.role == "Leader" && ls.members.iter().filter(|m| m.voter).count() == 5).then_some(l)
    };
    let leader = wait_for("a leader of five voters", WAIT, voters_ready).await;
    rpc.submit_ok(leader, 1, 1, &event_command("e", 1, 10, 600_000))
        .await;
    let before = rpc.submit_ok(leader, 1, 2, &open_sale("e")).await;
    wait_for("every node applied the sale", WAIT, || async {
        for id in 1..=5 {
            if rpc.status(id).await?.applied_index < before {
                return None;
            }
        }
        Some(())
    })
    .await;
    let old_term = rpc.status(leader).await.unwrap().term;
    let others: Vec<u64> = (1..=5).filter(|id| *id != leader).collect();
    let (reached, stopped) = (others[0], &others[1..]);
    for &f in stopped {
        procs.pause(f).unwrap();
    }

    // The hold, straight to L, once; the answer is whatever L says.
    let addr = procs.addr(leader).to_string();
    let channel = rpc.channel_to(&addr);
    let hold = hold_command("e", "deposed", &["A-1-1"]);
    let body = serde_json::to_vec(&hold).unwrap();
    let call = tokio::spawn(async move {
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
    });
    // The entry is on L and F only: F's log grows past the sale and holds
    // all L has.
    let entry_index = wait_for(
        "the follower L still reaches to log the hold",
        WAIT,
        || async {
            let f = rpc.status(reached).await?.last_log_index;
            let l = rpc.status(leader).await?.last_log_index;
            (f > before && f >= l).then_some(f)
        },
    )
    .await;
    let l_status = rpc.status(leader).await.unwrap();
    assert!(
        l_status.commit_index < entry_index && !call.is_finished(),
        "with three of five voters stopped nothing may commit: {l_status:?}"
    );

    procs.pause(leader).unwrap();
    for &f in &stopped[..2] {
        procs.resume(f).unwrap();
    }
    // Only F holds the entry; the two resumed followers cannot win without
    // F's vote (three of five), and F gives none to a shorter log.
    let new_leader = wait_for("a new leader among the resumed", WAIT, || async {
        let s = rpc.status(reached).await?;
        (s.role == "Leader" && s.term > old_term).then_some(s.node_id)
    })
    .await;
    assert_eq!(new_leader, reached);
    wait_for(
        "the new leader to commit the deposed leader's entry",
        WAIT,
        || async { (rpc.status(reached).await?.applied_index >= entry_index).then_some(()) },
    )
    .await;

    procs.resume(leader).unwrap();
    procs.resume(stopped[2]).unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(60), call)
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
            assert!(
                *index > before && *index <= entry_index,
                "applied at {index}"
            );
        }
        Answer::Error(code, error, outcome, message) => {
            assert_eq!(
                (code, error.as_str(), outcome.as_str()),
                (&tonic::Code::Unavailable, "outcome_unknown", "unknown"),
                "an entry that committed was answered {answer:?}"
            );
            assert!(
                message.contains("leadership moved"),
                "not the lost-leadership answer: {message}"
            );
        }
    }

    // The client's course after `outcome_unknown`: resend under the same
    // ids; the dedupe answers with the first outcome, at its entry.
    let (outcome, index) = rpc.submit(reached, 7, 1, &hold).await;
    assert!(
        matches!(outcome, Ok(Reply::Held { .. })),
        "the resend answered {outcome:?}"
    );
    assert!(
        index > before && index <= entry_index,
        "the hold applied at {index}, not at the entry the deposed leader queued (after {before}, at most {entry_index})"
    );
    let (r, _) = rpc
        .read(
            reached,
            proto::booking::Consistency::Linearizable,
            &state_machine::Query::Event {
                event_id: "e".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(event_counts(&r).1, 1, "exactly one seat held, once");
    procs.stop_all();
}
