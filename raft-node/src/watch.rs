//! The watch hub: committed seat changes fanned out to subscribers, with a
//! bounded ring of recent changes so a reconnecting subscriber can resume.
//!
//! Owns: the ring (`RING_CHANGES_MAX` seat changes) and the subscriber list
//! (`WATCHERS_MAX`, each with a `SUBSCRIBER_BUFFER_MAX` channel). Must not:
//! block `apply`: publishing never waits; a subscriber whose buffer is full is
//! dropped and its stream ends with a `Resync` (slow subscriber).
//!
//! Caveat: the ring lives in memory, so after a restart it covers only entries
//! applied since; older `from_index` values get `Resync{TooOld}`. A snapshot
//! install skips changes, so every subscriber is resynced then.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use state_machine::SeatChange;
use tokio::sync::mpsc;

/// Most seat changes kept in the ring, across all entries.
pub const RING_CHANGES_MAX: usize = 100_000;
/// Most concurrent subscribers per node; more are refused (RESOURCE_EXHAUSTED).
pub const WATCHERS_MAX: usize = 1024;
/// Messages buffered per subscriber; when full the subscriber is dropped.
pub const SUBSCRIBER_BUFFER_MAX: usize = 1024;

/// Why a stream ends with a resync (matches `proto::booking::resync::Reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ResyncReason {
    None = 0,
    TooOld = 1,
    SlowSubscriber = 2,
    SnapshotInstalled = 3,
    Shutdown = 4,
}

impl ResyncReason {
    fn from_u8(v: u8) -> ResyncReason {
        match v {
            1 => ResyncReason::TooOld,
            2 => ResyncReason::SlowSubscriber,
            3 => ResyncReason::SnapshotInstalled,
            4 => ResyncReason::Shutdown,
            _ => ResyncReason::None,
        }
    }
}

/// One message to a subscriber: the watched event's changes of one entry.
#[derive(Clone, Debug)]
pub struct ChangesAt {
    pub log_index: u64,
    pub changes: Vec<SeatChange>,
}

/// A subscription: its receiver, and why it ended once the receiver closes.
pub struct Subscription {
    pub rx: mpsc::Receiver<ChangesAt>,
    end_reason: Arc<AtomicU8>,
}

impl Subscription {
    /// Why the hub dropped this subscription (`None` while it is alive or if it
    /// ended because the node is gone).
    pub fn end_reason(&self) -> ResyncReason {
        ResyncReason::from_u8(self.end_reason.load(Ordering::Acquire))
    }
}

/// Returned by `subscribe` when the stream cannot start without a gap.
#[derive(Clone, Copy, Debug)]
pub enum SubscribeRefused {
    /// `from_index` is older than the ring covers.
    TooOld {
        oldest_index: u64,
        applied_index: u64,
    },
    /// `WATCHERS_MAX` subscribers already.
    TooManyWatchers,
}

struct Subscriber {
    event_id: String,
    tx: mpsc::Sender<ChangesAt>,
    end_reason: Arc<AtomicU8>,
}

struct HubInner {
    /// (log index, all seat changes of that entry), oldest first; only entries
    /// with changes are stored.
    ring: VecDeque<(u64, Arc<Vec<SeatChange>>)>,
    ring_changes: usize,
    /// Lowest index from which the ring holds every change.
    covered_from: u64,
    applied_index: u64,
    subscribers: Vec<Subscriber>,
}

/// See the module docs. Cheap to share: `Arc<WatchHub>`.
pub struct WatchHub {
    inner: Mutex<HubInner>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub::new(0)
    }
}

impl WatchHub {
    /// A hub whose ring starts empty after `applied_index`.
    pub fn new(applied_index: u64) -> WatchHub {
        WatchHub {
            inner: Mutex::new(HubInner {
                ring: VecDeque::new(),
                ring_changes: 0,
                covered_from: applied_index + 1,
                applied_index,
                subscribers: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubInner> {
        // A panic while holding this lock is a bug elsewhere; the data (a ring
        // of copies) stays usable, so recover rather than poison every watcher.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node's applied index as the hub last saw it, and the ring's start.
    pub fn applied_and_oldest(&self) -> (u64, u64) {
        let g = self.lock();
        (g.applied_index, g.covered_from)
    }

    /// Records an applied entry. Never blocks.
    pub fn publish(&self, log_index: u64, changes: Vec<SeatChange>) {
        let mut g = self.lock();
        g.applied_index = g.applied_index.max(log_index);
        if changes.is_empty() {
            // Nothing to keep; coverage continues unbroken.
            g.subscribers.retain(|s| !s.tx.is_closed());
            return;
        }
        let changes = Arc::new(changes);
        g.subscribers.retain(|s| {
            let mine: Vec<SeatChange> = changes
                .iter()
                .filter(|c| c.event_id == s.event_id)
                .cloned()
                .collect();
            if mine.is_empty() {
                return !s.tx.is_closed();
            }
            match s.tx.try_send(ChangesAt {
                log_index,
                changes: mine,
            }) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.end_reason
                        .store(ResyncReason::SlowSubscriber as u8, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        g.ring_changes += changes.len();
        g.ring.push_back((log_index, changes));
        while g.ring_changes > RING_CHANGES_MAX {
            let Some((idx, old)) = g.ring.pop_front() else {
                break;
            };
            g.ring_changes -= old.len();
            g.covered_from = idx + 1;
        }
    }

    /// The state was replaced by a snapshot at `applied_index`: the ring no
    /// longer describes a contiguous history, so start over and resync all.
    pub fn reset(&self, applied_index: u64, reason: ResyncReason) {
        let mut g = self.lock();
        g.ring.clear();
        g.ring_changes = 0;
        g.covered_from = applied_index + 1;
        g.applied_index = applied_index;
        for s in g.subscribers.drain(..) {
            s.end_reason.store(reason as u8, Ordering::Release);
        }
    }

    /// Subscribes to `event_id` from `from_index` (0 = from the next applied
    /// entry). Replays what the ring holds, then follows live.
    pub fn subscribe(
        &self,
        event_id: &str,
        from_index: u64,
    ) -> Result<Subscription, SubscribeRefused> {
        let mut g = self.lock();
        if g.subscribers.len() >= WATCHERS_MAX {
            g.subscribers.retain(|s| !s.tx.is_closed());
            if g.subscribers.len() >= WATCHERS_MAX {
                return Err(SubscribeRefused::TooManyWatchers);
            }
        }
        let from = if from_index == 0 {
            g.applied_index + 1
        } else {
            from_index
        };
        if from < g.covered_from {
            return Err(SubscribeRefused::TooOld {
                oldest_index: g.covered_from,
                applied_index: g.applied_index,
            });
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER_MAX);
        let end_reason = Arc::new(AtomicU8::new(ResyncReason::None as u8));
        for (idx, changes) in g.ring.iter() {
            if *idx < from {
                continue;
            }
            let mine: Vec<SeatChange> = changes
                .iter()
                .filter(|c| c.event_id == event_id)
                .cloned()
                .collect();
            if mine.is_empty() {
                continue;
            }
            if tx
                .try_send(ChangesAt {
                    log_index: *idx,
                    changes: mine,
                })
                .is_err()
            {
                // The backlog alone exceeds the buffer: the subscriber should
                // read a snapshot instead of replaying.
                end_reason.store(ResyncReason::SlowSubscriber as u8, Ordering::Release);
                return Ok(Subscription { rx, end_reason });
            }
        }
        g.subscribers.push(Subscriber {
            event_id: event_id.to_string(),
            tx,
            end_reason: end_reason.clone(),
        });
        Ok(Subscription { rx, end_reason })
    }
}
