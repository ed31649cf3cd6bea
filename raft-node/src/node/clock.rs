//! The leader's stamp clock and the clock-offset hook of the Jepsen suite's
//! clock nemesis.
//!
//! Owns: [`StampClock`] (wall time plus an injected offset, never going
//! backwards, never below the log time already reached: DESIGN §3), and the
//! task that re-reads the offset file every [`CLOCK_OFFSET_REFRESH_MS`] when
//! `BOOKING_FAULT_CLOCK=1`. Must not: be read by the state machine (log time
//! comes from the stamps in the log), or read the offset file unless
//! `BOOKING_FAULT_CLOCK=1`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use super::NodeCore;

/// How often the clock-offset file is re-read when fault injection is on.
pub const CLOCK_OFFSET_REFRESH_MS: u64 = 100;
/// Name of the clock-offset file in a node's data directory.
pub const CLOCK_OFFSET_FILE: &str = "clock-offset-ms";
/// Environment variable that enables the clock-offset hook (`1`).
pub const FAULT_CLOCK_ENV: &str = "BOOKING_FAULT_CLOCK";
/// Environment variable naming a directory that holds the offset files
/// instead (`<dir>/<data dir's name>.clock-offset-ms`, e.g.
/// `node-2.clock-offset-ms`). The Jepsen suite sets it so its control files
/// live outside a data directory that a simulated power cut rolls back.
pub const FAULT_CLOCK_DIR_ENV: &str = "BOOKING_FAULT_CLOCK_DIR";

/// The clock-offset file of the node whose data directory is `data_dir`, or
/// `None` unless `BOOKING_FAULT_CLOCK=1`.
pub fn fault_offset_file(data_dir: &std::path::Path) -> Option<PathBuf> {
    if !std::env::var(FAULT_CLOCK_ENV).is_ok_and(|v| v == "1") {
        return None;
    }
    match std::env::var_os(FAULT_CLOCK_DIR_ENV) {
        Some(dir) if !dir.is_empty() => {
            let name = data_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "node".into());
            Some(PathBuf::from(dir).join(format!("{name}.{CLOCK_OFFSET_FILE}")))
        }
        _ => Some(data_dir.join(CLOCK_OFFSET_FILE)),
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The leader's clock for stamps: wall time plus an injected offset (fault
/// tests only), never going backwards.
pub struct StampClock {
    last_stamp_ms: Mutex<u64>,
    offset_ms: AtomicI64,
    /// `Some` only with `BOOKING_FAULT_CLOCK=1`: the file to read the offset from.
    offset_file: Option<PathBuf>,
}

impl StampClock {
    pub fn new(offset_file: Option<PathBuf>) -> StampClock {
        let clock = StampClock {
            last_stamp_ms: Mutex::new(0),
            offset_ms: AtomicI64::new(0),
            offset_file,
        };
        clock.refresh_offset();
        clock
    }

    /// Re-reads the offset file (missing or unparsable: offset 0).
    pub fn refresh_offset(&self) {
        let Some(path) = &self.offset_file else {
            return;
        };
        let offset = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Wall clock plus the injected offset, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        (wall_ms() as i64)
            .saturating_add(self.offset_ms.load(Ordering::Relaxed))
            .max(0) as u64
    }

    /// The stamp [`StampClock::stamp`] would give now, without taking it.
    pub fn peek(&self, floor_ms: u64) -> u64 {
        let last = *self.last_stamp_ms.lock().unwrap_or_else(|p| p.into_inner());
        self.now_ms().max(last).max(floor_ms)
    }

    /// `max(now_ms + clock_offset_ms, last_stamp_ms, floor_ms)` (DESIGN §3):
    /// `floor_ms` is the state machine's clock, so a new leader whose clock is
    /// behind never stamps below the log time already reached.
    pub fn stamp(&self, floor_ms: u64) -> u64 {
        let mut last = self.last_stamp_ms.lock().unwrap_or_else(|p| p.into_inner());
        let s = self.now_ms().max(*last).max(floor_ms);
        *last = s;
        s
    }
}

pub(super) async fn clock_task(core: Arc<NodeCore>, mut stop: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(Duration::from_millis(CLOCK_OFFSET_REFRESH_MS));
    loop {
        tokio::select! {
            _ = interval.tick() => core.clock.refresh_offset(),
            _ = stop.changed() => break,
        }
    }
}
