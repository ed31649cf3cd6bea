//! `booking up` end to end through HTTP: nodes, a gateway child, the demo
//! event, a hold and a lost race for the same seat, then a clean SIGTERM
//! stop of everything.
//!
//! A second `up` on the same data directory reuses it: the demo event and a
//! booking made in the first run are still there.
//!
//! Ports 31600–31700 (nodes 31601–31603, gateway 31650) and 32400–32450 for
//! the second test (nodes 32401–32403, gateway 32450), distinct from the
//! other root tests. The two tests run one at a time. Every wait is a poll
//! with a generous bound, because CI machines are loaded; no fixed sleeps.

mod common;

use std::path::Path;
use std::time::Duration;

use common::UpProc;
use serde_json::{json, Value};
use testkit::ConfigFile;

const PORT_BASE: u16 = 31600;
const NODES: u16 = 3;
const GATEWAY_PORT: u16 = PORT_BASE + 50;
/// Ports of the data-reuse test.
const REUSE_PORT_BASE: u16 = 32400;
const ADMIN: &str = "gateway-up-test-admin";
/// Bound on each awaited condition.
const WAIT: Duration = Duration::from_secs(60);

/// `booking up` with a cluster.toml in `dir` (rewritten each time): nodes
/// on `port_base + 1..=3`, the gateway on `port_base + 50`; its output in
/// `<dir>/<log_name>`, one file per run so a run never reads the last one's.
fn start_up(dir: &Path, port_base: u16, log_name: &str) -> UpProc {
    let file = ConfigFile::new("gateway-up")
        .with_nodes_from_port(port_base, NODES)
        .with_gateway_listen(([127, 0, 0, 1], port_base + 50).into())
        .with_demo_gateway(ADMIN);
    let config = dir.join("cluster.toml");
    file.write(&config).expect("write cluster.toml");
    UpProc::start(&config, &dir.join(log_name))
}

/// The line where `up` says what it did about the demo event (its output
/// also holds its children's log lines, so a word alone proves nothing).
fn demo_line(up: &UpProc) -> String {
    up.output()
        .lines()
        .find(|l| l.contains("demo event"))
        .unwrap_or_default()
        .to_string()
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value, String) {
    match req.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::Null),
                text,
            )
        }
        Err(e) => (0, Value::Null, e.to_string()),
    }
}

async fn session(http: &reqwest::Client, base: &str, name: &str) -> String {
    let (status, body, text) = send(
        http.post(format!("{base}/v1/sessions"))
            .json(&json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "session for {name}: {text}");
    body["token"].as_str().expect("token").to_string()
}

async fn hold(http: &reqwest::Client, base: &str, token: &str, seat: &str) -> (u16, Value, String) {
    send(
        http.post(format!("{base}/v1/events/demo/holds"))
            .bearer_auth(token)
            .json(&json!({ "seats": [seat] })),
    )
    .await
}

fn contains(path: &Path, needle: &str) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.contains(needle))
        .unwrap_or(false)
}

#[tokio::test]
async fn up_serves_the_gateway_with_a_demo_event_and_stops_cleanly() {
    // Goal: `booking up` starts nodes and a gateway, creates the demo event,
    // prints the page URL, serves holds with one winner per seat, and stops
    // every child on SIGTERM.
    let _serial = testkit::serial().await;
    assert!(
        !port_open(GATEWAY_PORT),
        "port {GATEWAY_PORT} is already in use"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let up = start_up(dir.path(), PORT_BASE, "up.log");
    let base = format!("http://127.0.0.1:{GATEWAY_PORT}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    wait_serving(&up, &base).await;
    let printed = up.output();
    assert!(demo_line(&up).contains("created"), "{}", up.log_tail());
    // The page link opens the demo event straight away.
    assert!(
        printed.contains(&format!("page       {base}/?event=demo")),
        "{}",
        up.log_tail()
    );
    assert!(
        printed.contains("[gateway] admin_token"),
        "{}",
        up.log_tail()
    );

    let (status, _, text) = send(http.get(format!("{base}/healthz"))).await;
    assert_eq!(status, 200, "healthz: {text}\n{}", up.log_tail());
    let page = http.get(format!("{base}/")).send().await.expect("GET /");
    assert_eq!(page.status().as_u16(), 200);
    let content_type = page.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/html"),
        "content-type {content_type}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.to_ascii_lowercase().contains("<html"),
        "not a page: {}",
        &html[..html.len().min(200)]
    );

    let (status, event, text) = send(http.get(format!("{base}/v1/events/demo"))).await;
    assert_eq!(status, 200, "demo event: {text}");
    assert_eq!(
        event["sections"].as_array().map(Vec::len),
        Some(3),
        "{text}"
    );

    // A hold, then a second user for the same seat.
    let alice = session(&http, &base, "alice").await;
    let bob = session(&http, &base, "bob").await;
    let carol = session(&http, &base, "carol").await;
    let (status, body, text) = hold(&http, &base, &alice, "A-1-1").await;
    assert_eq!(status, 201, "alice's hold: {text}");
    assert_eq!(body["seats"], json!(["A-1-1"]));
    let (status, _, text) = hold(&http, &base, &bob, "A-1-1").await;
    assert_eq!(status, 409, "bob on alice's seat: {text}");

    // A real race: two users at once for one seat, exactly one wins.
    let (b, c) = tokio::join!(
        hold(&http, &base, &bob, "A-2-5"),
        hold(&http, &base, &carol, "A-2-5")
    );
    let mut statuses = [b.0, c.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [201, 409],
        "race for A-2-5: bob {} / carol {}",
        b.2,
        c.2
    );

    // SIGTERM stops `up`, which stops the gateway and every node.
    stop(up, PORT_BASE).await;
}

/// Waits for `up` to print its page URL (it is serving), panicking with its output.
async fn wait_serving(up: &UpProc, base: &str) {
    let page_line = format!("page       {base}/");
    let wait = common::wait_until("`up` to print its page URL", WAIT * 2, || {
        let ready = contains(up.log_path(), &page_line);
        async move { Ok(ready.then_some(())) }
    });
    if let Err(e) = wait.await {
        panic!("{e}\n{}", up.log_tail());
    }
}

/// SIGTERM, then a clean exit and every port closed.
async fn stop(mut up: UpProc, port_base: u16) {
    let status = up.terminate(WAIT);
    assert!(
        status.success(),
        "`up` exited with {status}\n{}",
        up.log_tail()
    );
    let mut ports: Vec<u16> = (1..=NODES).map(|id| port_base + id).collect();
    ports.push(port_base + 50);
    common::wait_for("every port to close", WAIT, || {
        let open: Vec<u16> = ports.iter().copied().filter(|p| port_open(*p)).collect();
        async move { open.is_empty().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn a_second_up_reuses_the_data_directory() {
    // Goal: `booking up` twice on one directory: the second run finds the
    // demo event (does not create it again), and a booking and a held seat
    // made in the first run are still there.
    let _serial = testkit::serial().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let base = format!("http://127.0.0.1:{}", REUSE_PORT_BASE + 50);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    // First run: a booking of A-3-3 and a hold on A-3-4.
    let up = start_up(dir.path(), REUSE_PORT_BASE, "up-1.log");
    wait_serving(&up, &base).await;
    assert!(demo_line(&up).contains("created"), "{}", up.log_tail());
    let alice = session(&http, &base, "alice").await;
    let (status, held, text) = hold(&http, &base, &alice, "A-3-3").await;
    assert_eq!(status, 201, "hold: {text}\n{}", up.log_tail());
    let hold_id = held["hold_id"].as_u64().expect("hold_id");
    let (status, booking, text) = send(
        http.post(format!("{base}/v1/holds/{hold_id}/checkout"))
            .bearer_auth(&alice)
            .json(&json!({ "payment_method": "tok_ok" })),
    )
    .await;
    assert_eq!(status, 201, "checkout: {text}");
    let booking_id = booking["booking_id"].as_u64().expect("booking_id");
    let (status, second, text) = hold(&http, &base, &alice, "A-3-4").await;
    assert_eq!(status, 201, "second hold: {text}");
    let second_id = second["hold_id"].as_u64().unwrap();
    stop(up, REUSE_PORT_BASE).await;

    // Second run on the same directory.
    let up = start_up(dir.path(), REUSE_PORT_BASE, "up-2.log");
    wait_serving(&up, &base).await;
    assert!(
        demo_line(&up).contains("reused from the data directory"),
        "the second run did not reuse the demo event\n{}",
        up.log_tail()
    );
    // Sessions are derived from the cluster name and admin token: the old token still works.
    let (status, found, text) = send(
        http.get(format!("{base}/v1/bookings/{booking_id}"))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(
        status,
        200,
        "booking after restart: {text}\n{}",
        up.log_tail()
    );
    assert_eq!(found["seats"], json!(["A-3-3"]), "{text}");
    let (status, found, text) = send(
        http.get(format!("{base}/v1/holds/{second_id}"))
            .bearer_auth(&alice),
    )
    .await;
    assert_eq!(status, 200, "hold after restart: {text}");
    assert_eq!(found["status"], "active", "{text}");
    // The seats are still taken for everyone else.
    let bob = session(&http, &base, "bob").await;
    for seat in ["A-3-3", "A-3-4"] {
        let (status, _, text) = hold(&http, &base, &bob, seat).await;
        assert_eq!(status, 409, "bob on {seat} after restart: {text}");
    }
    let (status, _, text) = hold(&http, &base, &bob, "A-3-5").await;
    assert_eq!(status, 201, "a free seat after restart: {text}");
    stop(up, REUSE_PORT_BASE).await;
}
