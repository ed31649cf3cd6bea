//! Log time follows cluster time on a real in-process cluster: a leader
//! whose clock jumps an hour ahead (the fault hook's offset file) reports
//! the skew in Status, and its stamps stay with the majority's clocks, so a
//! hold made before the jump does not expire and a hold made after it gets
//! an expiry an hour-free TTL away.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use proto::booking as pb;
use state_machine::{HoldStatus, Outcome, Query, QueryResult, Reply};

const HOUR_MS: i64 = 3_600_000;
const HOLD_TTL_MS: u64 = 600_000;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn held(o: &Outcome) -> (u64, u64) {
    match o {
        Ok(Reply::Held {
            hold_id,
            expires_at_ms,
            ..
        }) => (*hold_id, *expires_at_ms),
        other => panic!("expected a hold, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_an_hour_fast_is_outvoted_and_reports_its_skew() {
    // Goal: with the leader's clock an hour ahead and the followers' sane, Status shows the skew, new stamps stay within the tolerance of real time, and a hold made before the jump is still held.
    let _serial = serial().await;
    // Read by every in-process node at start: the clock-offset hook.
    std::env::set_var(raft_node::node::FAULT_CLOCK_ENV, "1");
    let mut c = Cluster::start_all("cluster-time", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 5, 1, &event_command("t", 1, 10, HOLD_TTL_MS))
        .await;
    c.submit_ok(leader, 5, 2, &open_sale("t")).await;
    let (o, _) = c
        .submit(leader, 5, 3, &hold_command("t", "ann", &["A-1-1"]))
        .await;
    let (first_hold, _) = held(&o);

    std::fs::write(
        c.data_dir(leader).join(raft_node::node::CLOCK_OFFSET_FILE),
        HOUR_MS.to_string(),
    )
    .unwrap();
    let skew_ms = wait_for(
        "the leader reports its clock skewed from the majority",
        WAIT,
        || async {
            let s = c.status(leader).await?;
            (s.role == "Leader" && s.cluster_time_agreed && !s.own_clock_agrees)
                .then_some(s.clock_skew_ms)
        },
    )
    .await;
    assert!(
        (skew_ms - HOUR_MS).abs() < 5_000,
        "skew {skew_ms} ms, expected about an hour"
    );

    let before_ms = wall_ms();
    let (o, _) = c
        .submit(leader, 5, 4, &hold_command("t", "ann", &["A-1-2"]))
        .await;
    let after_ms = wall_ms();
    let (_, expires_at_ms) = held(&o);
    let stamp_ms = expires_at_ms - HOLD_TTL_MS;
    let slack_ms = 2 * raft_node::node::CLOCK_TOLERANCE_MS + 1_000;
    assert!(
        stamp_ms <= after_ms + slack_ms && stamp_ms + slack_ms >= before_ms,
        "stamp {stamp_ms} outside real time [{before_ms}, {after_ms}] ± {slack_ms}"
    );
    let (r, _) = c
        .read(
            leader,
            pb::Consistency::Linearizable,
            &Query::Hold {
                hold_id: first_hold,
            },
        )
        .await
        .unwrap();
    match r {
        QueryResult::Hold(Ok(h)) => assert_eq!(h.status, HoldStatus::Active, "{h:?}"),
        other => panic!("{other:?}"),
    }
    // Remove the offset again so nothing else sees it.
    std::fs::remove_file(c.data_dir(leader).join(raft_node::node::CLOCK_OFFSET_FILE)).unwrap();
    c.stop_all().await;
}
