//! Goal: a follower that was down while 200 000 commands were written catches
//! up from the leader's log within a generous bound, and the test prints how
//! long it took. The entries are big enough (hundreds of holds each) that an
//! uncapped AppendEntries would carry tens of MiB: the catch-up goes through
//! the payload bounds (`max_payload_entries` and the byte cap that answers
//! `PayloadTooLarge`).
//!
//! Cost: about a minute in release on 2 cores (the writes dominate).

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::booking as pb;

/// Commands written while the follower is down.
const COMMANDS: u64 = 200_000;
/// Commands per SubmitBatch call (the node's `propose_batch_max`).
const BATCH_COMMANDS: u64 = 500;
/// SubmitBatch calls in flight at once.
const WRITERS: u64 = 4;
/// Seats per row of the event (rows = COMMANDS / SEATS_PER_ROW).
const SEATS_PER_ROW: u32 = 1_000;
/// Generous bound on the catch-up: a test of "it finishes", not of speed.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);
/// Bound on writing all the commands.
const WRITE_LIMIT: Duration = Duration::from_secs(600);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_down_for_200k_commands_catches_up_from_the_log() {
    let _serial = serial().await;
    let mut raft = raft_section();
    raft.propose_batch_max = BATCH_COMMANDS as usize;
    // The leader keeps its whole log, so the follower catches up from it.
    raft.snapshot_every_entries = 1_000_000;
    let mut c = Cluster::new("catch-up", 3, raft);
    for id in 1..=3 {
        c.start(id, id == 1);
    }
    let leader = c.wait_leader().await;
    let rows = (COMMANDS / SEATS_PER_ROW as u64) as u32;
    c.submit_ok(
        leader,
        1,
        1,
        &event_command("cu", rows, SEATS_PER_ROW, 600_000),
    )
    .await;
    c.submit_ok(leader, 1, 2, &open_sale("cu")).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(follower).await.expect("the follower stops cleanly");

    let written = Instant::now();
    let batches = COMMANDS / BATCH_COMMANDS;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut client = c.client(leader).await;
        tasks.push(tokio::spawn(async move {
            let mut last_index = 0;
            for b in (w..batches).step_by(WRITERS as usize) {
                let requests = (0..BATCH_COMMANDS)
                    .map(|i| {
                        let n = b * BATCH_COMMANDS + i;
                        let seat = format!(
                            "A-{}-{}",
                            1 + n / SEATS_PER_ROW as u64,
                            1 + n % SEATS_PER_ROW as u64
                        );
                        // A 64-character holder id (an identity provider's subject), so entries
                        // of 500 holds are ~45 KiB and a full AppendEntries passes the byte cap.
                        let cmd = hold_command("cu", &format!("fan-{n:060}"), &[seat.as_str()]);
                        pb::SubmitRequest {
                            client_id: 100 + w,
                            request_id: n + 1,
                            command_json: serde_json::to_vec(&cmd).unwrap(),
                            first_send: false,
                            hot_command: None,
                        }
                    })
                    .collect();
                let reply = client
                    .submit_batch(pb::SubmitBatchRequest { requests })
                    .await
                    .expect("submit_batch on a healthy leader")
                    .into_inner();
                for r in &reply.responses {
                    let outcome: serde_json::Value =
                        serde_json::from_slice(&r.outcome_json).unwrap();
                    assert!(outcome.get("Ok").is_some(), "a hold was refused: {outcome}");
                    last_index = last_index.max(r.log_index);
                }
            }
            last_index
        }));
    }
    let mut last_index = 0;
    for t in tasks {
        let index = tokio::time::timeout(WRITE_LIMIT, t)
            .await
            .expect("the writes finish")
            .unwrap();
        last_index = last_index.max(index);
    }
    println!(
        "wrote {COMMANDS} holds in {batches} batches in {:?}; last log index {last_index}",
        written.elapsed()
    );

    let started = Instant::now();
    c.start(follower, false);
    wait_for(
        "the follower applied the whole log",
        CATCH_UP_LIMIT,
        || async {
            let s = c.status(follower).await?;
            (s.applied_index >= last_index).then_some(())
        },
    )
    .await;
    let caught_up = started.elapsed();
    println!(
        "catch-up: node {follower} applied {last_index} entries ({COMMANDS} holds) {caught_up:?} after restart (bound {CATCH_UP_LIMIT:?})"
    );
    c.wait_converged(last_index).await;
    c.stop_all().await;
}
