//! Goal: a 3-node cluster whose disks take 50 ms per fsync still elects,
//! replicates and serves: holds are acknowledged, every replica applies them,
//! and after the leader is killed a new one is elected that still has them.
//!
//! Every node's data directory is a lazy FUSE file system (`lazyfs`) that
//! sleeps `FSYNC_DELAY_MS` in each fsync. openraft 0.9.25 bounds each
//! AppendEntries by `heartbeat_interval`, the follower's fsync included, so
//! this runs at the default heartbeat (100 ms), twice the fsync: the margin
//! ARCHITECTURE.md ("Bounded replication") asks for at least. Runs the real release `booking` binary
//! (`<repo>/target/release/booking` or `$BOOKING_BIN`). Needs root,
//! `/dev/fuse` and `fusermount3`; without them (or without the binary) it
//! prints a loud SKIP, except under `CI=true`, where it fails. About 20 s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use client::{Client, Consistency, Ids};
use jepsen_style_tests::harness::cluster::{Cluster, Timing};
use jepsen_style_tests::harness::workload::{setup_event, WorkloadConfig, WorkloadKind, EVENT_ID};
use jepsen_style_tests::lazyfs::{self, LazyFsMount, LazyFsOptions};
use state_machine::{Command, Query, QueryResult, Reply, Selection};

const TEST: &str = "slow_disks_still_elect_replicate_and_serve";
/// Latency the lazy file system adds to every fsync.
const FSYNC_DELAY_MS: u64 = 50;
/// Nodes in the cluster.
const NODES: u64 = 3;
/// Holds written before and after the leader is killed.
const HOLDS: u32 = 60;
/// Holds in flight at once (the proposer batches them into shared entries).
const CONCURRENCY: u32 = 6;
/// Generous bound on an election (at start and after the kill) and on the
/// replicas converging: a test of "it works", not of speed.
const WAIT: Duration = Duration::from_secs(90);
/// Raft timing: the defaults (heartbeat 100 ms, election 400-800 ms). One
/// follower append costs one durability step (one 50 ms fsync of sled's db
/// here), inside openraft's heartbeat-long bound on an AppendEntries, with a
/// thin margin; ARCHITECTURE.md ("Bounded replication") gives the rule.
fn slow_disk_timing() -> Timing {
    Timing {
        heartbeat_interval_ms: 100,
        election_timeout_ms: [400, 800],
        ..Timing::default()
    }
}

fn hold(n: u32) -> Command {
    Command::Hold {
        event_id: EVENT_ID.to_string(),
        holder: format!("h-{n}"),
        selection: Selection::Seats(vec![format!("A-1-{n}")]),
    }
}

/// Submits holds `from..=to`, `CONCURRENCY` at once; returns their hold ids.
async fn submit_holds(client: &Client, from: u32, to: u32) -> Vec<(u64, String)> {
    let mut acked = Vec::new();
    let mut n = from;
    while n <= to {
        let batch: Vec<u32> = (n..=to).take(CONCURRENCY as usize).collect();
        n += batch.len() as u32;
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|n| {
                let client = client.clone();
                tokio::spawn(async move {
                    let reply = client
                        .submit(Ids::New, hold(n))
                        .await
                        .and_then(client::Submitted::into_reply);
                    match reply {
                        Ok(Reply::Held { hold_id, .. }) => (hold_id, format!("h-{n}")),
                        other => panic!("hold {n} on a slow-disk cluster: {other:?}"),
                    }
                })
            })
            .collect();
        for t in tasks {
            acked.push(t.await.expect("the submit task"));
        }
    }
    acked
}

/// Waits until every endpoint applied at least `index` with one state hash.
async fn wait_replicated(client: &Client, endpoints: &[String], index: u64) {
    let started = Instant::now();
    loop {
        let mut hashes = Vec::new();
        for e in endpoints {
            match client.node_status(e).await {
                Ok(s) if s.applied_index >= index => hashes.push(s.state_hash),
                _ => break,
            }
        }
        if hashes.len() == endpoints.len() && hashes.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(
            started.elapsed() < WAIT,
            "replicas did not all apply index {index} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disks_still_elect_replicate_and_serve() {
    if let Some(reason) = lazyfs::unavailable_reason() {
        testkit::skip_or_fail(TEST, &reason);
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let booking = std::env::var_os("BOOKING_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/release/booking"));
    if !booking.is_file() {
        testkit::skip_or_fail(
            TEST,
            &format!(
                "no booking binary at {} (cargo build --release --bin booking)",
                booking.display()
            ),
        );
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("slow-disk-{}", std::process::id()));
    lazyfs::unmount_all_under(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    // Mounts first, so they are dropped (unmounted) after the cluster stops.
    let mounts: Vec<LazyFsMount> = (1..=NODES)
        .map(|id| {
            let options = LazyFsOptions {
                backing: None,
                fsync_delay_ms: FSYNC_DELAY_MS,
            };
            LazyFsMount::mount(&dir.join("data").join(format!("node-{id}")), options)
                .expect("mount a lazy file system")
        })
        .collect();
    let mut cluster = Cluster::start(
        &booking,
        &dir,
        NODES,
        false,
        &slow_disk_timing(),
        vec![],
        false,
    )
    .expect("start the cluster");
    let endpoints = cluster.endpoints();
    let client = cluster.client().expect("a client");

    let started = Instant::now();
    let leader = client
        .wait_for_leader(WAIT)
        .await
        .expect("a leader on slow disks");
    println!("elected node {} in {:?}", leader.node_id, started.elapsed());
    let cfg = WorkloadConfig {
        kind: WorkloadKind::Register,
        processes: u64::from(CONCURRENCY),
        seats: 2 * HOLDS,
        hold_ttl_ms: 3_600_000,
        ops_max: u64::from(2 * HOLDS),
        seed: 1,
    };
    setup_event(&client, &cfg, WAIT)
        .await
        .expect("create and open the event");

    let t = Instant::now();
    let mut acked = submit_holds(&client, 1, HOLDS).await;
    println!("{HOLDS} holds acknowledged in {:?}", t.elapsed());
    let commit = client.status().await.leader.expect("a leader").commit_index;
    wait_replicated(&client, &endpoints, commit).await;

    // Kill the leader: a new one, elected on slow disks, still has every hold.
    let leader = client
        .wait_for_leader(WAIT)
        .await
        .expect("a leader")
        .node_id;
    cluster.kill(leader).expect("kill the leader");
    let t = Instant::now();
    let new_leader = loop {
        let l = client.wait_for_leader(WAIT).await.expect("a new leader");
        if l.node_id != leader {
            break l;
        }
        assert!(t.elapsed() < WAIT, "no new leader within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("node {} took over in {:?}", new_leader.node_id, t.elapsed());
    acked.extend(submit_holds(&client, HOLDS + 1, 2 * HOLDS).await);
    for (hold_id, holder) in &acked {
        match client
            .read(Query::Hold { hold_id: *hold_id }, Consistency::Linearizable)
            .await
        {
            Ok((QueryResult::Hold(Ok(view)), _)) => assert_eq!(&view.holder, holder),
            other => panic!("acknowledged hold {hold_id} read back as {other:?}"),
        }
    }
    cluster.restart(leader).expect("restart the old leader");
    let commit = client.status().await.leader.expect("a leader").commit_index;
    wait_replicated(&client, &endpoints, commit).await;
    println!(
        "all {} holds on every replica; total {:?}",
        acked.len(),
        started.elapsed()
    );
    drop(cluster);
    drop(mounts);
    let _ = std::fs::remove_dir_all(&dir);
}
