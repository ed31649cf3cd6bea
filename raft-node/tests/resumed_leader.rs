//! A leader that restarts and resumes its own term (openraft 0.9 does that
//! when its saved vote is its own committed vote) must not answer reads at
//! a committed index that went back in time.
//!
//! After a power cut the committed index a leader reads back from disk can
//! lag what a follower had already applied and served (the leader tells the
//! followers a new commit index before its own `save_committed`). The
//! `power-loss` nemesis found it: register seed 10 (25 s) read seat A-1-4
//! booked at applied index 375, then held at 374, right after a cut.
//!
//! Real `booking node` processes (`<repo>/target/release/booking` or
//! `$BOOKING_BIN`), because the followers must be stopped (SIGSTOP) while
//! still accepting connections: then the leader's read round starts (and
//! fixes its read index) before any follower can tell it anything, and
//! finishes once they resume.

mod common;

use std::time::Duration;

use cluster_config::RaftSection;
use common::*;
use testkit::ConfigFile;

const TEST: &str = "resumed_leader";

/// Slow heartbeats: openraft bounds a read round's heartbeats by the
/// heartbeat interval, and the resumed followers must answer within it;
/// long election timeouts, so followers stopped for a few seconds do not
/// campaign when they resume.
fn slow_raft() -> RaftSection {
    RaftSection {
        heartbeat_interval_ms: 1_000,
        election_timeout_ms: [8_000, 12_000],
        rpc_timeout_ms: 2_000,
        ..raft_section()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_resuming_its_term_reads_at_least_at_its_last_log_index() {
    // Goal: with the leader's saved committed index set back (as a power cut
    // leaves it) and its term resumed at restart, a read index it answers is
    // at least the last log index it restarted with.
    let Some(bin) = booking_bin_or_skip(TEST) else {
        return;
    };
    let _serial = serial().await;
    let mut file = ConfigFile::new("resumed")
        .with_free_nodes(3)
        .with_free_metrics();
    file.raft = slow_raft();
    let mut cluster = NodeCluster::start(&bin, file);
    let leader = cluster.wait_leader_of(3).await;
    let NodeCluster {
        nodes: procs, rpc, ..
    } = &mut cluster;
    rpc.submit_ok(leader, 1, 1, &event_command("e", 1, 10, 600_000))
        .await;
    rpc.submit_ok(leader, 1, 2, &open_sale("e")).await;
    let mut last = 0;
    for (i, seat) in ["A-1-1", "A-1-2", "A-1-3", "A-1-4"].iter().enumerate() {
        last = rpc
            .submit_ok(
                leader,
                1,
                10 + i as u64,
                &hold_command("e", &format!("h{i}"), &[seat]),
            )
            .await;
    }
    let term = rpc.status(leader).await.unwrap().term;
    wait_for("every node applied the last hold", WAIT, || async {
        for id in 1..=3 {
            if rpc.status(id).await?.applied_index < last {
                return None;
            }
        }
        Some(())
    })
    .await;
    procs.kill_all();

    // The lag a power cut can leave: the leader's saved committed id three
    // entries back (same term: every write above ran in `term`). The saved
    // id may lag already (it rides the next flush, `save_committed`), and
    // never leads the log; set it to exactly three back either way (every
    // hold was acknowledged, so its entry is durable on the leader).
    let setback = last - 3;
    {
        let db = sled::open(procs.config().node_data_dir(leader).join("sled")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let saved = meta.get("committed").unwrap().expect("a committed id");
        let mut committed: openraft::LogId<u64> = postcard::from_bytes(&saved).unwrap();
        assert!(
            committed.index <= last,
            "{committed:?} is past the log's {last}"
        );
        committed.index = setback;
        meta.insert("committed", postcard::to_allocvec(&committed).unwrap())
            .unwrap();
        db.flush().unwrap();
    }

    // Followers listening but stopped; then the leader, which resumes its term.
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for &f in &followers {
        procs.restart(f).unwrap();
        procs.wait_listening(f, WAIT).await.unwrap();
        procs.pause(f).unwrap();
    }
    procs.restart(leader).unwrap();
    let resumed = wait_for("the old leader to resume as leader", WAIT, || async {
        let s = rpc.status(leader).await?;
        (s.role == "Leader").then_some(s)
    })
    .await;
    assert_eq!(resumed.term, term, "it resumed its term, no election");
    assert_eq!(resumed.commit_index, setback, "{resumed:?}");

    let addr = procs.addr(leader);
    let cluster_name = procs.config().cluster.name.clone();
    let config = procs.config().clone();
    // The round is asked as a peer would ask it (a node's certificate).
    let peer = procs.ids().into_iter().find(|&id| id != leader).unwrap();
    let round = tokio::spawn(async move {
        let channel = testkit::peer_channel(&config, peer, &addr.to_string());
        let mut client = proto::raft::raft_client::RaftClient::new(channel);
        let mut req = tonic::Request::new(proto::raft::ReadIndexRequest {
            cluster_name,
            from_node_id: 0,
            to_node_id: leader,
            group_id: 0,
        });
        req.set_timeout(Duration::from_secs(20));
        client
            .read_index(req)
            .await
            .map(|r| r.into_inner().read_index)
    });
    let metrics_addr = procs.config().node(leader).unwrap().metrics_addr.unwrap();
    wait_for("the leader to start a read round", WAIT, || async {
        (metric(metrics_addr, "booking_read_index_rounds_total").await? >= 1).then_some(())
    })
    .await;
    for &f in &followers {
        procs.resume(f).unwrap();
    }
    let read_index = round.await.unwrap().expect("the read round succeeds");
    assert!(
        read_index >= last,
        "read index {read_index} is behind the log the leader resumed with (last index {last}, saved committed {setback}): a read could miss what a follower already served"
    );
    procs.stop_all();
}
