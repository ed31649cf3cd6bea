//! Admission of this data directory's incarnation: a node whose directory was
//! created empty (a new node, or a member whose disk was wiped or replaced)
//! neither votes nor acknowledges entries until it knows that this is safe.
//!
//! Owns: the admission state ([`Admission`]), the refusal the Raft service
//! answers while not admitted, and the task that decides by asking the peers'
//! `Status` ([`admission_task`]). Must not: change openraft's state; a refused
//! RPC looks to the sender like an unreachable node.
//!
//! Rule (soundness argued in ARCHITECTURE.md, "Lost disks"): the incarnation
//! is admitted when (a) the leader's membership lists this node as a learner
//! or not at all (the operator removed it, or is adding it), (b) so many of
//! the other voters report an empty log (nothing past the initial membership
//! entry and the first leader's blank entry) that no quorum can hold a
//! committed entry (a new cluster), or (c) every other voter that holds
//! entries answers, is admitted, keeps a complete witness record
//! (`store/witness.rs`) and names no incarnation of this id (a voter that
//! started after the first writes). It is refused, and says so, when a
//! leader lists it as a voter that an earlier incarnation acknowledged
//! entries to (the leader's match index for it), or when any peer's witness
//! record names another incarnation of this id: an emptied disk under an old
//! id. Otherwise it stays pending, which refuses exactly as much. Caveat: a
//! node started with `--bootstrap` on an empty directory is admitted at once
//! (it claims to be creating the cluster); never bootstrap a replaced disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::booking as pb;
use proto::booking::booking_client::BookingClient;
use tokio::sync::watch;

use super::NodeCore;
use crate::store::identity::mark_admitted;

/// How often a node that is not admitted asks its peers again. Short, so a
/// new cluster's nodes join its first election; a node that misses the "no
/// quorum holds an entry" moment is admitted by rule (c) instead.
pub const ADMISSION_POLL_MS: u64 = 50;

const ADMITTED: u8 = 0;
const PENDING: u8 = 1;
const REFUSED: u8 = 2;

/// This node's admission state.
pub struct Admission {
    state: AtomicU8,
    /// Hex id of this data directory's incarnation.
    pub incarnation: String,
    data_dir: PathBuf,
}

impl Admission {
    pub fn new(incarnation: String, admitted: bool, data_dir: PathBuf) -> Admission {
        Admission {
            state: AtomicU8::new(if admitted { ADMITTED } else { PENDING }),
            incarnation,
            data_dir,
        }
    }

    pub fn is_admitted(&self) -> bool {
        self.state.load(Ordering::Acquire) == ADMITTED
    }

    /// "admitted", "pending" (not known yet) or "refused" (disk replaced).
    pub fn name(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            ADMITTED => "admitted",
            PENDING => "pending",
            _ => "refused",
        }
    }

    /// The answer of the Raft service while not admitted.
    pub fn refusal(&self, node_id: u64) -> tonic::Status {
        tonic::Status::unavailable(format!(
            "node {node_id} (incarnation {}) is not admitted ({}): it neither votes nor \
             acknowledges entries; if its disk was replaced, remove it and add it back \
             (bookctl node remove {node_id}, then bookctl node add {node_id} <host:port>)",
            self.incarnation,
            self.name()
        ))
    }
}

/// What one poll of the peers concluded.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Admit(&'static str),
    Refuse,
    Unknown,
}

/// Highest last log index a voter may report and still count as holding
/// nothing a new node could have forgotten: the initial membership entry
/// (index 0) and the first leader's blank entry (index 1).
const NEW_CLUSTER_LOG_INDEX_MAX: u64 = 1;

/// Decides from the peers' statuses (pure, so it can be tested alone).
fn decide(self_id: u64, self_incarnation: &str, statuses: &[pb::StatusResponse]) -> Verdict {
    if let Some(l) = statuses.iter().find(|s| s.role == "Leader") {
        let voter = l.members.iter().any(|m| m.node_id == self_id && m.voter);
        if !voter {
            return Verdict::Admit("the leader lists this node as a learner or not at all");
        }
        // This incarnation acknowledged nothing (it refuses appends), so a
        // match on the leader is an earlier incarnation's.
        let matched = l
            .replication
            .iter()
            .find(|r| r.node_id == self_id)
            .and_then(|r| r.matched_index)
            .unwrap_or(0);
        if matched > NEW_CLUSTER_LOG_INDEX_MAX {
            return Verdict::Refuse;
        }
    }
    // A peer saw another incarnation of this id hold entries: an emptied disk.
    let seen_other = statuses.iter().any(|s| {
        s.witnessed
            .iter()
            .any(|w| w.node_id == self_id && w.incarnation != self_incarnation)
    });
    if seen_other {
        return Verdict::Refuse;
    }
    let Some(view) = statuses
        .iter()
        .filter(|s| !s.members.is_empty())
        .max_by_key(|s| s.last_log_index)
    else {
        return Verdict::Unknown;
    };
    let voters: BTreeSet<u64> = view
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect();
    if !voters.contains(&self_id) {
        return Verdict::Unknown;
    }
    let others = || voters.iter().filter(|v| **v != self_id);
    let answer = |id: u64| statuses.iter().find(|s| s.node_id == id);
    let holds_nothing = |s: &pb::StatusResponse| s.last_log_index <= NEW_CLUSTER_LOG_INDEX_MAX;
    // A new cluster: the voters that report (almost) empty logs leave too
    // few others to form a quorum that could hold a committed entry.
    let empty = others()
        .filter(|v| answer(**v).is_some_and(holds_nothing))
        .count();
    let quorum = voters.len() / 2 + 1;
    if voters.len() - empty < quorum {
        return Verdict::Admit("no quorum of voters holds any entry: a new cluster");
    }
    // Every other voter that holds entries answered, is admitted, and has
    // recorded since its creation every incarnation it saw hold entries,
    // none of them this id's (checked above). An earlier incarnation that
    // helped commit an entry was seen by that commit's leader, or, if it
    // led, by its followers: one of these voters, unless that witness's own
    // disk was lost too (ARCHITECTURE.md, "Lost disks").
    let all_vouch = others().all(|v| {
        answer(*v).is_some_and(|s| {
            holds_nothing(s) || (s.admission == "admitted" && s.witnessed_since_creation)
        })
    });
    if all_vouch {
        return Verdict::Admit(
            "every other voter answered and none saw an earlier incarnation of this node hold entries",
        );
    }
    Verdict::Unknown
}

async fn peer_status(core: &NodeCore, addr: &str) -> Option<pb::StatusResponse> {
    let channel = core.pool.get(addr).ok()?;
    let mut client = BookingClient::new(channel);
    let mut request = tonic::Request::new(pb::StatusRequest {});
    request.set_timeout(core.rpc_timeout);
    client.status(request).await.ok().map(|r| r.into_inner())
}

/// While this incarnation is not admitted: polls the peers every
/// [`ADMISSION_POLL_MS`], and records an admission durably before it takes
/// effect.
pub async fn admission_task(core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let admission = core.admission.clone();
    while !admission.is_admitted() {
        let mut addrs: BTreeMap<u64, String> = core.config_addrs.clone();
        let m = core.raft.metrics().borrow().membership_config.clone();
        for (id, n) in m.membership().nodes() {
            addrs.insert(*id, n.addr.clone());
        }
        addrs.remove(&core.id);
        let mut statuses = Vec::new();
        for addr in addrs.values() {
            if let Some(s) = peer_status(&core, addr).await {
                statuses.push(s);
            }
        }
        match decide(core.id, &admission.incarnation, &statuses) {
            Verdict::Admit(why) => match mark_admitted(&admission.data_dir) {
                Ok(()) => {
                    admission.state.store(ADMITTED, Ordering::Release);
                    tracing::info!(node_id = core.id, incarnation = %admission.incarnation, why, "this data directory is admitted: it votes and acknowledges entries");
                }
                Err(e) => {
                    tracing::error!(node_id = core.id, error = %e, "cannot record the admission")
                }
            },
            Verdict::Refuse => {
                if admission.state.swap(REFUSED, Ordering::AcqRel) != REFUSED {
                    tracing::error!(
                        node_id = core.id,
                        incarnation = %admission.incarnation,
                        "this node's data directory is new but the cluster knows node {} as a voter with a log: \
                         its disk was emptied or replaced. It neither votes nor acknowledges entries until an \
                         operator removes it and adds it back (bookctl node remove {0}, then \
                         bookctl node add {0} <host:port>: learner, catch-up, then voter)",
                        core.id
                    );
                }
            }
            Verdict::Unknown => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ADMISSION_POLL_MS)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: u64, role: &str, last: u64, voters: &[u64]) -> pb::StatusResponse {
        pb::StatusResponse {
            node_id: id,
            role: role.into(),
            last_log_index: last,
            members: voters
                .iter()
                .map(|v| pb::Member {
                    node_id: *v,
                    addr: String::new(),
                    voter: true,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn admission_verdicts_for_new_clusters_lost_disks_and_removed_members() {
        // Goal: a new cluster admits, a leader with a log refuses an empty
        // voter, a removed member is admitted, too few answers decide nothing.
        let v = [1, 2, 3];
        let fresh = [status(1, "Candidate", 0, &v), status(3, "Follower", 0, &v)];
        assert!(matches!(decide(2, "me", &fresh), Verdict::Admit(_)));
        let mut leader = status(1, "Leader", 40, &v);
        leader.replication = vec![pb::ReplicationProgress {
            node_id: 2,
            matched_index: Some(39),
        }];
        let lost = [leader.clone(), status(3, "Follower", 40, &v)];
        assert_eq!(decide(2, "me", &lost), Verdict::Refuse);
        leader.replication.clear();
        let unknown = [leader, status(3, "Follower", 40, &v)];
        assert_eq!(decide(2, "me", &unknown), Verdict::Unknown);
        let raced = [status(1, "Leader", 1, &v), status(3, "Follower", 1, &v)];
        assert!(matches!(decide(2, "me", &raced), Verdict::Admit(_)));
        let removed = [status(1, "Leader", 41, &[1, 3])];
        assert!(matches!(decide(2, "me", &removed), Verdict::Admit(_)));
        let half = [status(1, "Candidate", 0, &v)];
        assert_eq!(decide(2, "me", &half), Verdict::Unknown);
        let no_leader = [status(3, "Candidate", 30, &v)];
        assert_eq!(decide(2, "me", &no_leader), Verdict::Unknown);
    }

    fn vouching(mut s: pb::StatusResponse, witnessed: &[(u64, &str)]) -> pb::StatusResponse {
        s.admission = "admitted".into();
        s.witnessed_since_creation = true;
        s.witnessed = witnessed
            .iter()
            .map(|(node_id, inc)| pb::PeerIncarnation {
                node_id: *node_id,
                incarnation: inc.to_string(),
            })
            .collect();
        s
    }

    #[test]
    fn admission_verdicts_from_the_peers_witness_records() {
        // Goal: a voter that started after the first writes is admitted when
        // every other voter vouches that it never saw another incarnation of
        // it hold entries; one sighting refuses; anything short of every
        // voter's record decides nothing.
        let v = [1, 2, 3];
        let leader = vouching(status(1, "Leader", 40, &v), &[(3, "c3")]);
        let follower = vouching(status(3, "Follower", 40, &v), &[(1, "c1")]);
        let late = [leader.clone(), follower.clone()];
        assert!(matches!(decide(2, "me", &late), Verdict::Admit(_)));
        // A restarted leader has no match for anyone, but a peer's record
        // still names the earlier incarnation.
        let seen = vouching(status(3, "Follower", 40, &v), &[(1, "c1"), (2, "old")]);
        assert_eq!(decide(2, "me", &[leader.clone(), seen]), Verdict::Refuse);
        let seen_by_candidate = vouching(status(3, "Candidate", 40, &v), &[(2, "old")]);
        assert_eq!(decide(2, "me", &[seen_by_candidate]), Verdict::Refuse);
        // One voter silent: it may be the one that saw the earlier incarnation.
        assert_eq!(
            decide(2, "me", std::slice::from_ref(&leader)),
            Verdict::Unknown
        );
        // A voter of an older build, or one whose record started late.
        let mut old = follower.clone();
        old.witnessed_since_creation = false;
        assert_eq!(decide(2, "me", &[leader.clone(), old]), Verdict::Unknown);
        // A voter that is itself a new directory has seen nothing.
        let mut pending = follower.clone();
        pending.admission = "pending".into();
        assert_eq!(
            decide(2, "me", &[leader.clone(), pending]),
            Verdict::Unknown
        );
        // Five voters: a silent voter with an empty log cannot have seen anything.
        let v5 = [1, 2, 3, 4, 5];
        let five = [
            vouching(status(1, "Leader", 40, &v5), &[]),
            vouching(status(3, "Follower", 40, &v5), &[]),
            vouching(status(4, "Follower", 40, &v5), &[]),
            status(5, "Follower", 1, &v5),
        ];
        assert!(matches!(decide(2, "me", &five), Verdict::Admit(_)));
        assert_eq!(decide(2, "me", &five[..3]), Verdict::Unknown);
    }
}
