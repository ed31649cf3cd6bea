//! Goal: the gateway's abuse limits hold on the wire: slow headers are cut
//! off, a slow body or a slow request answers 408 `request_timeout`, the
//! connection caps (total and per address) refuse or queue what is over
//! them, and `Forwarded` / `X-Forwarded-For` name the client only when a
//! `trusted_proxies` peer sends them. Raw TCP where the behaviour is below
//! HTTP (a half-sent request, a connection closed at accept).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http_gateway::fake::FakeCluster;
use http_gateway::settings::GatewaySettings;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any wait for the gateway to act on a limit; a limit that does
/// not act within it has failed.
const LIMIT_WAIT: Duration = Duration::from_secs(5);

async fn start_with(settings: GatewaySettings) -> Gw {
    start_on(Arc::new(FakeCluster::new()), settings).await
}

async fn connect(gw: &Gw) -> TcpStream {
    let addr = gw.base.trim_start_matches("http://");
    TcpStream::connect(addr)
        .await
        .expect("connect to the gateway")
}

/// A keep-alive `GET /healthz` on `conn`; the status of its answer (0: the
/// connection closed or nothing came within `within`).
async fn healthz_on(conn: &mut TcpStream, within: Duration) -> u16 {
    get_on(conn, "/healthz", within).await.0
}

/// A keep-alive `GET path` on `conn`: the answer's status and body (0 and
/// nothing: the connection closed or nothing came within `within`).
async fn get_on(conn: &mut TcpStream, path: &str, within: Duration) -> (u16, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n");
    if conn.write_all(request.as_bytes()).await.is_err() {
        return (0, String::new());
    }
    read_answer(conn, within).await
}

/// The status of the next answer on `conn` (see [`read_answer`]).
async fn read_status(conn: &mut TcpStream, within: Duration) -> u16 {
    read_answer(conn, within).await.0
}

/// Reads one answer (head and a `Content-Length` body); status 0 if the peer
/// closed first or it did not all arrive within `within`.
async fn read_answer(conn: &mut TcpStream, within: Duration) -> (u16, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let n = match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return (0, String::new()),
        };
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        let Some(head_end) = text.find("\r\n\r\n") else {
            continue;
        };
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = text[..head_end]
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if got.len() >= head_end + 4 + len {
            return (status, text[head_end + 4..].to_string());
        }
    }
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    // A peer that never finishes its headers loses its connection after
    // header_read_timeout_ms; one that sends them promptly is served.
    let gw = start_with(GatewaySettings {
        header_read_timeout_ms: 300,
        ..settings()
    })
    .await;
    let mut prompt = connect(&gw).await;
    assert_eq!(healthz_on(&mut prompt, LIMIT_WAIT).await, 200);

    let mut slow = connect(&gw).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n")
        .await
        .unwrap();
    let took = closed_within(&mut slow, LIMIT_WAIT)
        .await
        .expect("a connection with half its headers stayed open");
    assert!(
        took >= Duration::from_millis(200),
        "closed too early ({took:?}): not the header timeout"
    );
    // A prompt connection is still served (a new one: an idle keep-alive
    // connection may fall under the same timeout while it waits).
    let mut prompt = connect(&gw).await;
    assert_eq!(healthz_on(&mut prompt, LIMIT_WAIT).await, 200);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_answers_408() {
    // Headers promise 100 bytes; 10 arrive, then nothing: 408 after
    // body_read_timeout_ms, and no session is made.
    let gw = start_with(GatewaySettings {
        body_read_timeout_ms: 300,
        ..settings()
    })
    .await;
    let mut conn = connect(&gw).await;
    conn.write_all(
        b"POST /v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\": ",
    )
    .await
    .unwrap();
    let start = Instant::now();
    let status = read_status(&mut conn, LIMIT_WAIT).await;
    assert_eq!(status, 408, "a stalled body is answered 408");
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_request_longer_than_the_request_timeout_answers_408() {
    // A checkout whose payment takes 3 s, under a 500 ms request timeout:
    // 408 `request_timeout` after about 500 ms, not the payment's answer.
    let gw = start_with(GatewaySettings {
        request_timeout_ms: 500,
        ..settings()
    })
    .await;
    gw.open_event("gig").await;
    let alice = gw.session("alice").await;
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-1"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let hold_id = r.body["hold_id"].as_u64().unwrap();
    let start = Instant::now();
    let r = gw
        .post(
            &format!("/v1/holds/{hold_id}/checkout"),
            Some(&alice),
            json!({ "payment_method": "tok_slow_3000" }),
        )
        .await;
    let took = start.elapsed();
    assert_problem(&r, 408, "request_timeout");
    assert!(
        took < Duration::from_millis(2_500),
        "the timeout did not cut the request short: {took:?}"
    );
    // Quick requests still pass.
    assert_eq!(gw.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_closed() {
    // Two open connections from 127.0.0.1 are the cap: a third is closed at
    // accept without an answer (and counted); when one closes, a new one is
    // served again.
    let gw = start_with(GatewaySettings {
        connections_per_address_max: 2,
        ..settings()
    })
    .await;
    let mut a = connect(&gw).await;
    let mut b = connect(&gw).await;
    assert_eq!(healthz_on(&mut a, LIMIT_WAIT).await, 200);
    assert_eq!(healthz_on(&mut b, LIMIT_WAIT).await, 200);
    let mut c = connect(&gw).await;
    assert_eq!(
        healthz_on(&mut c, LIMIT_WAIT).await,
        0,
        "a third connection from one address was served"
    );
    drop(a);
    // The slot comes back when the gateway sees the close (bounded wait).
    let deadline = Instant::now() + LIMIT_WAIT;
    loop {
        let mut d = connect(&gw).await;
        if healthz_on(&mut d, LIMIT_WAIT).await == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed connection's slot never came back"
        );
        tokio::time::sleep(POLL).await;
    }
    // b was never disturbed, and the refusal was counted (read over b: a
    // new connection might find the cap still full).
    let (status, metrics) = get_on(&mut b, "/metrics", LIMIT_WAIT).await;
    assert_eq!(status, 200);
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("gateway_connections_refused_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        refused.is_some_and(|n| n >= 1.0),
        "refusals not counted: {refused:?}"
    );
}

#[tokio::test]
async fn connections_over_the_total_cap_wait_for_a_free_slot() {
    // With connections_max = 1 a second connection is not served while the
    // first is open and in the middle of a request, and is served once it
    // closes. (An idle first connection would be asked to make room: see
    // tests/connections.rs.)
    let gw = start_with(GatewaySettings {
        connections_max: 1,
        ..settings()
    })
    .await;
    let mut a = connect(&gw).await;
    assert_eq!(healthz_on(&mut a, LIMIT_WAIT).await, 200);
    // Headers promising a body that does not come: `a` is mid-request
    // until body_read_timeout_ms (10 s), far past this test's 700 ms look.
    a.write_all(
        b"POST /v1/sessions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\": ",
    )
    .await
    .unwrap();
    let mut b = connect(&gw).await;
    b.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_status(&mut b, Duration::from_millis(700)).await,
        0,
        "a connection over the total cap was served"
    );
    drop(a);
    assert_eq!(
        read_status(&mut b, LIMIT_WAIT).await,
        200,
        "the waiting connection was not served after a slot freed"
    );
}

/// GET /healthz with `header: value`; the status.
async fn healthz_with(gw: &Gw, header: &str, value: &str) -> u16 {
    gw.send(gw.http.get(gw.url("/healthz")).header(header, value))
        .await
        .status
}

/// Settings with a per-address bucket of 2 requests (refilled 1 per 10 s,
/// so nothing refills during the test) and `trusted` as the proxies.
fn two_per_address(trusted: &[&str]) -> GatewaySettings {
    GatewaySettings {
        rate_per_address_per_s: 1,
        rate_per_address_burst: 2,
        trusted_proxies: trusted.iter().map(|n| n.parse().unwrap()).collect(),
        ..settings()
    }
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_address() {
    // Behind a trusted proxy (127.0.0.1) each forwarded client has its own
    // bucket, IPv6 clients by /64; `Forwarded` is read as well as
    // `X-Forwarded-For`, and a spoofed left part of the chain does not help.
    let gw = start_with(two_per_address(&["127.0.0.1/32"])).await;
    let xff = "x-forwarded-for";
    assert_eq!(healthz_with(&gw, xff, "203.0.113.1").await, 200);
    assert_eq!(healthz_with(&gw, xff, "203.0.113.1").await, 200);
    assert_eq!(healthz_with(&gw, xff, "203.0.113.1").await, 429);
    // Prepending a fresh address is the client's own text: still .1.
    assert_eq!(
        healthz_with(&gw, xff, "198.51.100.77, 203.0.113.1").await,
        429
    );
    // Another client behind the same proxy is not limited by .1's bucket.
    assert_eq!(healthz_with(&gw, xff, "203.0.113.2").await, 200);
    let fwd = "forwarded";
    assert_eq!(healthz_with(&gw, fwd, "for=203.0.113.1").await, 429);
    assert_eq!(
        healthz_with(&gw, fwd, "for=203.0.113.3;proto=https").await,
        200
    );
    // One IPv6 host rotating through its /64 is one client.
    assert_eq!(healthz_with(&gw, xff, "2001:db8:1:2::a").await, 200);
    assert_eq!(healthz_with(&gw, xff, "2001:db8:1:2::b").await, 200);
    assert_eq!(healthz_with(&gw, xff, "2001:db8:1:2::c").await, 429);
    assert_eq!(healthz_with(&gw, xff, "2001:db8:1:3::a").await, 200);
}

#[tokio::test]
async fn forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // Without trusted_proxies the peer (127.0.0.1) is the client, whatever
    // the headers claim: one bucket for all of them.
    let gw = start_with(two_per_address(&[])).await;
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.1").await,
        200
    );
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.2").await,
        200
    );
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.3").await,
        429
    );
    assert_eq!(healthz_with(&gw, "forwarded", "for=203.0.113.4").await, 429);
    // A trusted list that does not hold the peer changes nothing.
    let gw = start_with(two_per_address(&["10.0.0.0/8"])).await;
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.1").await,
        200
    );
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.2").await,
        200
    );
    assert_eq!(
        healthz_with(&gw, "x-forwarded-for", "203.0.113.3").await,
        429
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_not_held_to_the_per_address_connection_cap() {
    // Every client behind a proxy shares its address, so the proxy is exempt
    // from connections_per_address_max; an untrusted peer is not.
    let trusted = start_with(GatewaySettings {
        connections_per_address_max: 1,
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..settings()
    })
    .await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = connect(&trusted).await;
        assert_eq!(healthz_on(&mut c, LIMIT_WAIT).await, 200);
        conns.push(c);
    }
    let untrusted = start_with(GatewaySettings {
        connections_per_address_max: 1,
        ..settings()
    })
    .await;
    let mut a = connect(&untrusted).await;
    assert_eq!(healthz_on(&mut a, LIMIT_WAIT).await, 200);
    let mut b = connect(&untrusted).await;
    assert_eq!(healthz_on(&mut b, LIMIT_WAIT).await, 0);
}
