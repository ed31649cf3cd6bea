//! One log line per leadership change, in the node's own words.
//!
//! openraft narrates elections at info level (every vote request and
//! response); `booking up` and the default filter silence that, so an
//! operator would otherwise not see who leads. This task watches openraft's
//! metrics and logs `leader changed` with the term and the new leader (or
//! `no leader known`) only when the pair changes.
//!
//! Owns: that one log line. Must not: act on leadership (the proposer and the
//! read path ask openraft directly); it only observes.

use tokio::sync::watch;

use crate::types::{NodeId, Raft};

/// Logs every change of (term, leader) seen in `raft`'s metrics until `stop`
/// turns true or the Raft core shuts down.
pub async fn leader_log_task(raft: Raft, node_id: NodeId, mut stop: watch::Receiver<bool>) {
    let mut metrics = raft.metrics();
    let mut last: Option<(u64, Option<NodeId>)> = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            (m.current_term, m.current_leader)
        };
        // A term change without a known leader is an election in progress;
        // log it once it settles on a leader, or as "no leader" when the
        // leader is lost.
        if last != Some(now) && (now.1.is_some() || last.and_then(|l| l.1).is_some()) {
            match now.1 {
                Some(leader) if leader == node_id => {
                    tracing::info!(node_id, term = now.0, "leader changed: this node leads")
                }
                Some(leader) => tracing::info!(node_id, term = now.0, leader, "leader changed"),
                None => tracing::info!(node_id, term = now.0, "leader changed: no leader known"),
            }
        }
        last = Some(now);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = stop.changed() => return,
        }
    }
}
