//! One fan of the waiting-room sale (`bench flash-sale --waiting-room`):
//! join, poll, hold, pay; and the tally every fan reports into.
//!
//! Owns: the fan's behaviour and its counters. Must not: outlive the run
//! (it returns at the first check after `stop` flips), keep more than one
//! request in flight, or retry without a bound.
//!
//! Behaviour:
//! - Join (`POST .../queue`) with the user's session; 429/503 retried
//!   `retries` times after [`BACKOFF_UNAVAILABLE`].
//! - Poll, park or leave: a fan takes a poller slot if one is free (at
//!   most `pollers_max` fans poll at once); otherwise it parks (its token
//!   and place kept in a FIFO of at most `parked_max`, no task, no
//!   requests: a fan with the page open who polls rarely, whose polls the
//!   bench does not send); otherwise it leaves (`left_far_back`). A poller
//!   done with its fan takes the oldest parked fan (the next in line)
//!   before it gives its slot up. A fan who joins after the sell-out, and
//!   every fan still parked or polling then, leaves (`left_sold_out`).
//!   This is what bounds the bench: at most `inflight_max` joins plus
//!   `pollers_max` pollers live as tasks, and at most `inflight_max`
//!   requests (so connections) are in flight from all of them together.
//!   With `--joins-own-slots` joins skip the shared slots (bounded by
//!   their own `inflight_max` permits; 2 × `inflight_max` connections at
//!   most): in a real crowd a newcomer's join does not wait for other
//!   fans' polls and payments. Caveat: the crowd then joins faster than
//!   the pollers can serve it, ten times as many fans park, their
//!   admissions go unused and lapse, and the rounds race through the
//!   line (docs/BENCHMARKS.md); hence not the default.
//! - Poll (`GET .../queue/{token}`, answered by the gateway from its cached
//!   view: no cluster call) until admitted. The wait before the next poll
//!   is the gateway's `poll_after_ms` (as a browser following the room's
//!   hint would); from a gateway without it, half the fan's own estimate
//!   of its wait (fans ahead / the drain rate it saw between its last two
//!   polls; the gateway's `estimated_wait_ms` / 4 before it has two),
//!   within [`POLL_WAIT_MS_MIN`]..=`poll_max_ms`. At most [`POLLS_MAX`]
//!   polls.
//! - Hold one seat with the queue token, up to `1 + retries` attempts: GA
//!   with probability `ga_share` (if the event has a GA section),
//!   otherwise choose-your-seat (Zipf over seat rank) with probability
//!   `explicit_share`, else best-available. A taken seat retries with
//!   best-available; a sold-out category switches to the other one; both
//!   sold out ends.
//! - Pay: `abandon_share` leave the hold to expire, `decline_share` pay
//!   with `tok_declined` (402; the gateway releases the seats),
//!   `slow_share` with `tok_slow_<slow_payment_ms>`, the rest `tok_ok`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::flash::Zipf;
use crate::http::{self, FanPool, HoldAnswer, PayAnswer, Pick, QueueAnswer, QueuePlace};
use crate::room::{RoomParams, GA_SECTION};
use crate::stats::{Latencies, Timeline};

/// Pause after a 429/503 before the fan tries again.
pub const BACKOFF_UNAVAILABLE: Duration = Duration::from_millis(100);
/// Shortest wait between two polls of one fan.
pub const POLL_WAIT_MS_MIN: u64 = 250;
/// Most polls one fan makes before it gives up waiting.
pub const POLLS_MAX: u32 = 2_000;

/// Everything fans report, merged under one lock (a few µs per event).
#[derive(Default)]
pub struct Tally {
    pub join: Latencies,
    pub poll: Latencies,
    pub hold_ok: Latencies,
    pub hold_all: Latencies,
    pub checkout: Latencies,
    pub start_lag: Latencies,
    pub joined: u64,
    pub join_failed: u64,
    pub polls: u64,
    pub poll_failed: u64,
    pub admitted: u64,
    pub left_far_back: u64,
    pub parked: u64,
    pub left_sold_out: u64,
    pub gave_up_polling: u64,
    pub hold_requests: u64,
    pub hold_rejected: u64,
    pub hold_not_admitted: u64,
    pub hold_lapsed: u64,
    pub rate_limited: u64,
    pub unavailable: u64,
    pub other_status: u64,
    pub gave_up_sold_out: u64,
    pub abandoned: u64,
    pub declined: u64,
    pub slow_paid: u64,
    pub checkout_failed: u64,
    /// Reserved seat -> confirmed bookings the bench was told about.
    pub booked_seats: HashMap<String, u32>,
    /// Confirmed general-admission places.
    pub booked_ga: u64,
    pub first_join_at: Option<Duration>,
    pub last_join_at: Option<Duration>,
    pub sellout: Option<Duration>,
}

/// What the fans share.
pub struct Shared {
    pub pool: FanPool,
    pub tokens: Vec<String>,
    pub event_id: String,
    pub zipf: Zipf,
    pub params: RoomParams,
    pub start: Instant,
    pub tally: Mutex<Tally>,
    /// Joins answered per second (and their latency), for the PNG.
    pub joins: Mutex<Timeline>,
    /// Holds answered per second (and their latency).
    pub holds: Mutex<Timeline>,
    pub pollers: Arc<Semaphore>,
    /// Requests in flight from all fans together (`inflight_max`; joins
    /// skip it with `--joins-own-slots`): keeps the bench's connections
    /// under the gateway's `connections_max` (10 000 by default; beyond it
    /// new connections wait in the kernel's accept queue while idle
    /// keep-alive ones hold their permits).
    pub http_slots: Semaphore,
    /// Fans who joined while every poller slot was taken, oldest first.
    pub parked: Mutex<VecDeque<Parked>>,
    pub booked: AtomicU64,
    pub joined: AtomicU64,
    pub requests: AtomicU64,
    /// Set once every seat is booked: fans still waiting leave.
    pub sold_out: AtomicBool,
    /// Wakes the pollers' waits at the sell-out.
    pub sold_out_wake: tokio::sync::Notify,
    /// Set at the time bound: every fan returns at its next check.
    pub stop: AtomicBool,
}

impl Shared {
    pub fn tally(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request slot; waiting for it is not part of a request's latency.
    async fn http_slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.http_slots.acquire().await.ok()
    }

    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.sold_out.load(Ordering::Relaxed)
    }
}

/// A fan waiting for a poller slot.
pub struct Parked {
    i: u64,
    queue_token: String,
    place: QueuePlace,
}

/// Fan `i`, scheduled to arrive `scheduled` after the opening.
/// `join_permit` bounds the joins in flight; it is let go once joined.
pub async fn fan(
    shared: Arc<Shared>,
    i: u64,
    scheduled: Duration,
    join_permit: tokio::sync::OwnedSemaphorePermit,
) {
    let p = &shared.params;
    let session = &shared.tokens[(i % shared.tokens.len() as u64) as usize];
    let lag = shared.start.elapsed().saturating_sub(scheduled);
    shared.tally().start_lag.record(lag);
    let joined = join(&shared, i, session).await;
    drop(join_permit);
    let Some(place) = joined else {
        return;
    };
    let Some(queue_token) = place.queue_token.clone() else {
        shared.tally().other_status += 1;
        return;
    };
    if shared.done() {
        shared.tally().left_sold_out += 1;
        return;
    }
    let Ok(_slot) = shared.pollers.clone().try_acquire_owned() else {
        let mut parked = shared.parked.lock().unwrap_or_else(|e| e.into_inner());
        let kept = (parked.len() as u64) < p.parked_max;
        if kept {
            parked.push_back(Parked {
                i,
                queue_token,
                place,
            });
        }
        drop(parked);
        let mut t = shared.tally();
        if kept {
            t.parked += 1;
        } else {
            t.left_far_back += 1;
        }
        return;
    };
    let mut next = Some(Parked {
        i,
        queue_token,
        place,
    });
    // This slot serves this fan, then the parked ones in line order.
    while let Some(f) = next.take() {
        let session = &shared.tokens[(f.i % shared.tokens.len() as u64) as usize];
        if wait_for_admission(&shared, f.i, session, &f.queue_token, f.place).await {
            shared.tally().admitted += 1;
            shop(&shared, f.i, session, &f.queue_token).await;
        }
        if shared.done() {
            let left = {
                let mut parked = shared.parked.lock().unwrap_or_else(|e| e.into_inner());
                std::mem::take(&mut *parked).len() as u64
            };
            shared.tally().left_sold_out += left;
            return;
        }
        next = shared
            .parked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
    }
}

/// Joins; the answer, or None when the fan gave up (counted).
async fn join(shared: &Shared, i: u64, session: &str) -> Option<QueuePlace> {
    for attempt in 0..=shared.params.retries {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        // The fan's join permit (held by the caller) bounds joins; with
        // `joins_share_slots` a join also waits for a shared slot.
        let http = match shared.params.joins_share_slots {
            true => shared.http_slot().await,
            false => None,
        };
        let t0 = Instant::now();
        let answer = shared.pool.join(i, session, &shared.event_id).await;
        drop(http);
        let took = t0.elapsed();
        let at = shared.start.elapsed();
        shared.requests.fetch_add(1, Ordering::Relaxed);
        shared
            .joins
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(at, took);
        {
            let mut t = shared.tally();
            t.join.record(took);
            t.first_join_at.get_or_insert(at);
            t.last_join_at = Some(at);
            match answer {
                QueueAnswer::Place(place) => {
                    t.joined += 1;
                    shared.joined.fetch_add(1, Ordering::Relaxed);
                    return Some(place);
                }
                QueueAnswer::RateLimited => t.rate_limited += 1,
                QueueAnswer::Unavailable => t.unavailable += 1,
                QueueAnswer::Other(_) => t.other_status += 1,
            }
        }
        if attempt < shared.params.retries {
            tokio::time::sleep(BACKOFF_UNAVAILABLE).await;
        }
    }
    shared.tally().join_failed += 1;
    None
}

/// Polls until admitted (true), or the fan leaves (false, counted).
async fn wait_for_admission(
    shared: &Shared,
    i: u64,
    session: &str,
    queue_token: &str,
    mut place: QueuePlace,
) -> bool {
    let poll_max_ms = shared.params.poll_max_ms.max(POLL_WAIT_MS_MIN);
    let mut seen: Option<(Instant, u64)> = None;
    for _ in 0..POLLS_MAX {
        if place.admitted {
            return true;
        }
        if shared.done() {
            shared.tally().left_sold_out += 1;
            return false;
        }
        let now = Instant::now();
        let wait_ms = poll_wait_ms(
            &place,
            seen,
            now,
            poll_max_ms,
            shared.params.follow_poll_hint,
        );
        seen = Some((now, place.ahead.unwrap_or(0)));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait_ms)) => {}
            _ = shared.sold_out_wake.notified() => {}
        }
        if shared.done() {
            shared.tally().left_sold_out += 1;
            return false;
        }
        let http = shared.http_slot().await;
        let t0 = Instant::now();
        let answer = shared
            .pool
            .position(i, session, &shared.event_id, queue_token)
            .await;
        drop(http);
        shared.requests.fetch_add(1, Ordering::Relaxed);
        let lapsed = {
            let mut t = shared.tally();
            t.poll.record(t0.elapsed());
            t.polls += 1;
            match answer {
                QueueAnswer::Place(p) if p.state == "lapsed" => {
                    t.hold_lapsed += 1;
                    true
                }
                QueueAnswer::Place(p) => {
                    place = p;
                    false
                }
                _ => {
                    t.poll_failed += 1;
                    false
                }
            }
        };
        if lapsed {
            return false;
        }
    }
    shared.tally().gave_up_polling += 1;
    false
}

/// How long a waiting fan waits before its next poll: the gateway's
/// `poll_after_ms` when it gives one; otherwise half the fan's own estimate
/// (fans ahead over the drain rate seen since `seen`, the previous poll's
/// time and fans ahead; the gateway's `estimated_wait_ms` / 4 before it
/// has one), within [`POLL_WAIT_MS_MIN`]..=`poll_max_ms`. With
/// `follow_hint` false the hint is ignored.
fn poll_wait_ms(
    place: &QueuePlace,
    seen: Option<(Instant, u64)>,
    now: Instant,
    poll_max_ms: u64,
    follow_hint: bool,
) -> u64 {
    if let (Some(hint), true) = (place.poll_after_ms, follow_hint) {
        return hint.max(POLL_WAIT_MS_MIN);
    }
    let ahead = place.ahead.unwrap_or(0);
    let estimate_ms = match seen {
        Some((at, before)) if before > ahead => {
            let per_ms = (before - ahead) as f64 / now.duration_since(at).as_millis().max(1) as f64;
            (ahead as f64 / per_ms / 2.0) as u64
        }
        Some(_) => poll_max_ms,
        None => place.estimated_wait_ms.unwrap_or(poll_max_ms) / 4,
    };
    estimate_ms.clamp(POLL_WAIT_MS_MIN, poll_max_ms)
}

/// What an admitted fan buys with.
fn pick_kind(p: &RoomParams, ga_out: bool, reserved_out: bool) -> Kind {
    let u: f64 = rand::random();
    let ga_wanted = p.ga_seats > 0 && u < p.ga_share;
    if (ga_wanted && !ga_out) || reserved_out {
        Kind::Ga
    } else if rand::random::<f64>() < p.explicit_share {
        Kind::Explicit
    } else {
        Kind::Best
    }
}

/// What a fan does after a hold answer.
enum Next {
    Pay(u64, Vec<String>),
    Stop,
    /// Try again; `true`: after [`BACKOFF_UNAVAILABLE`].
    Retry(bool),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Ga,
    Explicit,
    Best,
}

/// Holds and pays; every outcome counted.
async fn shop(shared: &Shared, i: u64, session: &str, queue_token: &str) {
    let p = &shared.params;
    let (mut ga_out, mut reserved_out) = (p.ga_seats == 0, p.ga_seats >= p.seats);
    for attempt in 0..=p.retries {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut kind = pick_kind(p, ga_out, reserved_out);
        if kind == Kind::Explicit && attempt > 0 {
            // The seat this fan chose was taken: it takes the best left.
            kind = Kind::Best;
        }
        let seat = (kind == Kind::Explicit).then(|| http::seat_id(shared.zipf.sample()));
        let pick = match kind {
            Kind::Ga => Pick::GeneralAdmission(GA_SECTION),
            Kind::Explicit => Pick::Seat(seat.as_deref().unwrap_or_default()),
            Kind::Best => Pick::BestAvailable,
        };
        let http = shared.http_slot().await;
        let t0 = Instant::now();
        let answer = shared
            .pool
            .hold_with(i, session, &shared.event_id, pick, Some(queue_token))
            .await;
        drop(http);
        let took = t0.elapsed();
        shared.requests.fetch_add(1, Ordering::Relaxed);
        shared
            .holds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(shared.start.elapsed(), took);
        let next = {
            let mut t = shared.tally();
            t.hold_requests += 1;
            t.hold_all.record(took);
            match answer {
                HoldAnswer::Held { hold_id, seats } => {
                    t.hold_ok.record(took);
                    Next::Pay(hold_id, seats)
                }
                HoldAnswer::Rejected { sold_out } => {
                    t.hold_rejected += 1;
                    if sold_out {
                        match kind {
                            Kind::Ga => ga_out = true,
                            _ => reserved_out = true,
                        }
                    }
                    if ga_out && reserved_out {
                        t.gave_up_sold_out += 1;
                        Next::Stop
                    } else {
                        // Another seat, at once.
                        Next::Retry(false)
                    }
                }
                HoldAnswer::NotAdmitted { lapsed } => {
                    if lapsed {
                        t.hold_lapsed += 1;
                    } else {
                        t.hold_not_admitted += 1;
                    }
                    Next::Stop
                }
                HoldAnswer::RateLimited => {
                    t.rate_limited += 1;
                    Next::Retry(true)
                }
                HoldAnswer::Unavailable => {
                    t.unavailable += 1;
                    Next::Retry(true)
                }
                HoldAnswer::Other(_) => {
                    t.other_status += 1;
                    Next::Retry(true)
                }
            }
        };
        match next {
            Next::Pay(hold_id, seats) => {
                pay(shared, i, session, hold_id, kind == Kind::Ga, seats).await;
                return;
            }
            Next::Stop => return,
            Next::Retry(false) => continue,
            Next::Retry(true) => {}
        }
        if attempt < p.retries {
            tokio::time::sleep(BACKOFF_UNAVAILABLE).await;
        }
    }
}

async fn pay(shared: &Shared, i: u64, session: &str, hold_id: u64, ga: bool, seats: Vec<String>) {
    let p = &shared.params;
    let u: f64 = rand::random();
    if u < p.abandon_share {
        // The hold stays until it expires; the room re-admits for its seat.
        shared.tally().abandoned += 1;
        return;
    }
    let slow_method = format!("tok_slow_{}", p.slow_payment_ms);
    let (method, slow) = if u < p.abandon_share + p.decline_share {
        ("tok_declined", false)
    } else if u < p.abandon_share + p.decline_share + p.slow_share {
        (slow_method.as_str(), true)
    } else {
        ("tok_ok", false)
    };
    let http = shared.http_slot().await;
    let t0 = Instant::now();
    let answer = shared.pool.pay(i, session, hold_id, method).await;
    drop(http);
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let mut t = shared.tally();
    t.checkout.record(t0.elapsed());
    match answer {
        PayAnswer::Booked => {
            if slow {
                t.slow_paid += 1;
            }
            let n = if ga {
                t.booked_ga += 1;
                1
            } else {
                for s in &seats {
                    *t.booked_seats.entry(s.clone()).or_default() += 1;
                }
                seats.len() as u64
            };
            let booked = shared.booked.fetch_add(n, Ordering::Relaxed) + n;
            if booked >= u64::from(p.seats) && t.sellout.is_none() {
                t.sellout = Some(shared.start.elapsed());
                shared.sold_out.store(true, Ordering::Relaxed);
                shared.sold_out_wake.notify_waiters();
            }
        }
        PayAnswer::Declined => t.declined += 1,
        PayAnswer::Failed(_) => t.checkout_failed += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(ahead: u64, poll_after_ms: Option<u64>) -> QueuePlace {
        QueuePlace {
            queue_token: None,
            queue_position: ahead + 1,
            ahead: Some(ahead),
            admitted: false,
            state: "waiting".into(),
            estimated_wait_ms: Some(60_000),
            poll_after_ms,
        }
    }

    /// Goal: a fan follows the gateway's poll hint (even past
    /// `poll_max_ms`, never under the floor), and without one falls back
    /// to its own estimate within the bench's bounds.
    #[test]
    fn fans_follow_the_gateway_poll_hint() {
        let now = Instant::now();
        assert_eq!(
            poll_wait_ms(&waiting(10, Some(7_500)), None, now, 5_000, true),
            7_500
        );
        assert_eq!(
            poll_wait_ms(&waiting(10, Some(1_000)), None, now, 5_000, true),
            1_000
        );
        assert_eq!(
            poll_wait_ms(&waiting(10, Some(0)), None, now, 5_000, true),
            POLL_WAIT_MS_MIN
        );
        // No hint: the gateway's estimate / 4 first, then the drain seen.
        assert_eq!(
            poll_wait_ms(&waiting(10, None), None, now, 5_000, true),
            5_000
        );
        let earlier = now - Duration::from_secs(1);
        // 1 000 ahead, draining 1 000/s: a 1 s wait, polled at its half.
        assert_eq!(
            poll_wait_ms(
                &waiting(1_000, None),
                Some((earlier, 2_000)),
                now,
                5_000,
                true
            ),
            500
        );
        assert_eq!(
            poll_wait_ms(
                &waiting(1_000, None),
                Some((earlier, 1_000)),
                now,
                5_000,
                true
            ),
            5_000,
            "no drain seen"
        );
        // `--ignore-poll-hint`: the fan's own estimate even with a hint.
        assert_eq!(
            poll_wait_ms(
                &waiting(1_000, Some(7_500)),
                Some((earlier, 2_000)),
                now,
                5_000,
                false
            ),
            500
        );
    }
}
