//! An in-memory [`Cluster`]: one `state_machine::BookingState` behind a
//! mutex, each submit applied as its own log entry, stamped from a clock the
//! test controls. For fast API tests; never for production.
//!
//! Owns: the fake log index, the stamp clock (`system time + offset`, moved
//! forward with [`FakeCluster::advance_ms`]), a bounded ring of recent seat
//! changes for watch resumption, and switches that simulate a leaderless
//! cluster. Must not: be compiled into a release gateway (it is behind
//! `cfg(any(test, feature = "fake-cluster"))`).
//!
//! Caveats: there is no leader sweeping expiries; instead every read first
//! applies a `Tick` if a deadline has passed, which is what the leader's
//! sweep makes visible within `expiry_sweep_ms` in a real cluster.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use state_machine::{Batch, BookingState, Command, Outcome, Query, Request, SeatChange};
use tokio::sync::broadcast;

use crate::cluster::{
    BoxFuture, Cluster, ClusterError, ClusterStatus, Consistency, MemberStatus, ReadAnswer,
    WatchItem, WatchStream,
};

/// Entries of seat changes kept for resuming watchers.
pub const HISTORY_ENTRIES_MAX: usize = 4_096;
/// Entries buffered per watcher before it is told to resync.
pub const WATCH_BUFFER_ENTRIES: usize = 1_024;

type Published = (u64, Arc<Vec<SeatChange>>);

/// The fake cluster. Cheap to share: wrap it in an `Arc`.
pub struct FakeCluster {
    inner: Mutex<Inner>,
    clock_offset_ms: AtomicI64,
    unavailable: AtomicBool,
    /// Watches opened so far (the gateway shares one per event).
    watches: std::sync::atomic::AtomicU64,
}

struct Inner {
    state: BookingState,
    last_stamp_ms: u64,
    /// (index, changes) of recent entries that changed something, oldest first.
    history: VecDeque<Published>,
    /// Entries below this index may have been dropped from `history`.
    history_floor: u64,
    tx: broadcast::Sender<Published>,
}

impl Default for FakeCluster {
    fn default() -> Self {
        FakeCluster::new()
    }
}

impl FakeCluster {
    /// How many watches the gateway has opened on this cluster.
    pub fn watches_started(&self) -> u64 {
        self.watches.load(Ordering::Relaxed)
    }

    pub fn new() -> FakeCluster {
        let (tx, _) = broadcast::channel(WATCH_BUFFER_ENTRIES);
        FakeCluster {
            inner: Mutex::new(Inner {
                state: BookingState::new(),
                last_stamp_ms: 0,
                history: VecDeque::new(),
                history_floor: 0,
                tx,
            }),
            clock_offset_ms: AtomicI64::new(0),
            unavailable: AtomicBool::new(false),
            watches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Moves the stamp clock forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        self.clock_offset_ms.fetch_add(ms as i64, Ordering::SeqCst);
    }

    /// Simulates a cluster without a leader: every call answers `Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// The state's hash, to show a request changed nothing.
    pub fn state_hash(&self) -> [u8; 32] {
        self.inner.lock().expect("fake lock").state.state_hash()
    }

    pub fn applied_index(&self) -> u64 {
        self.inner.lock().expect("fake lock").state.applied_index()
    }

    /// Forgets the history before `index`, so a watch from before it must resync.
    pub fn forget_history_before(&self, index: u64) {
        let mut inner = self.inner.lock().expect("fake lock");
        while inner.history.front().is_some_and(|(i, _)| *i < index) {
            inner.history.pop_front();
        }
        inner.history_floor = inner.history_floor.max(index);
    }

    fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (wall + self.clock_offset_ms.load(Ordering::SeqCst)).max(0) as u64
    }

    fn check_available(&self) -> Result<(), ClusterError> {
        if self.unavailable.load(Ordering::SeqCst) {
            Err(ClusterError::Unavailable {
                retry_after_ms: 1_000,
                reason: "no leader (simulated)".into(),
            })
        } else {
            Ok(())
        }
    }

    /// Applies one entry holding `requests`; returns their outcomes.
    fn apply(&self, inner: &mut Inner, requests: Vec<Request>) -> Vec<Outcome> {
        let stamp_ms = self.now_ms().max(inner.last_stamp_ms);
        inner.last_stamp_ms = stamp_ms;
        let index = inner.state.applied_index() + 1;
        let out = inner.state.apply(index, &Batch { stamp_ms, requests });
        if !out.changes.is_empty() {
            let published: Published = (index, Arc::new(out.changes));
            if inner.history.len() >= HISTORY_ENTRIES_MAX {
                if let Some((dropped, _)) = inner.history.pop_front() {
                    inner.history_floor = dropped + 1;
                }
            }
            inner.history.push_back(published.clone());
            // No receivers is fine: nobody is watching.
            let _ = inner.tx.send(published);
        }
        out.outcomes
    }

    /// What the leader's sweep does: a `Tick` once a deadline has passed.
    fn sweep(&self, inner: &mut Inner) {
        if inner
            .state
            .next_deadline_ms()
            .is_some_and(|d| d <= self.now_ms())
        {
            self.apply(
                inner,
                vec![Request {
                    client_id: 0,
                    request_id: 0,
                    command: Command::Tick,
                }],
            );
        }
    }
}

impl Cluster for FakeCluster {
    fn submit(&self, request: Request) -> BoxFuture<'_, Result<Outcome, ClusterError>> {
        Box::pin(async move {
            self.check_available()?;
            let mut inner = self.inner.lock().expect("fake lock");
            let mut outcomes = self.apply(&mut inner, vec![request]);
            Ok(outcomes.pop().expect("one outcome per request"))
        })
    }

    fn read(
        &self,
        query: Query,
        _consistency: Consistency,
    ) -> BoxFuture<'_, Result<ReadAnswer, ClusterError>> {
        Box::pin(async move {
            self.check_available()?;
            let mut inner = self.inner.lock().expect("fake lock");
            self.sweep(&mut inner);
            Ok(ReadAnswer {
                result: inner.state.query(&query),
                applied_index: inner.state.applied_index(),
            })
        })
    }

    fn watch(
        &self,
        event_id: String,
        from_index: u64,
    ) -> BoxFuture<'_, Result<WatchStream, ClusterError>> {
        Box::pin(async move {
            self.check_available()?;
            self.watches.fetch_add(1, Ordering::Relaxed);
            let inner = self.inner.lock().expect("fake lock");
            let applied = inner.state.applied_index();
            let start = if from_index == 0 {
                applied + 1
            } else {
                from_index
            };
            // Subscribing under the lock means no entry falls between the
            // backlog copied below and the live channel.
            let rx = inner.tx.subscribe();
            let gap = start < inner.history_floor;
            let backlog: VecDeque<Published> = inner
                .history
                .iter()
                .filter(|(i, _)| *i >= start)
                .cloned()
                .collect();
            drop(inner);
            if gap {
                let item = WatchItem::Resync {
                    reason: format!("changes before index {} are no longer kept", start),
                };
                return Ok(futures::stream::iter([item]).boxed());
            }
            Ok(watch_stream(event_id, start, backlog, rx))
        })
    }

    fn status(&self) -> BoxFuture<'_, Result<ClusterStatus, ClusterError>> {
        Box::pin(async move {
            self.check_available()?;
            self.watches.fetch_add(1, Ordering::Relaxed);
            let inner = self.inner.lock().expect("fake lock");
            let applied = inner.state.applied_index();
            Ok(ClusterStatus {
                node_id: 1,
                role: "Leader".into(),
                term: 1,
                leader_id: Some(1),
                applied_index: applied,
                commit_index: applied,
                members: vec![MemberStatus {
                    node_id: 1,
                    addr: "in-memory".into(),
                    voter: true,
                }],
            })
        })
    }
}

struct WatchState {
    event_id: String,
    next_index: u64,
    backlog: VecDeque<Published>,
    rx: broadcast::Receiver<Published>,
    done: bool,
}

fn watch_stream(
    event_id: String,
    start: u64,
    backlog: VecDeque<Published>,
    rx: broadcast::Receiver<Published>,
) -> WatchStream {
    let state = WatchState {
        event_id,
        next_index: start,
        backlog,
        rx,
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let (index, changes) = match s.backlog.pop_front() {
                Some(p) => p,
                None => match s.rx.recv().await {
                    Ok(p) => p,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        s.done = true;
                        let reason = format!("watcher fell behind by {n} entries");
                        return Some((WatchItem::Resync { reason }, s));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            // The backlog and the live channel overlap; skip what was sent.
            if index < s.next_index {
                continue;
            }
            s.next_index = index + 1;
            let mine: Vec<SeatChange> = changes
                .iter()
                .filter(|c| c.event_id == s.event_id)
                .cloned()
                .collect();
            if !mine.is_empty() {
                return Some((
                    WatchItem::Changes {
                        index,
                        changes: mine,
                    },
                    s,
                ));
            }
        }
    })
    .boxed()
}
