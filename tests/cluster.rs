//! Multi-process tests of the root binary, the client and bookctl against
//! real `booking node` processes on loopback. Each test has its own port range
//! and temp dir; they run one at a time (`testkit::serial`) so elections on a
//! small shared machine are not starved by a neighbouring cluster.

mod common;

use client::state_machine::{Command as Cmd, Query, QueryResult, Reply, Selection};
use client::{Client, ClientError, Consistency, Ids};
use common::{json_of, test_event, wait_for, TestCluster, UpProc, WAIT};

/// One write as a first send of new ids, a refusal as `ClientError::Refused`.
async fn write(client: &Client, command: Cmd) -> Result<Reply, ClientError> {
    client.submit(Ids::New, command).await?.into_reply()
}

async fn create_open_event(client: &Client, event_id: &str) {
    write(client, test_event(event_id).create())
        .await
        .expect("create event");
    write(
        client,
        Cmd::OpenSale {
            event_id: event_id.to_string(),
        },
    )
    .await
    .expect("open sale");
}

async fn status_view(client: &Client) -> client::state_machine::StatusView {
    match client
        .read(Query::Status, Consistency::Linearizable)
        .await
        .expect("status query")
    {
        (QueryResult::Status(view), _) => view,
        (other, _) => panic!("unexpected {other:?}"),
    }
}

// Goal: `booking up` starts every node of a config, a leader is elected (bookctl status --json shows it), and SIGTERM stops all nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_the_cluster_and_stops_it_on_sigterm() {
    let _serial = testkit::serial().await;
    let cluster = TestCluster::new(31100, 3);
    let mut up = UpProc::start(&cluster.config_path, &cluster.dir.path().join("up.log"));

    // `up` starts its nodes one after another, and two of three elect a
    // leader before the third listens: wait for all three, not the first
    // leader.
    let status = wait_for(
        "bookctl status --json to show a leader and every member reachable",
        WAIT,
        || async {
            let output = cluster.bookctl(&["status", "--json", "--timeout-ms", "1000"]);
            if !output.status.success() {
                return None;
            }
            let value = json_of(&output);
            let all_reachable = value["members"]
                .as_array()
                .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["reachable"] == true));
            (value["leader"].as_u64().is_some() && all_reachable).then_some(value)
        },
    )
    .await;
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{status}");
    assert!(members.iter().all(|m| m["reachable"] == true), "{status}");
    assert!(members.iter().any(|m| m["role"] == "Leader"), "{status}");

    wait_for("up to print the endpoints", WAIT, || async {
        up.output().contains("is up: leader node").then_some(())
    })
    .await;
    let log = up.output();
    assert!(
        log.contains("[node-1] ") && log.contains("[node-3] "),
        "child output is prefixed:\n{log}"
    );
    assert!(
        log.contains("http://127.0.0.1:31101"),
        "endpoints printed:\n{log}"
    );

    let exit = up.terminate(WAIT);
    assert!(
        exit.success(),
        "clean stop exits 0: {exit:?}\n{}",
        up.output()
    );
    for addr in cluster.addrs.values() {
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "node at {addr} still listens after up stopped"
        );
    }
}

// Goal: a hold whose first attempt is cut off by kill -9 of the leader is retried with the same request id and applies exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_retried_across_leader_kill_applies_once() {
    let _serial = testkit::serial().await;
    let mut cluster = TestCluster::new(31200, 3);
    cluster.start_all();
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    create_open_event(&client, "gig").await;
    let leader = cluster.wait_leader(&client).await;
    let leader_addr = cluster.addrs[&leader].clone();
    let followers: Vec<u64> = cluster
        .addrs
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    let before = client
        .node_status(&leader_addr)
        .await
        .unwrap()
        .last_log_index;

    // With both followers stopped the leader can append the hold but not
    // commit it, so the client's first attempt is certainly in flight when
    // the leader dies.
    for &f in &followers {
        cluster.signal(f, libc::SIGSTOP);
    }
    let command = Cmd::Hold {
        event_id: "gig".into(),
        holder: "alice".into(),
        selection: Selection::Seats(vec!["A-1-5".into()]),
    };
    let in_flight = {
        let client = client.clone();
        let command = command.clone();
        tokio::spawn(async move { client.submit(Ids::New, command).await })
    };
    wait_for("the leader to append the hold", WAIT, || async {
        let status = client.node_status(&leader_addr).await.ok()?;
        (status.last_log_index > before).then_some(())
    })
    .await;
    cluster.kill9(leader);
    for &f in &followers {
        cluster.signal(f, libc::SIGCONT);
    }

    let submitted = in_flight
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("hold failed: {e}\n{}", cluster.logs()));
    assert!(
        submitted.attempts >= 2,
        "the first attempt cannot have succeeded: {submitted:?}"
    );
    let Ok(Reply::Held { hold_id, seats, .. }) = &submitted.outcome else {
        panic!(
            "a second apply would be refused as seat_unavailable: {:?}",
            submitted.outcome
        )
    };
    assert_eq!(seats, &vec!["A-1-5".to_string()]);

    // Exactly one live hold, and it is this one.
    assert_eq!(status_view(&client).await.holds_live, 1);
    match client
        .read(Query::Hold { hold_id: *hold_id }, Consistency::Linearizable)
        .await
        .unwrap()
        .0
    {
        QueryResult::Hold(Ok(view)) => assert_eq!(view.holder, "alice"),
        other => panic!("unexpected {other:?}"),
    }
    // Resending the same request id answers the remembered outcome.
    let again = client
        .submit(Ids::Resend(submitted.ids), command)
        .await
        .unwrap();
    assert_eq!(again.outcome, submitted.outcome);
    assert_eq!(status_view(&client).await.holds_live, 1);

    // The killed node rejoins from its data directory and converges.
    cluster.start(leader, false);
    let target = client
        .read(Query::Status, Consistency::Linearizable)
        .await
        .unwrap()
        .1;
    wait_for("all three nodes to apply the same state", WAIT, || async {
        let status = client.status().await;
        let nodes: Vec<_> = status
            .endpoints
            .iter()
            .filter_map(|e| e.status.as_ref().ok())
            .collect();
        let converged = nodes.len() == 3
            && nodes
                .iter()
                .all(|s| s.applied_index >= target && s.applied_index == nodes[0].applied_index)
            && nodes.iter().all(|s| s.state_hash == nodes[0].state_hash);
        converged.then_some(())
    })
    .await;
}

// Goal: a duplicate (client_id, request_id) returns the first outcome and does not apply again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_request_id_applies_once() {
    let _serial = testkit::serial().await;
    let mut cluster = TestCluster::new(31500, 3);
    cluster.start_all();
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    create_open_event(&client, "gig").await;
    let mut changes = Box::pin(client.watch("gig", 0).await.expect("watch"));
    let command = Cmd::Hold {
        event_id: "gig".into(),
        holder: "bob".into(),
        selection: Selection::Seats(vec!["A-2-1".into()]),
    };
    // Both sends are resends (as a caller resolving an unknown outcome would
    // send them), so both go through the log.
    let ids = client.mint_ids();
    let first = client
        .submit(Ids::Resend(ids), command.clone())
        .await
        .unwrap();
    let second = client.submit(Ids::Resend(ids), command).await.unwrap();
    assert!(matches!(first.outcome, Ok(Reply::Held { .. })), "{first:?}");
    assert_eq!(first.outcome, second.outcome);
    assert_eq!(status_view(&client).await.holds_live, 1);

    // The watch stream carries the one seat change, at the hold's log index.
    let item = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut changes))
        .await
        .expect("a seat change within the bound")
        .expect("the stream is open")
        .expect("a change, not an error");
    match item {
        client::WatchItem::Changes { log_index, changes } => {
            assert_eq!(log_index, first.log_index);
            assert_eq!(changes.len(), 1, "{changes:?}");
            assert_eq!(changes[0].seat, "A-2-1");
            assert_eq!(changes[0].state, client::state_machine::SeatStatus::Held);
        }
        other => panic!("unexpected {other:?}"),
    }
}

// Goal: a 5-node cluster from a config elects a leader, serves writes, and keeps serving after two nodes (the leader among them) are killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_node_cluster_survives_two_failures() {
    let _serial = testkit::serial().await;
    let mut cluster = TestCluster::new(31300, 5);
    cluster.start_all();
    let client = cluster.client();
    cluster.wait_leader(&client).await;
    create_open_event(&client, "gig").await;
    let leader = cluster.wait_leader(&client).await;
    let status = client.status().await;
    let leader_status = status.leader.expect("a leader");
    assert_eq!(leader_status.members.iter().filter(|m| m.voter).count(), 5);

    let reply = write(
        &client,
        Cmd::Hold {
            event_id: "gig".into(),
            holder: "carol".into(),
            selection: Selection::BestAvailable {
                count: 2,
                section: None,
                allow_non_adjacent: false,
            },
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(reply, Reply::Held { ref seats, .. } if seats.len() == 2),
        "{reply:?}"
    );

    let other = cluster
        .addrs
        .keys()
        .copied()
        .find(|&id| id != leader)
        .unwrap();
    cluster.kill9(leader);
    cluster.kill9(other);
    let reply = write(
        &client,
        Cmd::Hold {
            event_id: "gig".into(),
            holder: "dave".into(),
            selection: Selection::Seats(vec!["A-2-10".into()]),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("3 of 5 still serve: {e}\n{}", cluster.logs()));
    assert!(matches!(reply, Reply::Held { .. }), "{reply:?}");
    let new_leader = cluster.wait_leader(&client).await;
    assert!(new_leader != leader && new_leader != other);
    assert_eq!(status_view(&client).await.holds_live, 2);
}

// Goal: bookctl creates an event and holds, refuses, releases and confirms with --json output and the documented exit codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookctl_hold_release_confirm_round_trip() {
    let _serial = testkit::serial().await;
    let mut cluster = TestCluster::new(31400, 3);
    cluster.start_all();
    let client = cluster.client();
    cluster.wait_leader(&client).await;

    let ok = |args: &[&str]| {
        let output = cluster.bookctl(args);
        assert!(
            output.status.success(),
            "bookctl {args:?} failed: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let status = json_of(&ok(&["status", "--json"]));
    assert!(status["leader"].as_u64().is_some(), "{status}");

    let event_file = cluster.dir.path().join("event.json");
    std::fs::write(&event_file, test_event("show").json().to_string()).unwrap();
    let created = json_of(&ok(&[
        "event",
        "create",
        "--file",
        common::path_str(&event_file),
        "--json",
    ]));
    assert_eq!(created["event_id"], "show");
    ok(&["event", "open", "show"]);
    let events = json_of(&ok(&["event", "list", "--json"]));
    assert_eq!(events[0]["event_id"], "show", "{events}");

    let hold = json_of(&ok(&[
        "hold",
        "show",
        "--seats",
        "A-1-1,A-1-2",
        "--holder",
        "alice",
        "--json",
    ]));
    let hold_id = hold["hold_id"].as_u64().expect("hold_id");
    assert_eq!(hold["seats"], serde_json::json!(["A-1-1", "A-1-2"]));
    assert!(hold["expires_at_ms"].as_u64().unwrap() > 0, "{hold}");

    // A taken seat is a refusal by the store: exit 1, the code on stderr.
    let taken = cluster.bookctl(&[
        "hold", "show", "--seats", "A-1-2", "--holder", "bob", "--json",
    ]);
    assert_eq!(taken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("seat_unavailable"));
    let not_owner = cluster.bookctl(&["release", &hold_id.to_string(), "--holder", "bob"]);
    assert_eq!(not_owner.status.code(), Some(1));

    let released = json_of(&ok(&[
        "release",
        &hold_id.to_string(),
        "--holder",
        "alice",
        "--json",
    ]));
    assert_eq!(released["released"], true);

    let hold = json_of(&ok(&[
        "hold", "show", "--best", "2", "--holder", "bob", "--json",
    ]));
    let hold_id = hold["hold_id"].as_u64().unwrap();
    assert_eq!(hold["seats"].as_array().unwrap().len(), 2);
    let booking = json_of(&ok(&[
        "confirm",
        &hold_id.to_string(),
        "--payment-ref",
        "pay-1",
        "--holder",
        "bob",
        "--json",
    ]));
    let booking_id = booking["booking_id"].as_u64().expect("booking_id");
    assert_eq!(booking["status"], "confirmed");
    assert_eq!(booking["tickets"].as_array().unwrap().len(), 2);
    let shown = json_of(&ok(&["booking", "show", &booking_id.to_string(), "--json"]));
    assert_eq!(shown["payment_ref"], "pay-1");
    let seats = json_of(&ok(&["seats", "show", "--json"]));
    assert_eq!(seats["sections"][0]["booked"], 2, "{seats}");
    assert_eq!(seats["sections"][0]["held"], 0, "{seats}");

    // Human output works too.
    let table = String::from_utf8(ok(&["status"]).stdout).unwrap();
    assert!(table.contains("Leader"), "{table}");

    // Nothing listening: exit 2.
    let unreachable = std::process::Command::new(common::bookctl_bin())
        .args([
            "--endpoints",
            "127.0.0.1:31499",
            "--timeout-ms",
            "500",
            "status",
        ])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
}
