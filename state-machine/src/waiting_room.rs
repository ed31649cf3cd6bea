//! The virtual waiting room of one event.
//!
//! Owns: the fans' states, the order of the line, the fair shuffle of fans who
//! joined before the sale opened, and the admission rule. Must not: read a
//! clock or a random source: the shuffle seed comes from the log entry that
//! opened the sale, time from the caller's `clock_ms`.
//!
//! Rules (also in ARCHITECTURE.md):
//! - One place per user: joining again while pending, waiting, admitted or
//!   done answers the existing place. A fan whose admission lapsed, or who
//!   left, may join again at the back.
//! - Fans who join before the first opening wait unordered; the opening
//!   shuffles them (Fisher–Yates driven by splitmix64 from the seed) and they
//!   precede everyone who joins later, first come first served.
//! - Admission: `slots = min(admit_batch, unsold places) − fans still
//!   shopping`; that many fans from the head of the line are admitted at
//!   once. "Shopping" = admitted, not lapsed, not done. So at most
//!   `admit_batch` fans shop at a time, and never more than there are seats.
//! - An admitted fan may hold for `hold_ttl_ms` of log time; then the
//!   admission lapses. Confirming a booking ends it (done). Holds already made
//!   keep their own expiry.
//! - Bound: at most `Settings::queue_max_fans` users are ever recorded per
//!   event (`queue_full` after that); their records are kept for the event's life.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::view::{FanState, QueueView};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Fan {
    PendingShuffle,
    Waiting { seq: u64 },
    Admitted { until_ms: u64 },
    Done,
    Lapsed,
    Left,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WaitingRoom {
    pub admit_batch: u32,
    pub fans: BTreeMap<String, Fan>,
    /// Joined before the first opening, in join order (shuffled at opening).
    pub pending: Vec<String>,
    /// The line: sequence number → user; the smallest is the head.
    pub waiting: BTreeMap<u64, String>,
    pub next_seq: u64,
    /// Admitted fans not yet lapsed or done.
    pub shopping: u32,
}

/// What `join` did.
pub(crate) enum Joined {
    New,
    Already,
    Full,
}

impl WaitingRoom {
    pub fn new(admit_batch: u32) -> WaitingRoom {
        WaitingRoom {
            admit_batch,
            fans: BTreeMap::new(),
            pending: Vec::new(),
            waiting: BTreeMap::new(),
            next_seq: 1,
            shopping: 0,
        }
    }

    pub fn join(&mut self, user: &str, opened: bool, max_fans: u32) -> Joined {
        match self.fans.get(user) {
            Some(Fan::Lapsed | Fan::Left) => {}
            Some(_) => return Joined::Already,
            None if self.fans.len() >= max_fans as usize => return Joined::Full,
            None => {}
        }
        let fan = if opened {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.waiting.insert(seq, user.to_string());
            Fan::Waiting { seq }
        } else {
            self.pending.push(user.to_string());
            Fan::PendingShuffle
        };
        self.fans.insert(user.to_string(), fan);
        Joined::New
    }

    /// Removes the user from the line or ends their admission. Returns the
    /// lapse time to forget if they were admitted; Err if not in the room.
    pub fn leave(&mut self, user: &str) -> Result<Option<u64>, ()> {
        let fan = self.fans.get_mut(user).ok_or(())?;
        let lapse = match *fan {
            Fan::PendingShuffle => {
                self.pending.retain(|u| u != user);
                None
            }
            Fan::Waiting { seq } => {
                self.waiting.remove(&seq);
                None
            }
            Fan::Admitted { until_ms } => {
                self.shopping -= 1;
                Some(until_ms)
            }
            Fan::Done | Fan::Lapsed | Fan::Left => return Err(()),
        };
        *fan = Fan::Left;
        Ok(lapse)
    }

    /// Orders the pre-opening fans with a seeded Fisher–Yates shuffle and
    /// puts them at the head of the line. Returns how many were shuffled.
    pub fn shuffle_pending(&mut self, seed: u64) -> u64 {
        let mut pending = std::mem::take(&mut self.pending);
        let mut rng = SplitMix64(seed);
        for i in (1..pending.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            pending.swap(i, j);
        }
        let shuffled = pending.len() as u64;
        for user in pending {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.fans.insert(user.clone(), Fan::Waiting { seq });
            self.waiting.insert(seq, user);
        }
        shuffled
    }

    /// Fans that may be admitted now, given the unsold places.
    pub fn slots(&self, available_units: u32) -> u32 {
        let slots = self
            .admit_batch
            .min(available_units)
            .saturating_sub(self.shopping);
        slots.min(self.waiting.len().min(u32::MAX as usize) as u32)
    }

    /// Admits up to `slots` fans from the head; returns them.
    pub fn admit(&mut self, slots: u32, until_ms: u64) -> Vec<String> {
        let mut admitted = Vec::with_capacity(slots as usize);
        for _ in 0..slots {
            let Some((_, user)) = self.waiting.pop_first() else {
                break;
            };
            self.fans.insert(user.clone(), Fan::Admitted { until_ms });
            self.shopping += 1;
            admitted.push(user);
        }
        admitted
    }

    /// Lapses an admission that was due at `until_ms` (stale entries ignored).
    pub fn lapse(&mut self, user: &str, until_ms: u64) -> bool {
        match self.fans.get_mut(user) {
            Some(fan @ Fan::Admitted { .. }) if *fan == (Fan::Admitted { until_ms }) => {
                *fan = Fan::Lapsed;
                self.shopping -= 1;
                true
            }
            _ => false,
        }
    }

    /// The fan confirmed a booking: admission ends. Returns the lapse time to forget.
    pub fn done(&mut self, user: &str) -> Option<u64> {
        match self.fans.get_mut(user) {
            Some(fan @ Fan::Admitted { .. }) => {
                let Fan::Admitted { until_ms } = *fan else {
                    unreachable!()
                };
                *fan = Fan::Done;
                self.shopping -= 1;
                Some(until_ms)
            }
            _ => None,
        }
    }

    pub fn is_admitted(&self, user: &str, clock_ms: u64) -> bool {
        matches!(self.fans.get(user), Some(Fan::Admitted { until_ms }) if *until_ms > clock_ms)
    }

    /// Fans not yet admitted (pending shuffle or in line).
    pub fn waiting_len(&self) -> u64 {
        (self.pending.len() + self.waiting.len()) as u64
    }

    pub fn view(&self, event_id: &str, user: &str) -> Option<QueueView> {
        let fan = self.fans.get(user)?;
        let head = self.waiting.first_key_value().map(|(s, _)| *s).unwrap_or(0);
        let (state, position, admitted_until_ms) = match fan {
            Fan::PendingShuffle => (FanState::PendingShuffle, None, None),
            Fan::Waiting { seq } => (FanState::Waiting, Some(seq - head + 1), None),
            Fan::Admitted { until_ms } => (FanState::Admitted, None, Some(*until_ms)),
            Fan::Done => (FanState::Done, None, None),
            Fan::Lapsed => (FanState::Lapsed, None, None),
            Fan::Left => (FanState::Left, None, None),
        };
        Some(QueueView {
            event_id: event_id.to_string(),
            user: user.to_string(),
            position,
            admitted: state == FanState::Admitted,
            admitted_until_ms,
            state,
        })
    }
}

/// splitmix64: a tiny, well-mixed deterministic generator (Steele et al.).
/// Here only to order the pre-opening line from a log-derived seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
