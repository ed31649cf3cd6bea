//! The gateway on real processes: `booking node` ×3 and one or two
//! `booking gateway` processes, driven over HTTP and WebSocket.
//!
//! - The same `Idempotency-Key` through two gateways (and through a restarted
//!   one) names one request: the same hold, one hold.
//! - The leader is SIGKILLed during a sale: every answer is 201, 409 or 503
//!   with `Retry-After`; after recovery every 201 hold is on every node, no
//!   seat has two owners, and the gateway serves 201s again.
//! - The live feed of gateway B shows a change committed through gateway A,
//!   and a client that resumes with `?from=` misses nothing.
//!
//! Ports: 32100–32399 (nodes base+1..3, gateways base+50 and base+51), apart
//! from the other root tests. The tests of this binary run one at a time
//! (`testkit::serial`). Every wait is a poll with a generous bound.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::state_machine::{Query, QueryResult};
use client::Consistency;
use common::http::{create_open_event, hold, http, release, send, session};
use common::seats::converged_views;
use common::{GatewayProc, TestCluster, WAIT};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Starts a 3-node cluster from `base` and waits for a leader.
async fn cluster(base: u16) -> TestCluster {
    let mut cluster = TestCluster::new(base, 3);
    cluster.start_all();
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_names_one_hold_across_gateways_and_restarts() {
    // Goal: the same (user, Idempotency-Key) through gateway A, gateway B and
    // a restarted A gives the same hold and creates one hold; the key is per
    // user; a keyed refusal is replayed, never judged anew.
    let _serial = testkit::serial().await;
    let cluster = cluster(32100).await;
    let http = http();
    let mut a = cluster.start_gateway(32150);
    let mut b = cluster.start_gateway(32151);
    a.wait_ready(&http).await;
    b.wait_ready(&http).await;
    create_open_event(&http, &a.base, "idem", 2, 10).await;

    let alice = session(&http, &a.base, "alice").await;
    let first = hold(&http, &a.base, &alice, "idem", &["A-1-1"], Some("k-1")).await;
    assert_eq!(first.status, 201, "first hold via A: {}", first.text);
    let hold_id = first.body["hold_id"].as_u64().expect("hold_id");

    // Gateway B accepts A's session token and answers the key with A's hold.
    let again = hold(&http, &b.base, &alice, "idem", &["A-1-1"], Some("k-1")).await;
    assert_eq!(again.status, 201, "same key via B: {}", again.text);
    assert_eq!(
        again.body["hold_id"].as_u64(),
        Some(hold_id),
        "{}",
        again.text
    );
    assert_eq!(again.body["seats"], json!(["A-1-1"]));
    assert_eq!(again.body["expires_at"], first.body["expires_at"]);

    // A restarted gateway (a new client id inside) still names the same request.
    a.kill9();
    a.restart();
    a.wait_ready(&http).await;
    let after_restart = hold(&http, &a.base, &alice, "idem", &["A-1-1"], Some("k-1")).await;
    assert_eq!(after_restart.status, 201, "{}", after_restart.text);
    assert_eq!(after_restart.body["hold_id"].as_u64(), Some(hold_id));

    // Another user's request with the same key is a different request.
    let bob = session(&http, &b.base, "bob").await;
    let theirs = hold(&http, &b.base, &bob, "idem", &["A-1-1"], Some("k-1")).await;
    assert_eq!(theirs.status, 409, "bob with alice's key: {}", theirs.text);
    assert_eq!(theirs.body["code"], "seat_unavailable", "{}", theirs.text);

    // A keyed refusal is remembered too (it went through the log): after the
    // seat is freed, bob's key still answers 409 through the other gateway,
    // while a request without a key (or with a new one) is judged anew.
    let refused = hold(&http, &b.base, &bob, "idem", &["A-1-2"], None).await;
    assert_eq!(refused.status, 201, "bob takes A-1-2: {}", refused.text);
    let bobs_hold = refused.body["hold_id"].as_u64().unwrap();
    let keyed = hold(&http, &a.base, &alice, "idem", &["A-1-2"], Some("k-2")).await;
    assert_eq!(keyed.status, 409, "alice on bob's seat: {}", keyed.text);
    release(&http, &a.base, &bob, bobs_hold).await;
    let replay = hold(&http, &b.base, &alice, "idem", &["A-1-2"], Some("k-2")).await;
    assert_eq!(
        replay.status, 409,
        "the same key after the seat was freed: {}",
        replay.text
    );
    let fresh = hold(&http, &b.base, &alice, "idem", &["A-1-2"], Some("k-3")).await;
    assert_eq!(fresh.status, 201, "a new key: {}", fresh.text);
    let second_hold = fresh.body["hold_id"].as_u64().unwrap();
    release(&http, &b.base, &alice, second_hold).await;

    // One hold: exactly one seat is held, on every node.
    for (id, seats) in converged_views(&cluster, "idem").await {
        let held: Vec<&String> = seats
            .iter()
            .filter(|(_, s)| **s != '.')
            .map(|(k, _)| k)
            .collect();
        assert_eq!(held, vec!["A-1-1"], "node {id}");
    }
    let view = send(
        http.get(format!("{}/v1/holds/{hold_id}", b.base))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(view.status, 200, "{}", view.text);
    assert_eq!(view.body["status"], "active", "{}", view.text);
}

/// One answer of the sale.
#[derive(Debug, Clone)]
struct SaleAnswer {
    status: u16,
    seat: String,
    hold_id: Option<u64>,
    /// Answered after the kill.
    after_kill: bool,
    /// The body, shown through `Debug` in failure messages.
    #[allow(dead_code)]
    detail: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_sale_gives_no_wrong_answer() {
    // Goal: with the leader SIGKILLed mid-sale, the gateway answers only 201,
    // 409 or 503 + Retry-After; every 201 is on every node after recovery,
    // no seat has two owners, a 409 seat is really taken, and 201s resume.
    let _serial = testkit::serial().await;
    const EVENT: &str = "sale";
    const ROWS: u32 = 100;
    const SEATS_PER_ROW: u32 = 100;
    const USERS: usize = 24;
    /// Pause between one user's requests: keeps each user under the
    /// gateway's per-user rate limit (50/s), so no 429 muddies the answers.
    const USER_PAUSE_MS: u64 = 40;
    /// 201s wanted before the kill and again after it.
    const HOLDS_BEFORE_KILL: usize = 40;
    const HOLDS_AFTER_RECOVERY: usize = 40;

    let mut cluster = cluster(32200).await;
    let http = http();
    let mut gw = cluster.start_gateway(32250);
    gw.wait_ready(&http).await;
    create_open_event(&http, &gw.base, EVENT, ROWS, SEATS_PER_ROW).await;

    let answers: Arc<Mutex<Vec<SaleAnswer>>> = Arc::default();
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for u in 0..USERS {
        let token = session(&http, &gw.base, &format!("fan-{u}")).await;
        let (http, base) = (http.clone(), gw.base.clone());
        let (answers, killed, stop, seq) =
            (answers.clone(), killed.clone(), stop.clone(), seq.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Every fourth request goes for one of 20 hot seats (row
                // ROWS, contested: 409s); the rest walk rows 1..ROWS with a
                // stride coprime to their size, so they rarely collide.
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let seat = if n % 4 == 3 {
                    format!("A-{ROWS}-{}", n % 20 + 1)
                } else {
                    let walk = u64::from((ROWS - 1) * SEATS_PER_ROW);
                    let k = (n * 7_919) % walk;
                    format!(
                        "A-{}-{}",
                        k / u64::from(SEATS_PER_ROW) + 1,
                        k % u64::from(SEATS_PER_ROW) + 1
                    )
                };
                let after_kill = killed.load(Ordering::Relaxed);
                let a = hold(&http, &base, &token, EVENT, &[seat.as_str()], None).await;
                let ok_503 = a.status == 503 && a.retry_after.is_some();
                let answer = SaleAnswer {
                    status: if a.status == 503 && !ok_503 {
                        599
                    } else {
                        a.status
                    },
                    seat,
                    hold_id: a.body["hold_id"].as_u64(),
                    after_kill,
                    detail: a.text,
                };
                let backoff = if ok_503 {
                    a.retry_after
                        .as_deref()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(2)
                        * 1_000
                } else {
                    USER_PAUSE_MS
                };
                answers.lock().unwrap().push(answer);
                tokio::time::sleep(Duration::from_millis(backoff)).await;
            }
        }));
    }
    let count = |after: bool| {
        let answers = answers.clone();
        move || {
            answers
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.status == 201 && a.after_kill == after)
                .count()
        }
    };
    let before = count(false);
    common::wait_for("201s before the kill", WAIT * 2, || {
        let n = before();
        async move { (n >= HOLDS_BEFORE_KILL).then_some(()) }
    })
    .await;

    let client = cluster.client();
    let leader = cluster.wait_leader(&client).await;
    killed.store(true, Ordering::Relaxed);
    cluster.kill9(leader);
    let after = count(true);
    common::wait_for(
        "201s through the gateway after the election",
        WAIT * 4,
        || {
            let n = after();
            async move { (n >= HOLDS_AFTER_RECOVERY).then_some(()) }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("fan task");
    }

    // Bring the killed node back; compare the nodes at one applied index.
    cluster.start(leader, false);
    let views = converged_views(&cluster, EVENT).await;

    let answers = answers.lock().unwrap().clone();
    let bad: Vec<&SaleAnswer> = answers
        .iter()
        .filter(|a| ![201, 409, 503].contains(&a.status))
        .collect();
    assert!(
        bad.is_empty(),
        "answers other than 201, 409, 503+Retry-After ({} of {}): {:#?}\n{}\n{}",
        bad.len(),
        answers.len(),
        &bad[..bad.len().min(5)],
        gw.log_tail(),
        cluster.logs()
    );
    let mut owner: BTreeMap<&str, u64> = BTreeMap::new();
    for a in answers.iter().filter(|a| a.status == 201) {
        let id = a.hold_id.expect("201 carries a hold id");
        if let Some(other) = owner.insert(&a.seat, id) {
            panic!("seat {} acknowledged to holds {other} and {id}", a.seat);
        }
    }
    let maybe: BTreeSet<&str> = answers
        .iter()
        .filter(|a| a.status == 503)
        .map(|a| a.seat.as_str())
        .collect();
    for (id, seats) in &views {
        for seat in owner.keys() {
            assert_eq!(seats.get(*seat), Some(&'H'), "201 seat {seat} on node {id}");
        }
        for a in answers.iter().filter(|a| a.status == 409) {
            assert_eq!(
                seats.get(&a.seat),
                Some(&'H'),
                "409 for seat {} but it is free on node {id}",
                a.seat
            );
        }
        for (seat, state) in seats {
            if *state != '.' {
                assert!(
                    owner.contains_key(seat.as_str()) || maybe.contains(seat.as_str()),
                    "seat {seat} is {state} on node {id} without a 201 or 503 for it"
                );
            }
        }
        assert_eq!(seats, &views[&1], "node {id} disagrees with node 1");
    }
    // Each acknowledged hold is the hold it said, on every node.
    for id in 1..=3 {
        let node = cluster.node_client(id);
        for (seat, hold_id) in &owner {
            let (result, _) = node
                .read(Query::Hold { hold_id: *hold_id }, Consistency::Stale)
                .await
                .unwrap();
            match result {
                QueryResult::Hold(Ok(view)) => {
                    assert_eq!(
                        view.seats,
                        vec![seat.to_string()],
                        "hold {hold_id} node {id}"
                    )
                }
                other => panic!("hold {hold_id} on node {id}: {other:?}"),
            }
        }
    }
    let n503 = answers.iter().filter(|a| a.status == 503).count();
    eprintln!(
        "sale: {} answers, {} x 201, {} x 409, {n503} x 503; leader {leader} killed",
        answers.len(),
        owner.len(),
        answers.iter().filter(|a| a.status == 409).count()
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn live(gw: &GatewayProc, event_id: &str, from: Option<u64>) -> Ws {
    let mut url = format!("ws://127.0.0.1:{}/v1/events/{event_id}/live", gw.port);
    if let Some(from) = from {
        url.push_str(&format!("?from={from}"));
    }
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("WebSocket connect in time")
        .expect("WebSocket connect");
    ws
}

/// The next JSON text frame, within [`WAIT`].
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a live message in time");
        if let Message::Text(t) = msg.expect("stream open").expect("no error") {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Reads `changes` frames until `done` says the collected ones are enough.
async fn collect_changes(ws: &mut Ws, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut frames = Vec::new();
    while !done(&frames) {
        let frame = next(ws).await;
        assert_eq!(frame["type"], "changes", "unexpected frame {frame}");
        frames.push(frame);
    }
    frames
}

fn touches(frames: &[Value], seat: &str) -> bool {
    frames.iter().any(|f| {
        f["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["seat"] == seat))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_crosses_gateways_and_resumes_without_a_gap() {
    // Goal: a watcher on gateway B sees a hold made through gateway A; a
    // client that disconnects and resumes with ?from= gets exactly the
    // changes an uninterrupted watcher saw.
    let _serial = testkit::serial().await;
    const EVENT: &str = "live";
    let cluster = cluster(32300).await;
    let http = http();
    let mut a = cluster.start_gateway(32350);
    let mut b = cluster.start_gateway(32351);
    a.wait_ready(&http).await;
    b.wait_ready(&http).await;
    create_open_event(&http, &a.base, EVENT, 2, 10).await;
    let alice = session(&http, &a.base, "alice").await;

    // The watcher that never disconnects (on A) and the one that will (on B).
    let mut steady = live(&a, EVENT, None).await;
    let mut resumer = live(&b, EVENT, None).await;
    let snap_steady = next(&mut steady).await;
    let snap = next(&mut resumer).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(snap_steady["type"], "snapshot", "{snap_steady}");
    let snap_index = snap["index"].as_u64().expect("snapshot index");

    // A hold through A shows on B's feed.
    let first = hold(&http, &a.base, &alice, EVENT, &["A-1-1"], None).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let seen = collect_changes(&mut resumer, |f| touches(f, "A-1-1")).await;
    let last_seen = seen.last().unwrap()["index"].as_u64().unwrap();
    assert!(last_seen > snap_index);
    let change = seen.last().unwrap()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["seat"] == "A-1-1")
        .cloned()
        .unwrap();
    assert_eq!(change["state"], "held", "{change}");
    let _ = resumer.close(None).await;
    drop(resumer);

    // Changes while the resumer is away: holds, and a release.
    let mut made = vec!["A-1-1".to_string()];
    for seat in ["A-1-2", "A-1-3", "A-2-7"] {
        let h = hold(&http, &a.base, &alice, EVENT, &[seat], None).await;
        assert_eq!(h.status, 201, "{}", h.text);
        made.push(seat.to_string());
    }
    let first_id = first.body["hold_id"].as_u64().unwrap();
    release(&http, &a.base, &alice, first_id).await;
    let last_seat = "A-2-10";
    let h = hold(&http, &a.base, &alice, EVENT, &[last_seat], None).await;
    assert_eq!(h.status, 201, "{}", h.text);

    // Resume on B from the index after the last one seen.
    let mut resumed = live(&b, EVENT, Some(last_seen + 1)).await;
    let got = collect_changes(&mut resumed, |f| touches(f, last_seat)).await;
    // What the uninterrupted watcher saw after `last_seen`, up to the same point.
    let all = collect_changes(&mut steady, |f| touches(f, last_seat)).await;
    let expected: Vec<Value> = all
        .into_iter()
        .filter(|f| f["index"].as_u64().unwrap() > last_seen)
        .collect();
    assert_eq!(
        got, expected,
        "the resumed feed differs from the steady one"
    );
    for seat in made.iter().skip(1) {
        assert!(touches(&got, seat), "resumed feed misses {seat}");
    }
    assert!(
        got.iter().any(|f| f["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["seat"] == "A-1-1" && c["state"] == "available")),
        "resumed feed misses the release of A-1-1: {got:?}"
    );
    let _ = b.log_tail();
}
