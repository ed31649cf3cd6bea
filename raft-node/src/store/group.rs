//! Raft groups: the id every Raft RPC carries, and where each group's records
//! live in a node's data directory.
//!
//! Owns: [`GroupId`] and the naming of a group's storage: its keys in the
//! shared sled trees (`log`, `meta`, `sm`) and its snapshot file names.
//!
//! Must not: open trees or files, or decide how many groups a node runs. A
//! node runs one group, [`GroupId::SOLE`] (0), until events are sharded
//! (DESIGN §13); nothing here is multi-group behaviour, only the layout that
//! lets several groups share one data directory later.
//!
//! Layout. Group 0 is byte for byte the layout of every data directory
//! written before groups existed, so those directories open unchanged:
//! - tree `log`: key = the entry's index, 8 bytes big-endian;
//! - tree `meta`: keys `vote`, `committed`, `last_purged`;
//! - tree `sm`: key `snapshot` (only directories of older builds have it);
//! - files `snapshot-<index, 20 digits>-<term>-<node>.snap` (and `.snap.tmp`)
//!   in the data directory.
//!
//! Group N > 0 uses the same trees and the same directory, every key
//! prefixed by [`GROUP_MARK`] (eight `0xFF` bytes) then N (8 bytes
//! big-endian): log key = mark ‖ N ‖ index, record key = mark ‖ N ‖ name;
//! snapshot files `group-<N>-snapshot-<index>-<term>-<node>.snap`.
//!
//! Why the same trees: sled 0.34 keeps one map of tree roots and rewrites it
//! for every new tree, so a tree per group would not scale to many groups
//! (DESIGN §13). Why the mark: group 0's log keys are exactly 8 bytes, and a
//! longer key that begins with eight `0xFF` bytes sorts after every one of
//! them (even index `u64::MAX`, whose key is the mark itself, sorts before
//! its longer extensions). So each group's log is one contiguous key range
//! ([`GroupId::log_range`]), and a scan, truncation or purge of one group can
//! never touch another group's entries. The snapshot prefixes are chosen so
//! that no group's prefix starts with another's (`snapshot-` versus
//! `group-1-snapshot-` versus `group-10-snapshot-`): a group's start-up scan,
//! which removes superseded files and leftovers, sees only its own files.

use std::fmt;
use std::ops::Bound;

/// The first bytes of every key of a group other than 0 in the shared trees.
pub const GROUP_MARK: [u8; 8] = [0xFF; 8];

/// A Raft group's id. Every Raft RPC names one (proto `group_id`); a node
/// refuses a message for a group it does not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The one group every node runs until events are sharded.
    pub const SOLE: GroupId = GroupId(0);

    /// What every key of this group in a shared tree starts with: nothing for
    /// group 0 (today's keys), the mark and the id otherwise.
    fn key_prefix(self) -> Vec<u8> {
        if self.0 == 0 {
            return Vec::new();
        }
        let mut prefix = Vec::with_capacity(16);
        prefix.extend_from_slice(&GROUP_MARK);
        prefix.extend_from_slice(&self.0.to_be_bytes());
        prefix
    }

    /// The key of log entry `index` in the tree `log`.
    pub fn log_key(self, index: u64) -> Vec<u8> {
        let mut key = self.key_prefix();
        key.extend_from_slice(&index.to_be_bytes());
        key
    }

    /// The log index a key of the tree `log` holds, if the key is one of
    /// this group's log keys.
    pub fn log_index(self, key: &[u8]) -> Option<u64> {
        let prefix = self.key_prefix();
        let rest = key.strip_prefix(prefix.as_slice())?;
        <[u8; 8]>::try_from(rest).ok().map(u64::from_be_bytes)
    }

    /// The keys of this group's log entries whose index is within
    /// `(start, end)`, as a sled range. An unbounded side stops at this
    /// group's first or last possible key, never in another group.
    pub fn log_range(self, start: Bound<u64>, end: Bound<u64>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
        let start = match start {
            Bound::Included(i) => Bound::Included(self.log_key(i)),
            Bound::Excluded(i) => Bound::Excluded(self.log_key(i)),
            Bound::Unbounded => Bound::Included(self.log_key(0)),
        };
        let end = match end {
            Bound::Included(i) => Bound::Included(self.log_key(i)),
            Bound::Excluded(i) => Bound::Excluded(self.log_key(i)),
            Bound::Unbounded => Bound::Included(self.log_key(u64::MAX)),
        };
        (start, end)
    }

    /// The key of the named record `name` (`vote`, `committed`,
    /// `last_purged` in `meta`; `snapshot` in `sm`).
    pub fn record_key(self, name: &[u8]) -> Vec<u8> {
        let mut key = self.key_prefix();
        key.extend_from_slice(name);
        key
    }

    /// What this group's snapshot file names in the data directory start
    /// with.
    pub fn snapshot_file_prefix(self) -> String {
        if self.0 == 0 {
            "snapshot-".to_string()
        } else {
            format!("group-{}-snapshot-", self.0)
        }
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Group 0 must name exactly what data directories written before groups
    /// hold; these literals are that layout, not derived from the code.
    #[test]
    fn group_0_names_exactly_the_layout_of_older_data_directories() {
        let g = GroupId::SOLE;
        assert_eq!(g, GroupId(0));
        assert_eq!(g.log_key(1), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(g.log_key(0x0102), vec![0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(g.log_index(&[0, 0, 0, 0, 0, 0, 1, 2]), Some(0x0102));
        assert_eq!(g.log_index(&[0, 0, 1, 2]), None, "not 8 bytes");
        assert_eq!(g.record_key(b"vote"), b"vote".to_vec());
        assert_eq!(g.record_key(b"committed"), b"committed".to_vec());
        assert_eq!(g.record_key(b"last_purged"), b"last_purged".to_vec());
        assert_eq!(g.record_key(b"snapshot"), b"snapshot".to_vec());
        assert_eq!(g.snapshot_file_prefix(), "snapshot-");
        let (start, end) = g.log_range(Bound::Unbounded, Bound::Unbounded);
        assert_eq!(start, Bound::Included(vec![0; 8]));
        assert_eq!(end, Bound::Included(vec![0xFF; 8]));
    }

    #[test]
    fn group_7_prefixes_every_key_with_the_mark_and_its_id() {
        let g = GroupId(7);
        let prefix = [
            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 7,
        ];
        let mut log_5 = prefix.to_vec();
        log_5.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(g.log_key(5), log_5);
        assert_eq!(g.log_index(&log_5), Some(5));
        let mut vote = prefix.to_vec();
        vote.extend_from_slice(b"vote");
        assert_eq!(g.record_key(b"vote"), vote);
        assert_eq!(g.snapshot_file_prefix(), "group-7-snapshot-");
        assert_eq!(g.to_string(), "group 7");
        // Neither group reads the other's log keys.
        assert_eq!(GroupId::SOLE.log_index(&log_5), None);
        assert_eq!(g.log_index(&GroupId::SOLE.log_key(5)), None);
        assert_eq!(GroupId(8).log_index(&log_5), None);
    }

    #[test]
    fn each_groups_log_range_holds_its_own_keys_and_no_other_groups() {
        use std::ops::RangeBounds;
        let groups = [
            GroupId(0),
            GroupId(1),
            GroupId(7),
            GroupId(255),
            GroupId(256),
        ];
        let indexes = [0, 1, 2, 1 << 40, u64::MAX - 1, u64::MAX];
        for g in groups {
            let range = g.log_range(Bound::Unbounded, Bound::Unbounded);
            for other in groups {
                for i in indexes {
                    let key = other.log_key(i);
                    assert_eq!(
                        range.contains(&key),
                        other == g,
                        "{g}'s whole range and {other}'s index {i}"
                    );
                }
            }
            // A purge of group g up to index 2 covers only g's first keys.
            let purge = g.log_range(Bound::Unbounded, Bound::Included(2));
            for other in groups {
                for i in indexes {
                    let expected = other == g && i <= 2;
                    assert_eq!(
                        purge.contains(&other.log_key(i)),
                        expected,
                        "{g} purge, {other} {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn no_groups_snapshot_prefix_starts_with_anothers() {
        let groups = [0, 1, 2, 7, 10, 11, 70, 100];
        for a in groups {
            for b in groups {
                let (pa, pb) = (
                    GroupId(a).snapshot_file_prefix(),
                    GroupId(b).snapshot_file_prefix(),
                );
                assert_eq!(pb.starts_with(&pa), a == b, "{pa:?} vs {pb:?}");
            }
        }
    }
}
