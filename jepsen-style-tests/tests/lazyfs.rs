//! The lazy file system mounted for real (FUSE): what survives a power cut.
//!
//! Each test mounts its own file system under its own temporary directory
//! and unmounts it even when it fails (the handle unmounts on drop). They
//! need root, `/dev/fuse` and `fusermount3`: without them each prints a loud
//! SKIP and passes, except under `CI=true`, where that is a failure.
//!
//! The sled tests are the evidence the durability fix relies on: sled 0.34's
//! `flush_async` alone does not survive a power cut; an added `sync_all` of
//! its files and directory does.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jepsen_style_tests::lazyfs::{self, LazyFsMount, LazyFsOptions};

/// Keys the sled tests insert.
const SLED_KEYS: u32 = 200;
/// Value size of the sled tests (well below sled's blob threshold).
const SLED_VALUE_BYTES: usize = 100;

/// A temporary directory of this test, removed at the end.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!("lazyfs-test-{}-{name}", std::process::id()));
        // A mount left by an earlier crashed run of the same pid is unlikely,
        // but cheap to clear.
        lazyfs::unmount_all_under(&dir);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        lazyfs::unmount_all_under(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Mounts a fresh lazy file system, or `None` after a loud SKIP.
fn mount_or_skip(test: &str, dir: &TestDir, fsync_delay_ms: u64) -> Option<LazyFsMount> {
    if let Some(reason) = lazyfs::unavailable_reason() {
        testkit::skip_or_fail(test, &reason);
        return None;
    }
    let options = LazyFsOptions {
        backing: None,
        fsync_delay_ms,
    };
    Some(LazyFsMount::mount(&dir.path().join("mnt"), options).expect("mount the lazy file system"))
}

fn read(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    File::open(path).ok()?.read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

#[test]
fn unsynced_write_is_gone_after_a_power_cut() {
    let dir = TestDir::new("unsynced");
    let Some(fs) = mount_or_skip("unsynced_write_is_gone_after_a_power_cut", &dir, 0) else {
        return;
    };
    let root = fs.mountpoint().to_path_buf();
    // Created, written, closed, read back: all through the "page cache".
    fs::write(root.join("a"), b"hello").unwrap();
    assert_eq!(read(&root.join("a")).unwrap(), b"hello");
    let report = fs.power_cut();
    assert_eq!(read(&root.join("a")), None, "a file nobody synced is gone");
    assert_eq!(
        (report.inodes_dropped, report.bytes_lost),
        (1, 0),
        "{report:?}"
    );
    // The name made durable (directory fsync), the data not: empty.
    let b = root.join("b");
    let mut f = File::create(&b).unwrap();
    f.write_all(b"not synced").unwrap();
    drop(f);
    sync_dir(&root);
    let report = fs.power_cut();
    assert_eq!(
        read(&b).unwrap(),
        b"",
        "a synced name without synced data is empty"
    );
    assert_eq!(
        (report.files_rolled_back, report.bytes_lost),
        (1, 10),
        "{report:?}"
    );
}

#[test]
fn synced_write_survives_and_the_unsynced_tail_does_not() {
    let dir = TestDir::new("synced");
    let Some(fs) = mount_or_skip(
        "synced_write_survives_and_the_unsynced_tail_does_not",
        &dir,
        0,
    ) else {
        return;
    };
    let root = fs.mountpoint().to_path_buf();
    let path = root.join("data");
    let mut f = File::create(&path).unwrap();
    f.write_all(b"synced").unwrap();
    f.sync_data().unwrap();
    f.write_all(b" and then lost").unwrap();
    drop(f);
    assert_eq!(read(&path).unwrap(), b"synced and then lost");
    let report = fs.power_cut();
    // fdatasync made the data and, as a new file's fsync does on Linux
    // file systems, its name durable.
    assert_eq!(read(&path).unwrap(), b"synced");
    assert_eq!(report.bytes_lost, 14, "{report:?}");
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        6,
        "the length rolled back too"
    );
}

#[test]
fn rename_is_durable_only_after_the_directory_is_synced() {
    let dir = TestDir::new("rename");
    let Some(fs) = mount_or_skip(
        "rename_is_durable_only_after_the_directory_is_synced",
        &dir,
        0,
    ) else {
        return;
    };
    let root = fs.mountpoint().to_path_buf();
    let write_synced = |name: &str, bytes: &[u8]| {
        let mut f = File::create(root.join(name)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    };
    write_synced("snapshot", b"old");
    // tmp -> fsync -> rename, no directory fsync: the rename is lost.
    write_synced("snapshot.tmp", b"new");
    fs::rename(root.join("snapshot.tmp"), root.join("snapshot")).unwrap();
    assert_eq!(read(&root.join("snapshot")).unwrap(), b"new");
    fs.power_cut();
    assert_eq!(read(&root.join("snapshot")).unwrap(), b"old");
    assert_eq!(read(&root.join("snapshot.tmp")).unwrap(), b"new");
    // The same with the directory fsync: the rename survives, whole.
    fs::rename(root.join("snapshot.tmp"), root.join("snapshot")).unwrap();
    sync_dir(&root);
    fs.power_cut();
    assert_eq!(read(&root.join("snapshot")).unwrap(), b"new");
    assert_eq!(read(&root.join("snapshot.tmp")), None);
    // An unlink likewise needs the directory fsync.
    fs::remove_file(root.join("snapshot")).unwrap();
    fs.power_cut();
    assert_eq!(read(&root.join("snapshot")).unwrap(), b"new");
    fs::remove_file(root.join("snapshot")).unwrap();
    sync_dir(&root);
    fs.power_cut();
    assert_eq!(read(&root.join("snapshot")), None);
}

#[test]
fn fsync_delay_is_added_to_each_fsync() {
    let dir = TestDir::new("delay");
    let Some(fs) = mount_or_skip("fsync_delay_is_added_to_each_fsync", &dir, 50) else {
        return;
    };
    let mut f = File::create(fs.mountpoint().join("f")).unwrap();
    f.write_all(b"x").unwrap();
    let started = Instant::now();
    for _ in 0..4 {
        f.sync_data().unwrap();
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200),
        "4 fsyncs at 50 ms took {took:?}"
    );
    fs.set_fsync_delay_ms(0);
    let started = Instant::now();
    f.sync_data().unwrap();
    assert!(started.elapsed() < Duration::from_millis(50));
}

#[test]
fn a_clean_unmount_saves_into_the_backing_directory_and_a_mount_loads_it() {
    let dir = TestDir::new("backing");
    if mount_or_skip("a_clean_unmount_saves_into_the_backing_directory", &dir, 0).is_none() {
        return;
    }
    let backing = dir.path().join("backing");
    fs::create_dir_all(backing.join("d")).unwrap();
    fs::write(backing.join("d/old"), b"from disk").unwrap();
    let mnt = dir.path().join("mnt2");
    let options = LazyFsOptions {
        backing: Some(backing.clone()),
        fsync_delay_ms: 0,
    };
    let fs = LazyFsMount::mount(&mnt, options.clone()).unwrap();
    assert_eq!(read(&mnt.join("d/old")).unwrap(), b"from disk");
    fs::write(mnt.join("d/new"), b"unsynced").unwrap();
    // What the backing directory held is durable: it survives a cut.
    fs.power_cut();
    assert_eq!(read(&mnt.join("d/old")).unwrap(), b"from disk");
    fs::write(mnt.join("d/new"), b"kept by a clean unmount").unwrap();
    fs.unmount().unwrap();
    assert!(!lazyfs::is_lazyfs_mount(&mnt.canonicalize().unwrap()));
    assert_eq!(
        read(&backing.join("d/new")).unwrap(),
        b"kept by a clean unmount"
    );
}

// ----- sled 0.34 on the lazy file system -----------------------------------

fn key(i: u32) -> [u8; 4] {
    i.to_be_bytes()
}

/// Set in the child process that writes to sled: `<sled path>\n<ExtraSync as Debug>`.
const WRITER_ENV: &str = "LAZYFS_SLED_WRITER";
/// What the child prints once its writes are flushed (and synced).
const FLUSHED_MARKER: &str = "LAZYFS-SLED-FLUSHED";
/// sled's periodic `sync_all` interval in these tests. The store runs the
/// default (500 ms); a long interval here keeps the flusher's own sync
/// from landing between the flush and the kill, which would make the
/// outcome a matter of timing. Its first sync runs at open.
const SLED_FLUSH_EVERY_MS: u64 = 10_000;

/// What the writer does after `flush_async`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ExtraSync {
    /// Nothing: the store today.
    None,
    /// `sync_data` of the `db` file only (issue 12 item 1's first step).
    DbOnly,
    /// `sync_all` of `db` and `conf`, and of the sled and `blobs` directories.
    All,
}

/// Opens sled at `path`, inserts `SLED_KEYS` keys, awaits `flush_async`
/// (what the store does before acknowledging), then syncs per `extra`.
fn sled_insert_and_flush(path: &Path, extra: ExtraSync) -> sled::Db {
    let db = sled::Config::new()
        .path(path)
        .flush_every_ms(Some(SLED_FLUSH_EVERY_MS))
        .open()
        .unwrap();
    // Let the flusher's first pass (at open) finish: the database file
    // exists durably, as for a node that has been up a while.
    std::thread::sleep(Duration::from_millis(500));
    let value = vec![7u8; SLED_VALUE_BYTES];
    for i in 0..SLED_KEYS {
        db.insert(key(i), value.clone()).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(db.flush_async()).unwrap();
    if extra == ExtraSync::DbOnly {
        OpenOptions::new()
            .write(true)
            .open(path.join("db"))
            .unwrap()
            .sync_data()
            .unwrap();
    }
    if extra == ExtraSync::All {
        // The fix's extra step: make what the flush wrote durable.
        for file in ["db", "conf"] {
            OpenOptions::new()
                .write(true)
                .open(path.join(file))
                .unwrap()
                .sync_all()
                .unwrap();
        }
        sync_dir(path);
        sync_dir(&path.join("blobs"));
    }
    db
}

/// The child process of the sled tests: writes, flushes, says so, then
/// waits to be killed with SIGKILL. Not a test on its own (ignored); the
/// sled tests run it with `--ignored --exact`.
#[test]
#[ignore = "helper process of the sled tests, run by them"]
fn sled_writer_child() {
    let Ok(spec) = std::env::var(WRITER_ENV) else {
        return;
    };
    let (path, extra) = spec.split_once('\n').expect("path\\nmode");
    let extra = [ExtraSync::None, ExtraSync::DbOnly, ExtraSync::All]
        .into_iter()
        .find(|m| format!("{m:?}") == extra)
        .expect("a known mode");
    let db = sled_insert_and_flush(Path::new(path), extra);
    println!("{FLUSHED_MARKER}");
    std::io::stdout().flush().unwrap();
    // Killed long before this ends.
    std::thread::sleep(Duration::from_secs(120));
    drop(db);
}

/// Reopens sled after the cut and counts the keys that survived.
fn sled_keys_after_cut(path: &Path) -> Result<u32, String> {
    let db = sled::Config::new()
        .path(path)
        .open()
        .map_err(|e| format!("sled does not open after the cut: {e}"))?;
    let mut present = 0;
    for i in 0..SLED_KEYS {
        if db.get(key(i)).map_err(|e| e.to_string())?.is_some() {
            present += 1;
        }
    }
    Ok(present)
}

/// Runs one sled scenario on a fresh mount: a child process writes and
/// flushes, is killed with SIGKILL, the power is cut, sled reopens.
/// `Ok(keys present)`, or `Err` if sled could not reopen.
fn sled_scenario(test: &str, extra: ExtraSync) -> Option<Result<u32, String>> {
    use std::io::BufRead;
    let dir = TestDir::new(test);
    let fs = mount_or_skip(test, &dir, 0)?;
    let path = fs.mountpoint().join("sled");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sled_writer_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, format!("{}\n{extra:?}", path.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let flushed = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains(FLUSHED_MARKER));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(flushed, "{test}: the writer process ended before flushing");
    let report = fs.power_cut();
    let result = sled_keys_after_cut(&path);
    eprintln!(
        "{test}: {SLED_KEYS} keys inserted, flush_async then {extra:?} returned, kill -9, power cut ({report:?}); reopened: {result:?}"
    );
    Some(result)
}

#[test]
fn sled_flush_async_alone_loses_flushed_keys_at_a_power_cut() {
    let Some(result) = sled_scenario("sled-flush-only", ExtraSync::None) else {
        return;
    };
    let present = result.unwrap_or(0);
    assert!(
        present < SLED_KEYS,
        "flush_async (sync_file_range) is not an fsync, so the keys it flushed must not all survive; {present} of {SLED_KEYS} did"
    );
}

#[test]
fn sled_flush_async_plus_sync_all_keeps_every_key() {
    let Some(result) = sled_scenario("sled-flush-sync", ExtraSync::All) else {
        return;
    };
    assert_eq!(
        result,
        Ok(SLED_KEYS),
        "flush_async + sync_all of db, conf and the directories"
    );
}

#[test]
fn sled_flush_async_plus_sync_data_of_the_db_file_keeps_every_key() {
    // The db file's name was made durable by sled's own first sync at
    // open; `conf` and `blobs/` vanish at the cut and sled recreates them.
    let Some(result) = sled_scenario("sled-flush-syncdata-db", ExtraSync::DbOnly) else {
        return;
    };
    assert_eq!(
        result,
        Ok(SLED_KEYS),
        "flush_async + sync_data of the db file"
    );
}
