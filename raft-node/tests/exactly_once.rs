//! Exactly-once bounds on a real in-process cluster: a full table refuses
//! new requests as `overloaded` (not applied) instead of forgetting, still
//! answers retries of what it remembers, counts the refusals, and the
//! leader's `ForgetRequests` (by its monotonic clock) makes room once the
//! remembered outcomes are a TTL old.

mod common;

use std::time::Duration;

use common::*;
use proto::booking as pb;
use state_machine::{Command, Outcome, Reply, Settings};

/// Submits straight to `addr` once, as a retry (never the fast path).
async fn submit_raw(
    c: &Cluster,
    via: u64,
    client_id: u64,
    request_id: u64,
    command: &Command,
) -> Result<Outcome, tonic::Status> {
    let mut client = c.client(via).await;
    let r = client
        .submit(pb::SubmitRequest {
            client_id,
            request_id,
            command_json: serde_json::to_vec(command).unwrap(),
            first_send: false,
            hot_command: None,
        })
        .await?;
    Ok(serde_json::from_slice(&r.into_inner().outcome_json).expect("outcome json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_table_refuses_as_overloaded_and_forgetting_by_the_leaders_monotonic_clock_makes_room(
) {
    // Goal: with the table full of live outcomes a new request is refused `overloaded` (RESOURCE_EXHAUSTED, not applied) and counted, a remembered one still answers, and after the TTL the leader forgets and the refused request applies.
    let _serial = serial().await;
    let mut c = Cluster::new("exactly-once", 3, raft_section());
    for n in c.config.nodes.iter_mut() {
        n.metrics_addr = Some(free_addr());
    }
    for id in 1..=3 {
        c.start(id, id == 1);
    }
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 5, 1, &event_command("x", 1, 10, 600_000))
        .await;
    c.submit_ok(leader, 5, 2, &open_sale("x")).await;
    let ttl_ms = state_machine::limits::DEDUPE_TTL_MS_MIN;
    // Three remembered so far (these three operator commands) + two holds.
    c.submit_ok(
        leader,
        5,
        3,
        &Command::Configure(Settings {
            dedupe_max_entries: 5,
            dedupe_ttl_ms: ttl_ms,
            ..Settings::default()
        }),
    )
    .await;
    let first = c
        .submit_ok(leader, 6, 1, &hold_command("x", "ann", &["A-1-1"]))
        .await;
    c.submit_ok(leader, 6, 2, &hold_command("x", "ann", &["A-1-2"]))
        .await;

    let refused = submit_raw(&c, leader, 6, 3, &hold_command("x", "ann", &["A-1-3"]))
        .await
        .expect_err("a sixth request id is refused");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    let meta = |k: &str| refused.metadata().get(k).and_then(|v| v.to_str().ok());
    assert_eq!(meta("booking-error"), Some("overloaded"));
    assert_eq!(meta("booking-outcome"), Some("not_applied"));

    let again = submit_raw(&c, leader, 6, 1, &hold_command("x", "ann", &["A-1-1"]))
        .await
        .expect("a remembered request still answers");
    assert!(matches!(again, Ok(Reply::Held { .. })), "{again:?}");
    let (_, idx) = c
        .submit(leader, 6, 1, &hold_command("x", "ann", &["A-1-1"]))
        .await;
    assert_eq!(idx, first, "the retry names the entry that applied it");

    let text = metrics_text(c.config.node(leader).unwrap().metrics_addr.unwrap()).await;
    let refusals: u64 = text
        .lines()
        .find(|l| l.starts_with("booking_dedupe_full_refusals_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("the refusal counter is exported");
    assert!(refusals >= 1, "{text}");

    // The leader forgets once its own monotonic clock says a TTL passed;
    // then the refused request goes through.
    let held = wait_for(
        "the leader forgets outcomes a TTL old and the refused request applies",
        Duration::from_millis(ttl_ms) + WAIT,
        || async {
            match submit_raw(&c, leader, 6, 3, &hold_command("x", "ann", &["A-1-3"])).await {
                Ok(o) => Some(o),
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    None
                }
                Err(s) => panic!("unexpected {s:?}"),
            }
        },
    )
    .await;
    assert!(matches!(held, Ok(Reply::Held { .. })), "{held:?}");
    c.stop_all().await;
}
