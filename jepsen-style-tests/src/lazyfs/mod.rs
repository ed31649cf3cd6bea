//! A lazy file system for the `power-loss` nemesis: a FUSE file system
//! (the `fuser` crate, no libfuse: the mount goes through `fusermount3`,
//! Debian `fuse3`) that keeps only what was fsynced, so that a simulated
//! power cut of a node shows what its disk would hold after a real one.
//!
//! Owns: the in-memory file system ([`model`]), its FUSE adapter
//! ([`fuse`]), the in-process mount handle the harness uses
//! ([`mount::LazyFsMount`]: mount, [`power_cut`](mount::LazyFsMount::power_cut),
//! fsync latency, unmount, cleanup on drop) and the standalone process
//! (`jepsen lazyfs`, `jepsen lazyfs-ctl`: [`cli`]).
//!
//! Must not: kill or restart nodes (the nemesis does: kill -9 every node,
//! then cut, then restart), or pass anything through to a real disk while
//! mounted: contents live in this process's memory, bounded by the
//! constants in [`model`] (inodes, file size, total bytes, open handles).
//! A backing directory, if given, is read at mount and rewritten at a clean
//! unmount only.
//!
//! # The durability model
//!
//! Every inode has a *current* state, which all reads see at once (like a
//! page cache), and a *durable* state, which is all a power cut leaves:
//!
//! 1. **File data and length** are durable as of the last `fsync` or
//!    `fdatasync` of that file (through any handle), or of a write to a
//!    file opened `O_SYNC`/`O_DSYNC`. Nothing else makes them durable:
//!    not `close`, not `sync_file_range` (on this mount it never even
//!    reaches the file system: files are opened with direct I/O, so there
//!    is no dirty page to write back), not `syncfs`/`sync` (FUSE does not
//!    forward them). A new file's durable content is empty.
//! 2. **Names** (create, mkdir, symlink, unlink, rmdir, rename) are durable
//!    when the directory holding them is fsynced, *or* when the inode
//!    itself is fsynced: an fsync of a file makes durable its own current
//!    name and the names of its ancestors up to the root (what ext4, xfs
//!    and btrfs do for a new file's fsync), and nothing about its siblings.
//!    A rename is durable as a whole or not at all (journalling file
//!    systems never show both names or neither).
//! 3. **A power cut** ([`model::Model::power_cut`]) sets every file's
//!    content to its durable content and every directory's entries to its
//!    durable entries; inodes no durable name reaches are gone; handles
//!    opened before the cut answer `EBADF`; an fsync still waiting for the
//!    slow "disk" fails with `EIO` and commits nothing.
//!
//! Not modelled: permissions, owners and times (kept across a cut), hard
//! links (`EPERM`), torn writes (a cut restores exactly the last synced
//! bytes of a file, never a mix of old and new pages), the disk cache
//! lying about a flush.
//!
//! ## Why this is at least as strict as a real disk for sled and our files
//!
//! After a power loss a real disk that honours flushes keeps at least what
//! was fsynced, and may keep more. This model keeps exactly that and no
//! more for file data, so any write the application did not fsync is lost
//! here whenever it *could* be lost on a disk:
//! - sled 0.34 makes a `flush`/`flush_async` "durable" with
//!   `sync_file_range`, which writes data pages but neither the length of
//!   an append nor the disk's cache; here it is no durability point at
//!   all, so only sled's own `sync_all` (its flusher thread, every
//!   `flush_every_ms`, 500 ms by default) makes its `db` file durable.
//!   sled never fsyncs `conf`, `blobs/*` or its directory: here `conf` and
//!   blobs vanish unless something else fsyncs them (on ext4 `conf` would
//!   come back empty or whole; sled treats empty and absent alike).
//! - For names the rule is POSIX's (fsync the directory) plus the one
//!   guarantee every Linux journalling file system gives, that fsyncing a
//!   new file persists its name. ext4 and xfs give more: their fsync
//!   commits the whole journal, so every earlier rename and unlink becomes
//!   durable too. Here only the fsynced file's own name does: sled's
//!   snapshot `snap.*.generating` → `snap.*` rename and its removal of old
//!   snapshots, and a snapshot file written tmp → fsync → rename without a
//!   directory fsync, roll back at a cut, which ext4 does only within its
//!   commit interval (5 s) and only if no other fsync intervened.
//!   The "tmp → fsync → rename → fsync the directory" pattern survives.
//!
//! The one way a real disk can be harsher, torn writes of unsynced pages,
//! is listed above as not modelled.
//!
//! # Fsync latency
//!
//! With a delay set, fsyncs queue for one "disk" thread that serves them
//! one after another, each taking the delay (issue 12 item 4's "disks that
//! take 50 ms per fsync"); an fsync makes durable the content it found
//! when it arrived. Reads and writes are not delayed.

pub mod cli;
pub mod fuse;
pub mod model;
pub mod mount;

pub use model::{CutReport, Stats};
pub use mount::{
    is_lazyfs_mount, unavailable_reason, unmount_all_under, LazyFsMount, LazyFsOptions,
};
