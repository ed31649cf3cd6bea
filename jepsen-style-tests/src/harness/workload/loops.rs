//! The three client-library workloads' process loops (register, sellout,
//! expiry): which operation a process issues next.
//!
//! Owns: each loop's choices and pacing. Must not: record or classify
//! results (`Proc`'s calls in `mod.rs` do), or run past the deadline,
//! `stop` or the operation budget (`Shared::go_on`).

use std::time::{Duration, Instant};

use rand::Rng;

use super::{BookingRef, HoldRef, Proc, Written};

/// Longest a slow payer of the register workload takes between beginning
/// a payment and confirming: past the workload's 10 s hold TTL, far inside
/// the payment window (120 s by default), so a store that let a
/// payment-pending hold expire at its original TTL, or by a clock jump, is
/// refused the confirm.
const SLOW_PAYMENT_MS_MAX: u64 = 12_000;

impl Proc {
    pub(super) async fn run_register(&mut self) {
        // Writes that end unknown are retried with the same request id (the
        // dedupe answers with the first outcome), so few seats end up held or
        // booked by someone who no longer knows it. Without that, and with
        // one booking slot per process, orphaned bookings filled all six
        // seats within seconds of a kill and the rest of the run was refused
        // holds and reads: a store that lost writes then had little to lose.
        const SAME_ID_RETRIES: u32 = 3;
        let mut hold: Option<HoldRef> = None;
        // Oldest first; at most 2 (the third is cancelled before a new hold).
        let mut bookings: Vec<BookingRef> = Vec::new();
        // A slow payer: after its payment was begun, the hold is only read
        // until then (past the hold's own TTL, often across a fault window),
        // then confirmed; an early expiry meanwhile is what
        // `no_payment_pending_expiry` looks for.
        let mut paying_until: Option<Instant> = None;
        while self.shared.go_on() {
            if let (Some(until), Some(h)) = (paying_until, hold.clone()) {
                if Instant::now() < until {
                    let seat = h.seats[0].clone();
                    self.read(&seat).await;
                    self.think(200).await;
                    continue;
                }
                paying_until = None;
                let w = self.confirm(&h, SAME_ID_RETRIES).await;
                if let Some(b) = Self::booking_of(&h, &w) {
                    bookings.push(b);
                }
                if !matches!(w, Written::Failed) {
                    hold = None;
                }
                continue;
            }
            // Cancels are rare enough that many bookings stay, so the replica checks
            // can judge them (a booking that may have been cancelled is unjudged).
            if !bookings.is_empty() && (bookings.len() >= 2 || self.rng.random_bool(0.2)) {
                let b = bookings[0].clone();
                // Kept when the cancel certainly or possibly did not happen,
                // to try again (a repeat of a done cancel is refused).
                if !matches!(
                    self.cancel(&b, SAME_ID_RETRIES).await,
                    Written::Failed | Written::Unknown
                ) {
                    bookings.remove(0);
                }
            } else if let Some(h) = hold.clone() {
                match self.rng.random_range(0..10) {
                    0..=3 => {
                        let w = self.confirm(&h, SAME_ID_RETRIES).await;
                        if let Some(b) = Self::booking_of(&h, &w) {
                            bookings.push(b);
                        }
                        if !matches!(w, Written::Failed) {
                            hold = None;
                        }
                    }
                    4..=5 => {
                        if !matches!(self.release(&h, SAME_ID_RETRIES).await, Written::Failed) {
                            hold = None;
                        }
                    }
                    // The hold stays: a later confirm or release ends it, and
                    // meanwhile no clock a majority keeps sane may expire it
                    // (`no_payment_pending_expiry`). A repeat is refused
                    // `hold_not_active` and changes nothing.
                    6 => {
                        let w = self.begin_payment(&h, SAME_ID_RETRIES).await;
                        // Three payers in ten take up to SLOW_PAYMENT_MS_MAX (more would
                        // leave the six seats mostly pinned, starving the other checks).
                        if matches!(w, Written::Ok(_)) && self.rng.random_bool(0.3) {
                            let ms = self.rng.random_range(1_000..=SLOW_PAYMENT_MS_MAX);
                            paying_until = Some(Instant::now() + Duration::from_millis(ms));
                        }
                    }
                    _ => {
                        let seat = h.seats[0].clone();
                        self.read(&seat).await;
                    }
                }
            } else if self.rng.random_bool(0.6) {
                let count = if self.rng.random_bool(0.2) { 2 } else { 1 };
                let seats = self.random_seats(count);
                hold = self.hold(seats, SAME_ID_RETRIES).await;
            } else {
                let seat = self.random_seat();
                self.read(&seat).await;
            }
            self.think(10).await;
        }
    }

    pub(super) async fn run_sellout(&mut self) {
        // Odd processes resolve unknown outcomes by retrying with the same id.
        let retries = if self.id % 2 == 1 { 3 } else { 0 };
        while self.shared.go_on() {
            if self.rng.random_bool(0.15) {
                let seat = self.random_seat();
                self.read(&seat).await;
            } else {
                let seats = vec![self.random_seat()];
                if let Some(h) = self.hold(seats, retries).await {
                    if self.shared.go_on() {
                        self.confirm(&h, retries).await;
                    }
                }
            }
            self.think(30).await;
        }
    }

    pub(super) async fn run_expiry(&mut self) {
        let ttl_ms = self.shared.cfg.hold_ttl_ms;
        let mut bookings: Vec<BookingRef> = Vec::new();
        while self.shared.go_on() {
            if let Some(b) = bookings.pop() {
                self.cancel(&b, 0).await;
                continue;
            }
            let seats = vec![self.random_seat()];
            let Some(h) = self.hold(seats, 0).await else {
                self.think(20).await;
                continue;
            };
            // Around the TTL: some confirms land before, some after the expiry.
            let wait_ms = self.rng.random_range(ttl_ms / 2..=ttl_ms * 3 / 2);
            let until = Instant::now() + Duration::from_millis(wait_ms);
            if until > self.shared.deadline {
                break;
            }
            tokio::time::sleep_until(until.into()).await;
            if !self.shared.go_on() {
                break;
            }
            let w = self.confirm(&h, 0).await;
            if let Some(b) = Self::booking_of(&h, &w) {
                bookings.push(b);
            }
        }
    }
}
