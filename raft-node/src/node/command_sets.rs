//! The version handshake of rolling upgrades: which command sets the
//! members apply, and the leader's refusal of a command some member could
//! not decode.
//!
//! Owns: [`CommandSets`] (this node's own set, the sets the members last
//! reported to this node as leader, their floor), the `upgrade_pending`
//! refusal ([`NodeCore::command_set_refusal`]), and the test hook that makes
//! a node report an older set (`BOOKING_FAULT_COMMAND_SET=1` and a
//! [`COMMAND_SET_FILE`] in the data directory). Must not: decide which set a
//! command belongs to (`state_machine::command_set` does), or refuse anything
//! on a follower (the follower's answer is the redirect to the leader).
//!
//! How the sets travel: every `Clock` reply carries the answering node's
//! set, and the leader's sampling round (`clock.rs`) asks every member,
//! learners included, since learners apply the same log. A member that never
//! answered this node, or whose build predates the handshake (its reply says
//! 0), counts as `command_set::ASSUMED_UNREPORTED`. Choice: a member that is
//! down keeps the set it last reported, because it will apply the log when
//! it returns; an operator who replaces its binary meanwhile sees the
//! refusal lift at the first round after it answers again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use state_machine::{command_set, Request};

use super::NodeCore;
use crate::error::NodeError;
use crate::types::NodeId;

/// Environment variable that enables the command-set hook (`1`).
pub const FAULT_COMMAND_SET_ENV: &str = "BOOKING_FAULT_COMMAND_SET";
/// Name of the hook's file in a node's data directory: the set (a number)
/// this node reports instead of `command_set::CURRENT`, read at start.
pub const COMMAND_SET_FILE: &str = "fault-command-set";

/// This node's set and, on a leader, what the members reported.
#[derive(Debug)]
pub struct CommandSets {
    own: u32,
    reported: Mutex<BTreeMap<NodeId, u32>>,
}

/// The lowest set among the members, and a member that has it (for the
/// refusal's message), `None` when it is this node's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Floor {
    pub set: u32,
    pub lowest: Option<NodeId>,
}

impl CommandSets {
    /// A node that reports `own`.
    pub fn new(own: u32) -> CommandSets {
        CommandSets {
            own,
            reported: Mutex::new(BTreeMap::new()),
        }
    }

    /// `command_set::CURRENT`, or under `BOOKING_FAULT_COMMAND_SET=1` the set
    /// in `<data_dir>/fault-command-set` when that file exists (a test
    /// simulating an older build). A file that does not hold a set from
    /// `command_set::BASE` to `CURRENT` refuses the start, naming it.
    pub fn from_env(data_dir: &Path) -> Result<CommandSets, NodeError> {
        let hooked = std::env::var(FAULT_COMMAND_SET_ENV).is_ok_and(|v| v == "1");
        CommandSets::from_hook(hooked, data_dir)
    }

    /// [`CommandSets::from_env`] with the variable already read.
    fn from_hook(hooked: bool, data_dir: &Path) -> Result<CommandSets, NodeError> {
        if !hooked {
            return Ok(CommandSets::new(command_set::CURRENT));
        }
        let path = data_dir.join(COMMAND_SET_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CommandSets::new(command_set::CURRENT))
            }
            Err(e) => return Err(NodeError::data_dir(path, e.to_string())),
        };
        match text.trim().parse::<u32>() {
            Ok(set) if (command_set::BASE..=command_set::CURRENT).contains(&set) => {
                tracing::warn!(
                    set,
                    "fault injection: reporting command set {set} instead of {}",
                    command_set::CURRENT
                );
                Ok(CommandSets::new(set))
            }
            _ => Err(NodeError::data_dir(
                path,
                format!(
                    "{:?} is not a command set from {} to {}",
                    text.trim(),
                    command_set::BASE,
                    command_set::CURRENT
                ),
            )),
        }
    }

    /// The set this node reports.
    pub fn own(&self) -> u32 {
        self.own
    }

    /// Records what `member` reported (0: a build before the handshake).
    pub fn record(&self, member: NodeId, reported: u32) {
        let set = if reported == 0 {
            command_set::ASSUMED_UNREPORTED
        } else {
            reported
        };
        self.reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(member, set);
    }

    /// The lowest set among `members` (this node, `me`, counts with its own).
    pub fn floor(&self, me: NodeId, members: impl IntoIterator<Item = NodeId>) -> Floor {
        let reported = self
            .reported
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut floor = Floor {
            set: self.own,
            lowest: None,
        };
        for member in members {
            if member == me {
                continue;
            }
            let set = reported
                .get(&member)
                .copied()
                .unwrap_or(command_set::ASSUMED_UNREPORTED);
            if set < floor.set {
                floor = Floor {
                    set,
                    lowest: Some(member),
                };
            }
        }
        floor
    }
}

impl NodeCore {
    /// The lowest command set among the current members (voters and
    /// learners), as this node last heard them.
    pub fn command_set_floor(&self) -> Floor {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let members = metrics.membership_config.membership().nodes();
        self.command_sets.floor(self.id, members.map(|(id, _)| *id))
    }

    /// `upgrade_pending` if a request needs a command set some member does
    /// not apply yet; `None` otherwise. Cheap for the base commands (holds,
    /// payments): they never look at the membership. Asked by the proposer
    /// for every batch it is given (whoever calls it), and before that by
    /// `SubmitBatch` for each request, so a refused one does not take its
    /// batch's other requests down with it; the second look is a membership
    /// read and a few map lookups, and only for the newer commands.
    pub fn command_set_refusal(&self, requests: &[Request]) -> Option<NodeError> {
        let needed = requests.iter().map(|r| r.command.command_set()).max()?;
        if needed <= command_set::BASE {
            return None;
        }
        let floor = self.command_set_floor();
        if needed <= floor.set {
            return None;
        }
        let command = requests
            .iter()
            .find(|r| r.command.command_set() == needed)
            .map(|r| r.command.name())
            .unwrap_or("command");
        let who = match floor.lowest {
            Some(id) => format!("node {id}"),
            None => format!("this node (node {})", self.id),
        };
        Some(NodeError::UpgradePending(format!(
            "{command} needs command set {needed}, and {who} applies only set {}; \
             it becomes available once every member runs a build that applies it \
             (finish the rolling upgrade: bookctl rolling-restart)",
            floor.set
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: the floor is the lowest set among the members; an unreported member, or one reporting 0 (a build before the handshake), counts as ASSUMED_UNREPORTED; members outside the list do not count.
    #[test]
    fn the_floor_is_the_lowest_member_set() {
        let sets = CommandSets::new(command_set::CURRENT);
        assert_eq!(
            sets.floor(1, [1, 2, 3]).set,
            command_set::ASSUMED_UNREPORTED.min(command_set::CURRENT),
            "members not heard from yet"
        );
        sets.record(2, command_set::CURRENT);
        sets.record(3, command_set::FORGET_REQUESTS);
        assert_eq!(
            sets.floor(1, [1, 2, 3]),
            Floor {
                set: command_set::FORGET_REQUESTS,
                lowest: Some(3)
            }
        );
        assert_eq!(sets.floor(1, [1, 2]).set, command_set::CURRENT);
        sets.record(3, 0);
        assert_eq!(
            sets.floor(1, [1, 2, 3]).set,
            command_set::ASSUMED_UNREPORTED
        );
        let older = CommandSets::new(command_set::BASE);
        assert_eq!(
            older.floor(1, [1]),
            Floor {
                set: command_set::BASE,
                lowest: None
            }
        );
    }

    // Goal: the hook reads a valid set from the data directory and refuses a start on a bad one, naming the file; without the file the node reports CURRENT.
    #[test]
    fn the_hook_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(COMMAND_SET_FILE), "2\n").unwrap();
        let own = |hooked| CommandSets::from_hook(hooked, dir.path()).map(|s| s.own());
        assert_eq!(
            own(false).unwrap(),
            command_set::CURRENT,
            "no hook, no file read"
        );
        assert_eq!(own(true).unwrap(), 2);
        std::fs::write(dir.path().join(COMMAND_SET_FILE), "99").unwrap();
        let err = own(true).unwrap_err().to_string();
        assert!(err.contains(COMMAND_SET_FILE), "{err}");
        std::fs::remove_file(dir.path().join(COMMAND_SET_FILE)).unwrap();
        assert_eq!(own(true).unwrap(), command_set::CURRENT);
    }
}
