//! The file sink: each message as one JSON line appended to a file, fsynced
//! before the batch counts as delivered.
//!
//! Owns: the append. Must not: acknowledge anything (`mod.rs` does).

use std::io::Write;
use std::path::PathBuf;

use state_machine::OutboxMessage;

use super::Delivered;

pub(crate) struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub(crate) fn new(path: PathBuf) -> FileSink {
        FileSink { path }
    }

    /// All or nothing: the lines are written and fsynced together.
    pub(crate) async fn deliver(&self, messages: &[OutboxMessage]) -> Delivered {
        let mut lines = Vec::new();
        for m in messages {
            if let Err(e) = serde_json::to_writer(&mut lines, m) {
                return Delivered {
                    accepted: 0,
                    undeliverable: 0,
                    error: Some(e.to_string()),
                };
            }
            lines.push(b'\n');
        }
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(&lines)?;
            f.sync_data()
        })
        .await;
        let error = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("cannot write {}: {e}", self.path.display())),
            Err(e) => Some(e.to_string()),
        };
        Delivered {
            accepted: if error.is_none() { messages.len() } else { 0 },
            undeliverable: 0,
            error,
        }
    }
}
