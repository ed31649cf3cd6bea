//! Multi-node scenarios on in-process nodes over loopback gRPC: election,
//! writes through any node, linearizable reads everywhere, leader failover,
//! snapshot catch-up, membership changes, expiry through the log, the watch
//! stream and the metrics endpoint. (Damaged data directories: data_dir.rs.)

mod common;

use std::time::Duration;

use common::*;
use proto::booking as pb;
use state_machine::{Outcome, Query, Reply};

fn hold_id(o: &Outcome) -> u64 {
    match o {
        Ok(Reply::Held { hold_id, .. }) => *hold_id,
        other => panic!("expected a hold, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_and_a_hold_written_via_a_follower_reads_back_linearizably_everywhere() {
    // Goal: a write sent to a follower is redirected (exact status + metadata),
    // lands once, and every node serves it on a linearizable read.
    let _serial = serial().await;
    let mut c = Cluster::new("elect", 3, raft_section());
    for n in c.config.nodes.iter_mut() {
        n.metrics_addr = Some(free_addr());
    }
    for id in 1..=3 {
        c.start(id, id == 1);
    }
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // The redirect contract, seen raw.
    let mut fc = c.client(follower).await;
    let err = fc
        .submit(pb::SubmitRequest {
            client_id: 1,
            request_id: 1,
            command_json: serde_json::to_vec(&event_command("e1", 2, 10, 600_000)).unwrap(),
            first_send: false,
            hot_command: None,
        })
        .await
        .expect_err("a follower does not accept writes");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert_eq!(err.metadata().get("booking-error").unwrap(), "not_leader");
    assert_eq!(
        err.metadata().get("booking-outcome").unwrap(),
        "not_applied"
    );
    assert_eq!(
        err.metadata()
            .get("booking-leader-id")
            .unwrap()
            .to_str()
            .unwrap(),
        leader.to_string()
    );
    assert_eq!(
        err.metadata()
            .get("booking-leader-addr")
            .unwrap()
            .to_str()
            .unwrap(),
        c.addr(leader).to_string()
    );

    // Malformed bytes are refused, not fatal.
    let err = fc
        .submit(pb::SubmitRequest {
            client_id: 1,
            request_id: 2,
            command_json: b"{not json".to_vec(),
            first_send: false,
            hot_command: None,
        })
        .await
        .expect_err("garbage is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A command past the byte bound is refused at the API (nothing is
    // proposed), on the leader as on a follower.
    let huge_holder = "x".repeat(raft_node::node::COMMAND_BYTES_MAX + 1);
    let huge = serde_json::to_vec(&hold_command("e1", &huge_holder, &["A-1-1"])).unwrap();
    let mut lc = c.client(leader).await;
    let applied_before = c.status(leader).await.unwrap().applied_index;
    for client in [&mut lc, &mut fc] {
        let err = client
            .submit(pb::SubmitRequest {
                client_id: 1,
                request_id: 9,
                command_json: huge.clone(),
                first_send: true,
                hot_command: None,
            })
            .await
            .expect_err("an oversized command is refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("COMMAND_BYTES_MAX"), "{err:?}");
    }
    assert_eq!(
        c.status(leader).await.unwrap().applied_index,
        applied_before,
        "the oversized command reached the log"
    );

    let (o, _) = c
        .submit(follower, 1, 1, &event_command("e1", 2, 10, 600_000))
        .await;
    assert!(o.is_ok(), "{o:?}");
    let (o, _) = c.submit(follower, 1, 2, &open_sale("e1")).await;
    assert!(o.is_ok(), "{o:?}");
    let (o, hold_index) = c
        .submit(
            follower,
            1,
            3,
            &hold_command("e1", "alice", &["A-1-1", "A-1-2"]),
        )
        .await;
    hold_id(&o);
    // A retry of the same request id answers the first outcome again.
    let (again, _) = c
        .submit(
            leader,
            1,
            3,
            &hold_command("e1", "alice", &["A-1-1", "A-1-2"]),
        )
        .await;
    assert_eq!(again, o, "a duplicate returns the remembered outcome");

    for id in 1..=3 {
        let (r, applied) = c
            .read(
                id,
                pb::Consistency::Linearizable,
                &Query::Event {
                    event_id: "e1".into(),
                },
            )
            .await
            .unwrap_or_else(|s| panic!("linearizable read on node {id}: {s:?}"));
        assert!(
            applied >= hold_index,
            "node {id} answered at {applied} before the hold at {hold_index}"
        );
        assert_eq!(event_counts(&r), (18, 2, 0), "node {id}");
    }
    c.wait_converged(hold_index).await;

    // Every node serves Prometheus text with the Raft gauges.
    for id in 1..=3 {
        let text = metrics_text(c.config.node(id).unwrap().metrics_addr.unwrap()).await;
        assert!(
            text.contains("booking_raft_applied_index{node_id="),
            "node {id}: {text}"
        );
        assert!(text.contains("booking_commands_applied_total"), "node {id}");
        // Every node fsynced at least its membership entry.
        assert!(
            text.contains("# TYPE booking_fsync_duration_seconds histogram")
                && !text.contains(&format!(
                    "booking_fsync_duration_seconds_count{{node_id=\"{id}\"}} 0\n"
                )),
            "node {id}: {text}"
        );
        assert!(
            text.contains("booking_append_entries_too_large_total"),
            "node {id}"
        );
        // Every apply batch's wait for the state lock is measured: the
        // histogram counted this node's applies, and the maximum is there.
        assert!(
            text.contains("# TYPE booking_apply_lock_wait_seconds histogram")
                && !text.contains(&format!(
                    "booking_apply_lock_wait_seconds_count{{node_id=\"{id}\"}} 0\n"
                ))
                && text.contains(&format!("booking_apply_pause_max_ms{{node_id=\"{id}\"}} "))
                && text.contains(&format!(
                    "booking_state_copy_lock_held_max_ms{{node_id=\"{id}\"}} "
                )),
            "node {id}: {text}"
        );
        // The process's CPU time, which the bench divides by requests: a
        // node that applied entries has used some.
        let cpu_ms: u64 = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "booking_process_cpu_ms_total{{node_id=\"{id}\"}} "
                ))
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("node {id}: no CPU time in {text}"));
        assert!(cpu_ms > 0, "node {id}: {cpu_ms} ms of CPU");
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_stop_elects_a_new_leader_keeps_every_acknowledged_hold_and_the_old_leader_catches_up(
) {
    // Goal: after the leader goes away nothing acknowledged is missing, a new
    // leader serves, and the old leader rejoins from its data directory.
    let _serial = serial().await;
    let mut c = Cluster::start_all("failover", 3, raft_section()).await;
    let old = c.wait_leader().await;
    c.submit_ok(old, 7, 1, &event_command("e", 5, 20, 600_000))
        .await;
    c.submit_ok(old, 7, 2, &open_sale("e")).await;
    let mut holds = Vec::new();
    for i in 1..=20u32 {
        let seat = format!("A-{}-{}", 1 + (i - 1) / 20, 1 + (i - 1) % 20);
        let (o, _) = c
            .submit(
                old,
                7,
                10 + i as u64,
                &hold_command("e", "bob", &[seat.as_str()]),
            )
            .await;
        holds.push(hold_id(&o));
    }
    c.stop(old).await.expect("clean stop");
    let new = c.wait_leader().await;
    assert_ne!(new, old);
    assert_holds_readable(&c, new, &holds, "before the failover").await;
    let (o, idx) = c
        .submit(new, 7, 100, &hold_command("e", "carol", &["A-2-1"]))
        .await;
    hold_id(&o);
    c.start(old, false);
    let hash = c.wait_converged(idx).await;
    assert_eq!(hash.len(), 32);
    let s = c.status(old).await.expect("old leader answers");
    assert!(s.applied_index >= idx);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_past_a_snapshot_and_purge_catches_up_by_snapshot() {
    // Goal: a follower behind the leader's purged log is sent a snapshot and
    // ends with the same state hash.
    let _serial = serial().await;
    let mut raft = raft_section();
    raft.snapshot_every_entries = 20;
    raft.max_in_snapshot_log_to_keep = 2;
    let mut c = Cluster::start_all("snap", 3, raft).await;
    let leader = c.wait_leader().await;
    let lagging = (1..=3).find(|id| *id != leader).unwrap();
    c.submit_ok(leader, 9, 1, &event_command("s", 10, 30, 600_000))
        .await;
    // Big events make the snapshot large (hundreds of thousands of seats), so
    // the transfer spans several chunks and takes real time.
    // About 200 KB of snapshot per event: ten make a snapshot of about 2 MB,
    // sent in several 1 MiB chunks.
    for i in 0..10u64 {
        c.submit_ok(
            leader,
            9,
            1000 + i,
            &event_command(&format!("big{i}"), 200, 1000, 600_000),
        )
        .await;
    }
    c.submit_ok(leader, 9, 2, &open_sale("s")).await;
    c.stop(lagging).await.expect("clean stop");
    let mut last = 0;
    for i in 0..60u64 {
        let seat = format!("A-{}-{}", 1 + i / 30, 1 + i % 30);
        let (_, idx) = c
            .submit(
                leader,
                9,
                10 + i,
                &hold_command("s", "dave", &[seat.as_str()]),
            )
            .await;
        last = idx;
    }
    let purged = wait_for(
        "the leader purged its log past the lagging node",
        WAIT,
        || async {
            let s = c.status(leader).await?;
            (s.purged_index > 10 && s.snapshot_index > 10).then_some(s.purged_index)
        },
    )
    .await;
    assert!(purged > 0);
    c.start(lagging, false);
    c.wait_converged(last).await;
    let s = c.status(lagging).await.unwrap();
    assert!(
        s.snapshot_index > 0,
        "the lagging node holds the snapshot it was sent"
    );
    let (r, _) = c
        .read(
            lagging,
            pb::Consistency::Linearizable,
            &Query::Event {
                event_id: "s".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(event_counts(&r).1, 60);
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fourth_node_joins_as_learner_is_promoted_and_another_node_is_removed() {
    // Goal: membership changes while serving: add learner, promote, remove.
    let _serial = serial().await;
    let mut c = Cluster::start_all("members", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 3, 1, &event_command("m", 2, 10, 600_000))
        .await;
    c.configure_extra_node(4);
    c.start(4, false);
    let addr4 = c.addr(4).to_string();
    let mut lc = c.client(leader).await;
    let r = lc
        .add_learner(pb::AddLearnerRequest {
            node_id: 4,
            addr: addr4.clone(),
            blocking: true,
        })
        .await
        .expect("add learner")
        .into_inner();
    assert!(r.members.iter().any(|m| m.node_id == 4 && !m.voter));
    // The promotion waits until the new node admitted itself and acknowledged
    // an entry as a learner (it answers `unavailable` until then).
    let r = wait_for("node 4 promoted", WAIT, || {
        let mut lc = lc.clone();
        async move {
            lc.change_membership(pb::ChangeMembershipRequest {
                voter_ids: vec![1, 2, 3, 4],
                retain: false,
            })
            .await
            .ok()
            .map(|r| r.into_inner())
        }
    })
    .await;
    assert!(r.members.iter().any(|m| m.node_id == 4 && m.voter));
    let removed = (1..=3).find(|id| *id != leader).unwrap();
    let r = lc
        .remove_node(pb::RemoveNodeRequest { node_id: removed })
        .await
        .expect("remove")
        .into_inner();
    assert!(
        !r.members.iter().any(|m| m.node_id == removed),
        "{:?}",
        r.members
    );
    c.stop(removed).await.expect("clean stop");
    let (_, idx) = c.submit(leader, 3, 2, &open_sale("m")).await;
    c.wait_converged(idx).await;
    let s = c.status(4).await.unwrap();
    assert_eq!(s.members.len(), 3);
    assert!(s.members.iter().all(|m| m.voter));
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_expires_through_the_log_and_frees_its_seat_on_every_replica() {
    // Goal: the leader's Tick proposer expires a due hold, and every replica
    // (read stale, locally) shows the seat free again.
    let _serial = serial().await;
    let c = Cluster::start_all("expiry", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 5, 1, &event_command("x", 1, 10, 1_000))
        .await;
    c.submit_ok(leader, 5, 2, &open_sale("x")).await;
    let (o, idx) = c
        .submit(leader, 5, 3, &hold_command("x", "erin", &["A-1-5"]))
        .await;
    hold_id(&o);
    c.wait_converged(idx).await;
    for id in 1..=3 {
        let (r, _) = c
            .read(
                id,
                pb::Consistency::Stale,
                &Query::Event {
                    event_id: "x".into(),
                },
            )
            .await
            .unwrap();
        assert_eq!(event_counts(&r).1, 1, "node {id} sees the hold first");
    }
    for id in 1..=3 {
        wait_for(
            "the expired hold's seat is free on every node",
            WAIT,
            || async {
                let (r, _) = c
                    .read(
                        id,
                        pb::Consistency::Stale,
                        &Query::Event {
                            event_id: "x".into(),
                        },
                    )
                    .await
                    .ok()?;
                (event_counts(&r) == (10, 0, 0)).then_some(())
            },
        )
        .await;
    }
    let mut c = c;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_streams_committed_seat_changes_from_an_index_and_resyncs_when_too_old() {
    // Goal: a watcher on a follower sees each committed change of its event
    // with the log index, and an index older than the ring gets a resync.
    let _serial = serial().await;
    let mut c = Cluster::start_all("watch", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let (_, created) = c
        .submit(leader, 4, 1, &event_command("w", 1, 10, 600_000))
        .await;
    c.submit_ok(leader, 4, 2, &open_sale("w")).await;
    let mut fc = c.client(follower).await;
    let mut stream = fc
        .watch(pb::WatchRequest {
            event_id: "w".into(),
            from_index: created,
        })
        .await
        .expect("watch")
        .into_inner();
    let (_, idx) = c
        .submit(leader, 4, 3, &hold_command("w", "fay", &["A-1-3"]))
        .await;
    let msg = tokio::time::timeout(WAIT, async {
        loop {
            let m = stream.message().await.expect("stream").expect("not ended");
            if let Some(pb::watch_message::Kind::Changes(ch)) = m.kind {
                if ch.log_index == idx {
                    return ch;
                }
            }
        }
    })
    .await
    .expect("the hold's change arrives");
    assert!(msg.changes.iter().any(|ch| ch.seat == "A-1-3"), "{msg:?}");
    // After a restart the ring covers only what was applied after the
    // restored snapshot: an index before it asks for a resync.
    fc.trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("trigger snapshot");
    wait_for("the follower's snapshot", WAIT, || async {
        (c.status(follower).await?.snapshot_index >= idx).then_some(())
    })
    .await;
    c.stop(follower).await.unwrap();
    c.start(follower, false);
    c.wait_converged(idx).await;
    let mut fc = c.client(follower).await;
    let mut stream = fc
        .watch(pb::WatchRequest {
            event_id: "w".into(),
            from_index: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let m = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match m.kind {
        Some(pb::watch_message::Kind::Resync(r)) => {
            assert_eq!(r.reason, pb::resync::Reason::TooOld as i32)
        }
        other => panic!("expected a resync, got {other:?}"),
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_hash_is_cached_per_applied_index_and_follows_every_write() {
    // Goal: Status answers the state hash of exactly its applied index: the same bytes while nothing is applied, a new hash after a write, equal on every replica at one index.
    let _serial = serial().await;
    let mut c = Cluster::start_all("status-hash", 3, raft_section()).await;
    let leader = c.wait_leader().await;
    c.submit_ok(leader, 9, 1, &event_command("h", 2, 10, 600_000))
        .await;
    let (_, idx) = c.submit(leader, 9, 2, &open_sale("h")).await;
    let before = c.wait_converged(idx).await;
    // Twice at one index (no write in between; ticks are off for an hour
    // of hold TTL): the same hash, and the one every replica agreed on.
    let first = c.status(leader).await.expect("status");
    let again = c.status(leader).await.expect("status");
    if first.applied_index == again.applied_index {
        assert_eq!(first.state_hash, again.state_hash);
    }
    let (o, idx2) = c
        .submit(leader, 9, 3, &hold_command("h", "ann", &["A-1-1"]))
        .await;
    hold_id(&o);
    let after = c.wait_converged(idx2).await;
    assert_ne!(before, after, "a hold changes the state, so its hash");
    let s = c.status(leader).await.expect("status");
    assert!(s.applied_index >= idx2);
    if s.applied_index == idx2 {
        assert_eq!(s.state_hash, after);
    }
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_raft_message_for_another_group_is_refused_before_anything_changes() {
    // Goal: every Raft RPC names its Raft group; a node runs only group 0
    // and refuses a message for group 7 (FAILED_PRECONDITION naming both
    // groups) without decoding or applying it, while the very same message
    // for group 0 is applied (so the check, not the message, stopped it).
    use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    use proto::raft::raft_client::RaftClient;
    use raft_node::types::{Entry, TypeConfig, Vote};

    let _serial = serial().await;
    let mut c = Cluster::new("group-env", 1, raft_section());
    c.start(1, true);
    c.wait_leader().await;
    c.submit_ok(1, 1, 1, &event_command("g", 1, 5, 600_000))
        .await;
    let before = c.status(1).await.unwrap();
    assert_eq!(before.role, "Leader");

    // A leader of a much later term appending one blank entry after this
    // node's last one: applied, it would depose this node and grow its log.
    let last = LogId::new(
        CommittedLeaderId::new(before.term, 1),
        before.last_log_index,
    );
    let next = LogId::new(
        CommittedLeaderId::new(before.term + 100, 2),
        before.last_log_index + 1,
    );
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(before.term + 100, 2),
        prev_log_id: Some(last),
        entries: vec![Entry {
            log_id: next,
            payload: EntryPayload::Blank,
        }],
        leader_commit: Some(last),
    };
    let body = raft_node::network::encode_body(&append).unwrap();
    // Speak as a node 2 with a certificate of the cluster's CA (the
    // configured but never started extra node).
    c.configure_extra_node(2);
    let request = |group_id: u64| proto::raft::RaftRequest {
        cluster_name: c.config.cluster.name.clone(),
        from_node_id: 2,
        to_node_id: 1,
        body: body.clone().into(),
        group_id,
        from_incarnation: String::new(),
    };
    let channel = testkit::peer_channel(&c.config, 2, &c.addr(1).to_string());
    let mut raft = RaftClient::new(channel);

    let refused = |s: tonic::Status| {
        assert_eq!(s.code(), tonic::Code::FailedPrecondition, "{s:?}");
        assert!(
            s.message().contains("only Raft group 0, not group 7"),
            "{s:?}"
        );
    };
    refused(raft.append_entries(request(7)).await.unwrap_err());
    refused(raft.vote(request(7)).await.unwrap_err());
    let garbage_chunk = |group_id: u64| proto::raft::SnapshotChunk {
        cluster_name: c.config.cluster.name.clone(),
        from_node_id: 2,
        to_node_id: 1,
        header: b"not a header".to_vec().into(),
        data: Vec::new().into(),
        group_id,
        from_incarnation: String::new(),
    };
    refused(raft.install_snapshot(garbage_chunk(7)).await.unwrap_err());
    refused(
        raft.read_index(proto::raft::ReadIndexRequest {
            cluster_name: c.config.cluster.name.clone(),
            from_node_id: 2,
            to_node_id: 1,
            group_id: 7,
        })
        .await
        .unwrap_err(),
    );
    let after = c.status(1).await.unwrap();
    assert_eq!(
        (after.role.as_str(), after.term, after.last_log_index),
        ("Leader", before.term, before.last_log_index),
        "a message for group 7 changed group 0"
    );

    // The same bytes for group 0 reach openraft: the garbage header is
    // decoded (and refused as such), the append is stored.
    let s = raft.install_snapshot(garbage_chunk(0)).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    let reply = raft.append_entries(request(0)).await.unwrap().into_inner();
    let res: Result<AppendEntriesResponse<u64>, openraft::error::RaftError<u64>> =
        raft_node::network::decode_body(&reply.body).unwrap();
    assert_eq!(res.unwrap(), AppendEntriesResponse::Success);
    wait_for(
        "group 0 to take the append's term and entry",
        WAIT,
        || async {
            let s = c.status(1).await?;
            (s.term >= before.term + 100 && s.last_log_index > before.last_log_index).then_some(())
        },
    )
    .await;
    c.stop_all().await;
}
