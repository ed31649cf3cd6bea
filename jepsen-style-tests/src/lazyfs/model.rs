//! The lazy file system's state, without FUSE: a tree of inodes held in
//! memory, each with a *current* state (what reads see, like a page cache)
//! and a *durable* state (what survives [`Model::power_cut`]).
//!
//! Owns: file contents, directory entries, the durability rules (written out
//! in `super`'s module docs: "The durability model") and every bound.
//!
//! Must not: do I/O, sleep or know about the kernel; `super::fuse` adapts
//! it to FUSE requests and `super::mount` owns the mount. Keeping it pure is
//! what lets its unit tests run without root or `/dev/fuse`.
//!
//! Caveats: no hard links (an inode has at most one name, current and
//! durable); permissions, owners and times are not rolled back by a cut;
//! torn writes are not modelled (a cut restores exactly the last synced
//! bytes, never a mixture).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// Bytes per content chunk. Current and durable contents share chunks
/// (`Arc`), so an fsync costs one pointer copy per chunk and a write after
/// it copies only the chunks it touches.
pub const CHUNK: usize = 64 * 1024;
/// Most inodes alive at once (files, directories, symlinks, orphans).
pub const MAX_INODES: usize = 100_000;
/// Largest file size accepted (`EFBIG` beyond).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Bound on the memory the contents take, current and durable counted
/// separately even where they share a chunk (`ENOSPC` beyond).
pub const MAX_TOTAL_BYTES: u64 = 4 << 30;
/// Most open file and directory handles at once (`ENFILE` beyond).
pub const MAX_OPEN_HANDLES: usize = 4096;
/// Longest name in a directory (`ENAMETOOLONG` beyond), as on ext4.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest symlink target accepted.
pub const MAX_SYMLINK_BYTES: usize = 4096;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;

/// An errno, as the FUSE layer will answer it.
pub type Errno = i32;
pub type Res<T> = Result<T, Errno>;

/// A file's bytes as fixed-size chunks; `None` is a hole (zeros).
#[derive(Clone, Default, Debug)]
pub struct Content {
    len: u64,
    chunks: Vec<Option<Arc<Vec<u8>>>>,
    /// Allocated chunks, times `CHUNK`: the memory this content holds.
    allocated: u64,
}

impl Content {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn allocated_bytes(&self) -> u64 {
        self.allocated
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file).
    pub fn read(&self, offset: u64, size: usize) -> Vec<u8> {
        if offset >= self.len {
            return Vec::new();
        }
        let end = (offset + size as u64).min(self.len);
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let take = ((CHUNK - within) as u64).min(end - pos) as usize;
            match self.chunks.get(idx).and_then(|c| c.as_ref()) {
                Some(chunk) => out.extend_from_slice(&chunk[within..within + take]),
                None => out.resize(out.len() + take, 0),
            }
            pos += take as u64;
        }
        out
    }

    /// Writes `data` at `offset`, growing the file (a gap reads as zeros).
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        let need_chunks = end.div_ceil(CHUNK as u64) as usize;
        if self.chunks.len() < need_chunks {
            self.chunks.resize(need_chunks, None);
        }
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let idx = (pos / CHUNK as u64) as usize;
            let within = (pos % CHUNK as u64) as usize;
            let take = (CHUNK - within).min(rest.len());
            let slot = &mut self.chunks[idx];
            if slot.is_none() {
                *slot = Some(Arc::new(vec![0u8; CHUNK]));
                self.allocated += CHUNK as u64;
            }
            // Copies the chunk only if the durable state still shares it.
            let chunk = Arc::make_mut(slot.as_mut().expect("allocated above"));
            chunk[within..within + take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            pos += take as u64;
        }
        self.len = self.len.max(end);
    }

    /// Sets the length; bytes past a shrink are zeroed so a later grow reads zeros.
    pub fn truncate(&mut self, len: u64) {
        if len < self.len {
            let keep_chunks = len.div_ceil(CHUNK as u64) as usize;
            for dropped in self.chunks.drain(keep_chunks.min(self.chunks.len())..) {
                if dropped.is_some() {
                    self.allocated -= CHUNK as u64;
                }
            }
            let within = (len % CHUNK as u64) as usize;
            if within != 0 {
                if let Some(Some(last)) = self.chunks.last_mut() {
                    Arc::make_mut(last)[within..].fill(0);
                }
            }
        }
        self.len = len;
    }
}

/// Permission bits and owner of a new inode.
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// What an inode is.
#[derive(Clone, Debug)]
pub enum Node {
    /// A directory's *current* entries; its durable entries are the inodes
    /// whose `durable_loc` names it.
    Dir {
        entries: BTreeMap<OsString, u64>,
    },
    File {
        current: Content,
        durable: Content,
    },
    Symlink {
        target: PathBuf,
    },
}

/// The kind of an inode, for attributes and directory listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Inode {
    pub node: Node,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Where it is now: (parent directory, name). `None`: unlinked (kept
    /// while open or while it still has a durable name), or the root.
    pub loc: Option<(u64, OsString)>,
    /// Where it is in the durable tree. `None`: nowhere (gone after a cut),
    /// or the root, which is always durable.
    pub durable_loc: Option<(u64, OsString)>,
    /// Open handles on it.
    pub open: u32,
    /// Bumped by every change of its content; a delayed fsync commits the
    /// content it captured only if nothing newer was committed meanwhile.
    pub content_seq: u64,
    pub durable_seq: u64,
}

impl Inode {
    pub fn kind(&self) -> Kind {
        match self.node {
            Node::Dir { .. } => Kind::Dir,
            Node::File { .. } => Kind::File,
            Node::Symlink { .. } => Kind::Symlink,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.node {
            Node::Dir { entries } => entries.len() as u64,
            Node::File { current, .. } => current.len(),
            Node::Symlink { target } => target.as_os_str().len() as u64,
        }
    }

    fn bytes(&self) -> u64 {
        match &self.node {
            Node::File { current, durable } => {
                current.allocated_bytes() + durable.allocated_bytes()
            }
            _ => 0,
        }
    }
}

/// What a power cut threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CutReport {
    /// Files whose content went back to their last synced state.
    pub files_rolled_back: u64,
    /// Bytes of file length lost (current length minus durable length,
    /// summed over surviving files, where positive).
    pub bytes_lost: u64,
    /// Inodes gone because no durable name led to them.
    pub inodes_dropped: u64,
    /// Names whose target changed or vanished.
    pub entries_changed: u64,
    /// Handles still open at the cut (their processes should be dead).
    pub open_handles: u64,
}

/// Counters for `stats` and the tests.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub inodes: u64,
    pub bytes_held: u64,
    pub fsyncs: u64,
    pub dir_fsyncs: u64,
    pub writes: u64,
    pub cuts: u64,
    pub open_handles: u64,
}

/// A content snapshot taken when an fsync arrives, committed when it returns.
#[derive(Debug)]
pub struct PendingSync {
    pub ino: u64,
    pub epoch: u64,
    content: Option<(u64, Content)>,
}

/// The whole file system.
#[derive(Debug)]
pub struct Model {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// fh → (inode, epoch it was opened in). Handles from before a cut are stale.
    handles: HashMap<u64, (u64, u64)>,
    next_fh: u64,
    /// Bumped by each power cut.
    epoch: u64,
    bytes_held: u64,
    stats: Stats,
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Model {
    pub fn new() -> Model {
        let t = now();
        let root = Inode {
            node: Node::Dir {
                entries: BTreeMap::new(),
            },
            perm: 0o755,
            uid: 0,
            gid: 0,
            atime: t,
            mtime: t,
            ctime: t,
            loc: None,
            durable_loc: None,
            open: 0,
            content_seq: 0,
            durable_seq: 0,
        };
        Model {
            inodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            handles: HashMap::new(),
            next_fh: 1,
            epoch: 0,
            bytes_held: 0,
            stats: Stats::default(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn stats(&self) -> Stats {
        Stats {
            inodes: self.inodes.len() as u64,
            bytes_held: self.bytes_held,
            open_handles: self.handles.len() as u64,
            ..self.stats.clone()
        }
    }

    pub fn get(&self, ino: u64) -> Res<&Inode> {
        self.inodes.get(&ino).ok_or(libc::ESTALE)
    }

    fn get_mut(&mut self, ino: u64) -> Res<&mut Inode> {
        self.inodes.get_mut(&ino).ok_or(libc::ESTALE)
    }

    fn entries(&self, dir: u64) -> Res<&BTreeMap<OsString, u64>> {
        match &self.get(dir)?.node {
            Node::Dir { entries } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Res<&mut BTreeMap<OsString, u64>> {
        match &mut self.get_mut(dir)?.node {
            Node::Dir { entries } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Res<u64> {
        self.entries(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// A directory's entries in name order, for `readdir`.
    pub fn list(&self, dir: u64) -> Res<Vec<(OsString, u64, Kind)>> {
        let entries = self.entries(dir)?;
        Ok(entries
            .iter()
            .filter_map(|(name, ino)| self.inodes.get(ino).map(|i| (name.clone(), *ino, i.kind())))
            .collect())
    }

    /// The parent of a directory (itself for the root), for `..`.
    pub fn parent_of(&self, dir: u64) -> u64 {
        self.inodes
            .get(&dir)
            .and_then(|i| i.loc.as_ref())
            .map(|(p, _)| *p)
            .unwrap_or(ROOT)
    }

    fn check_name(name: &OsStr) -> Res<()> {
        if name.len() > MAX_NAME_BYTES {
            return Err(libc::ENAMETOOLONG);
        }
        if name.is_empty() || name == "." || name == ".." {
            return Err(libc::EINVAL);
        }
        Ok(())
    }

    /// Creates a file, directory or symlink named `name` in `parent`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        kind: Kind,
        owner: Owner,
        symlink_target: Option<PathBuf>,
    ) -> Res<u64> {
        let Owner { perm, uid, gid } = owner;
        Self::check_name(name)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        if self.inodes.len() >= MAX_INODES {
            return Err(libc::ENOSPC);
        }
        let node = match kind {
            Kind::Dir => Node::Dir {
                entries: BTreeMap::new(),
            },
            Kind::File => Node::File {
                current: Content::default(),
                durable: Content::default(),
            },
            Kind::Symlink => {
                let target = symlink_target.ok_or(libc::EINVAL)?;
                if target.as_os_str().len() > MAX_SYMLINK_BYTES {
                    return Err(libc::ENAMETOOLONG);
                }
                Node::Symlink { target }
            }
        };
        let t = now();
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                node,
                perm,
                uid,
                gid,
                atime: t,
                mtime: t,
                ctime: t,
                loc: Some((parent, name.to_os_string())),
                durable_loc: None,
                open: 0,
                content_seq: 0,
                durable_seq: 0,
            },
        );
        self.entries_mut(parent)?.insert(name.to_os_string(), ino);
        self.touch_dir(parent);
        Ok(ino)
    }

    fn touch_dir(&mut self, dir: u64) {
        if let Some(d) = self.inodes.get_mut(&dir) {
            let t = now();
            d.mtime = t;
            d.ctime = t;
        }
    }

    /// Drops an inode nobody can reach any more: no current name, no
    /// durable name, no open handle.
    fn maybe_free(&mut self, ino: u64) {
        let free = match self.inodes.get(&ino) {
            Some(i) => ino != ROOT && i.loc.is_none() && i.durable_loc.is_none() && i.open == 0,
            None => false,
        };
        if free {
            let gone = self.inodes.remove(&ino).expect("checked above");
            self.bytes_held -= gone.bytes();
        }
    }

    /// Removes a file or symlink (`rmdir == false`) or an empty directory.
    pub fn remove(&mut self, parent: u64, name: &OsStr, rmdir: bool) -> Res<()> {
        let ino = self.lookup(parent, name)?;
        let inode = self.get(ino)?;
        match (&inode.node, rmdir) {
            (Node::Dir { entries }, true) => {
                if !entries.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
            }
            (Node::Dir { .. }, false) => return Err(libc::EISDIR),
            (_, true) => return Err(libc::ENOTDIR),
            (_, false) => {}
        }
        self.entries_mut(parent)?.remove(name);
        let inode = self.get_mut(ino)?;
        inode.loc = None;
        inode.ctime = now();
        self.touch_dir(parent);
        self.maybe_free(ino);
        Ok(())
    }

    /// `rename(2)`: replaces an existing target of a compatible kind
    /// (`noreplace`: `EEXIST` instead).
    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        Self::check_name(new_name)?;
        let ino = self.lookup(parent, name)?;
        self.entries(new_parent)?;
        if parent == new_parent && name == new_name {
            return Ok(());
        }
        // A directory must not move into itself or below itself.
        if self.get(ino)?.kind() == Kind::Dir {
            let mut up = new_parent;
            loop {
                if up == ino {
                    return Err(libc::EINVAL);
                }
                if up == ROOT {
                    break;
                }
                up = self.parent_of(up);
            }
        }
        if let Ok(old) = self.lookup(new_parent, new_name) {
            if noreplace {
                return Err(libc::EEXIST);
            }
            let moving_dir = self.get(ino)?.kind() == Kind::Dir;
            match &self.get(old)?.node {
                Node::Dir { entries } => {
                    if !moving_dir {
                        return Err(libc::EISDIR);
                    }
                    if !entries.is_empty() {
                        return Err(libc::ENOTEMPTY);
                    }
                }
                _ if moving_dir => return Err(libc::ENOTDIR),
                _ => {}
            }
            self.entries_mut(new_parent)?.remove(new_name);
            self.get_mut(old)?.loc = None;
            self.maybe_free(old);
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_os_string(), ino);
        let inode = self.get_mut(ino)?;
        inode.loc = Some((new_parent, new_name.to_os_string()));
        inode.ctime = now();
        self.touch_dir(parent);
        self.touch_dir(new_parent);
        Ok(())
    }

    pub fn open(&mut self, ino: u64) -> Res<u64> {
        if self.handles.len() >= MAX_OPEN_HANDLES {
            return Err(libc::ENFILE);
        }
        self.get_mut(ino)?.open += 1;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, (ino, self.epoch));
        Ok(fh)
    }

    /// The inode behind a handle; `EBADF` for a handle from before a cut.
    pub fn handle(&self, fh: u64) -> Res<u64> {
        match self.handles.get(&fh) {
            Some(&(ino, epoch)) if epoch == self.epoch => Ok(ino),
            _ => Err(libc::EBADF),
        }
    }

    pub fn release(&mut self, fh: u64) {
        if let Some((ino, epoch)) = self.handles.remove(&fh) {
            if epoch == self.epoch {
                if let Some(inode) = self.inodes.get_mut(&ino) {
                    inode.open = inode.open.saturating_sub(1);
                }
                self.maybe_free(ino);
            }
        }
    }

    fn content_mut(&mut self, ino: u64) -> Res<&mut Content> {
        match &mut self.get_mut(ino)?.node {
            Node::File { current, .. } => Ok(current),
            Node::Dir { .. } => Err(libc::EISDIR),
            Node::Symlink { .. } => Err(libc::EINVAL),
        }
    }

    pub fn read(&self, ino: u64, offset: u64, size: usize) -> Res<Vec<u8>> {
        match &self.get(ino)?.node {
            Node::File { current, .. } => Ok(current.read(offset, size)),
            Node::Dir { .. } => Err(libc::EISDIR),
            Node::Symlink { .. } => Err(libc::EINVAL),
        }
    }

    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Res<()> {
        let end = offset.checked_add(data.len() as u64).ok_or(libc::EFBIG)?;
        if end > MAX_FILE_BYTES {
            return Err(libc::EFBIG);
        }
        // Conservative: a write may allocate (or unshare) every chunk it touches.
        let touched = (data.len() as u64).div_ceil(CHUNK as u64) + 1;
        if self.bytes_held + touched * CHUNK as u64 > MAX_TOTAL_BYTES {
            return Err(libc::ENOSPC);
        }
        let before = self.get(ino)?.bytes();
        self.content_mut(ino)?.write(offset, data);
        self.after_content_change(ino, before);
        self.stats.writes += 1;
        Ok(())
    }

    pub fn truncate(&mut self, ino: u64, len: u64) -> Res<()> {
        if len > MAX_FILE_BYTES {
            return Err(libc::EFBIG);
        }
        let before = self.get(ino)?.bytes();
        self.content_mut(ino)?.truncate(len);
        self.after_content_change(ino, before);
        Ok(())
    }

    fn after_content_change(&mut self, ino: u64, bytes_before: u64) {
        let inode = self.inodes.get_mut(&ino).expect("caller checked");
        let t = now();
        inode.mtime = t;
        inode.ctime = t;
        inode.content_seq += 1;
        let after = inode.bytes();
        self.bytes_held = self.bytes_held + after - bytes_before;
    }

    pub fn set_attrs(
        &mut self,
        ino: u64,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Res<()> {
        let inode = self.get_mut(ino)?;
        if let Some(p) = perm {
            inode.perm = p & 0o7777;
        }
        if let Some(u) = uid {
            inode.uid = u;
        }
        if let Some(g) = gid {
            inode.gid = g;
        }
        if let Some(a) = atime {
            inode.atime = a;
        }
        if let Some(m) = mtime {
            inode.mtime = m;
        }
        inode.ctime = now();
        Ok(())
    }

    // ----- durability ---------------------------------------------------

    /// Starts an fsync/fdatasync of `ino`: captures the content to make
    /// durable (the content as the call found it).
    pub fn begin_sync(&mut self, ino: u64) -> Res<PendingSync> {
        let inode = self.get(ino)?;
        let content = match &inode.node {
            Node::File { current, .. } => Some((inode.content_seq, current.clone())),
            _ => None,
        };
        Ok(PendingSync {
            ino,
            epoch: self.epoch,
            content,
        })
    }

    /// Finishes an fsync when it returns: the captured content becomes the
    /// durable content (unless a newer one already did), and the inode's
    /// name, with every ancestor's, becomes durable. `dir`: an fsync of a
    /// directory, which also makes durable every change of its entries
    /// (creates, unlinks, renames in or out). After a cut the pending sync
    /// is void (`EIO`: its process is dead anyway).
    pub fn commit_sync(&mut self, pending: PendingSync, dir: bool) -> Res<()> {
        if pending.epoch != self.epoch {
            return Err(libc::EIO);
        }
        let ino = pending.ino;
        if let Some((seq, content)) = pending.content {
            let before = self.get(ino)?.bytes();
            let inode = self.get_mut(ino)?;
            if seq >= inode.durable_seq {
                inode.durable_seq = seq;
                if let Node::File { durable, .. } = &mut inode.node {
                    *durable = content;
                }
            }
            let after = inode.bytes();
            self.bytes_held = self.bytes_held + after - before;
        }
        if dir {
            self.stats.dir_fsyncs += 1;
            self.persist_dir_entries(ino)?;
        } else {
            self.stats.fsyncs += 1;
        }
        self.persist_name(ino);
        Ok(())
    }

    /// Makes the inode's current name durable, atomically as a journalling
    /// file system would: its old durable name goes, an inode durably at
    /// the target name loses that name (and, if it was renamed elsewhere,
    /// gets its new name made durable, so a rename is never half durable),
    /// and the parent's own name is made durable too, up to the root.
    fn persist_name(&mut self, ino: u64) {
        // Iterative over the ancestors; the displaced inodes are few.
        let mut work = vec![ino];
        let mut guard = 0usize;
        while let Some(ino) = work.pop() {
            guard += 1;
            if guard > MAX_INODES * 2 {
                // Cannot happen for a tree (each step settles one inode for
                // good); a bound instead of a hang.
                break;
            }
            if ino == ROOT {
                continue;
            }
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            let cur = inode.loc.clone();
            if inode.durable_loc != cur {
                if let Some((p, name)) = &cur {
                    let displaced: Vec<u64> = self
                        .inodes
                        .iter()
                        .filter(|(other, i)| {
                            **other != ino
                                && i.durable_loc.as_ref().map(|(dp, dn)| dp == p && dn == name)
                                    == Some(true)
                        })
                        .map(|(other, _)| *other)
                        .collect();
                    for other in displaced {
                        if let Some(o) = self.inodes.get_mut(&other) {
                            o.durable_loc = None;
                            if o.loc.is_some() {
                                work.push(other);
                            }
                        }
                        self.maybe_free(other);
                    }
                }
                if let Some(inode) = self.inodes.get_mut(&ino) {
                    inode.durable_loc = cur.clone();
                }
                self.maybe_free(ino);
            }
            if let Some((p, _)) = cur {
                let parent_moved = self
                    .inodes
                    .get(&p)
                    .map(|i| i.durable_loc != i.loc)
                    .unwrap_or(false);
                if p != ROOT && parent_moved {
                    work.push(p);
                }
            }
        }
    }

    /// Every entry change of `dir` becomes durable: each inode in it now,
    /// and each inode durably in it that has since moved or been unlinked.
    fn persist_dir_entries(&mut self, dir: u64) -> Res<()> {
        let mut inos: Vec<u64> = self.entries(dir)?.values().copied().collect();
        inos.extend(
            self.inodes
                .iter()
                .filter_map(|(ino, i)| match &i.durable_loc {
                    Some((p, _)) if *p == dir && i.durable_loc != i.loc => Some(*ino),
                    _ => None,
                }),
        );
        for ino in inos {
            self.persist_name(ino);
        }
        Ok(())
    }

    /// Power loss: every file goes back to its last synced content, every
    /// directory to its durable entries; what no durable name reaches is
    /// gone; every open handle goes stale.
    pub fn power_cut(&mut self) -> CutReport {
        let mut report = CutReport {
            open_handles: self.handles.len() as u64,
            ..CutReport::default()
        };
        self.epoch += 1;
        self.stats.cuts += 1;
        self.handles.clear();

        // Durable children per directory, then a walk from the root.
        let mut children: HashMap<u64, Vec<(OsString, u64)>> = HashMap::new();
        for (ino, i) in &self.inodes {
            if let Some((p, name)) = &i.durable_loc {
                children.entry(*p).or_default().push((name.clone(), *ino));
            }
        }
        let mut reachable: HashMap<u64, BTreeMap<OsString, u64>> = HashMap::new();
        let mut stack = vec![ROOT];
        let mut keep = std::collections::HashSet::from([ROOT]);
        while let Some(dir) = stack.pop() {
            let mut entries = BTreeMap::new();
            for (name, child) in children.remove(&dir).unwrap_or_default() {
                if keep.insert(child) {
                    if matches!(self.inodes[&child].node, Node::Dir { .. }) {
                        stack.push(child);
                    }
                    entries.insert(name, child);
                }
            }
            reachable.insert(dir, entries);
        }

        let before: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in before {
            if !keep.contains(&ino) {
                let gone = self.inodes.remove(&ino).expect("listed above");
                self.bytes_held -= gone.bytes();
                report.inodes_dropped += 1;
                continue;
            }
            let inode = self.inodes.get_mut(&ino).expect("listed above");
            inode.open = 0;
            if inode.loc != inode.durable_loc {
                report.entries_changed += 1;
            }
            inode.loc = inode.durable_loc.clone();
            match &mut inode.node {
                Node::Dir { entries } => {
                    *entries = reachable.remove(&ino).unwrap_or_default();
                }
                Node::File { current, durable } => {
                    if inode.content_seq != inode.durable_seq {
                        report.files_rolled_back += 1;
                        report.bytes_lost += current.len().saturating_sub(durable.len());
                    }
                    let before = current.allocated_bytes();
                    *current = durable.clone();
                    self.bytes_held = self.bytes_held - before + current.allocated_bytes();
                    inode.content_seq = inode.durable_seq;
                }
                Node::Symlink { .. } => {}
            }
        }
        report
    }

    /// Makes everything durable (a clean unmount), e.g. before saving.
    pub fn sync_everything(&mut self) {
        let inos: Vec<u64> = self.inodes.keys().copied().collect();
        for ino in &inos {
            if let Ok(p) = self.begin_sync(*ino) {
                let is_dir = self.inodes[ino].kind() == Kind::Dir;
                let _ = self.commit_sync(p, is_dir);
            }
        }
    }

    /// The durable path of an inode, for messages and tests.
    pub fn durable_path(&self, ino: u64) -> Option<PathBuf> {
        let mut parts = Vec::new();
        let mut cur = ino;
        for _ in 0..MAX_INODES {
            if cur == ROOT {
                parts.reverse();
                return Some(parts.iter().collect());
            }
            let (p, name) = self.inodes.get(&cur)?.durable_loc.clone()?;
            parts.push(name);
            cur = p;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(perm: u16) -> Owner {
        Owner {
            perm,
            uid: 0,
            gid: 0,
        }
    }

    fn file(m: &mut Model, parent: u64, name: &str) -> u64 {
        m.create(parent, OsStr::new(name), Kind::File, owner(0o644), None)
            .unwrap()
    }

    fn dir(m: &mut Model, parent: u64, name: &str) -> u64 {
        m.create(parent, OsStr::new(name), Kind::Dir, owner(0o755), None)
            .unwrap()
    }

    fn fsync(m: &mut Model, ino: u64) {
        let p = m.begin_sync(ino).unwrap();
        m.commit_sync(p, false).unwrap();
    }

    fn fsyncdir(m: &mut Model, ino: u64) {
        let p = m.begin_sync(ino).unwrap();
        m.commit_sync(p, true).unwrap();
    }

    fn read_all(m: &Model, ino: u64) -> Vec<u8> {
        m.read(ino, 0, 1 << 20).unwrap()
    }

    #[test]
    fn content_reads_what_was_written_across_chunks_and_holes() {
        let mut c = Content::default();
        c.write(CHUNK as u64 - 3, b"abcdef");
        assert_eq!(c.len(), CHUNK as u64 + 3);
        assert_eq!(c.read(CHUNK as u64 - 4, 10), b"\0abcdef".to_vec());
        c.write(3 * CHUNK as u64, b"z");
        assert_eq!(c.read(2 * CHUNK as u64, 2), vec![0, 0]);
        assert_eq!(c.allocated_bytes(), 3 * CHUNK as u64);
        c.truncate(CHUNK as u64 - 1);
        c.truncate(CHUNK as u64 + 10);
        assert_eq!(c.read(CHUNK as u64 - 3, 5), b"ab\0\0\0".to_vec());
    }

    #[test]
    fn unsynced_write_is_lost_and_synced_write_kept() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a");
        fsync(&mut m, a); // name durable, content empty
        m.write(a, 0, b"synced").unwrap();
        fsync(&mut m, a);
        m.write(a, 6, b"+lost").unwrap();
        assert_eq!(read_all(&m, a), b"synced+lost");
        let r = m.power_cut();
        assert_eq!(r.files_rolled_back, 1);
        assert_eq!(r.bytes_lost, 5);
        assert_eq!(
            read_all(&m, m.lookup(ROOT, OsStr::new("a")).unwrap()),
            b"synced"
        );
    }

    #[test]
    fn a_created_file_nobody_synced_is_gone() {
        let mut m = Model::new();
        let d = dir(&mut m, ROOT, "d");
        let f = file(&mut m, d, "f");
        m.write(f, 0, b"x").unwrap();
        let r = m.power_cut();
        assert_eq!(r.inodes_dropped, 2);
        assert_eq!(m.lookup(ROOT, OsStr::new("d")), Err(libc::ENOENT));
    }

    #[test]
    fn fsync_of_a_file_makes_its_name_and_ancestors_durable_not_its_siblings() {
        let mut m = Model::new();
        let d = dir(&mut m, ROOT, "d");
        let f = file(&mut m, d, "f");
        let g = file(&mut m, d, "g");
        m.write(g, 0, b"g").unwrap();
        m.write(f, 0, b"f").unwrap();
        fsync(&mut m, f);
        m.power_cut();
        let d = m.lookup(ROOT, OsStr::new("d")).unwrap();
        let f = m.lookup(d, OsStr::new("f")).unwrap();
        assert_eq!(read_all(&m, f), b"f");
        assert_eq!(m.lookup(d, OsStr::new("g")), Err(libc::ENOENT));
    }

    #[test]
    fn fsyncdir_makes_entries_durable_but_not_unsynced_content() {
        let mut m = Model::new();
        let g = file(&mut m, ROOT, "g");
        m.write(g, 0, b"data").unwrap();
        fsyncdir(&mut m, ROOT);
        m.power_cut();
        let g = m.lookup(ROOT, OsStr::new("g")).unwrap();
        assert_eq!(read_all(&m, g), b"", "name durable, data not: empty file");
    }

    #[test]
    fn rename_is_durable_only_with_an_fsync_of_the_directory_or_the_file() {
        // tmp -> fsync -> rename, no directory fsync: the old state comes back.
        let mut m = Model::new();
        let old = file(&mut m, ROOT, "snap");
        m.write(old, 0, b"old").unwrap();
        fsync(&mut m, old);
        let tmp = file(&mut m, ROOT, "snap.tmp");
        m.write(tmp, 0, b"new").unwrap();
        fsync(&mut m, tmp);
        m.rename(
            ROOT,
            OsStr::new("snap.tmp"),
            ROOT,
            OsStr::new("snap"),
            false,
        )
        .unwrap();
        assert_eq!(
            read_all(&m, m.lookup(ROOT, OsStr::new("snap")).unwrap()),
            b"new"
        );
        m.power_cut();
        assert_eq!(
            read_all(&m, m.lookup(ROOT, OsStr::new("snap")).unwrap()),
            b"old"
        );
        assert_eq!(
            read_all(&m, m.lookup(ROOT, OsStr::new("snap.tmp")).unwrap()),
            b"new"
        );

        // ... then with the directory fsync: the new state, and no tmp.
        let tmp = m.lookup(ROOT, OsStr::new("snap.tmp")).unwrap();
        m.open(tmp).unwrap();
        m.rename(
            ROOT,
            OsStr::new("snap.tmp"),
            ROOT,
            OsStr::new("snap"),
            false,
        )
        .unwrap();
        fsyncdir(&mut m, ROOT);
        m.power_cut();
        assert_eq!(
            read_all(&m, m.lookup(ROOT, OsStr::new("snap")).unwrap()),
            b"new"
        );
        assert_eq!(m.lookup(ROOT, OsStr::new("snap.tmp")), Err(libc::ENOENT));
    }

    #[test]
    fn unlink_is_durable_only_with_a_directory_fsync() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a");
        fsync(&mut m, a);
        m.remove(ROOT, OsStr::new("a"), false).unwrap();
        m.power_cut();
        assert!(m.lookup(ROOT, OsStr::new("a")).is_ok(), "unlink not synced");
        m.remove(ROOT, OsStr::new("a"), false).unwrap();
        fsyncdir(&mut m, ROOT);
        m.power_cut();
        assert_eq!(m.lookup(ROOT, OsStr::new("a")), Err(libc::ENOENT));
        assert_eq!(m.stats().inodes, 1);
    }

    #[test]
    fn cross_directory_rename_is_atomic() {
        let mut m = Model::new();
        let p = dir(&mut m, ROOT, "p");
        let q = dir(&mut m, ROOT, "q");
        let f = file(&mut m, p, "f");
        m.write(f, 0, b"1").unwrap();
        fsync(&mut m, f);
        fsync(&mut m, q);
        m.rename(p, OsStr::new("f"), q, OsStr::new("g"), false)
            .unwrap();
        // Only the source directory is synced: the move is durable as a whole.
        fsyncdir(&mut m, p);
        m.power_cut();
        let p = m.lookup(ROOT, OsStr::new("p")).unwrap();
        let q = m.lookup(ROOT, OsStr::new("q")).unwrap();
        assert_eq!(m.lookup(p, OsStr::new("f")), Err(libc::ENOENT));
        let g = m.lookup(q, OsStr::new("g")).unwrap();
        assert_eq!(read_all(&m, g), b"1");
    }

    #[test]
    fn a_delayed_fsync_commits_what_it_saw_and_nothing_after_a_cut() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a");
        fsync(&mut m, a);
        m.write(a, 0, b"one").unwrap();
        let pending = m.begin_sync(a).unwrap();
        m.write(a, 3, b"two").unwrap();
        m.commit_sync(pending, false).unwrap();
        m.power_cut();
        let a = m.lookup(ROOT, OsStr::new("a")).unwrap();
        assert_eq!(read_all(&m, a), b"one");
        m.write(a, 0, b"ONE").unwrap();
        let pending = m.begin_sync(a).unwrap();
        m.power_cut();
        assert_eq!(m.commit_sync(pending, false), Err(libc::EIO));
        assert_eq!(read_all(&m, a), b"one");
    }

    #[test]
    fn stale_handles_after_a_cut_and_orphans_freed_on_release() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a");
        let fh = m.open(a).unwrap();
        m.remove(ROOT, OsStr::new("a"), false).unwrap();
        m.write(m.handle(fh).unwrap(), 0, b"orphan").unwrap();
        assert_eq!(m.stats().inodes, 2);
        m.release(fh);
        assert_eq!(m.stats().inodes, 1);
        assert_eq!(m.stats().bytes_held, 0);
        let b = file(&mut m, ROOT, "b");
        let fh = m.open(b).unwrap();
        let r = m.power_cut();
        assert_eq!(r.open_handles, 1);
        assert_eq!(m.handle(fh), Err(libc::EBADF));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut m = Model::new();
        let a = file(&mut m, ROOT, "a");
        assert_eq!(m.write(a, MAX_FILE_BYTES, b"x"), Err(libc::EFBIG));
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            m.create(ROOT, OsStr::new(&long), Kind::File, owner(0o644), None),
            Err(libc::ENAMETOOLONG)
        );
        assert_eq!(
            m.create(ROOT, OsStr::new("a"), Kind::File, owner(0o644), None),
            Err(libc::EEXIST)
        );
    }
}
