//! The durability half of [`Model`]: fsync of files and directories,
//! which names and entries become durable, and the power cut that rolls
//! every inode back to its durable state.
//!
//! Must not: do I/O; the rules it implements are written out in the
//! lazy file system's module docs ("The durability model").

use super::*;

impl Model {
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
        let mut rolled_back = Vec::new();
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
                        rolled_back.push(ino);
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
        let mut paths: Vec<String> = rolled_back
            .into_iter()
            .filter_map(|ino| self.durable_path(ino))
            .map(|p| p.display().to_string())
            .collect();
        paths.sort();
        paths.truncate(super::CUT_REPORT_PATHS_MAX);
        report.rolled_back_paths = paths;
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
