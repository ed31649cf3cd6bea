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
