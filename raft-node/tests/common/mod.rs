//! What raft-node's tests add to `testkit`'s in-process cluster: the
//! commands they send, reading an event's counts, and (`procs`) clusters of
//! real `booking node` processes for the tests that stop or kill a node.
//!
//! Must not: start nodes, pick ports or wait any other way than through
//! `testkit` (one way to start a cluster); every wait polls a condition
//! with a bound.
#![allow(dead_code, unused_imports)] // each test binary uses a different subset

pub mod procs;

use state_machine::{Command, QueryResult};

pub use procs::{booking_bin_or_skip, NodeCluster};

pub use testkit::config::test_raft as raft_section;
pub use testkit::in_process::Cluster;
pub use testkit::{free_addr, serial, wait_for, TestEvent, WAIT};

/// Asserts that `node` serves every hold in `holds` by a linearizable read:
/// the check that nothing acknowledged was lost. `context` says in the
/// failure what the holds went through (a failover, a wiped disk).
pub async fn assert_holds_readable(c: &Cluster, node: u64, holds: &[u64], context: &str) {
    for h in holds {
        let (r, _) = c
            .read(
                node,
                proto::booking::Consistency::Linearizable,
                &state_machine::Query::Hold { hold_id: *h },
            )
            .await
            .expect("read");
        assert!(
            matches!(r, QueryResult::Hold(Ok(_))),
            "hold {h} acknowledged {context} is missing on node {node}: {r:?}"
        );
    }
}

/// Creates a reserved-seating event: section A, rows 1..=rows of `seats`.
pub fn event_command(event_id: &str, rows: u32, seats: u32, hold_ttl_ms: u64) -> Command {
    TestEvent::reserved(event_id, rows, seats)
        .with_hold_ttl_ms(hold_ttl_ms)
        .create()
}

pub fn hold_command(event_id: &str, holder: &str, seats: &[&str]) -> Command {
    serde_json::from_value(serde_json::json!({
        "hold": {"event_id": event_id, "holder": holder, "selection": {"seats": seats}}
    }))
    .expect("hold json")
}

pub fn open_sale(event_id: &str) -> Command {
    Command::OpenSale {
        event_id: event_id.to_string(),
    }
}

/// (available, held, booked) of an event as `QueryResult::Event` reports it.
pub fn event_counts(r: &QueryResult) -> (u32, u32, u32) {
    match r {
        QueryResult::Event(Ok(v)) => (v.available, v.held, v.booked),
        other => panic!("expected an event view, got {other:?}"),
    }
}

/// A node's `/metrics` page (plain HTTP/1.0 on its metrics address).
/// Panics when the endpoint does not answer within [`WAIT`].
pub async fn metrics_text(addr: std::net::SocketAddr) -> String {
    try_metrics_text(addr)
        .await
        .unwrap_or_else(|| panic!("no /metrics page from {addr} within {WAIT:?}"))
}

/// A node's `/metrics` page, or `None` when it does not answer (yet)
/// within [`WAIT`].
pub async fn try_metrics_text(addr: std::net::SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(out)
}

/// The value of the first series of `name` on a node's `/metrics` page,
/// or `None` when the page or the series is not there (yet).
pub async fn metric(addr: std::net::SocketAddr, name: &str) -> Option<u64> {
    try_metrics_text(addr).await?.lines().find_map(|l| {
        l.strip_prefix(name)?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    })
}
