//! Who holds a connection slot, and who gives one up when others wait.
//!
//! Owns: the `connections_max` serving slots, the bounded set of accepted
//! connections waiting for one, the table of served connections in the
//! order they were admitted, and the fairness rule: while connections wait,
//! the oldest served connection that has held its slot for at least
//! [`TENURE_MIN_MS`] is asked to close after its current request, one per
//! waiter. Also [`Activity`], the per-connection record the idle timeout
//! reads. Must not: touch sockets or HTTP ([`crate::server`] turns "asked
//! to close" into hyper's graceful shutdown and bounds how long it may
//! take).
//!
//! Choice: oldest first, not most requests served: with a crowd that keeps
//! its connections busy the two pick nearly the same connection, and
//! admission order is a `BTreeMap` lookup where the other needs a scan or a
//! heap updated on every request. The rotation is FIFO: a waiter gets the
//! first freed slot (Tokio's semaphore is fair), the closed connection's
//! client reconnects behind the others.
//!
//! Caveats: a slot freed by an asked connection is counted out of `asked`
//! a moment before its waiter counts itself out of `waiting`; if the
//! fairness task looks in that moment it asks one connection more than
//! needed (a spare reconnect, never a waiter left unasked). A waiter whose
//! client gave up is noticed only when it is admitted, so it may have cost
//! one connection its slot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};
// Tokio's clock, so tests can pause and advance it.
use tokio::time::Instant;

/// A connection admitted less than this long ago is not asked to close. It
/// bounds the churn of an oversubscribed crowd to `connections_max` closes
/// per this period (nginx, by comparison, closes a busy keep-alive
/// connection after 1 000 requests, about as often under load), and is
/// part of the bound on a waiter's wait (this plus the close grace), in ms.
pub const TENURE_MIN_MS: u64 = 1_000;

/// The serving slots, the waiters, and the served connections by age.
pub struct ConnTable {
    /// One permit per connection served at once (`connections_max`).
    serving: Arc<Semaphore>,
    /// One permit per accepted connection, served or waiting
    /// (`connections_max` + the waiting bound): the accept loop takes one
    /// before `accept`, so past it connections wait in the kernel's queue.
    accepted: Arc<Semaphore>,
    /// Permits of `accepted`, to wait for every connection at shutdown.
    accepted_total: u32,
    tenure_min: Duration,
    inner: Mutex<Table>,
    /// Wakes the fairness task: a waiter came, or a connection was admitted
    /// while connections wait (it may become the one to ask).
    wake: Notify,
    metrics: TableMetrics,
}

/// The table's view of the gateway's metrics.
pub struct TableMetrics {
    /// Connections holding a serving slot.
    pub open: IntGauge,
    /// Accepted connections waiting for a slot.
    pub waiting: IntGauge,
    /// Connections asked to close so a waiter could be served.
    pub fairness_closes: IntCounter,
}

struct Table {
    next_id: u64,
    /// Served connections not yet closing, by admission order (ids only
    /// grow, so the first entry is the oldest).
    open: BTreeMap<u64, Open>,
    /// Accepted connections waiting for a serving slot.
    waiting: usize,
    /// Connections closing (asked, idle or at shutdown) that still hold
    /// their slot: each will free one within the close grace.
    closing: usize,
}

struct Open {
    admitted_at: Instant,
    close: Arc<Notify>,
}

/// A served connection's slot; dropping it frees the slot.
pub struct Admitted {
    table: Arc<ConnTable>,
    id: u64,
    /// Notified once when the fairness task asks this connection to close.
    pub close: Arc<Notify>,
    _permit: OwnedSemaphorePermit,
}

/// An accepted connection's place (served or waiting); dropping it lets the
/// accept loop take one more connection.
pub struct AcceptSlot {
    _permit: OwnedSemaphorePermit,
}

impl ConnTable {
    /// `connections_max` served at once, at most `waiting_max` more waiting.
    pub fn new(
        connections_max: usize,
        waiting_max: usize,
        tenure_min: Duration,
        metrics: TableMetrics,
    ) -> Arc<ConnTable> {
        assert!(connections_max >= 1, "connections_max validated at start");
        let accepted_total = u32::try_from(connections_max + waiting_max)
            .expect("connections_max is at most 1 000 000 (validated)");
        Arc::new(ConnTable {
            serving: Arc::new(Semaphore::new(connections_max)),
            accepted: Arc::new(Semaphore::new(accepted_total as usize)),
            accepted_total,
            tenure_min,
            inner: Mutex::new(Table {
                next_id: 0,
                open: BTreeMap::new(),
                waiting: 0,
                closing: 0,
            }),
            wake: Notify::new(),
            metrics,
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table's counts are updated in single statements; a panic
        // elsewhere while the lock was held leaves them usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more accepted connection; waits while every place
    /// is taken.
    pub async fn accept_slot(&self) -> AcceptSlot {
        let permit = self
            .accepted
            .clone()
            .acquire_owned()
            .await
            .expect("the accept semaphore is never closed");
        AcceptSlot { _permit: permit }
    }

    /// Waits until every accepted connection has ended, for at most `grace`;
    /// false if some are still open then.
    pub async fn drained_within(&self, grace: Duration) -> bool {
        tokio::time::timeout(grace, self.accepted.acquire_many(self.accepted_total))
            .await
            .is_ok()
    }

    /// A serving slot for an accepted connection: at once if one is free,
    /// else after waiting (counted, so the fairness task asks a served
    /// connection to make room). Cancel-safe: dropping the future while it
    /// waits takes the connection out of the count.
    pub async fn admit(self: &Arc<Self>) -> Admitted {
        let permit = match self.serving.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _waiting = Waiting::new(self);
                self.serving
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the serving semaphore is never closed")
            }
        };
        let close = Arc::new(Notify::new());
        let id = {
            let mut t = self.table();
            let id = t.next_id;
            t.next_id += 1;
            t.open.insert(
                id,
                Open {
                    admitted_at: Instant::now(),
                    close: close.clone(),
                },
            );
            if t.waiting > t.closing {
                self.wake.notify_one();
            }
            id
        };
        self.metrics.open.inc();
        Admitted {
            table: self.clone(),
            id,
            close,
            _permit: permit,
        }
    }

    /// Asks the oldest eligible connections to close until as many are
    /// closing as wait. Returns when the next one becomes eligible if a
    /// waiter is still unmatched, so the caller can look again then.
    fn ask_for_waiters(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut t = self.table();
        while t.closing < t.waiting {
            let Some(entry) = t.open.first_entry() else {
                // Everyone served is already closing; each close frees a
                // slot for a waiter, and a new admission wakes us.
                return None;
            };
            let eligible_at = entry.get().admitted_at + self.tenure_min;
            if eligible_at > now {
                return Some(eligible_at);
            }
            let open = entry.remove();
            // Stored if the supervisor is not waiting on it right now.
            open.close.notify_one();
            t.closing += 1;
            self.metrics.fairness_closes.inc();
        }
        None
    }

    /// The fairness task: matches every waiting connection with a served
    /// one asked to close, until `stop` is set.
    pub async fn run_fairness(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let next = self.ask_for_waiters();
            let recheck = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = recheck => {}
                () = stopped(&mut stop) => return,
            }
        }
    }
}

impl Admitted {
    /// This connection is closing on its own (idle, or shutdown): it is no
    /// longer a candidate to ask, and its slot counts as coming free.
    pub fn closing(&self) {
        let mut t = self.table.table();
        if t.open.remove(&self.id).is_some() {
            t.closing += 1;
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut t = self.table.table();
        if t.open.remove(&self.id).is_none() {
            // It was closing (asked, idle or shutdown), so it was counted.
            assert!(t.closing > 0, "connection {} closing uncounted", self.id);
            t.closing -= 1;
        }
        drop(t);
        self.table.metrics.open.dec();
    }
}

/// One connection counted as waiting for as long as this lives.
struct Waiting<'a>(&'a ConnTable);

impl<'a> Waiting<'a> {
    fn new(table: &'a ConnTable) -> Waiting<'a> {
        table.table().waiting += 1;
        table.metrics.waiting.inc();
        table.wake.notify_one();
        Waiting(table)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.table().waiting -= 1;
        self.0.metrics.waiting.dec();
    }
}

/// Resolves once `stop` is set (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// When a connection last finished a request and how many it is serving,
/// for the idle timeout. Updated twice per request (two atomics).
pub struct Activity {
    started: Instant,
    in_flight: AtomicU32,
    /// Milliseconds after `started` when the last request ended (or the
    /// connection was admitted).
    last_end_ms: AtomicU64,
}

/// One request in flight on a connection; dropping it (answered or
/// cancelled) records the end.
pub struct Busy(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicU32::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request as started on this connection.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// `None` if the connection has served nothing for `idle`; else the
    /// instant at which to look again.
    pub fn idle_check(&self, idle: Duration) -> Option<Instant> {
        let now = Instant::now();
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + idle);
        }
        let last_end =
            self.started + Duration::from_millis(self.last_end_ms.load(Ordering::Acquire));
        let due = last_end + idle;
        (due > now).then_some(due)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = self.0.started.elapsed().as_millis() as u64;
        self.0.last_end_ms.fetch_max(ms, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(connections_max: usize, tenure_min_ms: u64) -> Arc<ConnTable> {
        let metrics = TableMetrics {
            open: IntGauge::new("open", "open").unwrap(),
            waiting: IntGauge::new("waiting", "waiting").unwrap(),
            fairness_closes: IntCounter::new("closes", "closes").unwrap(),
        };
        ConnTable::new(
            connections_max,
            connections_max,
            Duration::from_millis(tenure_min_ms),
            metrics,
        )
    }

    /// Whether `close` has been notified (without waiting).
    fn asked(close: &Notify) -> bool {
        use std::future::Future;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut notified = std::pin::pin!(close.notified());
        notified.as_mut().poll(&mut cx).is_ready()
    }

    /// Bound on every wait for the fairness task to act.
    const WAIT: Duration = Duration::from_secs(5);

    /// Waits (bounded by [`WAIT`]) until `close` is notified.
    async fn asked_within(close: &Notify) -> bool {
        tokio::time::timeout(WAIT, close.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn a_waiter_gets_the_oldest_slot_after_its_tenure() {
        // Goal: at the cap a waiter makes the oldest connection (and only
        // it) be asked to close, not before it has held its slot for the
        // tenure; its slot then goes to the waiter.
        let tenure = Duration::from_millis(300);
        let t = table(2, tenure.as_millis() as u64);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(t.clone().run_fairness(stop_rx));
        let old = t.admit().await;
        let old_at = Instant::now();
        let young = t.admit().await;
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.admit().await }
        });
        assert!(asked_within(&old.close).await, "the oldest was never asked");
        assert!(
            old_at.elapsed() >= tenure,
            "asked after {:?}, before its tenure",
            old_at.elapsed()
        );
        assert!(
            !asked(&young.close),
            "a second connection asked for one waiter"
        );
        assert!(!waiter.is_finished(), "admitted before a slot freed");
        drop(old);
        let admitted = tokio::time::timeout(WAIT, waiter)
            .await
            .expect("the waiter got the freed slot")
            .unwrap();
        assert_eq!(t.metrics.fairness_closes.get(), 1);
        assert_eq!(t.metrics.open.get(), 2);
        assert_eq!(t.metrics.waiting.get(), 0);
        drop((admitted, young));
        assert_eq!(t.metrics.open.get(), 0);
    }

    #[tokio::test]
    async fn nobody_is_asked_without_waiters_and_closing_connections_count() {
        // Goal: below the cap nothing is asked; a connection already
        // closing on its own (idle) stands for one waiter, so no other is
        // asked for it.
        let t = table(2, 0);
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(t.clone().run_fairness(stop_rx));
        let a = t.admit().await;
        // Negatives: the pauses give the fairness task time to act wrongly.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!asked(&a.close));
        let b = t.admit().await;
        a.closing();
        let waiter = tokio::spawn({
            let t = t.clone();
            async move { t.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!asked(&b.close), "asked although a closing slot was coming");
        drop(a);
        let _c = tokio::time::timeout(WAIT, waiter)
            .await
            .expect("the waiter got the closing connection's slot")
            .unwrap();
        assert_eq!(t.metrics.fairness_closes.get(), 0);
    }

    #[test]
    fn activity_is_idle_only_without_requests_for_the_whole_period() {
        // Goal: a request in flight is never idle; the period counts from
        // the end of the last request.
        let a = Activity::new();
        let idle = Duration::from_secs(3_600);
        assert!(a.idle_check(idle).is_some());
        assert!(a.idle_check(Duration::ZERO).is_none());
        let busy = a.begin();
        assert!(a.idle_check(Duration::ZERO).is_some(), "idle while serving");
        drop(busy);
        assert!(a.idle_check(Duration::ZERO).is_none());
    }
}
