//! Goal: a follower whose data directory is wiped and that restarts under its
//! old id (an emptied or replaced disk) must not help elect a leader that
//! lacks entries committed before the wipe: nothing acknowledged is lost.

mod common;

use common::*;
use proto::booking as pb;
use state_machine::{Outcome, Query, QueryResult, Reply};

fn hold_id(o: &Outcome) -> u64 {
    match o {
        Ok(Reply::Held { hold_id, .. }) => *hold_id,
        other => panic!("expected a hold, got {other:?}"),
    }
}

/// Waits until one of `ids` reports itself leader and the others of `ids`
/// follow it; returns it.
async fn wait_leader_among(c: &Cluster, ids: &[u64]) -> u64 {
    wait_for("a leader among the given nodes", WAIT, || async {
        let mut leader = None;
        for id in ids {
            let l = c.status(*id).await?.leader_id?;
            if leader.is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l);
        }
        let l = leader?;
        (ids.contains(&l) && c.status(l).await?.role == "Leader").then_some(l)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_does_not_vote_for_a_node_missing_committed_entries() {
    // Goal: entries committed on {leader, B} survive B's disk being wiped and
    // the leader then going away: B (empty, old id) must not elect C, which
    // never had them.
    let _serial = serial().await;
    let mut c = Cluster::start_all("diskloss", 3, raft_section()).await;
    let a = c.wait_leader().await;
    let followers: Vec<u64> = c.node_ids().into_iter().filter(|id| *id != a).collect();
    let (b, late) = (followers[0], followers[1]);

    // Everyone has the membership and the event; then `late` goes down.
    let idx = c
        .submit_ok(a, 7, 1, &event_command("e", 1, 20, 600_000))
        .await;
    c.wait_converged(idx).await;
    c.stop(late).await.expect("clean stop");

    // Committed on {a, b} only.
    c.submit_ok(a, 7, 2, &open_sale("e")).await;
    let mut holds = Vec::new();
    for i in 1..=10u64 {
        let seat = format!("A-1-{i}");
        let (o, _) = c
            .submit(a, 7, 10 + i, &hold_command("e", "bob", &[seat.as_str()]))
            .await;
        holds.push(hold_id(&o));
    }

    // B's disk is replaced: it comes back empty under its old id.
    c.stop(b).await.expect("clean stop");
    std::fs::remove_dir_all(c.data_dir(b)).expect("wipe b's data directory");
    c.start(b, false);
    // While the leader that saw b acknowledge entries leads, b says it is refused.
    wait_for("the wiped node reports itself refused", WAIT, || async {
        (c.status(b).await?.admission == "refused").then_some(())
    })
    .await;

    // The leader goes away; `late`, which never had the holds, comes back.
    let term_before = c.status(b).await.map(|s| s.term).unwrap_or(0);
    c.stop(a).await.expect("clean stop");
    c.start(late, false);
    // Either `late` is elected (with b's vote: the bug) or it has campaigned
    // a few times without winning.
    let (late_won, late_term) = wait_for("late node elected or campaigning", WAIT, || async {
        let s = c.status(late).await?;
        (s.role == "Leader" || s.term >= term_before + 3).then_some((s.role == "Leader", s.term))
    })
    .await;
    eprintln!("late node {late}: elected={late_won} at term {late_term}");
    let sb = c.status(b).await.expect("the wiped node answers Status");
    assert_ne!(
        sb.admission, "admitted",
        "the wiped node is still not admitted: {sb:?}"
    );

    // The old leader returns; whoever leads must serve every acknowledged hold.
    c.start(a, false);
    let leader = wait_leader_among(&c, &[a, late]).await;
    let context =
        format!("on {{{a}, {b}}} before {b}'s disk was wiped (late node elected: {late_won})");
    assert_holds_readable(&c, leader, &holds, &context).await;
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_started_after_the_first_writes_is_admitted_and_catches_up() {
    // Goal: a new cluster whose last voter starts late (after the others
    // committed client writes) admits it once every other voter vouches that
    // it never saw an earlier incarnation of it hold entries; it then catches
    // up and counts toward a quorum. (Before: it stayed "pending" forever;
    // seen in a clock-leap Jepsen run where a node's first poll came before
    // its peers listened.) Five voters, so four form a cluster without it.
    let _serial = serial().await;
    let mut c = Cluster::new("latestart", 5, raft_section());
    let early = [1, 2, 3, 4];
    for id in early {
        c.start(id, id == 1);
    }
    let leader = wait_leader_among(&c, &early).await;
    c.submit_ok(leader, 7, 1, &event_command("e", 1, 20, 600_000))
        .await;
    c.submit_ok(leader, 7, 2, &open_sale("e")).await;
    let (o, idx) = c
        .submit(leader, 7, 3, &hold_command("e", "bob", &["A-1-1"]))
        .await;
    let held = hold_id(&o);

    c.start(5, false);
    let s5 = wait_for(
        "the late voter is admitted and applied the hold",
        WAIT,
        || async {
            let s = c.status(5).await?;
            (s.admission == "admitted" && s.applied_index >= idx).then_some(s)
        },
    )
    .await;
    eprintln!("late voter: {s5:?}");

    // It now counts: with two of the early voters gone, {the others, 5}
    // elect a leader and commit (three of five).
    let gone: Vec<u64> = early
        .iter()
        .copied()
        .filter(|id| *id != 5)
        .take(2)
        .collect();
    for id in &gone {
        c.stop(*id).await.expect("clean stop");
    }
    let left: Vec<u64> = (1..=5).filter(|id| !gone.contains(id)).collect();
    let next = wait_leader_among(&c, &left).await;
    let (o, _) = c
        .submit(next, 7, 4, &hold_command("e", "amy", &["A-1-2"]))
        .await;
    hold_id(&o);
    let (r, _) = c
        .read(
            next,
            pb::Consistency::Linearizable,
            &Query::Hold { hold_id: held },
        )
        .await
        .expect("read");
    assert!(
        matches!(r, QueryResult::Hold(Ok(_))),
        "the first hold: {r:?}"
    );
    c.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_voter_is_refused_even_after_the_leader_restarted() {
    // Goal: the refusal of an emptied disk does not rest on the leader's
    // in-memory match index: after the leader restarts (a fresh term, no
    // match for anyone), the peers still remember that another incarnation
    // of this id held entries, so it is refused, never admitted.
    let _serial = serial().await;
    let mut c = Cluster::start_all("wipedrestart", 3, raft_section()).await;
    let a = c.wait_leader().await;
    let idx = c
        .submit_ok(a, 7, 1, &event_command("e", 1, 20, 600_000))
        .await;
    c.wait_converged(idx).await;
    let b = c.node_ids().into_iter().find(|id| *id != a).unwrap();
    let others: Vec<u64> = c.node_ids().into_iter().filter(|id| *id != b).collect();

    c.stop(b).await.expect("clean stop");
    std::fs::remove_dir_all(c.data_dir(b)).expect("wipe b's data directory");
    c.stop(a).await.expect("clean stop");
    c.start(a, false);
    let leader = wait_leader_among(&c, &others).await;
    c.submit_ok(leader, 7, 2, &open_sale("e")).await;

    c.start(b, false);
    let sb = wait_for("the wiped node reports itself refused", WAIT, || async {
        let s = c.status(b).await?;
        assert_ne!(
            s.admission, "admitted",
            "an emptied disk was admitted: {s:?}"
        );
        (s.admission == "refused").then_some(s)
    })
    .await;
    eprintln!("wiped voter: {sb:?}");
    c.stop_all().await;
}
