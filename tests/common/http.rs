//! HTTP helpers for the tests that drive a `booking gateway` process:
//! one client with a generous timeout, an answer type that keeps status,
//! body, `Retry-After` and text (a transport error is status 0), sessions,
//! events, holds and releases.
//!
//! Must not: retry (each test decides what a retry is and with which key).

use std::time::Duration;

use serde_json::{json, Value};

/// The admin token of [`TestCluster`]'s cluster.toml.
pub const ADMIN: &str = super::ADMIN_TOKEN;

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status, body as JSON (Null if not JSON), `Retry-After` header, raw text.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<String>,
    pub text: String,
}

pub async fn send(req: reqwest::RequestBuilder) -> Answer {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let text = r.text().await.unwrap_or_default();
            Answer {
                status,
                body: serde_json::from_str(&text).unwrap_or(Value::Null),
                retry_after,
                text,
            }
        }
        Err(e) => Answer {
            status: 0,
            body: Value::Null,
            retry_after: None,
            text: format!("transport error: {e}"),
        },
    }
}

pub async fn session(http: &reqwest::Client, base: &str, name: &str) -> String {
    let a = send(
        http.post(format!("{base}/v1/sessions"))
            .json(&json!({ "name": name })),
    )
    .await;
    assert_eq!(a.status, 201, "session for {name}: {}", a.text);
    a.body["token"].as_str().expect("token").to_string()
}

/// Creates an event with section A of `rows` × `seats_per_row` and opens its sale.
pub async fn create_open_event(
    http: &reqwest::Client,
    base: &str,
    event_id: &str,
    rows: u32,
    seats_per_row: u32,
) {
    let spec = testkit::TestEvent::reserved(event_id, rows, seats_per_row).json();
    let a = send(
        http.post(format!("{base}/v1/events"))
            .bearer_auth(ADMIN)
            .json(&spec),
    )
    .await;
    assert!(
        a.status == 201 || a.status == 200,
        "create event: {} {}",
        a.status,
        a.text
    );
    let a = send(
        http.post(format!("{base}/v1/events/{event_id}/sale/open"))
            .bearer_auth(ADMIN),
    )
    .await;
    assert!(a.status < 300, "open sale: {} {}", a.status, a.text);
}

pub async fn hold(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    event_id: &str,
    seats: &[&str],
    key: Option<&str>,
) -> Answer {
    let mut req = http
        .post(format!("{base}/v1/events/{event_id}/holds"))
        .bearer_auth(token)
        .json(&json!({ "seats": seats }));
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    send(req).await
}

/// Releases `hold_id` through the gateway at `base`; the release must succeed.
pub async fn release(http: &reqwest::Client, base: &str, token: &str, hold_id: u64) {
    let released = send(
        http.delete(format!("{base}/v1/holds/{hold_id}"))
            .bearer_auth(token),
    )
    .await;
    assert!(
        released.status < 300,
        "release of hold {hold_id}: {} {}",
        released.status,
        released.text
    );
}
