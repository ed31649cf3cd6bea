//! The live seat map over WebSocket: snapshot first, then changes as they
//! commit; a resumed client misses nothing; a too-old resume point resyncs;
//! an open socket holds none of the gateway's `connections_max` slots.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(gw: &Gw, query: &str) -> Ws {
    let url = format!(
        "{}/v1/events/gig/live{query}",
        gw.base.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// The next JSON message, waiting at most 5 s (a hang fails the test, not CI).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("stream open")
            .expect("no error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[tokio::test]
async fn live_feed_delivers_changes_and_resumes_without_gaps() {
    // Goal: a watcher gets a snapshot then each change; reconnecting with ?from= replays what it missed.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;

    let mut ws = connect(&gw, "").await;
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    let snap_index = snap["index"].as_u64().unwrap();
    assert_eq!(
        snap["availability"]["sections"][0]["rows"][0]["states"],
        ".........."
    );

    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-4"] })).await;
    assert_eq!(r.status, 201);
    let change = next(&mut ws).await;
    assert_eq!(change["type"], "changes");
    let last_seen = change["index"].as_u64().unwrap();
    assert!(last_seen > snap_index);
    assert_eq!(
        change["changes"][0],
        json!({ "seat": "A-1-4", "state": "held" })
    );
    drop(ws);

    // While disconnected: two more changes.
    let hold_id = r.body["hold_id"].as_u64().unwrap();
    assert_eq!(
        gw.delete(&format!("/v1/holds/{hold_id}"), Some(&alice))
            .await
            .status,
        200
    );
    assert_eq!(
        gw.hold(&alice, "gig", json!({ "seats": ["A-2-2"] }))
            .await
            .status,
        201
    );

    let mut ws = connect(&gw, &format!("?from={}", last_seen + 1)).await;
    let first = next(&mut ws).await;
    assert_eq!(first["type"], "changes", "{first}");
    assert_eq!(
        first["changes"][0],
        json!({ "seat": "A-1-4", "state": "available" })
    );
    let second = next(&mut ws).await;
    assert_eq!(
        second["changes"][0],
        json!({ "seat": "A-2-2", "state": "held" })
    );
    assert!(second["index"].as_u64() > first["index"].as_u64());
    // And live changes keep coming on the resumed connection.
    assert_eq!(
        gw.hold(&alice, "gig", json!({ "seats": ["A-3-3"] }))
            .await
            .status,
        201
    );
    assert_eq!(next(&mut ws).await["changes"][0]["seat"], "A-3-3");

    let metrics = gw.get("/metrics", None).await;
    assert!(
        metrics.text.contains("gateway_websocket_clients 1"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn resume_from_forgotten_history_asks_for_resync() {
    // Goal: resuming from an index the cluster no longer keeps gives `resync` and then a fresh snapshot.
    let gw = start().await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    assert_eq!(
        gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] }))
            .await
            .status,
        201
    );
    let now = gw.fake().applied_index();
    gw.fake().forget_history_before(now + 1);
    let mut ws = connect(&gw, "?from=1").await;
    assert_eq!(next(&mut ws).await["type"], "resync");
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot");
    assert_eq!(
        snap["availability"]["sections"][0]["rows"][0]["states"],
        "H........."
    );
}

#[tokio::test]
async fn live_for_unknown_event_is_404() {
    // Goal: the upgrade is refused with a problem for an unknown event.
    let gw = start().await;
    let url = format!(
        "{}/v1/events/nope/live",
        gw.base.replace("http://", "ws://")
    );
    let err = tokio_tungstenite::connect_async(url)
        .await
        .expect_err("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn sockets_share_one_watch_and_are_capped_per_address_and_origin() {
    // Goal: many sockets of one event cost one cluster watch; an address
    // gets at most ws_clients_per_address_max sockets (429 beyond); a page of
    // another origin is refused (403) unless allowed_origins lists it.
    let fake = std::sync::Arc::new(http_gateway::fake::FakeCluster::new());
    let settings = http_gateway::GatewaySettings {
        ws_clients_per_address_max: 3,
        allowed_origins: vec!["https://tickets.example.com".into()],
        ..settings()
    };
    let gw = start_on(fake.clone(), settings).await;
    gw.open_event("gig").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&gw, "").await;
        assert_eq!(next(&mut ws).await["type"], "snapshot");
        sockets.push(ws);
    }
    let alice = gw.session("alice").await;
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    for ws in &mut sockets {
        let m = next(ws).await;
        assert_eq!(
            (&m["type"], &m["changes"][0]["seat"]),
            (&json!("changes"), &json!("A-1-1"))
        );
    }
    assert_eq!(
        fake.watches_started(),
        1,
        "one cluster watch for three sockets"
    );

    let url = format!("{}/v1/events/gig/live", gw.base.replace("http://", "ws://"));
    let status_of = |origin: Option<&'static str>| {
        let url = url.clone();
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut req = url.into_client_request().unwrap();
            if let Some(o) = origin {
                req.headers_mut().insert("origin", o.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(req).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(
        status_of(None).await,
        429,
        "a fourth socket from one address"
    );
    assert_eq!(
        status_of(Some("https://evil.example")).await,
        403,
        "another origin"
    );
    drop(sockets.pop());
    // The slot comes back once the server sees the close.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match status_of(Some("https://tickets.example.com")).await {
            101 => break,
            429 if tokio::time::Instant::now() < deadline => tokio::time::sleep(POLL).await,
            other => panic!("an allowed origin: {other}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_gives_its_connection_slot_back_at_the_upgrade() {
    // Goal: a live seat map does not hold one of `connections_max` (it is
    // bounded by the WebSocket caps instead): with a cap of 1 and a socket
    // open, a new HTTP client is served at once, nobody is asked to make
    // room, and the socket keeps receiving changes.
    let fake = std::sync::Arc::new(http_gateway::fake::FakeCluster::new());
    // Setup through an uncapped gateway, so the capped one holds only the socket.
    let setup = start_on(fake.clone(), settings()).await;
    setup.open_event("gig").await;
    let alice = setup.session("alice").await;
    let gw = start_on(
        fake,
        http_gateway::GatewaySettings {
            connections_max: 1,
            ..settings()
        },
    )
    .await;
    let mut ws = connect(&gw, "").await;
    assert_eq!(next(&mut ws).await["type"], "snapshot");

    let fresh = reqwest::Client::new();
    let metrics = fresh
        .get(gw.url("/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("a new client is served while a socket is open")
        .text()
        .await
        .unwrap();
    let fairness = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_connections_closed_total{reason=\"fairness\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(fairness, Some(0.0), "a connection was asked to make room");

    let r = setup
        .hold(&alice, "gig", json!({ "seats": ["A-1-4"] }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(next(&mut ws).await["type"], "changes");
}
