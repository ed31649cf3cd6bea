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

pub use content::Content;

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

/// Paths a [`CutReport`] lists at most (a cut can roll back thousands).
pub const CUT_REPORT_PATHS_MAX: usize = 16;

/// What a power cut threw away.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CutReport {
    /// Files whose content went back to their last synced state.
    pub files_rolled_back: u64,
    /// The paths of those files (their durable names, from the mount's
    /// root), at most [`CUT_REPORT_PATHS_MAX`], sorted: which file a cut
    /// hurt is the first question about a failing run.
    pub rolled_back_paths: Vec<String>,
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
}

mod content;
mod durability;

#[cfg(test)]
mod tests;
