//! The virtual waiting room of one event, sized by admissions, not by the crowd.
//!
//! Owns: position blocks, the pre-queue order, the admission watermark and
//! its rounds, the admitted shoppers who have acted, and the rule that says
//! whether a (user, position) is admitted now. Must not: read a clock or a
//! random source (the pre-queue key comes from the log entry that opened the
//! sale, time from the caller's `clock_ms`), or keep anything per fan who
//! merely joined.
//!
//! Rules (also in ARCHITECTURE.md "Waiting room"):
//! - Joining is a gateway's business: it reserves a block of positions with
//!   one command (`ReserveQueueBlock`) and hands them out, one per join, in
//!   a signed token (event, user, position, issue time). Positions start at 1.
//! - Positions reserved before the first opening (`1..=pre_count`) form the
//!   pre-queue. Their *place* in line is a keyed permutation of the position
//!   (key fixed at opening): a uniformly random order nobody can choose
//!   before the opening, with no list of fans. Later positions `p` take
//!   place `p - 1` (first come, first served, after the whole pre-queue).
//! - Admission is a watermark on places: places `< admitted_places` are
//!   admitted. Each round raises it by `min(admit_batch, unsold places) −
//!   fans still shopping` and records (watermark, lapse time). A round's
//!   admissions lapse `hold_ttl_ms` of log time after it; lapsed rounds
//!   fold into `lapsed_places`, so only live rounds are kept.
//! - "Still shopping": each live round counts the places it admitted for a
//!   grace of a tenth of the hold window ([`admit_grace_ms`]), then only its
//!   fans who held; less those who finished (confirmed or left). So places
//!   nobody uses (a fan who went away, a block's unused tail) hold the line
//!   for the grace only, not for the whole window.
//! - One admission per user, enforced where the user acts: the first hold
//!   with an admitted position records the user until the round lapses;
//!   while that record lives, the user holds under it and no other position
//!   of theirs admits them again.
//! - Caveat: a place is per token, so a fan who joins twice before the
//!   opening holds two draws (one admission still, at hold time); the
//!   gateway's per-user rate limit bounds how many. Positions a gateway
//!   reserved and never handed out are places nobody holds: they count as
//!   shopping for the grace only.
//!
//! Replicated size: O(live rounds + admitted shoppers), independent of how
//! many fans joined.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::view::{FanPlace, WaitingRoomView};

/// Highest position a block may end at: far beyond any crowd, low enough
/// that sums of places never overflow.
pub const QUEUE_POSITION_MAX: u64 = 1 << 48;

/// One admission round: places below `upto_places` are admitted by it or an
/// earlier round; its admissions lapse at `until_ms` (log time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Round {
    pub upto_places: u64,
    pub until_ms: u64,
    /// Until then the round's places all count as shopping; after it, only
    /// its fans who acted (see [`admit_grace_ms`]).
    pub grace_until_ms: u64,
    /// Places this round admitted.
    pub admitted: u32,
    /// Its fans who held (recorded as shoppers).
    pub acted: u32,
    /// Of those, the ones who confirmed or left.
    pub finished: u32,
}

impl Round {
    /// Fans of this round still shopping at `clock_ms`.
    fn shopping(&self, clock_ms: u64) -> u32 {
        let counted = if clock_ms < self.grace_until_ms {
            self.admitted.max(self.acted)
        } else {
            self.acted
        };
        counted.saturating_sub(self.finished)
    }
}

/// How long an admitted place counts as shopping before its fan acts: a
/// tenth of the hold window. After it, only fans who held count, so places
/// nobody holds (a fan who went away, a position a gateway never handed
/// out) stop blocking the line long before their admission lapses. The fan
/// keeps the whole window to act; the batch bound then holds for the fans
/// who act within the grace, and the seats stay the hard bound.
pub fn admit_grace_ms(hold_ttl_ms: u64) -> u64 {
    (hold_ttl_ms / 10).max(1)
}

/// An admitted user who has acted (held), until their round lapses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Shopper {
    pub until_ms: u64,
    /// Confirmed a booking or left: no more holds under this admission.
    pub done: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WaitingRoom {
    pub admit_batch: u32,
    /// Key of the pre-queue order; fixed by the first opening.
    pub seed: Option<[u8; 32]>,
    /// The first position no block has reserved yet (positions start at 1).
    pub next_position: u64,
    /// Positions reserved before the first opening: `1..=pre_count`.
    pub pre_count: u64,
    /// The watermark: places below it are admitted.
    pub admitted_places: u64,
    /// Places below it were admitted by rounds that have lapsed.
    pub lapsed_places: u64,
    /// Live rounds, oldest first (strictly increasing `until_ms`).
    pub rounds: VecDeque<Round>,
    /// Admitted users who acted, until their round lapses.
    pub shoppers: BTreeMap<String, Shopper>,
}

/// Why a (user, position) may not hold now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not admitted yet (or not a position this room handed out).
    NotYet,
    /// Admitted once, and that admission's window has passed.
    Lapsed,
    /// This user's admission ended (they confirmed or left).
    Done,
}

impl WaitingRoom {
    pub fn new(admit_batch: u32) -> WaitingRoom {
        WaitingRoom {
            admit_batch,
            seed: None,
            next_position: 1,
            pre_count: 0,
            admitted_places: 0,
            lapsed_places: 0,
            rounds: VecDeque::new(),
            shoppers: BTreeMap::new(),
        }
    }

    /// Reserves `count` positions; returns the first, or None when the room
    /// would pass [`QUEUE_POSITION_MAX`].
    pub fn reserve(&mut self, count: u32) -> Option<u64> {
        let first = self.next_position;
        let end = first.checked_add(count as u64)?;
        if end > QUEUE_POSITION_MAX {
            return None;
        }
        self.next_position = end;
        Some(first)
    }

    /// The first opening: fixes the pre-queue key and its size. Returns the
    /// number of pre-queue positions.
    pub fn open(&mut self, seed: [u8; 32]) -> u64 {
        if self.seed.is_none() {
            self.seed = Some(seed);
            self.pre_count = self.next_position - 1;
        }
        self.pre_count
    }

    /// Fans shopping at `clock_ms` (see [`Round`]).
    pub fn shopping(&self, clock_ms: u64) -> u32 {
        self.rounds
            .iter()
            .fold(0u32, |n, r| n.saturating_add(r.shopping(clock_ms)))
    }

    /// The next end of a round's grace after `clock_ms`: admission may
    /// resume then.
    pub fn next_grace_end_ms(&self, clock_ms: u64) -> Option<u64> {
        self.rounds
            .iter()
            .map(|r| r.grace_until_ms)
            .filter(|&g| g > clock_ms)
            .min()
    }

    /// Places handed out so far (admission never passes them).
    fn places(&self) -> u64 {
        if self.seed.is_some() {
            self.next_position - 1
        } else {
            0
        }
    }

    /// Places that may be admitted at `clock_ms`, given the unsold places.
    pub fn slots(&self, available_units: u32, clock_ms: u64) -> u32 {
        let slots = self
            .admit_batch
            .min(available_units)
            .saturating_sub(self.shopping(clock_ms));
        let left = self.places().saturating_sub(self.admitted_places);
        slots.min(left.min(u32::MAX as u64) as u32)
    }

    /// Raises the watermark by `slots` places, admitted until `until_ms`,
    /// counted as shopping until `grace_until_ms`. One round per lapse time:
    /// a second raise at the same log time joins it.
    pub fn admit(&mut self, slots: u32, until_ms: u64, grace_until_ms: u64) {
        if slots == 0 {
            return;
        }
        self.admitted_places += slots as u64;
        match self.rounds.back_mut() {
            Some(last) if last.until_ms == until_ms => {
                last.upto_places = self.admitted_places;
                last.admitted = last.admitted.saturating_add(slots);
            }
            _ => self.rounds.push_back(Round {
                upto_places: self.admitted_places,
                until_ms,
                grace_until_ms,
                admitted: slots,
                acted: 0,
                finished: 0,
            }),
        }
    }

    /// Folds rounds whose window ended at or before `clock_ms` into
    /// `lapsed_places` and forgets their shoppers' records. Returns whether
    /// anything lapsed.
    pub fn lapse(&mut self, clock_ms: u64) -> bool {
        let mut any = false;
        while let Some(front) = self.rounds.front() {
            if front.until_ms > clock_ms {
                break;
            }
            self.lapsed_places = front.upto_places;
            self.rounds.pop_front();
            any = true;
        }
        if any {
            self.shoppers.retain(|_, s| s.until_ms > clock_ms);
        }
        any
    }

    /// The place in line of `position` (see the module rules), or None for
    /// a position no block handed out.
    pub fn place_of(&self, position: u64) -> Option<u64> {
        place_of(
            self.seed.as_ref(),
            self.pre_count,
            self.next_position,
            position,
        )
    }

    /// May `user` hold now? `Ok(Some(until))`: yes, and the first hold
    /// records them as a shopper until then; `Ok(None)`: yes, under the
    /// admission already recorded.
    pub fn check(
        &self,
        user: &str,
        position: Option<u64>,
        clock_ms: u64,
    ) -> Result<Option<u64>, Refusal> {
        if let Some(s) = self.shoppers.get(user) {
            if s.until_ms > clock_ms {
                return if s.done { Err(Refusal::Done) } else { Ok(None) };
            }
        }
        let position = position.ok_or(Refusal::NotYet)?;
        let place = self.place_of(position).ok_or(Refusal::NotYet)?;
        if place >= self.admitted_places {
            return Err(Refusal::NotYet);
        }
        if place < self.lapsed_places {
            return Err(Refusal::Lapsed);
        }
        match self.round_of(place) {
            Some(r) if r.until_ms > clock_ms => Ok(Some(r.until_ms)),
            _ => Err(Refusal::Lapsed),
        }
    }

    /// The live round that admitted `place` (rounds are ordered by watermark).
    fn round_of(&self, place: u64) -> Option<&Round> {
        let i = self.rounds.partition_point(|r| r.upto_places <= place);
        self.rounds.get(i)
    }

    /// Records `user`'s first hold under an admission lapsing at `until_ms`.
    pub fn record_shopper(&mut self, user: &str, until_ms: u64) {
        if let Some(r) = self.rounds.iter_mut().find(|r| r.until_ms == until_ms) {
            r.acted = r.acted.saturating_add(1);
        }
        self.shoppers.insert(
            user.to_string(),
            Shopper {
                until_ms,
                done: false,
            },
        );
    }

    /// The user confirmed a booking or left: their admission ends and frees
    /// its place for the next round. False if they had no live admission.
    pub fn finish(&mut self, user: &str, clock_ms: u64) -> bool {
        let Some(s) = self.shoppers.get_mut(user) else {
            return false;
        };
        if s.done || s.until_ms <= clock_ms {
            return false;
        }
        s.done = true;
        let until = s.until_ms;
        if let Some(r) = self.rounds.iter_mut().find(|r| r.until_ms == until) {
            r.finished = r.finished.saturating_add(1);
        }
        true
    }

    /// Places not yet admitted (joined and waiting, or handed out and unused).
    pub fn waiting_len(&self) -> u64 {
        self.next_position - 1 - self.admitted_places.min(self.next_position - 1)
    }

    pub fn view(&self, event_id: &str, hold_ttl_ms: u64, clock_ms: u64) -> WaitingRoomView {
        let shopping = self.shopping(clock_ms);
        WaitingRoomView {
            event_id: event_id.to_string(),
            admit_batch: self.admit_batch,
            hold_ttl_ms,
            clock_ms,
            seed: self.seed,
            next_position: self.next_position,
            pre_count: self.pre_count,
            admitted_places: self.admitted_places,
            lapsed_places: self.lapsed_places,
            rounds: self
                .rounds
                .iter()
                .map(|r| (r.upto_places, r.until_ms))
                .collect(),
            shopping,
            shoppers: self.shoppers.len() as u64,
        }
    }
}

/// The place in line of a token's position: the rule shared by the state
/// machine and every gateway (which computes it from a token and a stale
/// view, without a cluster call). None for a position no block handed out.
pub fn place_of(
    seed: Option<&[u8; 32]>,
    pre_count: u64,
    next_position: u64,
    position: u64,
) -> Option<u64> {
    if position == 0 || position >= next_position {
        return None;
    }
    match seed {
        // Before the opening every position is in the unordered pre-queue.
        None => Some(0),
        Some(seed) if position <= pre_count => Some(pre_queue_place(seed, pre_count, position)),
        Some(_) => Some(position - 1),
    }
}

/// Feistel rounds of the pre-queue permutation.
const PERMUTATION_ROUNDS: u8 = 8;
/// The smallest domain (in bits) the permutation walks.
const PERMUTATION_BITS_MIN: u32 = 8;

/// A pre-queue position's place: a keyed pseudo-random permutation of
/// `0..pre_count` (an 8-round Feistel network over the smallest even power
/// of two that holds it, keyed by the opening's seed, cycle-walked back
/// into range). A bijection: every place holds exactly one position, so a
/// round admits exactly the fans it counts, and the order is a uniformly
/// scrambled one nobody can pick before the opening.
pub fn pre_queue_place(seed: &[u8; 32], pre_count: u64, position: u64) -> u64 {
    debug_assert!((1..=pre_count).contains(&position));
    // At least 8 bits: a Feistel network over a tiny domain is measurably
    // far from uniform (the fairness test caught 4 bits); cycle-walking a
    // small pre-queue through 256 values costs microseconds.
    let bits = (64 - (pre_count - 1).leading_zeros())
        .max(PERMUTATION_BITS_MIN)
        .div_ceil(2)
        * 2;
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let permute = |x: u64| {
        let (mut left, mut right) = (x >> half, x & mask);
        for round in 0..PERMUTATION_ROUNDS {
            let mut input = [0u8; 9];
            input[0] = round;
            input[1..].copy_from_slice(&right.to_le_bytes());
            let h = blake3::keyed_hash(seed, &input);
            let f = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) & mask;
            (left, right) = (right, left ^ f);
        }
        (left << half) | right
    };
    let mut x = permute(position - 1);
    // The domain is under max(4 × pre_count, 256): a few steps.
    while x >= pre_count {
        x = permute(x);
    }
    x
}

/// Where a token stands in a room, as a fan sees it.
pub fn fan_place(view: &WaitingRoomView, position: u64) -> FanPlace {
    let Some(place) = place_of(
        view.seed.as_ref(),
        view.pre_count,
        view.next_position,
        position,
    ) else {
        return FanPlace::Unknown;
    };
    if view.seed.is_none() {
        return FanPlace::PendingShuffle;
    }
    if place >= view.admitted_places {
        return FanPlace::Waiting {
            ahead: place - view.admitted_places,
        };
    }
    if place < view.lapsed_places {
        return FanPlace::Lapsed;
    }
    let i = view.rounds.partition_point(|r| r.0 <= place);
    match view.rounds.get(i) {
        Some(&(_, until_ms)) if until_ms > view.clock_ms => FanPlace::Admitted { until_ms },
        _ => FanPlace::Lapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_stop_at_the_position_bound_without_moving() {
        // Goal: a block that would pass QUEUE_POSITION_MAX is refused and
        // reserves nothing; one that ends exactly there is granted.
        let mut room = WaitingRoom::new(10);
        room.next_position = QUEUE_POSITION_MAX - 5;
        assert_eq!(room.reserve(6), None);
        assert_eq!(room.next_position, QUEUE_POSITION_MAX - 5);
        assert_eq!(room.reserve(5), Some(QUEUE_POSITION_MAX - 5));
        assert_eq!(room.reserve(1), None);
    }

    #[test]
    fn places_put_the_pre_queue_first_then_positions_in_order() {
        // Goal: pre-queue positions map one to one onto 0..pre_count (for
        // every size, odd or even bit widths); later positions follow in
        // order; unknown positions have no place.
        let seed = [7u8; 32];
        for n in [1u64, 2, 3, 5, 100, 1_000, 4_097] {
            let mut seen = vec![false; n as usize];
            for pos in 1..=n {
                let place = place_of(Some(&seed), n, n + 51, pos).unwrap();
                assert!(!seen[place as usize], "n={n}: place {place} twice");
                seen[place as usize] = true;
            }
        }
        let p = |pos| place_of(Some(&seed), 100, 151, pos);
        assert_eq!(p(101), Some(100));
        assert_eq!(p(150), Some(149));
        assert_eq!(p(151), None);
        assert_eq!(p(0), None);
    }
}
