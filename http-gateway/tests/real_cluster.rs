//! Smoke test of the gateway over a real in-process 3-node cluster
//! (raft-node on loopback ports, sled in a temporary directory) through
//! `ClientCluster`: the adapter maps writes, reads, watches and status.
//! The lead's multi-process tests cover faults; this one covers the wiring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cluster_config::{
    BookingSection, ClusterConfig, ClusterSection, GatewaySection, NodeSection, RaftSection,
};
use futures::StreamExt;
use http_gateway::keys::Keys;
use http_gateway::{AppState, ClientCluster, GatewaySettings, SimulatedProvider};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

const ADMIN: &str = "real-admin-token";

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text frame, within 10 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time");
        if let Message::Text(t) = msg.expect("stream open").expect("no error") {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_over_a_real_three_node_cluster() {
    // Goal: holds, the one-seat race, idempotency, checkout, tickets and the live feed work through ClientCluster.
    let dir = tempfile::tempdir().unwrap();
    let config = ClusterConfig {
        cluster: ClusterSection {
            name: "gw-real".into(),
            data_dir: dir.path().join("data"),
        },
        raft: RaftSection {
            heartbeat_interval_ms: 50,
            election_timeout_ms: [400, 800],
            snapshot_every_entries: 10_000,
            max_in_snapshot_log_to_keep: 100,
            install_snapshot_timeout_ms: 5_000,
            rpc_timeout_ms: 1_000,
            propose_batch_max: 256,
            propose_linger_us: 200,
        },
        booking: BookingSection {
            hold_ttl_ms: 600_000,
            payment_window_ms: 120_000,
            expiry_sweep_ms: 100,
        },
        nodes: (1..=3)
            .map(|id| NodeSection {
                id,
                addr: free_addr(),
                metrics_addr: None,
            })
            .collect(),
        gateway: GatewaySection::default(),
        base_dir: dir.path().to_path_buf(),
    };
    let mut stops = Vec::new();
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        let (tx, rx) = oneshot::channel::<()>();
        nodes.push(tokio::spawn(raft_node::run_node(
            config.clone(),
            id,
            id == 1,
            async move {
                let _ = rx.await;
            },
        )));
        stops.push(tx);
    }
    let client = client::Client::from_config(&config, client::ClientOptions::default()).unwrap();
    client
        .wait_for_leader(Duration::from_secs(30))
        .await
        .expect("a leader within 30 s");

    let settings = GatewaySettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: ADMIN.into(),
        ..GatewaySettings::default()
    };
    let keys = Keys::for_tests("t", "k", "w");
    let state = AppState::new(
        settings,
        Arc::new(ClientCluster::new(client)),
        Arc::new(SimulatedProvider::new()),
        keys,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (gw_stop, gw_stopped) = oneshot::channel::<()>();
    let gateway = tokio::spawn(http_gateway::serve_state(state, listener, async move {
        let _ = gw_stopped.await;
    }));
    let http = reqwest::Client::new();

    let (s, _) = json_of(http.get(format!("{base}/readyz")).send().await.unwrap()).await;
    assert_eq!(s, 200);
    let spec = json!({
        "id": "real", "name": "Real", "venue": "Hall", "starts_at": "2030-01-01T20:00:00Z",
        "sections": [{"kind": "reserved", "id": "A", "name": "A", "price_cents": 100,
                      "rows": [{"label": "1", "seats": 5}]}]
    });
    let (s, b) = json_of(
        http.post(format!("{base}/v1/events"))
            .bearer_auth(ADMIN)
            .json(&spec)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = json_of(
        http.post(format!("{base}/v1/events/real/sale/open"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/v1/events/real/live",
        base.replace("http", "ws")
    ))
    .await
    .expect("websocket");
    let snap = next(&mut ws).await;
    assert_eq!(
        (
            snap["type"].as_str(),
            snap["availability"]["sections"][0]["rows"][0]["states"].as_str()
        ),
        (Some("snapshot"), Some("....."))
    );

    let mut tokens = Vec::new();
    for i in 0..10 {
        let (s, b) = json_of(
            http.post(format!("{base}/v1/sessions"))
                .json(&json!({"name": format!("fan{i}")}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 201);
        tokens.push(b["token"].as_str().unwrap().to_string());
    }
    let mut race = Vec::new();
    for t in &tokens {
        let req = http
            .post(format!("{base}/v1/events/real/holds"))
            .bearer_auth(t)
            .json(&json!({"seats": ["A-1-3"]}));
        race.push(tokio::spawn(async move {
            json_of(req.send().await.unwrap()).await
        }));
    }
    let mut statuses = Vec::new();
    let mut winner = None;
    for (i, r) in race.into_iter().enumerate() {
        let (s, b) = r.await.unwrap();
        if s == 201 {
            winner = Some((i, b["hold_id"].as_u64().unwrap()));
        }
        statuses.push(s);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
    let change = next(&mut ws).await;
    assert_eq!(
        change["changes"][0],
        json!({"seat": "A-1-3", "state": "held"}),
        "{change}"
    );

    // Idempotency through the real exactly-once table (same gateway process).
    let (i, hold_id) = winner.unwrap();
    let token = &tokens[i];
    let idem = |t: &str| {
        http.post(format!("{base}/v1/events/real/holds"))
            .bearer_auth(t)
            .header("Idempotency-Key", "k1")
            .json(&json!({"seats": ["A-1-1"]}))
    };
    let (s1, b1) = json_of(idem(token).send().await.unwrap()).await;
    let (s2, b2) = json_of(idem(token).send().await.unwrap()).await;
    assert_eq!((s1, s2), (201, 201), "{b1} {b2}");
    assert_eq!(b1["hold_id"], b2["hold_id"]);

    let (s, b) = json_of(
        http.post(format!("{base}/v1/holds/{hold_id}/checkout"))
            .bearer_auth(token)
            .json(&json!({"payment_method": "tok_ok"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let code = b["tickets"][0]["code"].as_str().unwrap().to_string();
    let (s, v) = json_of(
        http.post(format!("{base}/v1/tickets/verify"))
            .json(&json!({"code": code}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, &v["valid"]), (200, &json!(true)), "{v}");
    let (s, a) = json_of(
        http.get(format!("{base}/v1/events/real/availability"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, a["sections"][0]["rows"][0]["states"].as_str()),
        (200, Some("H.B..")),
        "{a}"
    );
    let (s, c) = json_of(
        http.get(format!("{base}/v1/cluster"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(c["members"].as_array().map(|m| m.len()), Some(3), "{c}");

    drop(ws);
    let _ = gw_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    for tx in stops {
        let _ = tx.send(());
    }
    for n in nodes {
        let _ = tokio::time::timeout(Duration::from_secs(30), n).await;
    }
}
