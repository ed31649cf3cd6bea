//! Holds: leases on seats that expire in log time.
//!
//! Owns: [`Hold`], the read-only plan of a `Hold` command (every refusal it
//! can meet, shared with `precheck`), taking seats, `ExtendHold`,
//! `BeginPayment`, `Release`, `FailPayment`, and ending a hold (released or
//! expired) with its seats returned. Must not: create bookings or tickets
//! (that is `bookings`), look at a clock (time is `clock_ms`), or leave the
//! expiry queue out of step with a live hold's `expires_at_ms`.

use serde::{Deserialize, Serialize};

use super::{check_text, ga_change, BookingState, Ctx};
use crate::command::*;
use crate::error::BookingError;
use crate::event::{Event, Seat};
use crate::limits::{MAX_HOLDER_LEN, MAX_PAYMENT_REF_LEN};
use crate::view::*;

/// One hold. Kept while live, forever once confirmed (its booking points
/// back at it), and for `hold_retention_ms` after it was released or expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hold {
    /// Dense number of the event the seats belong to.
    pub event: u32,
    /// The user who made the hold; every later command on it must name them.
    /// (`Box<str>`, not `String`: holds are the largest part of the state,
    /// and a boxed str is 8 bytes smaller; its encoding is a string's.)
    pub holder: Box<str>,
    /// Dense reserved seats, in the order they were chosen (empty for
    /// general admission). Boxed slice for the same reason; encoded as a
    /// sequence, like the `Vec` it was.
    pub seats: Box<[u32]>,
    /// General admission: (section index, count) of places held, counted in
    /// the section's counters rather than in the seat array.
    pub ga: Option<(u32, u32)>,
    /// Where the hold is in its life; only live ones own their seats.
    pub status: HoldStatus,
    /// Log time of the hold: the base of the extension cap
    /// (`max_hold_lifetime_ttls` × ttl after it).
    pub created_at_ms: u64,
    /// Log time at which the hold expires (expired once `clock_ms >=` it).
    /// Moved by `ExtendHold` and `BeginPayment`; mirrored in the expiry queue
    /// while live.
    pub expires_at_ms: u64,
    /// Log time it was released or expired (None while live or confirmed).
    /// Forgetting is driven by the `forget` queue, which carries the same
    /// time; no rule reads this copy today, but it is part of the snapshot
    /// format, so it stays.
    pub ended_at_ms: Option<u64>,
    /// The booking it became, once confirmed (so a second `Confirm` can name it).
    pub booking_id: Option<u64>,
    /// Price of everything held, in cents, fixed when the hold was made.
    pub total_cents: u64,
    /// The charge the gateway began for this hold (`BeginCharge`): only a
    /// `ConfirmCharge` naming this charge and amount confirms the hold, and
    /// a plain `Confirm` no longer can. Kept after the hold ends, for
    /// support. Saved from snapshot format 3 on (None in older snapshots).
    /// Boxed: few holds have one, and an inline `Charge` made every hold 24
    /// bytes larger (the encoding of `Option<Box<T>>` is that of `Option<T>`).
    #[serde(deserialize_with = "crate::snapshot::since_v3")]
    pub payment: Option<Box<Charge>>,
}

/// A payment provider's charge as the gateway began it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Charge {
    /// The provider's id of the charge.
    pub charge_id: String,
    /// What it takes, in cents: the hold's total when it began.
    pub amount_cents: u64,
}

/// How a `Hold` that passed every read-only check takes its seats.
pub(super) enum HoldPlan {
    /// Exactly these seats, all checked free.
    Seats(Vec<u32>),
    /// A best-available search; enough seats are free in scope, but the search
    /// may still refuse (no block fits without `allow_non_adjacent`).
    BestAvailable {
        count: u32,
        section: Option<u32>,
        allow_non_adjacent: bool,
    },
    /// (section index, count) of general admission, checked available.
    GeneralAdmission(u32, u32),
}

impl BookingState {
    /// Every refusal `Hold` can meet before it takes anything, decided
    /// read-only. Shared by `hold` (apply) and [`BookingState::precheck`], so
    /// the fast path and the log path cannot disagree on a refusal.
    pub(super) fn plan_hold(
        &self,
        event_id: &str,
        holder: &str,
        selection: &Selection,
        queue_position: Option<u64>,
    ) -> Result<(u32, HoldPlan, Option<u64>), BookingError> {
        check_text("holder", holder, MAX_HOLDER_LEN)?;
        let event = self.event_index(event_id)?;
        let ev = &self.events[event as usize];
        if ev.sale != SaleState::Open {
            return Err(BookingError::SaleNotOpen {
                event_id: event_id.into(),
            });
        }
        let admission = self.check_admission(event, holder, queue_position)?;
        let max = ev.spec.max_seats_per_hold;
        let check_count = |count: u32| {
            if count == 0 {
                Err(BookingError::InvalidRequest {
                    reason: "count must be at least 1".into(),
                })
            } else if count > max {
                Err(BookingError::TooManySeats {
                    requested: count,
                    max,
                })
            } else {
                Ok(())
            }
        };
        let plan = match selection {
            Selection::Seats(ids) => {
                if ids.is_empty() {
                    return Err(BookingError::InvalidRequest {
                        reason: "no seats listed".into(),
                    });
                }
                check_count(ids.len().min(u32::MAX as usize) as u32)?;
                let mut seats = Vec::with_capacity(ids.len());
                for id in ids {
                    let seat = ev
                        .parse_seat(id)
                        .ok_or_else(|| BookingError::UnknownSeat { seat: id.clone() })?;
                    if seats.contains(&seat) {
                        return Err(BookingError::InvalidRequest {
                            reason: format!("seat {id} listed twice"),
                        });
                    }
                    seats.push(seat);
                }
                let taken: Vec<String> = seats
                    .iter()
                    .filter(|&&s| ev.seats[s as usize] != Seat::Available)
                    .map(|&s| ev.seat_id(s))
                    .collect();
                if !taken.is_empty() {
                    return Err(BookingError::SeatUnavailable { seats: taken });
                }
                HoldPlan::Seats(seats)
            }
            Selection::BestAvailable {
                count,
                section,
                allow_non_adjacent,
            } => {
                check_count(*count)?;
                let section = match section {
                    Some(s) => {
                        let si = section_index(ev, s)?;
                        if ev.layout.sections[si as usize].ga_capacity.is_some() {
                            return Err(BookingError::WrongSectionKind {
                                section: s.clone(),
                                actual: "general_admission".into(),
                            });
                        }
                        Some(si)
                    }
                    None => None,
                };
                let available = ev.reserved_available(section);
                if available < *count {
                    return Err(BookingError::NotEnoughSeats {
                        requested: *count,
                        available,
                    });
                }
                HoldPlan::BestAvailable {
                    count: *count,
                    section,
                    allow_non_adjacent: *allow_non_adjacent,
                }
            }
            Selection::GeneralAdmission { section, count } => {
                let si = section_index(ev, section)?;
                let Some(capacity) = ev.layout.sections[si as usize].ga_capacity else {
                    return Err(BookingError::WrongSectionKind {
                        section: section.clone(),
                        actual: "reserved".into(),
                    });
                };
                check_count(*count)?;
                let c = &ev.counters[si as usize];
                let available = capacity - c.held - c.booked;
                if available < *count {
                    return Err(BookingError::NotEnoughSeats {
                        requested: *count,
                        available,
                    });
                }
                HoldPlan::GeneralAdmission(si, *count)
            }
        };
        Ok((event, plan, admission))
    }

    /// `Hold`: plans, then takes the seats for `hold_ttl_ms` of log time.
    pub(super) fn hold(
        &mut self,
        event_id: &str,
        holder: &str,
        selection: &Selection,
        queue_position: Option<u64>,
        ctx: &mut Ctx,
    ) -> Outcome {
        let (event, plan, admission) =
            self.plan_hold(event_id, holder, selection, queue_position)?;
        let clock = self.clock_ms;
        let ev = &mut self.events[event as usize];
        let (seats, ga) = match plan {
            HoldPlan::Seats(seats) => (seats, None),
            HoldPlan::BestAvailable {
                count,
                section,
                allow_non_adjacent,
            } => {
                let seats =
                    ev.find_best(count, section, allow_non_adjacent)
                        .map_err(|available| BookingError::NotEnoughSeats {
                            requested: count,
                            available,
                        })?;
                (seats, None)
            }
            HoldPlan::GeneralAdmission(si, count) => (Vec::new(), Some((si, count))),
        };
        // Decided: take the seats.
        let hold_id = self.next_hold_id;
        self.next_hold_id += 1;
        let mut total_cents = 0;
        let mut seat_ids = Vec::with_capacity(seats.len());
        for &seat in &seats {
            assert!(
                ev.seats[seat as usize] == Seat::Available,
                "seat {} of {} double-held at apply (hold {hold_id})",
                ev.seat_id(seat),
                ev.id
            );
            ev.set_seat(seat, Seat::Held(hold_id));
            total_cents += ev.seat_price_cents(seat);
            let id = ev.seat_id(seat);
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: id.clone(),
                state: SeatStatus::Held,
            });
            seat_ids.push(id);
        }
        let mut general_admission = None;
        if let Some((si, count)) = ga {
            ev.counters[si as usize].held += count;
            total_cents += ev.layout.sections[si as usize].price_cents * count as u64;
            ctx.changes.push(ga_change(ev, si));
            general_admission = Some(GaPlaces {
                section: ev.layout.sections[si as usize].id.clone(),
                count,
            });
        }
        // Saturating: a leader stamp near u64::MAX must not wrap time around.
        let expires_at_ms = clock.saturating_add(ev.spec.hold_ttl_ms);
        self.holds.insert_new(
            hold_id,
            Hold {
                event,
                holder: holder.into(),
                seats: seats.into_boxed_slice(),
                ga,
                status: HoldStatus::Active,
                created_at_ms: clock,
                expires_at_ms,
                ended_at_ms: None,
                booking_id: None,
                total_cents,
                payment: None,
            },
        );
        self.derived.expiry.insert((expires_at_ms, hold_id));
        if let Some(until_ms) = admission {
            self.record_shopper(event, holder, until_ms);
        }
        Ok(Reply::Held {
            hold_id,
            event_id: event_id.to_string(),
            seats: seat_ids,
            general_admission,
            expires_at_ms,
            total_cents,
        })
    }

    /// The hold if it is live and the holder owns it; otherwise the refusal
    /// a client should see for its state.
    pub(super) fn live_hold(&self, hold_id: u64, holder: &str) -> Result<&Hold, BookingError> {
        let Some(hold) = self.holds.get(hold_id) else {
            // Ids below the counter existed: a missing one was a finished
            // (released or expired) hold that has been forgotten.
            return Err(if hold_id > 0 && hold_id < self.next_hold_id {
                BookingError::HoldExpired { hold_id }
            } else {
                BookingError::UnknownHold { hold_id }
            });
        };
        if &*hold.holder != holder {
            return Err(BookingError::NotOwner);
        }
        match hold.status {
            HoldStatus::Active | HoldStatus::PaymentPending => Ok(hold),
            HoldStatus::Confirmed => Err(BookingError::AlreadyConfirmed {
                hold_id,
                booking_id: hold.booking_id.expect("a confirmed hold names its booking"),
            }),
            HoldStatus::Released | HoldStatus::Expired => {
                Err(BookingError::HoldExpired { hold_id })
            }
        }
    }

    /// `ExtendHold`: an active hold's expiry moves to `clock_ms + ttl`, never
    /// past the lifetime cap.
    pub(super) fn extend_hold(&mut self, hold_id: u64, holder: &str) -> Outcome {
        let hold = self.live_hold(hold_id, holder)?;
        if hold.status != HoldStatus::Active {
            return Err(BookingError::HoldNotActive {
                hold_id,
                status: hold.status.as_str().into(),
            });
        }
        let ttl = self.events[hold.event as usize].spec.hold_ttl_ms;
        let cap = hold
            .created_at_ms
            .saturating_add(ttl * self.settings.max_hold_lifetime_ttls as u64);
        let new = self.clock_ms.saturating_add(ttl).min(cap);
        let old = hold.expires_at_ms;
        if new <= old {
            return Err(BookingError::ExtendLimitReached {
                hold_id,
                max_expires_at_ms: cap,
            });
        }
        self.holds
            .get_mut(hold_id)
            .expect("checked above")
            .expires_at_ms = new;
        self.derived.expiry.remove(&(old, hold_id));
        self.derived.expiry.insert((new, hold_id));
        Ok(Reply::HoldExtended {
            hold_id,
            expires_at_ms: new,
        })
    }

    /// `Release`: the holder gives the seats back.
    pub(super) fn release(&mut self, hold_id: u64, holder: &str, ctx: &mut Ctx) -> Outcome {
        self.live_hold(hold_id, holder)?;
        self.end_hold(hold_id, HoldStatus::Released, ctx.changes);
        Ok(Reply::Released { hold_id })
    }

    /// `BeginPayment`: an active hold becomes payment-pending and is pinned
    /// until at least `clock_ms + payment_window_ms`, so a payment in flight
    /// cannot lose its seats to expiry.
    pub(super) fn begin_payment(&mut self, hold_id: u64, holder: &str) -> Outcome {
        let hold = self.live_hold(hold_id, holder)?;
        if hold.status != HoldStatus::Active {
            return Err(BookingError::HoldNotActive {
                hold_id,
                status: hold.status.as_str().into(),
            });
        }
        let old = hold.expires_at_ms;
        let new = old.max(
            self.clock_ms
                .saturating_add(self.settings.payment_window_ms),
        );
        let hold = self.holds.get_mut(hold_id).expect("checked above");
        hold.status = HoldStatus::PaymentPending;
        hold.expires_at_ms = new;
        self.derived.expiry.remove(&(old, hold_id));
        self.derived.expiry.insert((new, hold_id));
        Ok(Reply::PaymentBegun {
            hold_id,
            expires_at_ms: new,
        })
    }

    /// `BeginCharge`: `BeginPayment` bound to the charge the gateway began,
    /// whose amount must be the hold's total. The same charge again answers
    /// as the first time (a retry through another path); another is refused.
    pub(super) fn begin_charge(
        &mut self,
        hold_id: u64,
        holder: &str,
        charge_id: &str,
        amount_cents: u64,
    ) -> Outcome {
        check_text("charge_id", charge_id, MAX_PAYMENT_REF_LEN)?;
        let hold = self.live_hold(hold_id, holder)?;
        if let Some(bound) = &hold.payment {
            return if bound.charge_id == charge_id && bound.amount_cents == amount_cents {
                Ok(Reply::PaymentBegun {
                    hold_id,
                    expires_at_ms: hold.expires_at_ms,
                })
            } else {
                Err(BookingError::ChargeMismatch { hold_id })
            };
        }
        if hold.status == HoldStatus::Active && amount_cents != hold.total_cents {
            return Err(BookingError::ChargeMismatch { hold_id });
        }
        let begun = self.begin_payment(hold_id, holder)?;
        let hold = self.holds.get_mut(hold_id).expect("live: checked above");
        hold.payment = Some(Box::new(Charge {
            charge_id: charge_id.to_string(),
            amount_cents,
        }));
        Ok(begun)
    }

    /// `FailPayment`: the payment failed, so the hold is released.
    pub(super) fn fail_payment(&mut self, hold_id: u64, holder: &str, ctx: &mut Ctx) -> Outcome {
        self.live_hold(hold_id, holder)?;
        self.end_hold(hold_id, HoldStatus::Released, ctx.changes);
        Ok(Reply::PaymentFailed { hold_id })
    }

    /// Releases or expires a live hold: its seats return to inventory.
    pub(super) fn end_hold(
        &mut self,
        hold_id: u64,
        status: HoldStatus,
        changes: &mut Vec<SeatChange>,
    ) {
        let clock = self.clock_ms;
        let hold = self
            .holds
            .get_mut(hold_id)
            .expect("ending a hold that does not exist");
        assert!(
            hold.status.is_live(),
            "hold {hold_id} ended twice (was {:?})",
            hold.status
        );
        hold.status = status;
        hold.ended_at_ms = Some(clock);
        // Housekeeping pops the expiry entry itself before expiring a hold.
        if status != HoldStatus::Expired {
            let removed = self.derived.expiry.remove(&(hold.expires_at_ms, hold_id));
            assert!(
                removed,
                "live hold {hold_id} was missing from the expiry queue"
            );
        }
        let ev = &mut self.events[hold.event as usize];
        for &seat in &hold.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Held(hold_id),
                "seat {} of {} freed by hold {hold_id} that does not hold it",
                ev.seat_id(seat),
                ev.id
            );
            ev.set_seat(seat, Seat::Available);
            changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Available,
            });
        }
        if let Some((si, count)) = hold.ga {
            ev.counters[si as usize].held -= count;
            changes.push(ga_change(ev, si));
        }
        self.forget.push_back((clock, hold_id));
    }
}

fn section_index(ev: &Event, section: &str) -> Result<u32, BookingError> {
    ev.layout
        .section_by_id
        .get(section)
        .copied()
        .ok_or_else(|| BookingError::UnknownSection {
            event_id: ev.id.clone(),
            section: section.into(),
        })
}
