//! Test harness: a gateway over the in-memory fake cluster on an ephemeral
//! loopback port, with fixed keys, a simulated payment provider the test can
//! inspect, and small HTTP helpers.

#![allow(dead_code)]

use std::sync::Arc;

use http_gateway::fake::FakeCluster;
use http_gateway::keys::Keys;
use http_gateway::{AppState, GatewaySettings, SimulatedProvider};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub const ADMIN: &str = "test-admin-token";
pub const WEBHOOK_SECRET: &str = "whsec_test";

pub struct Gw {
    pub base: String,
    pub fake: Arc<FakeCluster>,
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
        admin_token: ADMIN.into(),
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
    let pay = Arc::new(SimulatedProvider::new());
    let keys = Keys::for_tests("token-secret", "ticket-seed", WEBHOOK_SECRET);
    let state = AppState::new(settings, fake.clone(), pay.clone(), keys).expect("settings valid");
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
        fake,
        pay,
        http: reqwest::Client::new(),
        stop: Some(stop_tx),
        task: Some(task),
    }
}

/// A small reserved section A (3 rows × 10 seats) and a GA section of 100.
pub fn event_spec(id: &str) -> Value {
    json!({
        "id": id,
        "name": "Test Gig",
        "venue": "Test Hall",
        "starts_at": "2030-01-01T20:00:00Z",
        "sections": [
            {"kind": "reserved", "id": "A", "name": "Stalls", "price_cents": 5000,
             "rows": [{"label": "1", "seats": 10}, {"label": "2", "seats": 10}, {"label": "3", "seats": 10}]},
            {"kind": "general_admission", "id": "GA", "name": "Floor", "capacity": 100, "price_cents": 2000}
        ]
    })
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Gw {
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

    /// Seat states of every reserved row, as one string per row.
    pub async fn seat_map(&self, event: &str) -> Vec<String> {
        let r = self
            .get(&format!("/v1/events/{event}/availability"), None)
            .await;
        assert_eq!(r.status, 200, "availability: {}", r.text);
        let mut rows = Vec::new();
        for s in r.body["sections"].as_array().unwrap() {
            rows.push(format!(
                "{}:{}/{}/{}",
                s["section"], s["available"], s["held"], s["booked"]
            ));
            for row in s["rows"].as_array().unwrap() {
                rows.push(row["states"].as_str().unwrap().to_string());
            }
        }
        rows
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
