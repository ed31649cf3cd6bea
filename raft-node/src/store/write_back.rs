//! BUG (fault-injection-bugs, ack-without-flush): appended entries and the
//! committed id kept in this process and acknowledged to openraft at once;
//! they reach sled only when the wall clock enters a new 5 s period
//! (`WRITE_BACK_PERIOD_MS`, aligned, so every node of a cluster loses the
//! same stretch), or at a clean shutdown. A `kill -9` of every node loses the
//! acknowledged, committed tail since the last boundary on all of them. The
//! vote stays durable: the restarted nodes are a working Raft cluster that has
//! quietly forgotten entries, not one that trips openraft's own assertions.
//! Caught by the selftest's register x kill case (`ids_issued_once`,
//! `no_resurrections`, "linearizable per seat",
//! `acknowledged_bookings_present`).
//!
//! Owns: the in-process buffer and its write-back. The log store
//! ([`super::log`]) calls [`WriteBack`] at every step unconditionally; with
//! the cargo feature `fault-injection-bugs` and the bug chosen at start
//! (`BOOKING_FAULT_BUG=ack-without-flush`), the buffer takes over, and
//! otherwise every call hands the work back to the store.
//!
//! Must not: exist in a normal build. Without the feature [`WriteBack`] is a
//! type with no fields whose methods say "not kept" and do nothing, so the
//! store's log path reads the same in both builds and the compiler removes
//! the calls.

#[cfg(feature = "fault-injection-bugs")]
pub(super) use buffered::WriteBack;
#[cfg(not(feature = "fault-injection-bugs"))]
pub(super) use off::WriteBack;

/// The bug itself (feature `fault-injection-bugs` only).
#[cfg(feature = "fault-injection-bugs")]
mod buffered {
    use std::collections::BTreeMap;
    use std::ops::RangeBounds;
    use std::sync::{Mutex, MutexGuard};

    use crate::bugs::Bug;
    use crate::store::{encode, sto_read_err, GroupId, KEY_COMMITTED, TREE_LOG};
    use crate::types::{Entry, LogId, StorageError};

    /// How often the buffer reaches sled: at each wall-clock boundary of this
    /// period.
    const WRITE_BACK_PERIOD_MS: u64 = 5_000;

    /// The buffer, when the bug is active, and the trees it writes back to.
    pub struct WriteBack {
        /// `Some` only when `ack-without-flush` was chosen at start.
        buffer: Option<Mutex<Buffer>>,
        log: sled::Tree,
        meta: sled::Tree,
        /// Whose keys the write-back uses.
        group: GroupId,
    }

    #[derive(Default)]
    struct Buffer {
        /// Encoded entries by index, not yet in the `log` tree.
        entries: BTreeMap<u64, Vec<u8>>,
        /// A committed id not yet in the `meta` tree (`Some(None)`: a removal).
        committed: Option<Option<LogId>>,
        /// The period of the last write-back.
        period: u64,
    }

    impl WriteBack {
        /// Active only when the bug was chosen at start.
        pub fn new(log: &sled::Tree, meta: &sled::Tree, group: GroupId) -> WriteBack {
            WriteBack {
                buffer: crate::bugs::active(Bug::AckWithoutFlush).then(Default::default),
                log: log.clone(),
                meta: meta.clone(),
                group,
            }
        }

        fn buffer(&self) -> Option<MutexGuard<'_, Buffer>> {
            let m = self.buffer.as_ref()?;
            Some(m.lock().unwrap_or_else(|p| p.into_inner()))
        }

        /// Takes encoded `(index, entry)` pairs into the buffer when active
        /// (`None`: kept, the caller acknowledges them at once); otherwise
        /// hands them back for the caller to write and flush.
        pub fn keep_entries(&self, entries: Vec<(u64, Vec<u8>)>) -> Option<Vec<(u64, Vec<u8>)>> {
            let Some(mut wb) = self.buffer() else {
                return Some(entries);
            };
            wb.entries.extend(entries);
            None
        }

        /// Keeps the committed id with the entries it covers, when active.
        pub fn keep_committed(&self, committed: Option<LogId>) -> bool {
            let Some(mut wb) = self.buffer() else {
                return false;
            };
            wb.committed = Some(committed);
            true
        }

        /// The committed id waiting in the buffer, if any.
        pub fn committed(&self) -> Option<Option<LogId>> {
            self.buffer().and_then(|wb| wb.committed)
        }

        /// The id of the newest buffered entry: the buffer is the newest part
        /// of the log.
        pub fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
            let Some(bytes) = self
                .buffer()
                .and_then(|wb| wb.entries.last_key_value().map(|(_, b)| b.clone()))
            else {
                return Ok(None);
            };
            let entry: Entry = postcard::from_bytes(&bytes)
                .map_err(|e| sto_read_err(format!("buffered entry does not decode: {e}")))?;
            Ok(Some(entry.log_id))
        }

        /// Reads see the buffer: it holds the entries after sled's, or
        /// replaces them.
        pub fn overlay<RB: RangeBounds<u64>>(
            &self,
            out: Vec<Entry>,
            range: &RB,
        ) -> Result<Vec<Entry>, StorageError> {
            let Some(wb) = self.buffer() else {
                return Ok(out);
            };
            let mut all: BTreeMap<u64, Entry> =
                out.into_iter().map(|e| (e.log_id.index, e)).collect();
            for (&index, bytes) in &wb.entries {
                if range.contains(&index) {
                    let entry: Entry = postcard::from_bytes(bytes).map_err(|e| {
                        sto_read_err(format!("buffered entry {index} does not decode: {e}"))
                    })?;
                    all.insert(index, entry);
                }
            }
            Ok(all.into_values().collect())
        }

        /// Drops buffered entries from `index` on (a truncation).
        pub fn truncate(&self, index: u64) {
            if let Some(mut wb) = self.buffer() {
                wb.entries.retain(|&i, _| i < index);
            }
        }

        /// Drops buffered entries up to `index` (a purge).
        pub fn purge(&self, index: u64) {
            if let Some(mut wb) = self.buffer() {
                wb.entries.retain(|&i, _| i > index);
            }
        }

        /// Moves the buffer into sled (no flush: the OS keeps it past a
        /// process kill) when a new period began, or now if `force`. Entries
        /// first, then the committed id, so a kill in between never leaves a
        /// committed id past the log.
        pub fn write_back(&self, force: bool) -> Result<(), String> {
            let Some(mut wb) = self.buffer() else {
                return Ok(());
            };
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let period = now_ms / WRITE_BACK_PERIOD_MS;
            if !force && period == wb.period {
                return Ok(());
            }
            wb.period = period;
            let mut batch = sled::Batch::default();
            for (index, bytes) in std::mem::take(&mut wb.entries) {
                batch.insert(self.group.log_key(index), bytes);
            }
            self.log
                .apply_batch(batch)
                .map_err(|e| format!("sled write of tree {TREE_LOG}: {e}"))?;
            match wb.committed.take() {
                Some(Some(c)) => {
                    self.meta
                        .insert(self.group.record_key(KEY_COMMITTED), encode(&c)?)
                        .map_err(|e| format!("sled write: {e}"))?;
                }
                Some(None) => {
                    self.meta
                        .remove(self.group.record_key(KEY_COMMITTED))
                        .map_err(|e| format!("sled write: {e}"))?;
                }
                None => {}
            }
            Ok(())
        }
    }
}

/// A normal build: nothing is ever kept, every call hands the work back.
#[cfg(not(feature = "fault-injection-bugs"))]
mod off {
    use std::ops::RangeBounds;

    use crate::store::GroupId;
    use crate::types::{Entry, LogId, StorageError};

    /// Holds nothing.
    pub struct WriteBack;

    impl WriteBack {
        pub fn new(_log: &sled::Tree, _meta: &sled::Tree, _group: GroupId) -> WriteBack {
            WriteBack
        }

        pub fn keep_entries(&self, entries: Vec<(u64, Vec<u8>)>) -> Option<Vec<(u64, Vec<u8>)>> {
            Some(entries)
        }

        pub fn keep_committed(&self, _committed: Option<LogId>) -> bool {
            false
        }

        pub fn committed(&self) -> Option<Option<LogId>> {
            None
        }

        pub fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
            Ok(None)
        }

        pub fn overlay<RB: RangeBounds<u64>>(
            &self,
            out: Vec<Entry>,
            _range: &RB,
        ) -> Result<Vec<Entry>, StorageError> {
            Ok(out)
        }

        pub fn truncate(&self, _index: u64) {}

        pub fn purge(&self, _index: u64) {}

        pub fn write_back(&self, _force: bool) -> Result<(), String> {
            Ok(())
        }
    }
}
