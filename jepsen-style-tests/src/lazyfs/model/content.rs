//! File contents as shared fixed-size chunks: what a write copies and what
//! an fsync shares between the current and durable states.
//!
//! Must not: know about inodes, names or durability rules (`super` owns them).

use std::sync::Arc;

use super::CHUNK;

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
