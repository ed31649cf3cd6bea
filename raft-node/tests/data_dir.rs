//! Goal: a foreign, damaged or unrecognisable data directory refuses to start
//! with an error that names the file and the problem.

mod common;

use common::*;
use raft_node::NodeError;

async fn start_err(c: &Cluster, id: u64) -> NodeError {
    let r = tokio::time::timeout(
        WAIT,
        raft_node::run_node(c.config_of(id), id, false, std::future::pending()),
    )
    .await;
    r.expect("refuses promptly")
        .expect_err("must refuse to start")
}

async fn run_once(c: &mut Cluster) {
    c.start(1, true);
    c.wait_leader().await;
    let (_, idx) = c.submit(1, 1, 1, &event_command("d", 1, 5, 600_000)).await;
    assert!(idx > 0);
    c.stop(1).await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_foreign_data_directories_refuse_to_start_naming_the_file() {
    let _serial = serial().await;
    let mut c = Cluster::new("dirs", 1, raft_section());
    run_once(&mut c).await;
    let dir = c.data_dir(1);
    let meta = dir.join("booking-node.meta");

    // A directory written for another node id.
    let original = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, original.replace("\"node_id\": 1", "\"node_id\": 9")).unwrap();
    let e = start_err(&c, 1).await;
    let text = e.to_string();
    assert!(
        text.contains("booking-node.meta") && text.contains("node 9"),
        "{text}"
    );
    assert!(matches!(e, NodeError::DataDir { .. }));

    // An undecodable identity record.
    std::fs::write(&meta, b"\x00garbage").unwrap();
    let text = start_err(&c, 1).await.to_string();
    assert!(
        text.contains("booking-node.meta") && text.contains("does not decode"),
        "{text}"
    );
    std::fs::write(&meta, &original).unwrap();

    // A damaged log entry.
    {
        let db = sled::open(dir.join("sled")).unwrap();
        let log = db.open_tree("log").unwrap();
        let (k, _) = log.last().unwrap().expect("entries");
        log.insert(k, &b"\xff\xff\xff\xff"[..]).unwrap();
        db.flush().unwrap();
    }
    let text = start_err(&c, 1).await.to_string();
    assert!(
        text.contains("sled") && text.contains("does not decode"),
        "{text}"
    );

    // A snapshot whose checksum does not match.
    let mut c2 = Cluster::new("dirs2", 1, raft_section());
    run_once(&mut c2).await;
    {
        let mut cl = Cluster::with_config(c2.config.clone());
        cl.start(1, false);
        cl.wait_leader().await;
        let mut client = cl.client(1).await;
        client
            .trigger_snapshot(proto::booking::TriggerSnapshotRequest {})
            .await
            .unwrap();
        wait_for("a snapshot", WAIT, || async {
            (cl.status(1).await?.snapshot_index > 0).then_some(())
        })
        .await;
        cl.stop(1).await.unwrap();
    }
    let dir2 = c2.data_dir(1);
    let snapshot_file = std::fs::read_dir(&dir2)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .expect("a snapshot file in the data directory");
    let mut v = std::fs::read(&snapshot_file).unwrap();
    let mid = v.len() / 2;
    v[mid] ^= 0x55;
    std::fs::write(&snapshot_file, v).unwrap();
    let text = start_err(&c2, 1).await.to_string();
    let name = snapshot_file.file_name().unwrap().to_string_lossy();
    assert!(
        text.contains("checksum mismatch") && text.contains(name.as_ref()),
        "{text}"
    );

    // A log purged past its snapshot (an older build could leave one): the
    // purge point is set to the committed id of a directory with no snapshot.
    let mut c4 = Cluster::new("dirs4", 1, raft_section());
    run_once(&mut c4).await;
    {
        let db = sled::open(c4.data_dir(1).join("sled")).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let committed = meta.get("committed").unwrap().expect("a committed id");
        meta.insert("last_purged", committed).unwrap();
        db.flush().unwrap();
    }
    let text = start_err(&c4, 1).await.to_string();
    assert!(
        text.contains("purged up to index") && text.contains("newest snapshot ends at index none"),
        "{text}"
    );

    // A non-empty directory that is not a node's.
    let c3 = Cluster::new("dirs3", 1, raft_section());
    std::fs::create_dir_all(c3.data_dir(1)).unwrap();
    std::fs::write(c3.data_dir(1).join("notes.txt"), b"hello").unwrap();
    let text = start_err(&c3, 1).await.to_string();
    assert!(text.contains("no booking-node.meta"), "{text}");
}

/// The layout of every data directory written before Raft groups existed,
/// spelled out as literals (not through `raft_node::store::GroupId`): tree
/// `log` keyed by the 8-byte big-endian index, `meta` with `vote`,
/// `committed` and `last_purged`, an empty `sm`, and one
/// `snapshot-<20 digits>-<term>-<node>.snap` beside `booking-node.meta`.
/// Returns the log's first and last index and the snapshot's index.
fn assert_pre_group_layout(dir: &std::path::Path) -> (u64, u64, u64) {
    let db = sled::open(dir.join("sled")).unwrap();
    let mut trees: Vec<String> = db
        .tree_names()
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    trees.sort();
    assert_eq!(trees, ["__sled__default", "log", "meta", "sm"]);

    let log = db.open_tree("log").unwrap();
    let mut indexes = Vec::new();
    for item in log.iter() {
        let (k, v) = item.unwrap();
        let key: [u8; 8] = k.as_ref().try_into().expect("a log key is 8 bytes");
        let entry: raft_node::types::Entry = postcard::from_bytes(&v).expect("an entry");
        assert_eq!(entry.log_id.index, u64::from_be_bytes(key));
        indexes.push(entry.log_id.index);
    }
    assert!(!indexes.is_empty(), "entries after the snapshot");
    assert!(indexes.windows(2).all(|w| w[1] == w[0] + 1), "{indexes:?}");

    let meta = db.open_tree("meta").unwrap();
    let mut names: Vec<String> = meta
        .iter()
        .keys()
        .map(|k| String::from_utf8(k.unwrap().to_vec()).expect("a UTF-8 record name"))
        .collect();
    names.retain(|n| n != "last_purged");
    names.sort();
    assert_eq!(names, ["committed", "vote"]);
    let vote: raft_node::types::Vote =
        postcard::from_bytes(&meta.get("vote").unwrap().unwrap()).expect("a vote");
    assert!(vote.leader_id.term >= 1, "{vote:?}");
    assert_eq!(db.open_tree("sm").unwrap().len(), 0, "tree sm is empty");
    drop(db);

    let mut snapshots = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        match name.as_str() {
            "booking-node.meta" | "peer-incarnations.json" | "sled" => {}
            other => snapshots.push(other.to_string()),
        }
    }
    assert_eq!(
        snapshots.len(),
        1,
        "one snapshot file and nothing else: {snapshots:?}"
    );
    let fields: Vec<&str> = snapshots[0]
        .strip_prefix("snapshot-")
        .and_then(|n| n.strip_suffix(".snap"))
        .expect("snapshot-*.snap")
        .split('-')
        .collect();
    assert_eq!(fields.len(), 3, "{snapshots:?}");
    assert_eq!(fields[0].len(), 20, "{snapshots:?}");
    assert!(
        fields.iter().all(|f| f.parse::<u64>().is_ok()),
        "{snapshots:?}"
    );
    (
        indexes[0],
        *indexes.last().unwrap(),
        fields[0].parse().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_0_keeps_the_pre_group_layout_reads_it_back_and_never_touches_another_groups_keys() {
    // Goal: a data directory this build writes is laid out exactly as before
    // Raft groups (so an older directory is group 0 as it stands), it reopens
    // with its writes, and records of another group in the same trees and
    // directory neither stop it nor are changed by its reads, snapshots and
    // start-up clean-up.
    let _serial = serial().await;
    let mut c = Cluster::new("groups", 1, raft_section());
    c.start(1, true);
    c.wait_leader().await;
    c.submit_ok(1, 1, 1, &event_command("g", 1, 10, 600_000))
        .await;
    c.submit_ok(1, 1, 2, &open_sale("g")).await;
    c.submit_ok(1, 1, 3, &hold_command("g", "ann", &["A-1-1"]))
        .await;
    let mut client = c.client(1).await;
    client
        .trigger_snapshot(proto::booking::TriggerSnapshotRequest {})
        .await
        .unwrap();
    wait_for("a snapshot", WAIT, || async {
        (c.status(1).await?.snapshot_index > 0).then_some(())
    })
    .await;
    let last_hold = c
        .submit_ok(1, 1, 4, &hold_command("g", "bob", &["A-1-2"]))
        .await;
    let before = c.status(1).await.unwrap();
    c.stop(1).await.unwrap();

    let dir = c.data_dir(1);
    let (_, last, snapshot) = assert_pre_group_layout(&dir);
    assert_eq!(snapshot, before.snapshot_index);
    assert!(last >= last_hold && snapshot < last_hold, "{before:?}");

    // Group 7's records, where `GroupId(7)` puts them: eight 0xFF bytes and
    // the id before each key, and its own snapshot file prefix. Their bytes
    // decode as nothing, so group 0 reading them would refuse to start.
    let mut g7 = vec![0xFF; 8];
    g7.extend_from_slice(&7u64.to_be_bytes());
    let g7_log_key = [g7.clone(), 1u64.to_be_bytes().to_vec()].concat();
    let g7_vote_key = [g7.clone(), b"vote".to_vec()].concat();
    let g7_snap = "group-7-snapshot-00000000000000000001-1-1.snap";
    let g7_tmp = "group-7-snapshot-00000000000000000002-1-1.snap.tmp";
    {
        let db = sled::open(dir.join("sled")).unwrap();
        db.open_tree("log")
            .unwrap()
            .insert(&g7_log_key, &b"group 7 entry"[..])
            .unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(&g7_vote_key, &b"group 7 vote"[..])
            .unwrap();
        db.flush().unwrap();
    }
    std::fs::write(dir.join(g7_snap), b"group 7 snapshot").unwrap();
    std::fs::write(dir.join(g7_tmp), b"group 7 unfinished").unwrap();

    // Reopened: the same writes, the same or a later term, and it still
    // writes and snapshots.
    c.start(1, false);
    c.wait_leader().await;
    let (r, applied) = c
        .read(
            1,
            proto::booking::Consistency::Linearizable,
            &state_machine::Query::Event {
                event_id: "g".into(),
            },
        )
        .await
        .unwrap();
    assert!(applied >= last_hold);
    assert_eq!(event_counts(&r), (8, 2, 0));
    let after = c.status(1).await.unwrap();
    assert!(after.term >= before.term, "{before:?} {after:?}");
    assert!(
        after.last_log_index >= before.last_log_index,
        "{before:?} {after:?}"
    );
    let third = c
        .submit_ok(1, 1, 5, &hold_command("g", "cy", &["A-1-3"]))
        .await;
    let mut client = c.client(1).await;
    client
        .trigger_snapshot(proto::booking::TriggerSnapshotRequest {})
        .await
        .unwrap();
    wait_for("a newer snapshot", WAIT, || async {
        (c.status(1).await?.snapshot_index >= third).then_some(())
    })
    .await;
    c.submit_ok(1, 1, 6, &hold_command("g", "dee", &["A-1-4"]))
        .await;
    c.stop(1).await.unwrap();

    // Group 7's records are as planted; without them the directory is still
    // exactly the pre-group layout, at the newer snapshot.
    {
        let db = sled::open(dir.join("sled")).unwrap();
        let log = db.open_tree("log").unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(
            log.get(&g7_log_key).unwrap().unwrap(),
            &b"group 7 entry"[..]
        );
        assert_eq!(
            meta.get(&g7_vote_key).unwrap().unwrap(),
            &b"group 7 vote"[..]
        );
        log.remove(&g7_log_key).unwrap();
        meta.remove(&g7_vote_key).unwrap();
        db.flush().unwrap();
    }
    assert_eq!(
        std::fs::read(dir.join(g7_snap)).unwrap(),
        b"group 7 snapshot"
    );
    assert_eq!(
        std::fs::read(dir.join(g7_tmp)).unwrap(),
        b"group 7 unfinished"
    );
    std::fs::remove_file(dir.join(g7_snap)).unwrap();
    std::fs::remove_file(dir.join(g7_tmp)).unwrap();
    let (_, _, newer) = assert_pre_group_layout(&dir);
    assert!(newer >= third, "snapshot {newer}, third hold at {third}");
}
