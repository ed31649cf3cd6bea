//! Snapshots and the replica state hash.
//!
//! Owns: the byte format of a snapshot and its verification. Must not: write
//! files (raft-node stores the bytes) or include derived indexes.
//!
//! Format (all integers little-endian):
//! ```text
//! magic    8 bytes  b"BKSMSNAP"
//! version  u32      SNAPSHOT_VERSION
//! length   u64      payload length
//! payload  postcard encoding of BookingState (BTreeMaps, Vecs, VecDeques
//!          only: canonical, no hash-map order; derived indexes skipped)
//! checksum 32 bytes blake3 of everything before it
//! ```
//! Version 2 added the first-applied log index to each remembered request
//! outcome (the dedupe table). Version 1 snapshots still restore: their
//! remembered outcomes get index 0 ("not known"), and a retry answered from
//! one reports its own entry's index, as version 1 builds did.
//! Version 3 added the charge a hold's payment is bound to (`Hold::payment`)
//! and a fingerprint of each remembered request's command (so the same ids
//! with another command are refused, not answered with the first outcome).
//! Versions 1 and 2 still restore: their holds have no bound charge and
//! their remembered requests fingerprint 0 ("not known": any command gets
//! the remembered outcome, as before).
//!
//! Version 4 replaced the waiting room's record per fan with its watermark,
//! rounds and shoppers (`legacy_queue` converts older rooms).
//!
//! How an older version decodes: [`decoding_version`] says which version is
//! being read (a thread-local set by `restore` for the length of the
//! decode); a field added in version N is read with [`since_v3`]-style
//! functions that return the default without consuming any input when the
//! snapshot is older. postcard encodes fields by position without names or
//! lengths, so "not consuming" is exactly "the field was not there".
//! [`SavedCopy`] is a copy of the saved fields only (no derived indexes, no
//! dedupe key index), taken under the node's state lock so the encoding and
//! hashing can run after the lock is released, on another thread; its bytes
//! and hash are the state's own (the skipped fields are never encoded).
//! `state_hash()` is blake3 of the payload alone, so two replicas that applied
//! the same log have equal hashes. Restore verifies magic, version, length and
//! checksum, decodes, rebuilds the derived indexes and then checks every
//! invariant, refusing a snapshot that decodes into an inconsistent state.

use crate::error::SnapshotError;
use crate::state::BookingState;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BKSMSNAP";
pub const SNAPSHOT_VERSION: u32 = 4;
/// The oldest version [`BookingState::restore`] still reads.
pub const SNAPSHOT_VERSION_MIN: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8;
const CHECKSUM_LEN: usize = 32;

thread_local! {
    /// The snapshot version being decoded on this thread; the current one
    /// outside `restore`.
    static DECODING_VERSION: std::cell::Cell<u32> = const { std::cell::Cell::new(SNAPSHOT_VERSION) };
}

/// The snapshot version being decoded on this thread (the current version
/// when no restore is running).
pub(crate) fn decoding_version() -> u32 {
    DECODING_VERSION.with(std::cell::Cell::get)
}

/// Decodes as `version` for as long as it lives.
struct DecodingVersion(u32);

impl DecodingVersion {
    fn set(version: u32) -> DecodingVersion {
        DecodingVersion(DECODING_VERSION.with(|v| v.replace(version)))
    }
}

impl Drop for DecodingVersion {
    fn drop(&mut self) {
        DECODING_VERSION.with(|v| v.set(self.0));
    }
}

/// `deserialize_with` of a field added in snapshot version 3: its default,
/// consuming nothing, when an older snapshot is decoded.
pub(crate) fn since_v3<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    if decoding_version() < 3 {
        return Ok(T::default());
    }
    T::deserialize(d)
}

/// A copy of a state's saved fields, for encoding a snapshot or hashing
/// away from the state (see the module doc). It cannot apply or answer
/// anything: it has only [`SavedCopy::snapshot`] and [`SavedCopy::state_hash`].
#[derive(Clone, Debug)]
pub struct SavedCopy(BookingState);

impl SavedCopy {
    /// The same bytes as [`BookingState::snapshot`] of the copied state.
    pub fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot()
    }

    /// The same hash as [`BookingState::state_hash`] of the copied state.
    pub fn state_hash(&self) -> [u8; 32] {
        self.0.state_hash()
    }

    /// Both, encoding the state once: the snapshot bytes and the state hash.
    pub fn snapshot_and_hash(&self) -> (Vec<u8>, [u8; 32]) {
        let bytes = self.0.snapshot();
        let hash = *blake3::hash(&bytes[HEADER_LEN..bytes.len() - CHECKSUM_LEN]).as_bytes();
        (bytes, hash)
    }
}

impl BookingState {
    /// Copies the saved fields (everything a snapshot encodes), leaving the
    /// derived indexes out: cheaper than `clone`, which also copies them.
    pub fn saved_copy(&self) -> SavedCopy {
        SavedCopy(BookingState {
            settings: self.settings.clone(),
            applied_index: self.applied_index,
            clock_ms: self.clock_ms,
            events: self.events.clone(),
            event_by_id: self.event_by_id.clone(),
            holds: self.holds.clone(),
            bookings: self.bookings.clone(),
            tickets: self.tickets.clone(),
            next_hold_id: self.next_hold_id,
            next_booking_id: self.next_booking_id,
            next_ticket_id: self.next_ticket_id,
            next_outbox_id: self.next_outbox_id,
            dedupe: self.dedupe.saved_copy(),
            webhooks: self.webhooks.clone(),
            outbox: self.outbox.clone(),
            outbox_dropped: self.outbox_dropped,
            forget: self.forget.clone(),
            derived: Default::default(),
        })
    }

    /// The canonical encoding of the replicated state.
    fn payload(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("encoding in-memory state to postcard cannot fail")
    }

    /// Deterministic bytes (no hash-map order) with a checksum.
    pub fn snapshot(&self) -> Vec<u8> {
        let payload = self.payload();
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + CHECKSUM_LEN);
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&payload);
        let checksum = blake3::hash(&out);
        out.extend_from_slice(checksum.as_bytes());
        out
    }

    /// Verifies and decodes a snapshot made by [`BookingState::snapshot`].
    pub fn restore(bytes: &[u8]) -> Result<BookingState, SnapshotError> {
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(SnapshotError::TooShort { len: bytes.len() });
        }
        if &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(SNAPSHOT_VERSION_MIN..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnsupportedVersion {
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let declared = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let actual = (bytes.len() - HEADER_LEN - CHECKSUM_LEN) as u64;
        if declared != actual {
            return Err(SnapshotError::LengthMismatch { declared, actual });
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(body).as_bytes() != checksum {
            return Err(SnapshotError::ChecksumMismatch);
        }
        let decoded = {
            let _version = DecodingVersion::set(version);
            postcard::from_bytes::<BookingState>(&body[HEADER_LEN..])
        };
        let mut state = decoded.map_err(|e| SnapshotError::Decode(e.to_string()))?;
        state.rebuild_indexes_checked()?;
        Ok(state)
    }

    /// blake3 of the canonical state bytes, for comparing replicas.
    pub fn state_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.payload()).as_bytes()
    }

    fn rebuild_indexes_checked(&mut self) -> Result<(), SnapshotError> {
        // Layout rebuilding asserts the seat array matches the spec; check
        // that first so a bad snapshot is an error, not a panic.
        for ev in &self.events {
            let seats: u64 = ev
                .spec
                .sections
                .iter()
                .filter(|s| matches!(s, crate::spec::SectionSpec::Reserved { .. }))
                .map(|s| s.capacity())
                .sum();
            if seats != ev.seats.len() as u64 || ev.counters.len() != ev.spec.sections.len() {
                return Err(SnapshotError::Invariant(format!(
                    "event {}: seat array does not match its spec",
                    ev.id
                )));
            }
        }
        self.rebuild_indexes();
        self.check_invariants().map_err(SnapshotError::Invariant)
    }
}
