//! The API scenarios of issue #4 over real HTTP against a real 3-node
//! cluster: raft-node nodes in this process on loopback ports, sled in a
//! temporary directory, real gRPC, the gateway reaching them through
//! `ClientCluster`. The scenarios themselves are in `common::scenarios`
//! (the same code runs against the fake cluster in `tests/api.rs`); the
//! ones that need real log time (hold expiry, a payment outliving its
//! hold) and two gateways over one cluster are here.

mod common;

use std::sync::Arc;

use common::real::RealCluster;
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame, within [`WAIT`].
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time");
        if let Message::Text(t) = msg.expect("stream open").expect("no error") {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// Polls the seat map of `event` until `row` reads `want`, at most [`WAIT`].
async fn until_row(gw: &Gw, event: &str, row: usize, want: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let map = gw.seat_map(event).await;
        if map[row] == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "row {row} of {event} never became {want}: {map:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_on_a_real_cluster() {
    // Goal: 50 users for one seat give exactly one 201; 20 users × 20 seats leave at most one owner per seat on every node.
    let gw = Arc::new(start_real().await);
    scenarios::one_seat_race(&gw).await;
    scenarios::many_seat_race(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_tickets_and_idempotency_on_a_real_cluster() {
    // Goal: idempotency, tok_ok/declined/flaky, tickets (forged, tampered, check-in twice) and cancel through the real log.
    let gw = start_real().await;
    // Same gateway twice: across gateways needs `client::Ids::Derived` (see ClientCluster).
    scenarios::same_idempotency_key_same_hold(&gw, &gw).await;
    scenarios::checkout_tickets_and_check_in(&gw).await;
    scenarios::declined_payment_releases_the_seats(&gw).await;
    scenarios::flaky_payment_is_charged_once(&gw).await;
    scenarios::cancel_returns_seats(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_on_a_real_cluster() {
    // Goal: the table of bad requests: each its 4xx problem, never a 5xx, nothing changed in the replicated state.
    let gw = start_real().await;
    scenarios::bad_requests_change_nothing(&gw).await;
    scenarios::strangers_and_late_cancels_change_nothing(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_lapse_in_log_time_on_a_real_cluster() {
    // Goal: a short-TTL hold frees its seat by itself; a charge that outlives its hold is refunded (410).
    let gw = start_real().await;
    let open = |id: &str, hold_ttl_ms: u64| {
        let mut spec = event_spec(id);
        spec["hold_ttl_ms"] = json!(hold_ttl_ms);
        let gw = &gw;
        let id = id.to_string();
        async move {
            gw.create_event(spec).await;
            let r = gw
                .post(
                    &format!("/v1/events/{id}/sale/open"),
                    Some(ADMIN),
                    json!({}),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    open("short", 1_000).await;
    let alice = gw.session("alice").await;
    let bob = gw.session("bob").await;

    let r = gw
        .hold(&alice, "short", json!({ "seats": ["A-1-1"] }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.body["hold_id"].as_u64().unwrap();
    until_row(&gw, "short", 1, "..........").await;
    let r = gw.get(&format!("/v1/holds/{hold_id}"), Some(&alice)).await;
    assert_eq!(r.body["status"], "expired", "{}", r.text);
    let r = gw.hold(&bob, "short", json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201, "the expired seat is free again: {}", r.text);

    // A 1 s payment window, a 3 s hold and a 6 s charge: the hold lapses
    // while the charge is in flight, whenever the payment began.
    gw.real
        .as_ref()
        .unwrap()
        .configure(state_machine::Settings {
            payment_window_ms: 1_000,
            ..Default::default()
        })
        .await;
    open("slow", 3_000).await;
    let (hold_id, r) = gw
        .hold_and_pay(&alice, "slow", &["A-1-7"], "tok_slow_6000")
        .await;
    assert_problem(&r, 410, "hold_expired");
    assert_eq!(r.body["refunded"], json!(true), "{}", r.text);
    let line = gw.pay.record(&format!("hold-{hold_id}")).unwrap();
    assert!(line.refunded && line.charges == 1, "{line:?}");
    until_row(&gw, "slow", 1, "..........").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_feed_across_two_gateways_on_a_real_cluster() {
    // Goal: a watcher on one gateway sees a change committed through another; the cluster endpoint lists 3 members.
    let cluster = Arc::new(RealCluster::start().await);
    let gw1 = start_real_on(cluster.clone(), settings()).await;
    let gw2 = start_real_on(cluster.clone(), settings()).await;
    gw1.open_event("gig").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/v1/events/gig/live",
        gw2.base.replace("http://", "ws://")
    ))
    .await
    .expect("websocket");
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    assert_eq!(
        snap["availability"]["sections"][0]["rows"][0]["states"],
        ".........."
    );
    let snap_index = snap["index"].as_u64().unwrap();
    let alice = gw1.session("alice").await;
    let r = gw1.hold(&alice, "gig", json!({ "seats": ["A-1-3"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let change = next(&mut ws).await;
    assert_eq!(change["type"], "changes", "{change}");
    assert!(change["index"].as_u64().unwrap() > snap_index);
    assert_eq!(
        change["changes"][0],
        json!({"seat": "A-1-3", "state": "held"}),
        "{change}"
    );
    let r = gw2.get("/v1/cluster", Some(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["members"].as_array().map(|m| m.len()),
        Some(3),
        "{}",
        r.text
    );
}
