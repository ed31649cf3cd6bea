//! The history recorder: every operation's invoke and completion, timed by
//! one monotonic clock, from many client tasks at once.
//!
//! Owns: the run's clock (`Instant` at the start of the run; every `time_ns`
//! is measured from it) and the ordered list of [`BookingEvent`]s, plus the
//! fault windows the nemesis reports, so a report can shade them.
//!
//! Must not: interpret results (the workloads decide `ok`/`fail`/`info`) or
//! block for long: the lock is held only to push one event.
//!
//! Caveat: the order of lines is the order in which `record` took the lock,
//! which agrees with `time_ns` because the time is read under the lock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use crate::booking::{BookingEvent, BookingF};
use crate::history::{Event, EventType};

/// Most events one run records. Past it, new invocations are refused (the
/// workload stops issuing operations) so memory and checking time stay bounded.
pub const EVENTS_MAX: usize = 2_000_000;

/// One fault as it actually happened, for the report.
#[derive(Serialize, Clone, Debug)]
pub struct FaultWindow {
    /// The nemesis step's kind, e.g. `partition-isolate-leader`.
    pub kind: String,
    /// What was done, with resolved node ids.
    pub detail: String,
    pub start_ns: u64,
    /// `None` if the run ended before the heal (the final heal then covers it).
    pub end_ns: Option<u64>,
    /// The nodes whose clocks the fault moved (empty for other faults): the
    /// checkers do not judge time across a window that moved a majority's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clocks_moved: Vec<u64>,
}

/// Thread-safe history of one run.
pub struct Recorder {
    started: Instant,
    events: Mutex<Vec<BookingEvent>>,
    faults: Mutex<Vec<FaultWindow>>,
    /// Counters for the progress line, so it never scans the history.
    invokes: AtomicUsize,
    completions_ok: AtomicUsize,
    completions_other: AtomicUsize,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            started: Instant::now(),
            events: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            invokes: AtomicUsize::new(0),
            completions_ok: AtomicUsize::new(0),
            completions_other: AtomicUsize::new(0),
        }
    }

    /// Nanoseconds since the run started, on the run's one monotonic clock.
    pub fn now_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    /// Records an invocation; `false` when the history is full (nothing recorded).
    pub fn invoke(&self, process: u64, f: BookingF, value: Value) -> bool {
        let mut events = self.events.lock().expect("recorder lock poisoned");
        if events.len() >= EVENTS_MAX {
            return false;
        }
        let time_ns = self.now_ns();
        events.push(Event {
            process,
            kind: EventType::Invoke,
            f,
            value,
            time_ns,
            index: None,
        });
        self.invokes.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Records the completion of `process`'s open operation. Always recorded,
    /// even past [`EVENTS_MAX`], so no invocation is left without its answer.
    pub fn complete(
        &self,
        process: u64,
        kind: EventType,
        f: BookingF,
        value: Value,
        index: Option<u64>,
    ) {
        assert!(
            kind != EventType::Invoke,
            "a completion cannot be an invoke"
        );
        let mut events = self.events.lock().expect("recorder lock poisoned");
        let time_ns = self.now_ns();
        events.push(Event {
            process,
            kind,
            f,
            value,
            time_ns,
            index,
        });
        let counter = if kind == EventType::Ok {
            &self.completions_ok
        } else {
            &self.completions_other
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A fault started, moving the clocks of `clocks_moved` (if any);
    /// returns its index for [`Recorder::fault_healed`].
    pub fn fault_started(&self, kind: &str, detail: String, clocks_moved: Vec<u64>) -> usize {
        let mut faults = self.faults.lock().expect("recorder lock poisoned");
        faults.push(FaultWindow {
            kind: kind.to_string(),
            detail,
            start_ns: self.now_ns(),
            end_ns: None,
            clocks_moved,
        });
        faults.len() - 1
    }

    pub fn fault_healed(&self, index: usize) {
        let now = self.now_ns();
        let mut faults = self.faults.lock().expect("recorder lock poisoned");
        if let Some(f) = faults.get_mut(index) {
            f.end_ns.get_or_insert(now);
        }
    }

    /// Closes every fault window still open (the final heal).
    pub fn close_all_faults(&self) {
        let now = self.now_ns();
        for f in self
            .faults
            .lock()
            .expect("recorder lock poisoned")
            .iter_mut()
        {
            f.end_ns.get_or_insert(now);
        }
    }

    pub fn events(&self) -> Vec<BookingEvent> {
        self.events.lock().expect("recorder lock poisoned").clone()
    }

    pub fn faults(&self) -> Vec<FaultWindow> {
        self.faults.lock().expect("recorder lock poisoned").clone()
    }

    /// (invoked, completed ok, completed fail or info) so far, for the progress line.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.invokes.load(Ordering::Relaxed),
            self.completions_ok.load(Ordering::Relaxed),
            self.completions_other.load(Ordering::Relaxed),
        )
    }
}
