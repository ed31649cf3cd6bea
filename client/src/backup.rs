//! The backup file (`bookctl snapshot save FILE`, `booking restore --from
//! FILE`): what it holds and how it is checked.
//!
//! Layout: a first line `booking-backup <format>`, a second line with the
//! [`BackupHeader`] as JSON, then exactly `data_bytes` bytes of the state
//! machine's snapshot (`BookingState::snapshot`, which carries its own
//! checksum as well). The header's `data_blake3` covers those bytes.
//!
//! Owns: writing a backup durably (a temporary file, fsynced, renamed, the
//! directory fsynced) from a header and a stream of chunks, checked against
//! the header before the rename; reading one back with every check, each
//! failure naming the file and what is wrong. Must not: talk to a node (the
//! client's `save_snapshot` does) or restore anything (raft-node's `backup`).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first word of a backup file.
pub const BACKUP_MAGIC: &str = "booking-backup";
/// The layout this build writes and reads.
pub const BACKUP_FORMAT: u32 = 1;
/// Longest header line accepted (a header is a few hundred bytes).
const HEADER_LINE_MAX: u64 = 64 * 1024;

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The cluster the backup was taken from.
    pub cluster_name: String,
    /// The snapshot's last log id: every entry up to it is in the state.
    pub last_log_index: u64,
    pub last_log_term: u64,
    pub last_log_node: u64,
    /// Hex blake3 of the state (`bookctl status` shows the same hash).
    pub state_hash: String,
    pub data_bytes: u64,
    /// Hex blake3 of the data bytes.
    pub data_blake3: String,
    /// When `bookctl` saved it (Unix ms, the saving host's clock).
    pub saved_at_unix_ms: u64,
}

/// Why a backup file cannot be written or used.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(path: &Path, problem: impl Into<String>) -> BackupError {
    BackupError::Invalid {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A backup being written: data is appended chunk by chunk and hashed; only
/// [`BackupWriter::finish`] makes the file appear under its name.
pub struct BackupWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: std::fs::File,
    header: BackupHeader,
    hasher: blake3::Hasher,
    written: u64,
}

impl BackupWriter {
    /// Starts `path` (as `<path>.tmp`) with `header`.
    pub fn create(path: &Path, header: BackupHeader) -> Result<BackupWriter, BackupError> {
        let tmp = path.with_extension("tmp-backup");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let json = serde_json::to_string(&header)
            .map_err(|e| invalid(path, format!("header does not encode: {e}")))?;
        write!(file, "{BACKUP_MAGIC} {BACKUP_FORMAT}\n{json}\n").map_err(io(&tmp))?;
        Ok(BackupWriter {
            path: path.to_path_buf(),
            tmp,
            file,
            header,
            hasher: blake3::Hasher::new(),
            written: 0,
        })
    }

    /// Appends the next chunk of data.
    pub fn append(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        self.written += chunk.len() as u64;
        if self.written > self.header.data_bytes {
            return Err(self.abandon(format!(
                "the node sent more than the {} bytes its header announced",
                self.header.data_bytes
            )));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).map_err(io(&self.tmp))
    }

    /// Checks length and checksum against the header, then makes the file
    /// durable under its name.
    pub fn finish(mut self) -> Result<BackupHeader, BackupError> {
        if self.written != self.header.data_bytes {
            return Err(self.abandon(format!(
                "got {} of the {} bytes the header announced",
                self.written, self.header.data_bytes
            )));
        }
        let sum = hex(self.hasher.finalize().as_bytes());
        if sum != self.header.data_blake3 {
            return Err(self.abandon("the data received does not match its checksum".into()));
        }
        self.file.sync_all().map_err(io(&self.tmp))?;
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(self.header.clone())
    }

    fn abandon(&mut self, problem: String) -> BackupError {
        let _ = std::fs::remove_file(&self.tmp);
        invalid(&self.path, problem)
    }
}

impl Drop for BackupWriter {
    /// A writer dropped before [`BackupWriter::finish`] (a broken stream)
    /// leaves no temporary file; after it, the name is already gone.
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Reads and checks a backup: its magic and format, its header, exactly the
/// announced bytes and their checksum. Returns the header and the data.
pub fn read_backup(path: &Path) -> Result<(BackupHeader, Vec<u8>), BackupError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut reader = BufReader::new(file);
    let mut first = String::new();
    (&mut reader)
        .take(64)
        .read_line(&mut first)
        .map_err(io(path))?;
    let mut words = first.trim_end().split(' ');
    if words.next() != Some(BACKUP_MAGIC) {
        return Err(invalid(
            path,
            format!("not a booking backup (it does not start with {BACKUP_MAGIC:?})"),
        ));
    }
    let format = words.next().and_then(|w| w.parse::<u32>().ok());
    if format != Some(BACKUP_FORMAT) {
        return Err(invalid(
            path,
            format!(
                "backup format {:?}; this build reads format {BACKUP_FORMAT}",
                format.map_or("unreadable".to_string(), |f| f.to_string())
            ),
        ));
    }
    let mut line = String::new();
    (&mut reader)
        .take(HEADER_LINE_MAX)
        .read_line(&mut line)
        .map_err(io(path))?;
    let header: BackupHeader = serde_json::from_str(line.trim_end())
        .map_err(|e| invalid(path, format!("the header line is damaged: {e}")))?;
    let mut data = Vec::new();
    (&mut reader)
        .take(header.data_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io(path))?;
    if data.len() as u64 != header.data_bytes {
        return Err(invalid(
            path,
            format!(
                "{} data bytes where the header announces {} (truncated or extended)",
                data.len(),
                header.data_bytes
            ),
        ));
    }
    if hex(blake3::hash(&data).as_bytes()) != header.data_blake3 {
        return Err(invalid(
            path,
            "the data does not match its checksum (damaged)",
        ));
    }
    Ok((header, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(data: &[u8]) -> BackupHeader {
        BackupHeader {
            cluster_name: "c".into(),
            last_log_index: 7,
            last_log_term: 2,
            last_log_node: 1,
            state_hash: "00".into(),
            data_bytes: data.len() as u64,
            data_blake3: hex(blake3::hash(data).as_bytes()),
            saved_at_unix_ms: 1,
        }
    }

    // Goal: a written backup reads back whole; every kind of damage is
    // refused with a message naming it, and a failed write leaves no file.
    #[test]
    fn backups_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.backup");
        let data: Vec<u8> = (0..3_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = BackupWriter::create(&path, header(&data)).unwrap();
        for chunk in data.chunks(1_000) {
            w.append(chunk).unwrap();
        }
        w.finish().unwrap();
        let (h, back) = read_backup(&path).unwrap();
        assert_eq!((h, back), (header(&data), data.clone()));

        let bytes = std::fs::read(&path).unwrap();
        let damaged = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            read_backup(&p).unwrap_err().to_string()
        };
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(damaged("flip", &flipped).contains("checksum"));
        assert!(damaged("short", &bytes[..bytes.len() - 1]).contains("truncated"));
        assert!(damaged("long", &[&bytes[..], b"x"].concat()).contains("extended"));
        assert!(damaged("foreign", b"PK\x03\x04 zip").contains("not a booking backup"));
        assert!(damaged("future", b"booking-backup 9\n{}\n").contains("format"));

        // A write whose data does not match its header leaves nothing.
        let other = dir.path().join("other.backup");
        let mut w = BackupWriter::create(&other, header(&data)).unwrap();
        w.append(&data[..10]).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("got 10"));
        assert!(!other.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
    }
}
