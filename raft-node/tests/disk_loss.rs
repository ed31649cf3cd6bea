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
    for h in &holds {
        let (r, _) = c
            .read(
                leader,
                pb::Consistency::Linearizable,
                &Query::Hold { hold_id: *h },
            )
            .await
            .expect("read");
        assert!(
            matches!(r, QueryResult::Hold(Ok(_))),
            "hold {h} acknowledged on {{{a}, {b}}} before {b}'s disk was wiped is lost (leader {leader}, late node elected: {late_won}): {r:?}"
        );
    }
    c.stop_all().await;
}
