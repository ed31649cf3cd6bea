//! The holds by id: a window of slots indexed by id for recent holds, and an
//! ordered map for the few older ones.
//!
//! Owns: [`HoldTable`], which stores [`Hold`]s by id, answers lookups, and
//! iterates in id order. Must not: decide anything about holds (the rules are
//! in `holds` and `bookings`), or encode differently from the
//! `BTreeMap<u64, Hold>` it replaced: it serializes as that map (same length
//! prefix, same pairs in id order), so snapshot format 4 and the state hash
//! are unchanged (`tests/snapshot.rs` pins a format-4 snapshot byte for byte).
//!
//! Why not a `BTreeMap`: finished holds stay for `hold_retention_ms` (an
//! hour), so the map is the bulk of a busy state and grows by one hold per
//! `Hold`. Ids only grow, so a B-tree fills each leaf to 6 of 11 entries
//! before splitting it and never goes back: about 220 bytes of fresh memory
//! per hold, and in a `perf` profile of the apply bench the kernel zeroing
//! those fresh pages for new leaves was about a tenth of the samples, with
//! the leaf splits and the lookups of expiring holds (five tree levels, the
//! lower ones cold) on top. Here a new hold takes the next slot of a
//! [`CHUNK`]-slot block (one slot, 120 bytes, no split) and a lookup by id is
//! an index.
//!
//! The window covers ids `window_start..window_start + window_len`; every
//! hold in that range is in its slot, every hold below it in `old`. Slots
//! empty out as holds are forgotten; the window's front moves past empty
//! slots, and past confirmed holds (kept forever), which move to `old`. A
//! hold that stays at the front for long (a payment in flight, an extended
//! hold) would keep the window growing behind it while later holds are
//! forgotten, so when more than half of the window (beyond one block) is
//! empty the front hold moves to `old` whatever its state: the window never
//! takes more than twice the memory of the holds in it, plus one block.
//!
//! Caveats: a restored table starts with every hold in `old` (the window
//! fills with holds made after the restore), so its layout differs from the
//! original's; equality compares contents only, like the map's.

use std::collections::{BTreeMap, VecDeque};

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Hold;

/// Slots per block of the window. 1 024 holds of about 120 bytes: a block is
/// one allocation of ~120 KiB, freed whole once its holds are forgotten.
const CHUNK: usize = 1024;

type Block = Box<[Option<Hold>]>;

/// Holds by id, iterated in id order. See the module docs for the layout.
#[derive(Clone, Default)]
pub(crate) struct HoldTable {
    /// Holds with ids below `window_start`: confirmed holds and the holds
    /// that sat at the front of a mostly empty window, plus everything a
    /// snapshot restored.
    old: BTreeMap<u64, Hold>,
    /// The window's slots, [`CHUNK`] per block; slot `head` of the first
    /// block is id `window_start`.
    blocks: VecDeque<Block>,
    /// Offset of the window's first slot in `blocks[0]`.
    head: usize,
    /// Id of the window's first slot; every id in `old` is below it.
    window_start: u64,
    /// Slots in the window (used or empty), from `window_start` on.
    window_len: usize,
    /// Holds in the window (used slots).
    window_count: usize,
}

impl HoldTable {
    pub fn len(&self) -> usize {
        self.old.len() + self.window_count
    }

    /// (block, offset) of `id` when the window covers it.
    fn slot(&self, id: u64) -> Option<(usize, usize)> {
        let rel = id.checked_sub(self.window_start)?;
        if rel >= self.window_len as u64 {
            return None;
        }
        let at = self.head + rel as usize;
        Some((at / CHUNK, at % CHUNK))
    }

    pub fn get(&self, id: u64) -> Option<&Hold> {
        match self.slot(id) {
            Some((b, o)) => self.blocks[b][o].as_ref(),
            None => self.old.get(&id),
        }
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Hold> {
        match self.slot(id) {
            Some((b, o)) => self.blocks[b][o].as_mut(),
            None => self.old.get_mut(&id),
        }
    }

    /// Adds a new hold. Hold ids are counters, so `id` is above every id in
    /// the table; anything else is a programmer error.
    pub fn insert_new(&mut self, id: u64, hold: Hold) {
        let end = self.window_start + self.window_len as u64;
        if self.window_count == 0 {
            // An empty window restarts at `id`, past everything in `old`.
            assert!(
                self.old.last_key_value().is_none_or(|(&k, _)| k < id),
                "hold {id} inserted below an existing hold id"
            );
            self.blocks.clear();
            self.head = 0;
            self.window_start = id;
            self.window_len = 0;
        } else {
            assert!(id >= end, "hold {id} inserted below an existing hold id");
        }
        // Ids skipped (none today: every id is inserted) stay empty slots.
        let new_len = (id - self.window_start) as usize + 1;
        while self.head + new_len > self.blocks.len() * CHUNK {
            self.blocks.push_back(
                (0..CHUNK)
                    .map(|_| None)
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            );
        }
        self.window_len = new_len;
        let (b, o) = self.slot(id).expect("the window now covers id");
        self.blocks[b][o] = Some(hold);
        self.window_count += 1;
        self.trim();
    }

    pub fn remove(&mut self, id: u64) -> Option<Hold> {
        let Some((b, o)) = self.slot(id) else {
            return self.old.remove(&id);
        };
        let hold = self.blocks[b][o].take()?;
        self.window_count -= 1;
        self.trim();
        Some(hold)
    }

    /// Moves the window's front past empty slots and confirmed holds (kept
    /// forever, so they go to `old`), and past any hold while more than half
    /// of the window beyond one block is empty (see the module docs).
    fn trim(&mut self) {
        while self.window_len > 0 {
            let sparse = self.window_len > 2 * self.window_count + CHUNK;
            let front = &mut self.blocks[0][self.head];
            match front {
                None => {}
                Some(h) if sparse || h.status == crate::view::HoldStatus::Confirmed => {
                    let hold = front.take().expect("matched Some");
                    self.old.insert(self.window_start, hold);
                    self.window_count -= 1;
                }
                Some(_) => break,
            }
            self.window_start += 1;
            self.window_len -= 1;
            self.head += 1;
            if self.head == CHUNK {
                self.blocks.pop_front();
                self.head = 0;
            }
        }
        if self.window_len == 0 {
            self.blocks.clear();
            self.head = 0;
        }
    }

    /// The window's slots, in id order from `window_start`.
    fn window_slots(&self) -> impl Iterator<Item = &Option<Hold>> + '_ {
        self.blocks
            .iter()
            .flat_map(|b| b.iter())
            .skip(self.head)
            .take(self.window_len)
    }

    /// Every hold, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Hold)> + '_ {
        let window = self
            .window_slots()
            .zip(self.window_start..)
            .filter_map(|(slot, id)| slot.as_ref().map(|h| (id, h)));
        self.old.iter().map(|(&id, h)| (id, h)).chain(window)
    }

    pub fn values(&self) -> impl Iterator<Item = &Hold> + '_ {
        self.iter().map(|(_, h)| h)
    }

    /// Checks the layout: window bookkeeping agrees with the slots, and
    /// every id in `old` is below the window.
    pub fn check(&self) -> Result<(), String> {
        let used = self.window_slots().filter(|s| s.is_some()).count();
        if used != self.window_count {
            return Err(format!(
                "hold table: {used} holds in the window, counted {}",
                self.window_count
            ));
        }
        if self.head + self.window_len > self.blocks.len() * CHUNK {
            return Err("hold table: window runs past its blocks".into());
        }
        if self.window_len > 0
            && self
                .old
                .last_key_value()
                .is_some_and(|(&k, _)| k >= self.window_start)
        {
            return Err("hold table: an old hold is inside the window".into());
        }
        Ok(())
    }
}

impl PartialEq for HoldTable {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HoldTable {}

/// As the map it replaced prints.
impl std::fmt::Debug for HoldTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// As `BTreeMap<u64, Hold>` encodes: the count, then (id, hold) in id order.
impl Serialize for HoldTable {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (id, hold) in self.iter() {
            map.serialize_entry(&id, hold)?;
        }
        map.end()
    }
}

/// Decoded as `BTreeMap<u64, Hold>`; every hold starts in `old`.
impl<'de> Deserialize<'de> for HoldTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(HoldTable {
            old: BTreeMap::deserialize(d)?,
            ..HoldTable::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::HoldStatus;

    fn hold(id: u64, status: HoldStatus) -> Hold {
        Hold {
            event: 0,
            holder: format!("fan{id}").into(),
            seats: vec![id as u32].into_boxed_slice(),
            ga: None,
            status,
            created_at_ms: id,
            expires_at_ms: id + 1,
            ended_at_ms: None,
            booking_id: None,
            total_cents: id,
            payment: None,
        }
    }

    /// Inserts, removals (in and out of id order), confirmations and
    /// long-lived front holds agree with a `BTreeMap` model: lookups,
    /// length, id-order iteration and the encoding, with the window's
    /// bookkeeping checked and its size bounded throughout.
    #[test]
    fn behaves_like_the_map_it_replaced() {
        let mut table = HoldTable::default();
        let mut model = BTreeMap::new();
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut next_id = 1u64;
        for step in 0..60_000u64 {
            match next(10) {
                0..=4 => {
                    let h = hold(next_id, HoldStatus::Active);
                    table.insert_new(next_id, h.clone());
                    model.insert(next_id, h);
                    next_id += 1;
                }
                5..=7 => {
                    // Mostly the oldest few (expiry order), sometimes any.
                    let span = if next(4) == 0 { next_id } else { 64 };
                    let first = model.keys().next().copied().unwrap_or(1);
                    let id = first + next(span);
                    assert_eq!(table.remove(id), model.remove(&id), "remove {id}");
                }
                8 => {
                    let id = 1 + next(next_id);
                    if let Some(h) = table.get_mut(id) {
                        h.status = HoldStatus::Confirmed;
                        model.get_mut(&id).expect("in both").status = HoldStatus::Confirmed;
                    }
                }
                _ => {
                    let id = 1 + next(next_id + 10);
                    assert_eq!(table.get(id), model.get(&id), "get {id}");
                }
            }
            if step % 997 == 0 {
                table.check().expect("window bookkeeping");
                assert!(table.window_len <= 2 * table.window_count + CHUNK + 1);
                assert_eq!(table.len(), model.len());
                assert!(table.iter().eq(model.iter().map(|(k, v)| (*k, v))));
                assert_eq!(
                    postcard::to_stdvec(&table).unwrap(),
                    postcard::to_stdvec(&model).unwrap(),
                    "encodes as the map"
                );
            }
        }
        let restored: HoldTable =
            postcard::from_bytes(&postcard::to_stdvec(&table).unwrap()).unwrap();
        assert_eq!(restored, table);
        assert_eq!(format!("{restored:?}"), format!("{model:?}"));
    }
}
