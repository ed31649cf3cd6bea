//! The files under `deploy/` against the code: every metric the Grafana
//! dashboard and the Prometheus alert rules name must exist in a live
//! `/metrics` of a node or a gateway, so a renamed metric fails here, not on
//! an operator's pager. Also checks that the dashboard is valid JSON whose
//! panels all have queries.
//!
//! Ports 32700–32760 (nodes 32701–32703 and their metrics on 32711–32713,
//! the gateway on 32750).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{booking_bin, wait_for, ADMIN_TOKEN, WAIT};
use serde_json::{json, Value};
use testkit::nodes::{Launch, NodeProcs};
use testkit::ConfigFile;

const PORT_BASE: u16 = 32700;

/// Metric names (`booking_*`, `gateway_*`) mentioned in `text`, histogram
/// series suffixes folded onto their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let starts = rest.starts_with(b"booking_") || rest.starts_with(b"gateway_");
        let boundary = i == 0 || !is_name(bytes[i - 1]);
        if starts && boundary {
            // Names are ASCII, so `end` is a char boundary.
            let end = i + rest.iter().position(|&b| !is_name(b)).unwrap_or(rest.len());
            names.insert(family(&text[i..end]).to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    names
}

/// `x_bucket`, `x_sum`, `x_count` of a histogram are series of family `x`.
fn family(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// Families a live `/metrics` declares (its `# TYPE` lines).
fn declared(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

fn deploy_file(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn get_text(http: &reqwest::Client, url: String) -> Option<String> {
    let r = http.get(&url).send().await.ok()?;
    r.status().is_success().then_some(())?;
    r.text().await.ok()
}

async fn post(http: &reqwest::Client, url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(json!(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_alerts_name_exists_in_a_live_metrics_endpoint() {
    // Goal: the Grafana dashboard and the alert rules under deploy/ only name metrics a running node or gateway exports.
    let _serial = testkit::serial().await;
    let dashboard_text = deploy_file("deploy/grafana/booking-dashboard.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty() && targets.iter().all(|t| t["expr"].is_string()),
            "panel {} has no query",
            p["title"]
        );
    }
    let alerts = deploy_file("deploy/prometheus/alerts.yml");
    let named: BTreeSet<String> = metric_names(&dashboard_text)
        .into_iter()
        .chain(metric_names(&alerts))
        .collect();
    assert!(named.len() >= 10, "the files name few metrics: {named:?}");

    // A cluster whose nodes serve /metrics, and a demo gateway.
    let dir = tempfile::tempdir().unwrap();
    let mut file = ConfigFile::new("deploy-metrics")
        .with_nodes_from_port(PORT_BASE, 3)
        .with_gateway_listen(([127, 0, 0, 1], PORT_BASE + 50).into())
        .with_demo_gateway(ADMIN_TOKEN);
    for (i, node) in file.nodes.iter_mut().enumerate() {
        node.metrics_addr = Some(([127, 0, 0, 1], PORT_BASE + 11 + i as u16).into());
    }
    let mut procs = NodeProcs::create(&booking_bin(), dir.path(), file, Launch::inherit_rust_log())
        .expect("cluster dir");
    procs.start_all().expect("start nodes");
    let gateway_section = procs.file().gateway.clone();
    let mut gateway = procs
        .start_gateway("gateway", gateway_section, &[])
        .expect("start gateway");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    if let Err(e) = gateway.wait_ready(&http, WAIT).await {
        panic!(
            "gateway not ready: {e}\n{}\n{}",
            gateway.log_tail(30),
            procs.logs_tail(30)
        );
    }
    let base = gateway.url.clone();

    // Exercise what labelled gateway series need before they exist: a held
    // and paid seat (requests, cluster submits, payments) and a waiting room
    // read (fans waiting).
    let (status, body) = post(
        &http,
        &format!("{base}/v1/sessions"),
        None,
        json!({"name": "ann"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let ann = body["token"].as_str().expect("token").to_string();
    let plain = testkit::TestEvent::reserved("plain", 2, 10).json();
    let mut queued = testkit::TestEvent::reserved("queued", 2, 10).json();
    queued["waiting_room"] = json!({ "enabled": true, "admit_batch": 1 });
    for spec in [plain, queued] {
        let id = spec["id"].as_str().unwrap_or("event").to_string();
        let (status, body) =
            post(&http, &format!("{base}/v1/events"), Some(ADMIN_TOKEN), spec).await;
        assert!(
            status == 201 || status == 200,
            "create {id}: {status} {body}"
        );
    }
    let (status, body) = post(
        &http,
        &format!("{base}/v1/events/plain/sale/open"),
        Some(ADMIN_TOKEN),
        json!({}),
    )
    .await;
    assert!(status < 300, "open: {status} {body}");
    let (status, body) = post(
        &http,
        &format!("{base}/v1/events/plain/holds"),
        Some(&ann),
        json!({"seats": ["A-1-1"]}),
    )
    .await;
    assert_eq!(status, 201, "hold: {body}");
    let hold_id = body["hold_id"].as_u64().expect("hold id");
    let (status, body) = post(
        &http,
        &format!("{base}/v1/holds/{hold_id}/checkout"),
        Some(&ann),
        json!({"payment_method": "tok_ok"}),
    )
    .await;
    assert_eq!(status, 201, "checkout: {body}");
    let (status, body) = post(
        &http,
        &format!("{base}/v1/events/queued/queue"),
        Some(&ann),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "join: {body}");
    let token = body["queue_token"].as_str().expect("queue token");
    let r = http
        .get(format!("{base}/v1/events/queued/queue/{token}"))
        .bearer_auth(&ann)
        .send()
        .await
        .expect("queue position");
    assert_eq!(r.status().as_u16(), 200);

    let mut live = BTreeSet::new();
    let gateway_metrics = wait_for("the gateway's /metrics", WAIT, || {
        get_text(&http, format!("{base}/metrics"))
    })
    .await;
    live.extend(declared(&gateway_metrics));
    for node in &procs.file().nodes {
        let addr = node.metrics_addr.expect("metrics addr");
        let text = wait_for("a node's /metrics", WAIT, || {
            get_text(&http, format!("http://{addr}/metrics"))
        })
        .await;
        live.extend(declared(&text));
    }
    let missing: Vec<&String> = named.iter().filter(|n| !live.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "deploy/ names metrics no live /metrics exports: {missing:?}\nexported: {live:?}"
    );
    gateway.stop();
    procs.kill_all();
}

#[test]
fn metric_names_are_found_with_histogram_suffixes_folded() {
    // Goal: the name scanner finds whole metric names in PromQL and folds histogram series onto their family.
    let found = metric_names(
        "rate(gateway_http_request_duration_seconds_bucket[1m]) / x_booking_not booking_raft_term{node_id=\"1\"}",
    );
    let expected: BTreeSet<String> = ["gateway_http_request_duration_seconds", "booking_raft_term"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(found, expected);
}
