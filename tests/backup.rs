//! Backup and restore on real processes: `bookctl snapshot save` from a live
//! 3-node cluster, `booking restore` into the data directories of a new
//! cluster, which then starts with the same state (the same state hash, the
//! acknowledged holds) and takes new writes; and every refusal (a damaged or
//! foreign file, the old cluster's name, a directory that is not empty)
//! names what is wrong and writes nothing.
//!
//! Ports: 33100–33299 (the old cluster base 33100, the new one 33200).

mod common;

use std::process::Command;

use client::state_machine::{Command as Cmd, Query, QueryResult, Selection};
use client::{Client, Consistency, Ids};
use common::{booking_bin, json_of, path_str, wait_for, TestCluster, WAIT};
use testkit::TestEvent;

async fn write(client: &Client, command: Cmd) -> client::state_machine::Reply {
    client
        .submit(Ids::New, command)
        .await
        .expect("write")
        .into_reply()
        .expect("applied")
}

fn hold(holder: &str, seat: &str) -> Cmd {
    Cmd::Hold {
        event_id: "gig".into(),
        holder: holder.into(),
        selection: Selection::Seats(vec![seat.into()]),
    }
}

fn restore(config: &std::path::Path, from: &std::path::Path) -> std::process::Output {
    Command::new(booking_bin())
        .args([
            "restore",
            "--config",
            path_str(config),
            "--from",
            path_str(from),
        ])
        .output()
        .expect("run booking restore")
}

// Goal: a backup of a live cluster restores into a new cluster with the same
// state hash and every acknowledged hold, and the new cluster serves writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_cluster_with_the_same_state() {
    let _serial = testkit::serial().await;
    let mut old = TestCluster::new(33100, 3);
    old.start_all();
    let client = old.client();
    old.wait_leader(&client).await;
    // Holds that outlive the test: no expiry Tick may change the state
    // between the backup and the comparison.
    let event = TestEvent::reserved("gig", 2, 10).with_hold_ttl_ms(3_600_000);
    write(&client, event.create()).await;
    write(
        &client,
        Cmd::OpenSale {
            event_id: "gig".into(),
        },
    )
    .await;
    let mut holds = Vec::new();
    for (i, seat) in ["A-1-1", "A-1-2", "A-2-7"].iter().enumerate() {
        let reply = write(&client, hold(&format!("fan-{i}"), seat)).await;
        holds.push((seat.to_string(), format!("{reply:?}")));
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gig.backup");
    let out = old.bookctl(&["--json", "snapshot", "save", path_str(&file)]);
    let header = json_of(&out);
    assert_eq!(header["cluster_name"], "test-33100", "{header}");
    let index = header["last_log_index"].as_u64().unwrap();
    let hash = header["state_hash"].as_str().unwrap().to_string();
    // The backup holds every acknowledged write: the leader's state at the
    // backup's index hashes the same (no write came after).
    let leader = client.wait_for_leader(WAIT).await.unwrap();
    assert!(
        leader.applied_index >= index,
        "{leader:?} vs backup at {index}"
    );
    assert_eq!(leader.state_hash, hash, "backup vs the leader's state");
    drop(old);

    let mut new = TestCluster::new(33200, 3);
    let out = restore(&new.config_path, &file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "restore: {out:?}");
    assert!(stdout.contains("restored 3 node(s)"), "{stdout}");
    for id in 1..=3 {
        new.start(id, false);
    }
    let client = new.client();
    new.wait_leader(&client).await;
    for id in 1..=3 {
        let node = new.node_client(id);
        let addr = new.addrs[&id].clone();
        let status = wait_for(
            &format!("node {id} applied the restored snapshot"),
            WAIT,
            || {
                let node = node.clone();
                let addr = addr.clone();
                async move {
                    node.node_status(&addr)
                        .await
                        .ok()
                        .filter(|s| s.applied_index >= index)
                }
            },
        )
        .await;
        assert_eq!(status.state_hash, hash, "node {id} of the restored cluster");
        assert_eq!(status.cluster_name, "test-33200");
        assert_eq!(status.admission, "admitted", "node {id}");
    }
    // The holds are there, and the seats stay taken.
    let (seats, _) = client
        .read(
            Query::Availability {
                event_id: "gig".into(),
            },
            Consistency::Linearizable,
        )
        .await
        .unwrap();
    let QueryResult::Availability(Ok(view)) = seats else {
        panic!("availability: {seats:?}")
    };
    assert_eq!(
        view.sections[0].rows[0]
            .states
            .chars()
            .take(2)
            .collect::<String>(),
        "HH"
    );
    let refused = client
        .submit(Ids::New, hold("late", "A-1-1"))
        .await
        .unwrap()
        .into_reply();
    assert!(
        refused.is_err(),
        "a restored hold's seat was held again: {refused:?}"
    );
    // New writes go through the new cluster's log.
    write(&client, hold("new-fan", "A-2-1")).await;
    let after = client.wait_for_leader(WAIT).await.unwrap();
    assert!(after.commit_index > index, "{after:?}");
    assert!(!holds.is_empty());
}

// Goal: a restore refuses a damaged or foreign file, the backup's own
// cluster name, and a directory that is not empty, naming each, and leaves
// the data directories as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_what_it_cannot_do_safely() {
    let _serial = testkit::serial().await;
    let mut old = TestCluster::new(33150, 3);
    old.start_all();
    let client = old.client();
    old.wait_leader(&client).await;
    write(&client, TestEvent::reserved("gig", 1, 4).create()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.backup");
    let out = old.bookctl(&["snapshot", "save", path_str(&file)]);
    assert!(out.status.success(), "{out:?}");

    let expect_refusal = |out: std::process::Output, words: &[&str]| {
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for w in words {
            assert!(stderr.contains(w), "{w:?} not in: {stderr}");
        }
    };
    // The old cluster's own name (its own file).
    expect_refusal(
        restore(&old.config_path, &file),
        &["must have a new [cluster] name"],
    );

    let new = TestCluster::new(33250, 3);
    let data_root = new.config().data_dir();
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    let damaged = dir.path().join("damaged.backup");
    std::fs::write(&damaged, &bytes).unwrap();
    expect_refusal(
        restore(&new.config_path, &damaged),
        &["damaged.backup", "checksum"],
    );
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "hello\n").unwrap();
    expect_refusal(
        restore(&new.config_path, &foreign),
        &["notes.txt", "not a booking backup"],
    );
    // (The data directory holds the test cluster's certificates, `certs/`.)
    let node_dirs = |root: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(root)
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("node-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        node_dirs(&data_root).is_empty(),
        "a refused restore wrote into {}: {:?}",
        data_root.display(),
        node_dirs(&data_root)
    );

    // A directory that is not empty: refused before any node is written.
    let node2 = new.config().node_data_dir(2);
    std::fs::create_dir_all(&node2).unwrap();
    std::fs::write(node2.join("keep-me"), "operator's file").unwrap();
    expect_refusal(
        restore(&new.config_path, &file),
        &["node 2", "is not empty"],
    );
    assert!(
        !new.config().node_data_dir(1).exists(),
        "node 1 was restored before the refusal"
    );
    assert_eq!(
        std::fs::read_to_string(node2.join("keep-me")).unwrap(),
        "operator's file"
    );
}
