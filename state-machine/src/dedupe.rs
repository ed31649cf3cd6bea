//! Bounded memories of what was already done: request results and webhook ids.
//!
//! Owns: the `(client_id, request_id)` → first `Outcome` (and the log index
//! of the entry that first applied it) table that makes retries exactly-once,
//! and the table of payment-provider webhook event ids.
//! Must not: let a hash map's order reach anything (the key index is a hash
//! index that offers no iteration, `crate::key_index`) or read a clock
//! (entries are stamped with log time, `clock_ms`).
//!
//! Bounds: the request table never drops an outcome on its own. It shrinks
//! only by [`RequestTable::forget_before`], which the replicated
//! `ForgetRequests` command runs with a cut-off a leader chose by its own
//! monotonic clock (`crate::forgetting`); when it holds
//! `dedupe_max_entries` live outcomes, the state machine refuses new
//! requests (`overloaded`) instead of evicting one. Entries are kept in
//! insertion order, which is also non-decreasing log time (the clock never
//! goes back), so forgetting drops from the front. The webhook table still
//! ages in log time and drops its oldest when full: a redelivered webhook
//! outside its window is re-checked by the gateway against the hold.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Deserializer, Serialize};

use crate::command::{Command, Outcome};
use crate::error::BookingError;
use crate::key_index::KeyIndex;

/// Remembered request results. Outcomes are stored postcard-encoded in one
/// byte ring (no allocation per entry, ~40 bytes instead of a 208-byte
/// `Outcome` plus its heap parts) and decoded only when a duplicate arrives.
/// Entries are ordered by insertion (= log time); an ordered index finds a key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RequestTable {
    /// Oldest first; `entries[i]` has sequence number `first_seq + i`.
    entries: VecDeque<Remembered>,
    first_seq: u64,
    /// Encoded outcomes of `entries`, back to back, oldest first.
    bytes: VecDeque<u8>,
    /// (client_id, request_id) → sequence number. Derived from `entries`
    /// (rebuilt on restore, never serialized, never iterated: see
    /// `crate::key_index`), so its order cannot reach results, snapshots or
    /// hashes.
    #[serde(skip)]
    index: KeyIndex,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
struct Remembered {
    at_ms: u64,
    client_id: u64,
    request_id: u64,
    /// Length of the encoded outcome in `bytes`.
    len: u32,
    /// Log index of the entry that first applied the request; 0 when not
    /// known (remembered in a snapshot of format 1, which did not carry it).
    index: u64,
    /// [`fingerprint`] of the command first applied under these ids; 0 when
    /// not known (remembered in a snapshot before format 3).
    fingerprint: u64,
}

/// Stack space for encoding one command without a heap allocation: a simple
/// hold takes well under 200 bytes; anything larger takes the heap path,
/// which encodes the same bytes.
const SCRATCH_BYTES: usize = 512;

/// A 64-bit digest of a command (blake3 of its postcard bytes), never 0, so
/// a repeat of the same ids can be told from a reuse for another command.
pub(crate) fn fingerprint(command: &Command) -> u64 {
    let mut scratch = [0u8; SCRATCH_BYTES];
    let hash = match postcard::to_slice(command, &mut scratch) {
        Ok(bytes) => blake3::hash(bytes),
        // Larger than the scratch (an event spec): the same bytes, on the heap.
        Err(_) => blake3::hash(&postcard::to_stdvec(command).unwrap_or_default()),
    };
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_le_bytes(first).max(1)
}

/// A postcard output that appends the encoded bytes to the byte ring, a
/// slice at a time (postcard's own `ExtendFlavor` pushes byte by byte).
struct RingFlavor<'a>(&'a mut VecDeque<u8>);

impl postcard::ser_flavors::Flavor for RingFlavor<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push_back(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// `Remembered` as snapshot format 1 wrote it.
#[derive(Deserialize)]
struct RememberedFormat1 {
    at_ms: u64,
    client_id: u64,
    request_id: u64,
    len: u32,
}

/// `Remembered` as snapshot formats 2 and later write it (the fingerprint
/// from format 3 on).
#[derive(Deserialize)]
struct RememberedFormat2 {
    at_ms: u64,
    client_id: u64,
    request_id: u64,
    len: u32,
    index: u64,
    #[serde(deserialize_with = "crate::snapshot::since_v3")]
    fingerprint: u64,
}

impl<'de> Deserialize<'de> for Remembered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if crate::snapshot::decoding_version() == 1 {
            let r = RememberedFormat1::deserialize(d)?;
            return Ok(Remembered {
                at_ms: r.at_ms,
                client_id: r.client_id,
                request_id: r.request_id,
                len: r.len,
                index: 0,
                fingerprint: 0,
            });
        }
        let r = RememberedFormat2::deserialize(d)?;
        Ok(Remembered {
            at_ms: r.at_ms,
            client_id: r.client_id,
            request_id: r.request_id,
            len: r.len,
            index: r.index,
            fingerprint: r.fingerprint,
        })
    }
}

impl RequestTable {
    /// The first outcome of this request and the log index of the entry that
    /// applied it (0: not known, see `Remembered::index`), if remembered.
    /// When the ids were first used for a different command, the answer is
    /// `request_reused` (index 0: decided by this entry) and the first
    /// outcome stays remembered.
    pub fn get(
        &self,
        client_id: u64,
        request_id: u64,
        command: &Command,
    ) -> Option<(Outcome, u64)> {
        let seq = *self.index.get(&(client_id, request_id))?;
        let i = (seq - self.first_seq) as usize;
        let e = &self.entries[i];
        if e.fingerprint != 0 && e.fingerprint != fingerprint(command) {
            return Some((
                Err(BookingError::RequestReused {
                    client_id,
                    request_id,
                }),
                0,
            ));
        }
        Some((self.decode_at(i), e.index))
    }

    fn decode_at(&self, i: usize) -> Outcome {
        // Offsets are found by walking lengths from the nearer end, so a hit
        // costs at most half the table in the worst case; hits are rare
        // (retries), misses never walk.
        let (front_len, back_len) = (i, self.entries.len() - i);
        let start = if front_len <= back_len {
            self.entries
                .range(..i)
                .map(|e| e.len as usize)
                .sum::<usize>()
        } else {
            self.bytes.len()
                - self
                    .entries
                    .range(i..)
                    .map(|e| e.len as usize)
                    .sum::<usize>()
        };
        let len = self.entries[i].len as usize;
        let encoded: Vec<u8> = self.bytes.range(start..start + len).copied().collect();
        postcard::from_bytes(&encoded)
            .expect("a remembered outcome decodes (it was encoded by this build)")
    }

    /// Remembers `outcome` of `command`, decided by the entry at log `index`.
    /// The caller checks the count bound first (a full table refuses; it
    /// never evicts).
    pub fn insert(
        &mut self,
        client_id: u64,
        request_id: u64,
        command: &Command,
        at_ms: u64,
        index: u64,
        outcome: &Outcome,
    ) {
        let seq = self.first_seq + self.entries.len() as u64;
        let previous = self.index.insert((client_id, request_id), seq);
        assert!(
            previous.is_none(),
            "dedupe entry ({client_id}, {request_id}) recorded twice"
        );
        let before = self.bytes.len();
        // Straight into the ring: no intermediate buffer to zero and copy.
        postcard::serialize_with_flavor(outcome, RingFlavor(&mut self.bytes))
            .expect("encoding an outcome cannot fail");
        let len = (self.bytes.len() - before) as u32;
        self.entries.push_back(Remembered {
            at_ms,
            client_id,
            request_id,
            len,
            index,
            fingerprint: fingerprint(command),
        });
    }

    /// Forgets the outcomes recorded at a log time below `before_ms` that are
    /// also `ttl_ms` old by `clock_ms` (both must agree: the cut-off comes
    /// from a leader's monotonic clock, the TTL from log time). Returns how
    /// many were forgotten. Stops at the first entry that must stay, since
    /// entries are in log-time order. Their encoded bytes leave the ring in
    /// one drain at the end rather than one drain per entry (a
    /// `ForgetRequests` may drop hundreds of thousands).
    pub fn forget_before(&mut self, before_ms: u64, clock_ms: u64, ttl_ms: u64) -> u64 {
        let mut removed = 0;
        let mut bytes = 0usize;
        while self
            .entries
            .front()
            .is_some_and(|e| e.at_ms < before_ms && e.at_ms.saturating_add(ttl_ms) <= clock_ms)
        {
            let e = self.entries.pop_front().expect("non-empty");
            self.index.remove(&(e.client_id, e.request_id));
            bytes += e.len as usize;
            self.first_seq += 1;
            removed += 1;
        }
        self.bytes.drain(..bytes);
        removed
    }

    /// Log time of the oldest remembered outcome (the next to forget).
    pub fn oldest_at_ms(&self) -> Option<u64> {
        self.entries.front().map(|e| e.at_ms)
    }

    /// Whether the table is remembering `(client_id, request_id)`.
    pub fn contains(&self, client_id: u64, request_id: u64) -> bool {
        self.index.contains_key(&(client_id, request_id))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The saved part of the table (entries and byte ring), without the key
    /// index: what a snapshot encodes, copied without walking a tree. Not a
    /// table to look anything up in until [`RequestTable::rebuild`].
    pub fn saved_copy(&self) -> RequestTable {
        RequestTable {
            entries: self.entries.clone(),
            first_seq: self.first_seq,
            bytes: self.bytes.clone(),
            index: KeyIndex::default(),
        }
    }

    /// Recomputes the key index after restore.
    pub fn rebuild(&mut self) {
        self.index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((e.client_id, e.request_id), self.first_seq + i as u64))
            .collect();
    }

    pub fn check(&self) -> Result<(), String> {
        if self.index.len() != self.entries.len() {
            return Err(format!(
                "dedupe: {} keys but {} entries (a key twice?)",
                self.index.len(),
                self.entries.len()
            ));
        }
        for (i, e) in self.entries.iter().enumerate() {
            if self.index.get(&(e.client_id, e.request_id)) != Some(&(self.first_seq + i as u64)) {
                return Err("dedupe: index disagrees with entries".into());
            }
        }
        if self.entries.iter().map(|e| e.len as usize).sum::<usize>() != self.bytes.len() {
            return Err("dedupe: encoded lengths disagree with the byte ring".into());
        }
        if self
            .entries
            .iter()
            .zip(self.entries.iter().skip(1))
            .any(|(a, b)| a.at_ms > b.at_ms)
        {
            return Err("dedupe: entries are not in log-time order".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WebhookTable {
    seen: BTreeMap<String, u64>,
    order: VecDeque<(u64, String)>,
}

impl WebhookTable {
    /// Records `id`; true when it was not remembered yet.
    pub fn record(&mut self, id: &str, at_ms: u64, max_entries: u32) -> bool {
        if self.seen.contains_key(id) {
            return false;
        }
        self.seen.insert(id.to_string(), at_ms);
        self.order.push_back((at_ms, id.to_string()));
        self.trim(max_entries);
        true
    }

    pub fn expire(&mut self, clock_ms: u64, ttl_ms: u64) {
        while let Some((at, _)) = self.order.front() {
            if at.saturating_add(ttl_ms) > clock_ms {
                break;
            }
            let (_, id) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&id);
        }
    }

    /// Log time of the oldest remembered id (the next to expire).
    pub fn oldest_at_ms(&self) -> Option<u64> {
        self.order.front().map(|(at, _)| *at)
    }

    pub fn trim(&mut self, max_entries: u32) {
        while self.order.len() > max_entries as usize {
            let (_, id) = self.order.pop_front().expect("non-empty");
            self.seen.remove(&id);
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }
}
