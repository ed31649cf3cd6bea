//! The harness's handle on one lazy file system: mount it in-process,
//! cut its power, change its fsync latency, unmount it.
//!
//! Owns: the FUSE session (a background thread of this process), loading
//! the backing directory at mount and saving into it at unmount, and
//! making sure nothing stays mounted (unmount on drop; `auto_unmount` via
//! `fusermount3` if this process dies).
//!
//! Must not: start or kill the processes that use the mount (the harness
//! kills them *before* [`LazyFsMount::power_cut`], as a power cut would).
//!
//! Caveats: needs root, `/dev/fuse` and `fusermount3` (Debian `fuse3`):
//! [`unavailable_reason`] says which is missing. The contents live in this
//! process's memory; if it is killed, they are lost (the backing directory
//! keeps what the previous clean unmount saved).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use super::fuse::{set_root_owner, LazyFs, Shared};
use super::model::{CutReport, Kind, Model, Owner, Stats, ROOT};

/// How long an unmount may wait for the FUSE thread to finish.
const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a fresh mount may take to answer its first `stat`.
const MOUNT_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest file read from or written to the backing directory in one piece.
const BACKING_IO_CHUNK: usize = 1 << 20;

/// Why the lazy file system cannot run here, or `None` if it can.
pub fn unavailable_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("the lazy file system needs root".into());
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing (modprobe fuse?)".into());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !on_path {
        return Some("fusermount3 is missing (apt-get install fuse3)".into());
    }
    None
}

/// Options of one mount.
#[derive(Clone, Debug, Default)]
pub struct LazyFsOptions {
    /// Loaded at mount as the durable state; replaced by the contents at
    /// a clean unmount. `None`: start empty, save nothing.
    pub backing: Option<PathBuf>,
    /// Added to every fsync, fdatasync and directory fsync.
    pub fsync_delay_ms: u64,
}

/// A mounted lazy file system. Dropping it unmounts (without saving).
pub struct LazyFsMount {
    mountpoint: PathBuf,
    options: LazyFsOptions,
    shared: Arc<Shared>,
    session: Option<BackgroundSession>,
}

impl std::fmt::Debug for LazyFsMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyFsMount")
            .field("mountpoint", &self.mountpoint)
            .field("options", &self.options)
            .finish()
    }
}

impl LazyFsMount {
    /// Mounts a lazy file system on `mountpoint` (created if missing; it
    /// must be empty and not a mount already).
    pub fn mount(mountpoint: &Path, options: LazyFsOptions) -> Result<LazyFsMount, String> {
        if let Some(reason) = unavailable_reason() {
            return Err(reason);
        }
        std::fs::create_dir_all(mountpoint)
            .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let mountpoint = mountpoint
            .canonicalize()
            .map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let mut model = Model::new();
        // SAFETY: getuid/getgid have no preconditions.
        set_root_owner(&mut model, unsafe { libc::getuid() }, unsafe {
            libc::getgid()
        });
        if let Some(backing) = &options.backing {
            std::fs::create_dir_all(backing).map_err(|e| format!("{}: {e}", backing.display()))?;
            load_tree(&mut model, backing, ROOT)
                .map_err(|e| format!("loading {}: {e}", backing.display()))?;
            // What the backing directory holds is durable: it is the disk.
            model.sync_everything();
        }
        let shared = Shared::new(model, options.fsync_delay_ms);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("lazyfs".into()),
            MountOption::Subtype("lazyfs".into()),
            // If this process dies, fusermount3 unmounts: no dead mount
            // ("transport endpoint is not connected") is left behind.
            MountOption::AutoUnmount,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        // auto_unmount needs allow_other; fuser still admits only root
        // and the owner.
        config.acl = SessionACL::RootAndOwner;
        let session = fuser::spawn_mount(LazyFs::new(shared.clone()), &mountpoint, &config)
            .map_err(|e| {
                format!(
                    "mounting the lazy file system on {}: {e}",
                    mountpoint.display()
                )
            })?;
        let mount = LazyFsMount {
            mountpoint,
            options,
            shared,
            session: Some(session),
        };
        mount.wait_ready()?;
        Ok(mount)
    }

    /// Waits until the kernel routes the mount point to us (the mount is
    /// finished by a helper process).
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = std::time::Instant::now() + MOUNT_READY_TIMEOUT;
        loop {
            if is_lazyfs_mount(&self.mountpoint) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "{} did not show up as a lazyfs mount within {MOUNT_READY_TIMEOUT:?}",
                    self.mountpoint.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Rolls every file back to its last fsync and every directory to its
    /// durable entries. Kill the processes using the mount first.
    pub fn power_cut(&self) -> CutReport {
        self.shared.lock().power_cut()
    }

    pub fn set_fsync_delay_ms(&self, ms: u64) {
        self.shared
            .fsync_delay_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats()
    }

    /// Shared state, for the control socket of the standalone process.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Clean unmount: everything becomes durable (as a real unmount
    /// syncs), is saved into the backing directory if there is one, and
    /// the mount goes away.
    pub fn unmount(mut self) -> Result<(), String> {
        let saved = match &self.options.backing {
            Some(backing) => {
                let mut model = self.shared.lock();
                model.sync_everything();
                save_tree(&model, backing)
                    .map_err(|e| format!("saving into {}: {e}", backing.display()))
            }
            None => Ok(()),
        };
        let unmounted = self.detach();
        saved.and(unmounted)
    }

    fn detach(&mut self) -> Result<(), String> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // Lazy unmount first: it succeeds even if something still holds a
        // file open (a node the caller forgot to kill); the FUSE thread
        // then ends when the kernel lets go.
        let c_path = std::ffi::CString::new(self.mountpoint.as_os_str().as_bytes())
            .map_err(|e| e.to_string())?;
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(session.umount_and_join());
        });
        match rx.recv_timeout(UNMOUNT_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("unmounting {}: {e}", self.mountpoint.display())),
            Err(_) => Err(format!(
                "unmounting {}: the FUSE thread did not finish within {UNMOUNT_TIMEOUT:?} (a process still uses it?)",
                self.mountpoint.display()
            )),
        }
    }
}

impl Drop for LazyFsMount {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            eprintln!("lazyfs: {e}");
        }
    }
}

/// Whether `path` is currently a lazyfs mount point (per /proc/self/mounts).
pub fn is_lazyfs_mount(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    let want = path.to_string_lossy();
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        // /proc/mounts escapes spaces as \040.
        target.replace("\\040", " ") == want && (source == "lazyfs" || fstype.ends_with("lazyfs"))
    })
}

/// Unmounts (lazily) every lazyfs mount at or below `dir`: the cleanup for
/// a harness that was killed before its handles could unmount. Returns
/// the paths unmounted.
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    let mut done = Vec::new();
    for line in mounts.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 3 || !(fields[0] == "lazyfs" || fields[2].ends_with("lazyfs")) {
            continue;
        }
        let target = PathBuf::from(fields[1].replace("\\040", " "));
        if !target.starts_with(dir) {
            continue;
        }
        if let Ok(c) = std::ffi::CString::new(target.as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                done.push(target);
            }
        }
    }
    done
}

/// Copies the tree under `dir` into the model below `parent`.
fn load_tree(model: &mut Model, dir: &Path, parent: u64) -> std::io::Result<()> {
    let errno = |e: i32| std::io::Error::from_raw_os_error(e);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = std::fs::symlink_metadata(entry.path())?;
        let name = entry.file_name();
        use std::os::unix::fs::MetadataExt;
        let owner = Owner {
            perm: (meta.mode() & 0o7777) as u16,
            uid: meta.uid(),
            gid: meta.gid(),
        };
        if meta.is_dir() {
            let ino = model
                .create(parent, &name, Kind::Dir, owner, None)
                .map_err(errno)?;
            load_tree(model, &entry.path(), ino)?;
        } else if meta.is_file() {
            let ino = model
                .create(parent, &name, Kind::File, owner, None)
                .map_err(errno)?;
            use std::io::Read;
            let mut f = std::fs::File::open(entry.path())?;
            let mut buf = vec![0u8; BACKING_IO_CHUNK];
            let mut offset = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                model.write(ino, offset, &buf[..n]).map_err(errno)?;
                offset += n as u64;
            }
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            model
                .create(
                    parent,
                    &name,
                    Kind::Symlink,
                    Owner {
                        perm: 0o777,
                        ..owner
                    },
                    Some(target),
                )
                .map_err(errno)?;
        }
        // Sockets, fifos and devices are not carried over.
    }
    Ok(())
}

/// Replaces the contents of `backing` with the model's current tree:
/// written beside it, then swapped in, so a crash while saving leaves the
/// old copy or the new one.
fn save_tree(model: &Model, backing: &Path) -> std::io::Result<()> {
    let name = backing
        .file_name()
        .ok_or_else(|| std::io::Error::other("backing directory has no name"))?
        .to_string_lossy()
        .into_owned();
    let parent = backing.parent().unwrap_or(Path::new("."));
    let fresh = parent.join(format!(".{name}.lazyfs-new"));
    let old = parent.join(format!(".{name}.lazyfs-old"));
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_dir_all(&old);
    std::fs::create_dir_all(&fresh)?;
    write_tree(model, ROOT, &fresh)?;
    if backing.exists() {
        std::fs::rename(backing, &old)?;
    }
    std::fs::rename(&fresh, backing)?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn write_tree(model: &Model, dir: u64, path: &Path) -> std::io::Result<()> {
    let errno = |e: i32| std::io::Error::from_raw_os_error(e);
    for (name, ino, kind) in model.list(dir).map_err(errno)? {
        let target = path.join(&name);
        match kind {
            Kind::Dir => {
                std::fs::create_dir(&target)?;
                write_tree(model, ino, &target)?;
            }
            Kind::File => {
                use std::io::Write;
                let mut f = std::fs::File::create(&target)?;
                let len = model.get(ino).map_err(errno)?.size();
                let mut offset = 0u64;
                while offset < len {
                    let bytes = model.read(ino, offset, BACKING_IO_CHUNK).map_err(errno)?;
                    if bytes.is_empty() {
                        break;
                    }
                    f.write_all(&bytes)?;
                    offset += bytes.len() as u64;
                }
                f.sync_all()?;
            }
            Kind::Symlink => {
                if let super::model::Node::Symlink { target: to } =
                    &model.get(ino).map_err(errno)?.node
                {
                    std::os::unix::fs::symlink(to, &target)?;
                }
            }
        }
    }
    Ok(())
}
