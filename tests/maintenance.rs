//! Planned maintenance on real `booking node` processes, under load:
//!
//! - `bookctl leader transfer` (and the client's `transfer_leader`) moves
//!   leadership to the voter asked for, while a writer keeps writing: every
//!   write succeeds (the client's retries keep their ids), and bad targets
//!   are refused.
//! - A rolling restart (the client's `restart_order`, `prepare_restart`,
//!   `wait_rejoined`; what `bookctl rolling-restart` runs) of every node of a
//!   3-node cluster under a steady hold load through the gateway fails no
//!   request (a retry with the same `Idempotency-Key` is fine), and every
//!   acknowledged hold is on every node afterwards.
//!
//! Ports: 32800–32999 (nodes base+1..3, the gateway base+50). The tests of
//! this binary run one at a time (`testkit::serial`); every wait is a poll
//! with a generous bound.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::state_machine::{Command as Cmd, Selection};
use client::{Client, Ids};
use common::http::{create_open_event, hold, http, session};
use common::seats::converged_views;
use common::{json_of, test_event, wait_for, TestCluster, WAIT};

/// How long one gateway request may keep being retried (same key) before
/// the test counts it as failed: the client library's own retry budget.
const REQUEST_BUDGET: Duration = Duration::from_secs(30);

async fn write(client: &Client, command: Cmd) {
    client
        .submit(Ids::New, command)
        .await
        .expect("write")
        .into_reply()
        .expect("applied");
}

// Goal: a transfer moves leadership to the voter asked for (and bookctl's
// to the most up-to-date one) while writes keep succeeding; a non-voter
// target is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_transfer_moves_leadership_without_failing_writes() {
    let _serial = testkit::serial().await;
    let mut cluster = TestCluster::new(32800, 3);
    cluster.start_all();
    // Moving leadership is administration: the admin certificate, as bookctl.
    let client = cluster.admin_client();
    let leader = cluster.wait_leader(&client).await;
    write(&client, test_event("gig").create()).await;
    write(
        &client,
        Cmd::OpenSale {
            event_id: "gig".into(),
        },
    )
    .await;

    // A writer that holds one seat after another (20 seats), each with the
    // client's bounded retries under one request id.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, stop) = (client.clone(), stop.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..20u32 {
                if stop.load(Ordering::Relaxed) && n >= 4 {
                    break;
                }
                let command = Cmd::Hold {
                    event_id: "gig".into(),
                    holder: format!("fan-{n}"),
                    selection: Selection::Seats(vec![format!("A-{}-{}", n / 10 + 1, n % 10 + 1)]),
                };
                let outcome = client.submit(Ids::New, command).await;
                outcomes.push(outcome.map(|s| s.into_reply().map(|_| ())));
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            outcomes
        })
    };

    let old = client.wait_for_leader(WAIT).await.unwrap();
    let target = cluster
        .addrs
        .keys()
        .copied()
        .find(|&id| id != leader)
        .unwrap();
    let transfer = client
        .transfer_leader(Some(target), WAIT)
        .await
        .unwrap_or_else(|e| panic!("transfer to {target}: {e}\n{}", cluster.logs()));
    assert_eq!(
        (transfer.from, transfer.to),
        (leader, target),
        "{transfer:?}"
    );
    assert!(
        transfer.term > old.term,
        "{transfer:?} after term {}",
        old.term
    );
    let now = client.wait_for_leader(WAIT).await.unwrap();
    assert_eq!(
        now.node_id, target,
        "the cluster's leader after the transfer"
    );
    eprintln!("transfer {leader} -> {target}: {} ms", transfer.took_ms);

    // bookctl, with no target: to the most up-to-date other voter.
    let out = cluster.bookctl(&["--json", "leader", "transfer"]);
    let moved = json_of(&out);
    assert_eq!(moved["from"], target, "{moved}");
    assert_ne!(moved["to"], target, "{moved}");
    let now = client.wait_for_leader(WAIT).await.unwrap();
    assert_eq!(Some(now.node_id), moved["to"].as_u64());

    // Bad targets: refused (exit 1), leadership unchanged.
    let out = cluster.bookctl(&["leader", "transfer", "--to", "9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node 9 is not a voter"), "{stderr}");
    assert_eq!(
        client.wait_for_leader(WAIT).await.unwrap().node_id,
        now.node_id
    );

    stop.store(true, Ordering::Relaxed);
    let outcomes = writer.await.expect("writer");
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| !matches!(o, Ok(Ok(()))))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} writes failed across the transfers: {failed:?}",
        failed.len(),
        outcomes.len()
    );
}

/// What one fan's request finally got.
#[derive(Clone)]
struct Finished {
    seat: String,
    status: u16,
    /// Answers before the last one (retries with the same key).
    retries: u32,
    detail: String,
}

// Goal: restarting every node one at a time (the leader last, after a
// transfer) under a steady hold load through the gateway fails no request,
// and every acknowledged hold is on every node afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_gateway_load_fails_no_request() {
    let _serial = testkit::serial().await;
    const EVENT: &str = "tour";
    const ROWS: u32 = 60;
    const SEATS_PER_ROW: u32 = 50;
    const USERS: u32 = 6;
    /// Keeps each user under the gateway's per-user rate limit (50/s).
    const USER_PAUSE_MS: u64 = 40;
    const HOLDS_BEFORE: usize = 30;
    const HOLDS_AFTER: usize = 30;

    let mut cluster = TestCluster::new(32900, 3);
    cluster.start_all();
    let client = cluster.admin_client();
    cluster.wait_leader(&client).await;
    let http = http();
    let mut gw = cluster.start_gateway(32950);
    gw.wait_ready(&http).await;
    create_open_event(&http, &gw.base, EVENT, ROWS, SEATS_PER_ROW).await;

    let finished: Arc<Mutex<Vec<Finished>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut fans = Vec::new();
    for u in 0..USERS {
        let token = session(&http, &gw.base, &format!("fan-{u}")).await;
        let (http, base) = (http.clone(), gw.base.clone());
        let (finished, stop) = (finished.clone(), stop.clone());
        fans.push(tokio::spawn(async move {
            // Each fan walks its own seats (every USERS-th), so no two
            // requests compete for a seat: anything but 201 is a failure.
            let mut k = u;
            while !stop.load(Ordering::Relaxed) && k < ROWS * SEATS_PER_ROW {
                let seat = format!("A-{}-{}", k / SEATS_PER_ROW + 1, k % SEATS_PER_ROW + 1);
                let key = format!("rolling-{u}-{k}");
                let started = Instant::now();
                let mut retries = 0;
                let last = loop {
                    let a = hold(&http, &base, &token, EVENT, &[seat.as_str()], Some(&key)).await;
                    let retryable = a.status == 0 || a.status >= 500;
                    if !retryable || started.elapsed() >= REQUEST_BUDGET {
                        break a;
                    }
                    retries += 1;
                    let wait_ms = a
                        .retry_after
                        .as_deref()
                        .and_then(|s| s.parse::<u64>().ok())
                        .map_or(200, |s| (s * 1_000).min(1_000));
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                };
                finished.lock().unwrap().push(Finished {
                    seat,
                    status: last.status,
                    retries,
                    detail: last.text,
                });
                k += USERS;
                tokio::time::sleep(Duration::from_millis(USER_PAUSE_MS)).await;
            }
        }));
    }
    let count_201 = |finished: &Mutex<Vec<Finished>>| {
        finished
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.status == 201)
            .count()
    };
    wait_for("201s before the restart", WAIT * 2, || {
        let n = count_201(&finished);
        async move { (n >= HOLDS_BEFORE).then_some(()) }
    })
    .await;

    let order = client.restart_order(WAIT).await.expect("restart order");
    let old_leader = client.wait_for_leader(WAIT).await.unwrap().node_id;
    assert_eq!(
        order.last(),
        Some(&old_leader),
        "the leader goes last: {order:?}"
    );
    let mut report = Vec::new();
    for &id in &order {
        let transfer = client
            .prepare_restart(id, WAIT * 2)
            .await
            .unwrap_or_else(|e| panic!("prepare restart of {id}: {e}\n{}", cluster.logs()));
        assert_eq!(transfer.is_some(), id == old_leader, "{transfer:?}");
        let stopped = Instant::now();
        cluster.stop(id);
        cluster.start(id, false);
        let rejoined = client
            .wait_rejoined(id, WAIT * 2)
            .await
            .unwrap_or_else(|e| panic!("node {id} rejoining: {e}\n{}", cluster.logs()));
        eprintln!(
            "node {id}: transfer {:?} ms, down and back in {} ms (caught up to {})",
            transfer.as_ref().map(|t| t.took_ms),
            stopped.elapsed().as_millis(),
            rejoined.applied_index
        );
        report.push((id, transfer, rejoined));
    }

    let done_before = count_201(&finished);
    wait_for("201s after the restart", WAIT * 2, || {
        let n = count_201(&finished);
        async move { (n >= done_before + HOLDS_AFTER).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for fan in fans {
        fan.await.expect("fan task");
    }

    let finished = finished.lock().unwrap().clone();
    let failed: Vec<&Finished> = finished.iter().filter(|f| f.status != 201).collect();
    let retried = finished.iter().filter(|f| f.retries > 0).count();
    eprintln!(
        "rolling restart: {} requests, {} failed, {retried} needed a retry with the same key",
        finished.len(),
        failed.len()
    );
    let shown: Vec<String> = failed
        .iter()
        .take(5)
        .map(|f| {
            format!(
                "{} -> {} after {} retries: {}",
                f.seat, f.status, f.retries, f.detail
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {shown:#?}\n{}\n{}",
        failed.len(),
        finished.len(),
        gw.log_tail(),
        cluster.logs()
    );
    // Every acknowledged hold is on every node, and the nodes agree.
    let views = converged_views(&cluster, EVENT).await;
    let held: BTreeMap<&str, u16> = finished
        .iter()
        .map(|f| (f.seat.as_str(), f.status))
        .collect();
    for (id, seats) in &views {
        for seat in held.keys() {
            assert_eq!(seats.get(*seat), Some(&'H'), "201 seat {seat} on node {id}");
        }
        let taken = seats.values().filter(|&&c| c != '.').count();
        assert_eq!(taken, held.len(), "node {id}: seats taken vs 201s");
        assert_eq!(seats, &views[&1], "node {id} disagrees with node 1");
    }
}
