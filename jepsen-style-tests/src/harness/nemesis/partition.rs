//! Partition faults: which node pairs drop each other's packets, and
//! installing those drops in the nodes' network namespaces.
//!
//! Owns: the drop list of each partition shape (isolate, halves, bridge,
//! majorities ring, one way from the leader). Must not: run without network
//! namespaces (it fails the step instead), or touch any traffic of the
//! harness itself (it only ever drops packets between nodes).

use super::execute::{Ctx, Undo};
use super::{Fault, Target};

/// Installs the drops of the partition `fault`; the heal drops them all.
pub(super) async fn apply(ctx: &Ctx, fault: &Fault) -> Result<(Undo, String), String> {
    let ids = ctx.with_cluster(|c| c.ids());
    let (drops, detail) = match fault {
        Fault::PartitionIsolate { target } => {
            let node = ctx.resolve(target).await?[0];
            (drops_isolating(&ids, node), format!("isolated node {node}"))
        }
        Fault::PartitionHalves { minority } => {
            let majority: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !minority.contains(i))
                .collect();
            (
                drops_between(minority, &majority),
                format!("{minority:?} | {majority:?}"),
            )
        }
        Fault::PartitionBridge {
            bridge,
            left,
            right,
        } => (
            drops_between(left, right),
            format!("{left:?} | {right:?} via node {bridge}"),
        ),
        Fault::PartitionMajoritiesRing { ring } => (drops_ring(ring), format!("ring {ring:?}")),
        Fault::PartitionOneWayFromLeader => {
            let leader = ctx.resolve(&Target::Leader).await?[0];
            let drops = ids
                .iter()
                .filter(|&&o| o != leader)
                .map(|&o| (o, leader))
                .collect();
            (drops, format!("nobody hears leader {leader}"))
        }
        other => return Err(format!("{} is not a partition", other.name())),
    };
    ctx.with_cluster(|c| {
        c.net()
            .ok_or("partitions need network namespaces (root)".to_string())?
            .partition(&drops)
    })?;
    Ok((Undo::Heal, detail))
}

fn drops_isolating(ids: &[u64], node: u64) -> Vec<(u64, u64)> {
    ids.iter()
        .filter(|&&o| o != node)
        .flat_map(|&o| [(o, node), (node, o)])
        .collect()
}

fn drops_between(a: &[u64], b: &[u64]) -> Vec<(u64, u64)> {
    a.iter()
        .flat_map(|&x| b.iter().flat_map(move |&y| [(x, y), (y, x)]))
        .collect()
}

fn drops_ring(ring: &[u64]) -> Vec<(u64, u64)> {
    let n = ring.len();
    let m = n / 2 + 1;
    let back = (m - 1) / 2;
    let mut drops = Vec::new();
    for p in 0..n {
        let visible: Vec<u64> = (0..m).map(|k| ring[(p + n - back + k) % n]).collect();
        for &other in ring {
            if !visible.contains(&other) {
                drops.push((ring[p], other));
            }
        }
    }
    drops
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: in a majorities ring every node sees a majority (itself included) and no two see the same one.
    #[test]
    fn majorities_ring_gives_each_node_its_own_majority() {
        for ring in [vec![1, 2, 3], vec![3, 1, 5, 2, 4]] {
            let drops = drops_ring(&ring);
            let n = ring.len();
            let mut seen = Vec::new();
            for &node in &ring {
                let visible: Vec<u64> = ring
                    .iter()
                    .copied()
                    .filter(|o| !drops.contains(&(node, *o)))
                    .collect();
                assert!(visible.len() > n / 2, "{node} sees {visible:?}");
                assert!(visible.contains(&node));
                seen.push(visible);
            }
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), n);
        }
    }
}
