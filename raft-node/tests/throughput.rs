//! Goal: measure (not assert) single-client write latency and concurrent
//! write/read throughput of a 3-node in-process cluster, fsync on. Ignored by
//! default; run with
//! `cargo test -p raft-node --release --test throughput -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use proto::booking as pb;
use state_machine::Query;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "measurement, not a check"]
async fn measure_write_latency_and_throughput() {
    let _serial = serial().await;
    let mut c = Cluster::start_all("bench", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 1, 1, &event_command("b", 50, 1000, 600_000))
        .await;
    c.submit_ok(leader, 1, 2, &open_sale("b")).await;
    let mut client = c.client(leader).await;

    // One client, one command at a time.
    let n_seq = 300u64;
    let mut lat = Vec::new();
    for i in 0..n_seq {
        let seat = format!("A-1-{}", i + 1);
        let cmd = serde_json::to_vec(&hold_command("b", "solo", &[seat.as_str()])).unwrap();
        let t = Instant::now();
        client
            .submit(pb::SubmitRequest {
                client_id: 2,
                request_id: i + 1,
                command_json: cmd,
                first_send: false,
                hot_command: None,
            })
            .await
            .expect("submit");
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "single client: {n_seq} holds, p50 {:?}, p99 {:?}, max {:?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.last().unwrap()
    );

    // Many clients at once: the proposer batches them into shared entries.
    let clients = 64u64;
    let per_client = 100u64;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..clients {
        let mut cl = c.client(leader).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..per_client {
                let n = k * per_client + i;
                let seat = format!("A-{}-{}", 2 + n / 1000, 1 + n % 1000);
                let cmd =
                    serde_json::to_vec(&hold_command("b", "crowd", &[seat.as_str()])).unwrap();
                cl.submit(pb::SubmitRequest {
                    client_id: 100 + k,
                    request_id: i + 1,
                    command_json: cmd,
                    first_send: false,
                    hot_command: None,
                })
                .await
                .expect("submit");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    let total = clients * per_client;
    println!(
        "{clients} concurrent clients: {total} holds in {el:?} = {:.0} holds/s",
        total as f64 / el.as_secs_f64()
    );

    // Concurrent linearizable reads on a follower (coalesced ReadIndex rounds).
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut cl = c.client(follower).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let q = serde_json::to_vec(&Query::Hold { hold_id: 1 }).unwrap();
                cl.read(pb::ReadRequest {
                    consistency: pb::Consistency::Linearizable as i32,
                    query_json: q,
                })
                .await
                .expect("read");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = t.elapsed();
    println!("{clients} concurrent linearizable readers on a follower: {total} reads in {el:?} = {:.0} reads/s", total as f64 / el.as_secs_f64());
    c.stop_all().await;
}
