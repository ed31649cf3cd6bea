//! Goal: no connection keeps its slot forever while others wait. A crowd
//! that keeps every one of `connections_max` keep-alive connections busy
//! cannot lock a new client out (an operator's `GET /readyz`), and the crowd
//! keeps being served meanwhile (reconnecting when asked to); a connection
//! asked to make room is answered in full first; an idle keep-alive
//! connection is closed after `keep_alive_idle_ms`, a busy one is not.
//! Raw TCP where the behaviour is below HTTP (who closes, and when).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::settings::GatewaySettings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The connection cap of these tests, and the size of the crowd that fills it.
const CROWD: usize = 8;
/// Bound on a new client's wait for its first answer while the crowd holds
/// every slot (generous: the gateway promises far less).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Pause between two requests of one crowd member: far shorter than any
/// idle timeout, so every connection stays busy, but the crowd does not take
/// every CPU cycle of a shared test machine.
const CROWD_PAUSE: Duration = Duration::from_millis(2);

/// What one member of the crowd has seen so far.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// `CROWD` clients, each on its own keep-alive connection (one pooled
/// connection per client), sending `GET /healthz` one after another until
/// `stop`. A failed request (a connection closed under it) is counted and
/// the client goes on, as any HTTP client would.
fn start_crowd(
    gw: &Gw,
    stop: &Arc<AtomicBool>,
) -> (Vec<Arc<Tally>>, Vec<tokio::task::JoinHandle<()>>) {
    let mut tallies = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..CROWD {
        let tally = Arc::new(Tally::default());
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(WAIT)
            .build()
            .expect("http client");
        let url = gw.url("/healthz");
        let (stop, t) = (stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let answered = match client.get(&url).send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if answered { &t.ok } else { &t.failed };
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(CROWD_PAUSE).await;
            }
        }));
        tallies.push(tally);
    }
    (tallies, tasks)
}

/// Waits (bounded by [`WAIT`]) until every member of the crowd has had more
/// than `floor[i]` answers.
async fn crowd_served_beyond(tallies: &[Arc<Tally>], floor: &[u64], what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let behind: Vec<usize> = (0..tallies.len())
            .filter(|&i| tallies[i].ok.load(Ordering::Relaxed) <= floor[i])
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: crowd members {behind:?} got no answer within {WAIT:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_crowd_at_the_connection_cap_does_not_lock_out_a_new_client() {
    // Eight clients keep all eight slots busy; a ninth client's GET /readyz
    // must still be answered, and the crowd must keep being served after.
    let gw = start_on(
        Arc::new(FakeCluster::new()),
        GatewaySettings {
            connections_max: CROWD,
            ..settings()
        },
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let (tallies, tasks) = start_crowd(&gw, &stop);
    // Every member holds a slot once each has been answered.
    crowd_served_beyond(&tallies, &[0; CROWD], "crowd start").await;

    let fresh = reqwest::Client::new();
    let answer = fresh
        .get(gw.url("/readyz"))
        .timeout(ANSWER_WITHIN)
        .send()
        .await;
    let status = answer.as_ref().map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(200)),
        "a new client was not answered within {ANSWER_WITHIN:?} while the crowd held \
         every connection: {answer:?}"
    );

    // The crowd is still served after the newcomer got its slot.
    let seen: Vec<u64> = tallies
        .iter()
        .map(|t| t.ok.load(Ordering::Relaxed))
        .collect();
    crowd_served_beyond(&tallies, &seen, "after the newcomer").await;

    // The count of connections asked to make room. The newcomer's own
    // connection may by now have been asked to make room in turn (closing
    // it races with a request on it, as with any keep-alive close), so a
    // failed attempt is retried on a new connection, within a bound.
    let deadline = tokio::time::Instant::now() + WAIT;
    let metrics = loop {
        let attempt = fresh
            .get(gw.url("/metrics"))
            .timeout(ANSWER_WITHIN)
            .send()
            .await;
        match attempt {
            Ok(r) if r.status() == 200 => break r.text().await.expect("metrics body"),
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "no metrics within {WAIT:?}: {other:?}"
            ),
        }
    };
    let fairness = counter(
        &metrics,
        "gateway_connections_closed_total{reason=\"fairness\"}",
    );
    assert!(fairness >= 1.0, "fairness closes not counted: {fairness}");

    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = tokio::time::timeout(WAIT, task).await;
    }
    let failed: u64 = tallies
        .iter()
        .map(|t| t.failed.load(Ordering::Relaxed))
        .sum();
    let ok: u64 = tallies.iter().map(|t| t.ok.load(Ordering::Relaxed)).sum();
    eprintln!("crowd: {ok} answered, {failed} failed; {fairness} fairness closes");
}

/// The value of the sample `name` (with its labels) in a Prometheus text
/// exposition; 0 if absent.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn connect(gw: &Gw) -> TcpStream {
    let addr = gw.base.trim_start_matches("http://");
    TcpStream::connect(addr)
        .await
        .expect("connect to the gateway")
}

/// One answer read from a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head, lower-cased (status line and headers).
    head: String,
    body: String,
    /// When it was read in full.
    at: Instant,
}

/// Reads one answer (head and a `Content-Length` body) from `conn`; `None`
/// if the peer closed first or it did not all arrive within `within`.
async fn read_answer(conn: &mut TcpStream, within: Duration) -> Option<Answer> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return None,
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = text[..head_end].to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if got.len() >= head_end + 4 + len {
            let status = head
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            return Some(Answer {
                status,
                body: text[head_end + 4..].to_string(),
                head,
                at: Instant::now(),
            });
        }
    }
}

/// A keep-alive `GET path` on `conn` and its answer (see [`read_answer`]).
async fn get_on(conn: &mut TcpStream, path: &str, within: Duration) -> Option<Answer> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    read_answer(conn, within).await
}

#[tokio::test]
async fn at_the_cap_the_oldest_connection_is_answered_then_closed_for_a_newcomer() {
    // With connections_max = 1, a connection in the middle of a 3 s
    // checkout is not cut when a second connection arrives: its answer
    // comes in full, marked `Connection: close`; then it is closed and the
    // newcomer is served.
    let fake = Arc::new(FakeCluster::new());
    // The hold is made through a gateway without the cap, so the capped
    // one has exactly the connections of this test.
    let setup = start_on(fake.clone(), settings()).await;
    setup.open_event("gig").await;
    let alice = setup.session("alice").await;
    let r = setup
        .hold(&alice, "gig", json!({ "seats": ["A-1-1"] }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.body["hold_id"].as_u64().unwrap();
    let gw = start_on(
        fake,
        GatewaySettings {
            connections_max: 1,
            ..settings()
        },
    )
    .await;

    let mut busy = connect(&gw).await;
    assert_eq!(
        get_on(&mut busy, "/healthz", WAIT).await.map(|a| a.status),
        Some(200)
    );
    let body = json!({ "payment_method": "tok_slow_3000" }).to_string();
    let checkout = format!(
        "POST /v1/holds/{hold_id}/checkout HTTP/1.1\r\nHost: gw\r\n\
         Authorization: Bearer {alice}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let checkout_sent = Instant::now();
    busy.write_all(checkout.as_bytes()).await.unwrap();
    let mut newcomer = connect(&gw).await;
    newcomer
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let (busy_answer, newcomer_answer) = tokio::join!(
        read_answer(&mut busy, WAIT),
        read_answer(&mut newcomer, WAIT)
    );
    let busy_answer = busy_answer.expect("the busy connection's checkout was answered");
    assert_eq!(busy_answer.status, 201, "{}", busy_answer.body);
    assert!(
        busy_answer.head.contains("connection: close"),
        "the answer does not say the connection closes: {}",
        busy_answer.head
    );
    assert!(
        closed_within(&mut busy, WAIT).await.is_some(),
        "the connection asked to make room stayed open"
    );
    let newcomer_answer = newcomer_answer.expect("the newcomer was not served");
    assert_eq!(newcomer_answer.status, 200);
    // The checkout's payment alone takes 3 s: a newcomer answered sooner
    // was served while the cap was held.
    let waited = newcomer_answer.at - checkout_sent;
    assert!(
        waited >= Duration::from_millis(2_900),
        "the newcomer was served after {waited:?}, while the cap was held"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not() {
    // keep_alive_idle_ms = 1000: a connection that stops sending requests
    // is closed after about that long (counted `idle`); one that sends a
    // request every 100 ms for 3 s stays open throughout (a stall of the
    // test machine up to ~0.9 s between two requests is tolerated).
    let gw = start_on(
        Arc::new(FakeCluster::new()),
        GatewaySettings {
            keep_alive_idle_ms: 1_000,
            ..settings()
        },
    )
    .await;
    let mut idle = connect(&gw).await;
    assert_eq!(
        get_on(&mut idle, "/healthz", WAIT).await.map(|a| a.status),
        Some(200)
    );
    let took = closed_within(&mut idle, WAIT)
        .await
        .expect("an idle connection stayed open");
    assert!(
        took >= Duration::from_millis(800),
        "closed after {took:?}: sooner than the idle timeout"
    );

    let mut busy = connect(&gw).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3_000) {
        let status = get_on(&mut busy, "/healthz", WAIT).await.map(|a| a.status);
        assert_eq!(status, Some(200), "a busy connection was closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = get_on(&mut busy, "/metrics", WAIT)
        .await
        .expect("metrics answered");
    let closed = counter(
        &metrics.body,
        "gateway_connections_closed_total{reason=\"idle\"}",
    );
    assert!(closed >= 1.0, "idle closes not counted: {closed}");
}
