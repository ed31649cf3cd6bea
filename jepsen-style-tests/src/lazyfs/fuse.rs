//! The FUSE face of the lazy file system: turns kernel requests into calls
//! on [`Model`] and answers them.
//!
//! Owns: attribute and entry replies (time-to-live zero, so the kernel asks
//! again after a power cut instead of trusting a cache), direct I/O on every
//! open file (no kernel page cache: a read after a cut sees the rolled-back
//! bytes, and `sync_file_range` has nothing to write back, so it never
//! reaches us — which is the point: it is not a durability point), and the
//! fsync queue that adds the configured latency.
//!
//! Must not: decide what is durable (that is [`Model`]) or mount anything
//! (that is `super::mount`).
//!
//! Caveats: fsyncs are served one at a time by a single "disk" thread when
//! a delay is set, like a disk with one flush queue; a write to a file
//! opened `O_SYNC`/`O_DSYNC` is made durable at once without the delay.
//! No hard links (`EPERM`), no special files, no extended attributes, no
//! shared writable `mmap` (direct I/O).

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use super::model::{
    Inode, Kind, Model, Owner, PendingSync, MAX_INODES, MAX_NAME_BYTES, MAX_TOTAL_BYTES, ROOT,
};

/// Attributes and entries are never cached by the kernel: a power cut
/// changes them behind its back.
const TTL: Duration = Duration::ZERO;
/// Block size reported by `stat` and `statfs`.
const BLOCK: u32 = 4096;
/// Most fsyncs waiting for the slow "disk" at once; beyond, callers wait
/// to enqueue (bounded memory, like a device queue depth).
const FSYNC_QUEUE_MAX: usize = 1024;

/// State shared by the FUSE session, the fsync thread and the mount handle.
#[derive(Debug)]
pub struct Shared {
    pub model: Mutex<Model>,
    /// Added to every fsync/fdatasync/fsyncdir, in milliseconds.
    pub fsync_delay_ms: AtomicU64,
}

impl Shared {
    pub fn new(model: Model, fsync_delay_ms: u64) -> Arc<Shared> {
        Arc::new(Shared {
            model: Mutex::new(model),
            fsync_delay_ms: AtomicU64::new(fsync_delay_ms),
        })
    }

    /// The model, even if a panicking thread poisoned the lock (the model
    /// stays consistent between calls; a test must still be able to cut).
    pub fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One fsync waiting for the slow disk.
struct QueuedSync {
    pending: PendingSync,
    dir: bool,
    reply: ReplyEmpty,
    queued_at: Instant,
}

/// The `fuser::Filesystem` implementation.
pub struct LazyFs {
    shared: Arc<Shared>,
    queue: Mutex<Option<std::sync::mpsc::SyncSender<QueuedSync>>>,
}

impl LazyFs {
    pub fn new(shared: Arc<Shared>) -> LazyFs {
        LazyFs {
            shared,
            queue: Mutex::new(None),
        }
    }

    /// Starts the fsync thread on first use: every queued fsync waits its
    /// delay after the previous one finished, then commits and replies.
    fn enqueue(&self, item: QueuedSync) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<QueuedSync>(FSYNC_QUEUE_MAX);
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("lazyfs-disk".into())
                .spawn(move || disk_thread(shared, rx));
            if spawned.is_err() {
                // No thread: commit at once rather than hang the caller.
                let mut model = self.shared.lock();
                answer(model.commit_sync(item.pending, item.dir), item.reply);
                return;
            }
            *queue = Some(tx);
        }
        let tx = queue.as_ref().expect("set above").clone();
        drop(queue);
        if let Err(std::sync::mpsc::SendError(item)) = tx.send(item) {
            let mut model = self.shared.lock();
            answer(model.commit_sync(item.pending, item.dir), item.reply);
        }
    }

    fn sync(&self, ino: u64, dir: bool, reply: ReplyEmpty) {
        let pending = match self.shared.lock().begin_sync(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(Errno::from_i32(e)),
        };
        if self.shared.fsync_delay_ms.load(Ordering::Relaxed) == 0 {
            let mut model = self.shared.lock();
            return answer(model.commit_sync(pending, dir), reply);
        }
        self.enqueue(QueuedSync {
            pending,
            dir,
            reply,
            queued_at: Instant::now(),
        });
    }
}

fn disk_thread(shared: Arc<Shared>, rx: Receiver<QueuedSync>) {
    // The disk is busy until `free_at`: each flush starts when the
    // previous one ended (or when it arrived, if the disk was idle).
    let mut free_at = Instant::now();
    for item in rx {
        let delay = Duration::from_millis(shared.fsync_delay_ms.load(Ordering::Relaxed));
        let start = free_at.max(item.queued_at);
        let done = start + delay;
        let now = Instant::now();
        if done > now {
            std::thread::sleep(done - now);
        }
        free_at = done.max(Instant::now());
        let mut model = shared.lock();
        answer(model.commit_sync(item.pending, item.dir), item.reply);
    }
}

fn answer(result: Result<(), i32>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(Errno::from_i32(e)),
    }
}

fn errno(e: i32) -> Errno {
    Errno::from_i32(e)
}

fn attr(ino: u64, inode: &Inode) -> FileAttr {
    let (kind, nlink) = match inode.kind() {
        Kind::Dir => (FileType::Directory, 2),
        Kind::File => (FileType::RegularFile, 1),
        Kind::Symlink => (FileType::Symlink, 1),
    };
    let size = inode.size();
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: inode.atime,
        mtime: inode.mtime,
        ctime: inode.ctime,
        crtime: inode.ctime,
        kind,
        perm: inode.perm,
        nlink,
        uid: inode.uid,
        gid: inode.gid,
        rdev: 0,
        blksize: BLOCK,
        flags: 0,
    }
}

/// The owner of an inode a request creates: the caller, with `mode`'s
/// permission bits.
fn owner(req: &Request, mode: u32) -> Owner {
    Owner {
        perm: (mode & 0o7777) as u16,
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn to_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

impl LazyFs {
    fn reply_entry(&self, model: &Model, ino: u64, reply: ReplyEntry) {
        match model.get(ino) {
            Ok(inode) => reply.entry(&TTL, &attr(ino, inode), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn make(
        &self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        owner: Owner,
        target: Option<&Path>,
        reply: ReplyEntry,
    ) {
        let mut model = self.shared.lock();
        match model.create(parent, name, kind, owner, target.map(Path::to_path_buf)) {
            Ok(ino) => self.reply_entry(&model, ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = self.shared.lock();
        match model.lookup(parent.0, name) {
            Ok(ino) => self.reply_entry(&model, ino, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let model = self.shared.lock();
        match model.get(ino.0) {
            Ok(inode) => reply.attr(&TTL, &attr(ino.0, inode)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.shared.lock();
        let result = (|| {
            if let Some(len) = size {
                model.truncate(ino.0, len)?;
            }
            model.set_attrs(
                ino.0,
                mode.map(|m| (m & 0o7777) as u16),
                uid,
                gid,
                atime.map(to_time),
                mtime.map(to_time),
            )
        })();
        match result.and_then(|()| model.get(ino.0).map(|i| attr(ino.0, i))) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let model = self.shared.lock();
        match model.get(ino.0).map(|i| &i.node) {
            Ok(super::model::Node::Symlink { target }) => {
                use std::os::unix::ffi::OsStrExt;
                reply.data(target.as_os_str().as_bytes())
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        self.make(
            parent.0,
            name,
            Kind::File,
            owner(req, mode & !umask),
            None,
            reply,
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.make(
            parent.0,
            name,
            Kind::Dir,
            owner(req, mode & !umask),
            None,
            reply,
        );
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(self.shared.lock().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer(self.shared.lock().remove(parent.0, name, true), reply);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.make(
            parent.0,
            link_name,
            Kind::Symlink,
            owner(req, 0o777),
            Some(target),
            reply,
        );
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            // RENAME_EXCHANGE and RENAME_WHITEOUT: nothing here needs them.
            return reply.error(Errno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        answer(
            self.shared
                .lock()
                .rename(parent.0, name, newparent.0, newname, noreplace),
            reply,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.shared.lock();
        match model.get(ino.0).map(|i| i.kind()) {
            Ok(Kind::File) => {}
            Ok(Kind::Dir) => return reply.error(Errno::EISDIR),
            Ok(Kind::Symlink) => return reply.error(Errno::ELOOP),
            Err(e) => return reply.error(errno(e)),
        }
        match model.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let model = self.shared.lock();
        match model
            .handle(fh.0)
            .and_then(|ino| model.read(ino, offset, size as usize))
        {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut model = self.shared.lock();
        let result = model.handle(fh.0).and_then(|ino| {
            model.write(ino, offset, data)?;
            // O_SYNC includes the O_DSYNC bit on Linux: the write is durable
            // when it returns, as on a real file system.
            if flags.0 & libc::O_DSYNC != 0 {
                let pending = model.begin_sync(ino)?;
                model.commit_sync(pending, false)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a durability point.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // fdatasync and fsync are one durability point here: the data and
        // the length (which fdatasync must persist to make the data
        // readable); other metadata is not modelled.
        self.sync(ino.0, false, reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut model = self.shared.lock();
        match model.get(ino.0).map(|i| i.kind()) {
            Ok(Kind::Dir) => {}
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(errno(e)),
        }
        match model.open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let model = self.shared.lock();
        let entries = match model.list(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e)),
        };
        let parent = model.parent_of(ino.0);
        let dots = [
            (OsStr::new(".").to_os_string(), ino.0, Kind::Dir),
            (OsStr::new("..").to_os_string(), parent, Kind::Dir),
        ];
        // Offsets are positions in name order: a listing that races a
        // create or unlink may skip or repeat a name, as POSIX allows.
        for (i, (name, child, kind)) in dots
            .into_iter()
            .chain(entries)
            .enumerate()
            .skip(offset as usize)
        {
            let kind = match kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
                Kind::Symlink => FileType::Symlink,
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.sync(ino.0, true, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let stats = self.shared.lock().stats();
        let blocks = MAX_TOTAL_BYTES / u64::from(BLOCK);
        let free = MAX_TOTAL_BYTES.saturating_sub(stats.bytes_held) / u64::from(BLOCK);
        let files = MAX_INODES as u64;
        reply.statfs(
            blocks,
            free,
            free,
            files,
            files.saturating_sub(stats.inodes),
            BLOCK,
            MAX_NAME_BYTES as u32,
            BLOCK,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Only root and the owner reach this mount (see `mount`); existence
        // is the only check worth making.
        answer(self.shared.lock().get(ino.0).map(|_| ()), reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.shared.lock();
        let result = model
            .create(parent.0, name, Kind::File, owner(req, mode & !umask), None)
            .and_then(|ino| model.open(ino).map(|fh| (ino, fh)));
        match result {
            Ok((ino, fh)) => {
                let a = attr(ino, model.get(ino).expect("just created"));
                reply.created(
                    &TTL,
                    &a,
                    Generation(0),
                    FileHandle(fh),
                    FopenFlags::FOPEN_DIRECT_IO,
                )
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let mut model = self.shared.lock();
        let result = model.get(ino.0).map(|i| i.size()).and_then(|size| {
            let end = offset.saturating_add(length);
            if end > size {
                model.truncate(ino.0, end)
            } else {
                Ok(())
            }
        });
        answer(result, reply);
    }
}

/// The root's attributes are those of a fresh directory owned by the
/// mounting user; set them before mounting.
pub fn set_root_owner(model: &mut Model, uid: u32, gid: u32) {
    let _ = model.set_attrs(ROOT, Some(0o755), Some(uid), Some(gid), None, None);
}
