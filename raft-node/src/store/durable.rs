//! Making sled's flushed bytes survive a power cut.
//!
//! Owns: [`DiskSync`], the step every store runs after sled's flush and
//! before it acknowledges anything (a log append, the vote, a truncation or
//! a purge); [`DiskSync::flush_and_sync`] runs both. sled 0.34's flush ends in `sync_file_range`
//! on Linux (`pagecache/iobuf.rs`), which writes the data pages but neither
//! an append's new file length nor the disk's cache; its only `sync_all` of
//! the data file runs in the background flusher every 500 ms; and a message
//! over a quarter of its 512 KiB segment (header included, about 128 KiB:
//! `pagecache/logger.rs`, `segment_size / MINIMUM_ITEMS_PER_SEGMENT -
//! SEG_HEADER_LEN`) goes to a file in `blobs/` that sled never fsyncs
//! (`blob_io.rs`). So after each flush, in this order:
//!
//! 1. every file of `sled/blobs/` not synced before: `fsync` (blobs are
//!    written once and never changed), then the `blobs/` directory if any
//!    name is new. Entries and commands are capped well below the blob
//!    threshold (`node::COMMAND_BYTES_MAX`, `ENTRY_BYTES_MAX`), but a whole
//!    sled leaf page (up to 17 values) can still pass it when sled
//!    consolidates, so blobs still appear and must be durable before the
//!    pages that point at them;
//! 2. the `sled/` directory, when its list of names changed since the last
//!    sync (sled's own `snap.*` snapshot renames, `conf`, `blobs/`);
//! 3. `fdatasync` of `sled/db`, through a handle opened at start: the data
//!    and the file length, everything the flushed log records need.
//!
//! A blob written after step 1 belongs to a write that is not acknowledged
//! yet; if a cut leaves the page that points at it without it, sled's
//! recovery treats it as a dangling blob at the torn tail. Everything
//! acknowledged had its blobs synced by its own sync or an earlier one.
//!
//! Must not: decide what to flush (the stores do), or run on an async worker
//! thread (the flush and the fsyncs block: [`DiskSync::flush_and_sync`]
//! runs them on the blocking pool). Costs one `readdir` of `blobs/` and of `sled/` and one
//! `fdatasync` per acknowledged step; syncs of concurrent callers (the log
//! and the state-machine store share one `Db`) run one at a time.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bugs::Bug;
use crate::metrics::Counters;

/// The durable-sync step of one node's sled `Db`.
pub struct DiskSync {
    sled_dir: PathBuf,
    /// `sled/db`, opened once at start (sled keeps its own handle private).
    db_file: File,
    state: Mutex<SyncState>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct SyncState {
    /// Blob files already fsynced (dropped from the set when sled removes them).
    blobs_synced: BTreeSet<OsString>,
    /// The names in `sled/` at the last directory fsync.
    sled_names: Vec<OsString>,
}

fn names(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut v = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                v.push(e?.file_name());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    v.sort();
    Ok(v)
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl DiskSync {
    /// Opens `sled_dir/db` (sled must have created it: call after opening sled).
    pub fn open(sled_dir: &Path, counters: Arc<Counters>) -> Result<DiskSync, String> {
        let db_path = sled_dir.join("db");
        let db_file = File::open(&db_path)
            .map_err(|e| format!("{}: cannot open for fdatasync: {e}", db_path.display()))?;
        // sled rewrites its 62-byte `conf` (segment size, compression,
        // version, crc) at every open and never syncs it: every power cut of
        // the `power-loss` nemesis rolled it back to empty on each node, and
        // sled then reads an empty `conf` as absent ("empty/corrupt
        // configuration file found") and can no longer refuse a changed
        // segment size. One fsync at start keeps it.
        let conf_path = sled_dir.join("conf");
        match File::open(&conf_path) {
            Ok(f) => f
                .sync_all()
                .map_err(|e| format!("{}: fsync: {e}", conf_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: cannot open: {e}", conf_path.display())),
        }
        Ok(DiskSync {
            sled_dir: sled_dir.to_path_buf(),
            db_file,
            state: Mutex::new(SyncState::default()),
            counters,
        })
    }

    /// Steps 1-3 of the module doc, blocking.
    fn sync_blocking(&self) -> std::io::Result<()> {
        // BUG (fault-injection-bugs, skip-fdatasync): acknowledge after sled's
        // flush alone, as the store did before this step existed. A kill
        // keeps the page cache, so only a power cut can tell. Caught by the
        // selftest's register x power-loss case (ids_issued_once,
        // no_resurrections, "linearizable per seat").
        if crate::bugs::active(Bug::SkipFdatasync) {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let blobs_dir = self.sled_dir.join("blobs");
        let blobs = names(&blobs_dir)?;
        let mut new_blob = false;
        for name in &blobs {
            if !st.blobs_synced.contains(name) {
                match File::open(blobs_dir.join(name)) {
                    Ok(f) => f.sync_all()?,
                    // Removed by sled's garbage collection meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new_blob = true;
            }
        }
        if new_blob {
            fsync_dir(&blobs_dir)?;
        }
        st.blobs_synced = blobs.into_iter().collect();
        let sled_names = names(&self.sled_dir)?;
        if sled_names != st.sled_names {
            fsync_dir(&self.sled_dir)?;
            st.sled_names = sled_names;
        }
        self.db_file.sync_data()
    }

    /// sled's flush, then steps 1-3, in one trip to the blocking pool: what
    /// was written to `db` before the call may then be acknowledged.
    ///
    /// Why not `flush_async` and then a sync: `flush_async` hands the flush
    /// to sled's own thread pool, whose queue wakes every idle worker (seven)
    /// for each job (`Condvar::notify_all` in sled 0.34's `threadpool.rs`),
    /// and one more thread hop per acknowledged step. Run here, the flush
    /// costs one wake-up of that pool (the buffer write sled always hands
    /// to it) instead of two.
    pub async fn flush_and_sync(self: &Arc<Self>, db: &sled::Db) -> Result<(), String> {
        let me = self.clone();
        let db = db.clone();
        let (synced, elapsed) = tokio::task::spawn_blocking(move || {
            db.flush()
                .map_err(|e| format!("sled flush of {}: {e}", me.sled_dir.display()))?;
            let started = Instant::now();
            let synced = me
                .sync_blocking()
                .map_err(|e| format!("fsync of {}: {e}", me.sled_dir.display()));
            Ok::<_, String>((synced, started.elapsed()))
        })
        .await
        .map_err(|e| format!("the flush task failed: {e}"))??;
        self.counters.record_fsync(elapsed);
        synced
    }
}
