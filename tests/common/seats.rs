//! Every node's own view of an event's seats, for tests that check
//! replicas after faults: one node's stale read, and all nodes at one
//! applied index.
//!
//! Must not: read linearizably (each node's own state is the point).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use client::state_machine::{Query, QueryResult};
use client::Consistency;

use super::{TestCluster, WAIT};

/// Seat states of `event_id` on node `id` (stale read of that node's own
/// state), with the index it reflects: seat id → `.`, `H` or `B`. None if
/// the node does not answer (yet).
pub async fn node_seats(
    cluster: &TestCluster,
    id: u64,
    event_id: &str,
) -> Option<(u64, BTreeMap<String, char>)> {
    let (result, index) = cluster
        .node_client(id)
        .read(
            Query::Availability {
                event_id: event_id.to_string(),
            },
            Consistency::Stale,
        )
        .await
        .ok()?;
    // A node that has not applied the event's creation yet: not converged.
    let QueryResult::Availability(Ok(view)) = result else {
        return None;
    };
    let mut seats = BTreeMap::new();
    for section in &view.sections {
        for row in &section.rows {
            for (i, c) in row.states.chars().enumerate() {
                seats.insert(format!("{}-{}-{}", section.section, row.label, i + 1), c);
            }
        }
    }
    Some((index, seats))
}

/// Every node's seat states of `event_id` at one applied index: polls until
/// the three nodes answer from the same index (the restarted one caught up).
pub async fn converged_views(
    cluster: &TestCluster,
    event_id: &str,
) -> BTreeMap<u64, BTreeMap<String, char>> {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let mut views = BTreeMap::new();
        let mut indexes = BTreeSet::new();
        for id in 1..=3u64 {
            if let Some((index, seats)) = node_seats(cluster, id, event_id).await {
                indexes.insert(index);
                views.insert(id, seats);
            }
        }
        if views.len() == 3 && indexes.len() == 1 {
            return views;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not converge in {:?}: indexes {indexes:?}\n{}",
            WAIT * 2,
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
