//! The client's write coalescing, against the scripted fake nodes of
//! `common`: concurrent writes to one node leave together in one
//! SubmitBatch, each caller gets its own answer, and a failure inside a
//! batch is handled like the same failure of a lone Submit.

mod common;

use std::time::Duration;

use client::state_machine::Reply;
use client::{Client, ClientOptions, Ids};
use common::{command, fake_node, fast_options, Action};

/// Options for the coalescing tests: one batch in flight at a time, and an
/// attempt deadline far past the fake's deliberate delay.
fn batching_options() -> ClientOptions {
    ClientOptions {
        request_timeout_ms: 10_000,
        write_batch_max: 64,
        write_batches_in_flight_max: 1,
        ..fast_options()
    }
}

/// Writes `n` commands concurrently under new ids; returns their answers.
async fn concurrent_writes(client: &Client, n: usize) -> Vec<client::Submitted> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.submit(Ids::New, command()).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap().expect("every write succeeds"));
    }
    answers
}

// Goal: writes that arrive while a batch is in flight leave together in one
// SubmitBatch, and every caller gets its own request's answer (the fake
// answers `Released { hold_id: request_id }`), first sends still marked.
#[tokio::test]
async fn concurrent_writes_leave_in_batches_with_their_own_answers() {
    // The first request the node sees is slow, so the rest queue behind the
    // one batch slot and must leave in batches.
    let slow_first = vec![Action::After(
        Duration::from_millis(1_000),
        Box::new(Action::Ok),
    )];
    let (addr, node) = fake_node(1, slow_first).await;
    let client = Client::with_options([addr.to_string()], batching_options()).unwrap();
    let answers = concurrent_writes(&client, 40).await;
    for a in &answers {
        assert_eq!(
            a.outcome,
            Ok(Reply::Released {
                hold_id: a.ids.request_id
            }),
            "{a:?}"
        );
        assert_eq!(a.attempts, 1);
    }
    let batches = node.batches.lock().unwrap().clone();
    assert!(
        batches.iter().any(|&len| len > 1),
        "no batch of more than one write: {batches:?}"
    );
    assert!(batches.iter().all(|&len| len <= 64), "{batches:?}");
    assert_eq!(node.seen.lock().unwrap().len(), 40, "each write sent once");
    assert!(node.first_sends.lock().unwrap().iter().all(|&f| f));
    // The fake predates SubmitBatchCompact: the client asked it once or a
    // few times (batches in flight together), then every write reached it
    // as JSON, each exactly once (the refused compact batches applied
    // nothing and were resent as JSON, not retried).
    let compact_calls = node
        .compact_calls
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        (1..=batching_options().write_batches_in_flight_max).contains(&compact_calls),
        "{compact_calls} compact calls"
    );
    let json_only = node.json_only.lock().unwrap().clone();
    assert_eq!(json_only.len(), 40);
    assert!(
        json_only.iter().all(|&j| j),
        "a write reached the old node without JSON"
    );
}

// Goal: a request's failure inside a batch is handled like the same failure
// of a lone Submit: a follower's not_leader hint sends each write on to the
// leader, where it succeeds under the same ids.
#[tokio::test]
async fn a_not_leader_inside_a_batch_redirects_each_write() {
    let (leader_addr, leader) = fake_node(2, vec![]).await;
    let not_leader = Action::NotLeader {
        leader_addr: leader_addr.to_string(),
    };
    let mut plan = vec![Action::After(
        Duration::from_millis(1_000),
        Box::new(not_leader.clone()),
    )];
    plan.extend(std::iter::repeat_n(not_leader, 100));
    let (follower_addr, follower) = fake_node(1, plan).await;
    let client = Client::with_options([follower_addr.to_string()], batching_options()).unwrap();
    let answers = concurrent_writes(&client, 30).await;
    for a in &answers {
        assert_eq!(a.leader_id, 2, "{a:?}");
        assert!(a.attempts >= 2, "{a:?}");
    }
    assert!(
        follower.batches.lock().unwrap().iter().any(|&len| len > 1),
        "the follower saw no batch"
    );
    let mut sent_to_follower = follower.seen.lock().unwrap().clone();
    let mut answered_by_leader = leader.seen.lock().unwrap().clone();
    sent_to_follower.sort_unstable();
    answered_by_leader.sort_unstable();
    answered_by_leader.dedup();
    assert_eq!(sent_to_follower.len(), 30);
    assert_eq!(
        sent_to_follower, answered_by_leader,
        "every write went on to the leader under its own ids"
    );
}

// Goal: writes that find the node's queue full wait for room and leave in
// batches; none goes out as its own Submit (which would cost the busy node
// and caller a whole RPC per write). The queue holds 4 writes here and 40
// arrive while the first batch is stuck for a second.
#[tokio::test]
async fn writes_past_a_full_queue_wait_and_leave_in_batches() {
    let slow_first = vec![Action::After(
        Duration::from_millis(1_000),
        Box::new(Action::Ok),
    )];
    let (addr, node) = fake_node(1, slow_first).await;
    let options = ClientOptions {
        write_batch_max: 4,
        ..batching_options()
    };
    let client = Client::with_options([addr.to_string()], options).unwrap();
    let answers = concurrent_writes(&client, 40).await;
    assert_eq!(answers.len(), 40);
    assert!(answers.iter().all(|a| a.attempts == 1), "{answers:?}");
    let batches = node.batches.lock().unwrap().clone();
    assert!(batches.iter().all(|&len| len <= 4), "{batches:?}");
    assert_eq!(
        batches.iter().sum::<usize>(),
        40,
        "every write in a batch, none sent alone: {batches:?}"
    );
    assert_eq!(node.seen.lock().unwrap().len(), 40, "each write sent once");
}
