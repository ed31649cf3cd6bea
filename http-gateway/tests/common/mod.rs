//! Test harness shared by every test file of this crate: a gateway on an
//! ephemeral loopback port, over either the in-memory fake cluster
//! ([`start`], [`start_on`]) or a real in-process 3-node cluster
//! ([`start_real`], see [`real`]), with fixed keys, a simulated payment
//! provider the test can inspect, and small HTTP helpers. Scenarios that run
//! against both backends live in [`scenarios`].
//!
//! Must not: sleep as synchronisation (every wait polls a condition with a
//! bound) or leave nodes or gateways running after its handle is dropped.

#![allow(dead_code)]

pub mod real;
pub mod scenarios;

use std::sync::Arc;

use http_gateway::fake::FakeCluster;
use http_gateway::keys::Keys;
use http_gateway::{AppState, Cluster, GatewaySettings, SimulatedProvider};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ADMIN: &str = "test-admin-token";
pub const WEBHOOK_SECRET: &str = "whsec_test";

pub struct Gw {
    pub base: String,
    /// The fake cluster under this gateway (None over a real cluster).
    fake: Option<Arc<FakeCluster>>,
    /// The real cluster under this gateway (None over the fake); kept alive
    /// as long as the gateway.
    pub real: Option<Arc<real::RealCluster>>,
    pub pay: Arc<SimulatedProvider>,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Gw {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub fn settings() -> GatewaySettings {
    GatewaySettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        // Name-only sessions and the simulated provider: both loopback-only.
        auth: http_gateway::settings::AuthSettings {
            mode: http_gateway::settings::AuthMode::Demo,
            ..Default::default()
        },
        payment_provider: http_gateway::settings::PaymentProviderKind::Simulated,
        // Races open hundreds of connections from 127.0.0.1 at once.
        connections_per_address_max: 100_000,
        // Generous limits so tests that fire many requests are not limited.
        rate_per_address_per_s: 100_000,
        rate_per_address_burst: 100_000,
        rate_per_user_per_s: 10_000,
        rate_per_user_burst: 10_000,
        payment_backoff_ms: 5,
        ..GatewaySettings::default()
    }
}

pub async fn start() -> Gw {
    start_on(Arc::new(FakeCluster::new()), settings()).await
}

/// A gateway over `fake` (two gateways may share one fake cluster).
pub async fn start_on(fake: Arc<FakeCluster>, settings: GatewaySettings) -> Gw {
    let mut gw = start_over(fake.clone(), settings).await;
    gw.fake = Some(fake);
    gw
}

/// A gateway over a fresh real 3-node cluster with default settings.
pub async fn start_real() -> Gw {
    start_real_on(Arc::new(real::RealCluster::start().await), settings()).await
}

/// A gateway over `cluster` through `ClientCluster` (a client that knows
/// every node); several gateways may share one cluster.
pub async fn start_real_on(cluster: Arc<real::RealCluster>, settings: GatewaySettings) -> Gw {
    let mut gw = start_over(
        Arc::new(http_gateway::ClientCluster::new(cluster.client())),
        settings,
    )
    .await;
    gw.real = Some(cluster);
    gw
}

/// A gateway over any [`Cluster`], with the test keys.
pub async fn start_over(cluster: Arc<dyn Cluster>, settings: GatewaySettings) -> Gw {
    let pay = Arc::new(SimulatedProvider::new());
    let keys = Keys::for_tests("token-secret-for-tests", "ticket-seed", WEBHOOK_SECRET)
        .with_admin_token(ADMIN);
    let state = AppState::new(settings, cluster, pay.clone(), keys).expect("settings valid");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        http_gateway::serve_state(state, listener, async move {
            let _ = stop_rx.await;
        })
        .await
        .expect("gateway runs");
    });
    Gw {
        base,
        fake: None,
        real: None,
        pay,
        http: reqwest::Client::new(),
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// A small reserved section A (3 rows × 10 seats) and a GA section of 100.
pub fn event_spec(id: &str) -> Value {
    testkit::TestEvent::reserved(id, 3, 10)
        .with_general_admission(100)
        .json()
}

/// Bound on every awaited condition.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// Pause between two looks at a condition.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(50);
/// [`Gw::state_snapshot`] looks at most this many hold and booking ids.
const SNAPSHOT_IDS_MAX: u64 = 200;

/// Seat states of every reserved row of an availability answer, as one
/// string per row, each section's `available/held/booked` counts first.
pub fn seat_rows(availability: &Value) -> Vec<String> {
    let mut rows = Vec::new();
    for s in availability["sections"].as_array().expect("sections") {
        rows.push(format!(
            "{}:{}/{}/{}",
            s["section"], s["available"], s["held"], s["booked"]
        ));
        for row in s["rows"].as_array().expect("rows") {
            rows.push(row["states"].as_str().expect("states").to_string());
        }
    }
    rows
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Gw {
    /// The fake cluster under this gateway; panics over a real one.
    pub fn fake(&self) -> &Arc<FakeCluster> {
        self.fake
            .as_ref()
            .expect("this test needs the fake cluster")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.expect("request sent");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        let mut req = self.http.post(self.url(path)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        let mut req = self.http.delete(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn session(&self, name: &str) -> String {
        let r = self
            .post("/v1/sessions", None, json!({ "name": name }))
            .await;
        assert_eq!(r.status, 201, "session: {}", r.text);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Creates `id` (the standard spec) and opens its sale.
    pub async fn open_event(&self, id: &str) {
        self.create_event(event_spec(id)).await;
        let r = self
            .post(
                &format!("/v1/events/{id}/sale/open"),
                Some(ADMIN),
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "open sale: {}", r.text);
    }

    pub async fn create_event(&self, spec: Value) {
        let r = self.post("/v1/events", Some(ADMIN), spec).await;
        assert_eq!(r.status, 201, "create event: {}", r.text);
    }

    pub async fn hold(&self, token: &str, event: &str, body: Value) -> Resp {
        self.post(&format!("/v1/events/{event}/holds"), Some(token), body)
            .await
    }

    /// Seat states of every reserved row, as one string per row (each
    /// section's counts first), read linearizably.
    pub async fn seat_map(&self, event: &str) -> Vec<String> {
        let r = self
            .get(&format!("/v1/events/{event}/availability"), None)
            .await;
        assert_eq!(r.status, 200, "availability: {}", r.text);
        seat_rows(&r.body)
    }

    /// The seat map as every node of the real cluster sees it, each read
    /// from that node's own state (a gateway whose client knows only that
    /// node, `?consistency=stale`) once it has applied at least as far as a
    /// linearizable read made first. One entry per node, in node id order.
    pub async fn seat_map_on_every_node(&self, event: &str) -> Vec<Vec<String>> {
        let real = self
            .real
            .as_ref()
            .expect("this check needs the real cluster");
        let r = self
            .get(&format!("/v1/events/{event}/availability"), None)
            .await;
        assert_eq!(r.status, 200, "availability: {}", r.text);
        let index = r.body["applied_index"].as_u64().expect("applied_index");
        let mut maps = Vec::new();
        for id in real.node_ids() {
            let node_gw = start_over(
                Arc::new(http_gateway::ClientCluster::new(real.node_client(id))),
                settings(),
            )
            .await;
            let path = format!("/v1/events/{event}/availability?consistency=stale");
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let r = node_gw.get(&path, None).await;
                // A lagging node may not have applied the event's creation yet.
                let lagging = r.status == 404 && r.body["code"] == "unknown_event";
                assert!(
                    r.status == 200 || lagging,
                    "node {id} availability: {} {}",
                    r.status,
                    r.text
                );
                if r.status == 200 && r.body["applied_index"].as_u64() >= Some(index) {
                    maps.push(seat_rows(&r.body));
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {id} never applied index {index}: {}",
                    r.text
                );
                tokio::time::sleep(POLL).await;
            }
        }
        maps
    }

    /// What a request could change, as the admin sees it: the seat map of
    /// each event and every hold and booking (ids from 1 up to the first
    /// unknown one). Equal snapshots before and after mean nothing changed.
    pub async fn state_snapshot(&self, events: &[&str]) -> Value {
        let mut maps = Vec::new();
        for e in events {
            maps.push(json!(self.seat_map(e).await));
        }
        let mut holds = Vec::new();
        let mut bookings = Vec::new();
        for (kind, out) in [("holds", &mut holds), ("bookings", &mut bookings)] {
            for id in 1..=SNAPSHOT_IDS_MAX {
                let r = self.get(&format!("/v1/{kind}/{id}"), Some(ADMIN)).await;
                if r.status == 404 {
                    break;
                }
                assert_eq!(r.status, 200, "{kind}/{id}: {}", r.text);
                out.push(r.body);
            }
        }
        json!({ "seat_maps": maps, "holds": holds, "bookings": bookings })
    }

    /// Holds `seats` for `token` and pays with `method`; returns the checkout answer.
    pub async fn hold_and_pay(
        &self,
        token: &str,
        event: &str,
        seats: &[&str],
        method: &str,
    ) -> (u64, Resp) {
        let r = self.hold(token, event, json!({ "seats": seats })).await;
        assert_eq!(r.status, 201, "hold: {}", r.text);
        let hold_id = r.body["hold_id"].as_u64().unwrap();
        let r = self
            .post(
                &format!("/v1/holds/{hold_id}/checkout"),
                Some(token),
                json!({ "payment_method": method }),
            )
            .await;
        (hold_id, r)
    }
}

/// Asserts an error answer is problem+json with the given status and code.
pub fn assert_problem(r: &Resp, status: u16, code: &str) {
    assert_eq!(
        r.status, status,
        "expected {status} {code}, got {}: {}",
        r.status, r.text
    );
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct:?} for {}",
        r.text
    );
    assert_eq!(r.body["status"].as_u64(), Some(status as u64), "{}", r.text);
    assert_eq!(r.body["code"].as_str(), Some(code), "{}", r.text);
    assert!(
        r.body["type"].is_string() && r.body["title"].is_string() && r.body["detail"].is_string()
    );
}

/// Waits (at most `wait`) until the gateway closes `conn`; how long that
/// took, or `None` if it stayed open. Anything written before the close is
/// read and dropped.
pub async fn closed_within(
    conn: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let start = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait, conn.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}
