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
    assert_eq!(r.rolled_back_paths, vec!["a".to_string()]);
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
