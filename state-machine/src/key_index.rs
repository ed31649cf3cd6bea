//! The exactly-once table's key index: `(client_id, request_id)` → sequence number.
//!
//! Owns: [`KeyIndex`], a hash index split into [`SHARDS`] maps with a fixed,
//! seedless hasher (`rustc-hash`). Must not: be iterated into anything a
//! result, snapshot or hash sees (it offers no iteration at all), or be
//! serialized: it is derived from the table's entries and rebuilt on restore.
//!
//! Why not a `BTreeMap`: with millions of remembered requests every lookup
//! walked five or six tree levels of cold memory, and a `get` plus an `insert`
//! per request was about 40% of applying a simple hold (perf, 2 000 000
//! holds). A hash lookup touches one or two cache lines. Why shards: a single
//! hash map doubles all at once, copying every key in one apply (tens of
//! milliseconds at millions of entries, a stall for every client); each shard
//! holds about 1/`SHARDS` of the keys, so one growth step copies only that.
//! Lookups are deterministic (no random seed) and the order of keys never
//! leaves this module, so replicas cannot diverge through it.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

/// Number of independent maps; a power of two.
const SHARDS: usize = 64;

type Key = (u64, u64);

/// `PartialEq` compares contents (order-free); `Debug` is written by hand
/// and prints no keys, since a derived one would walk the maps in their
/// iteration order: the only way that order could have left this module.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyIndex {
    // A hash map by design (see the module doc): lookups only; its order is
    // never iterated, serialized, hashed or printed.
    shards: Vec<HashMap<Key, u64, FxBuildHasher>>,
    len: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            shards: (0..SHARDS).map(|_| HashMap::default()).collect(),
            len: 0,
        }
    }
}

impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex")
            .field("len", &self.len)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// The shard of a key: a multiplicative mix independent of the map's own
/// hash, so keys in one shard still spread over that shard's buckets.
fn shard(key: &Key) -> usize {
    let mixed = (key.0 ^ key.1.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - SHARDS.trailing_zeros())) as usize
}

impl KeyIndex {
    pub fn get(&self, key: &Key) -> Option<&u64> {
        self.shards[shard(key)].get(key)
    }

    /// Inserts or replaces; returns the previous sequence number.
    pub fn insert(&mut self, key: Key, seq: u64) -> Option<u64> {
        let previous = self.shards[shard(&key)].insert(key, seq);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    pub fn remove(&mut self, key: &Key) -> Option<u64> {
        let removed = self.shards[shard(key)].remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    pub fn contains_key(&self, key: &Key) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl FromIterator<(Key, u64)> for KeyIndex {
    fn from_iter<I: IntoIterator<Item = (Key, u64)>>(iter: I) -> Self {
        let mut index = KeyIndex::default();
        for (key, seq) in iter {
            index.insert(key, seq);
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Insert, replace, remove and lookups agree with a plain map, and the
    /// count stays true, across keys that land in every shard.
    #[test]
    fn behaves_like_a_map() {
        let mut index = KeyIndex::default();
        let mut model = std::collections::BTreeMap::new();
        for i in 0..10_000u64 {
            let key = (i % 97, i * 7);
            assert_eq!(index.insert(key, i), model.insert(key, i));
        }
        assert!(index.shards.iter().all(|s| !s.is_empty()));
        for i in (0..10_000u64).step_by(3) {
            let key = (i % 97, i * 7);
            assert_eq!(index.remove(&key), model.remove(&key));
            assert_eq!(index.remove(&key), None);
        }
        assert_eq!(index.len(), model.len());
        assert_eq!(
            format!("{index:?}"),
            format!("KeyIndex {{ len: {}, shards: {SHARDS} }}", model.len()),
            "Debug shows no keys, so no map order"
        );
        for i in 0..10_000u64 {
            let key = (i % 97, i * 7);
            assert_eq!(index.get(&key), model.get(&key));
        }
    }
}
