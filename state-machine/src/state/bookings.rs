//! Bookings and their tickets.
//!
//! Owns: [`Booking`], [`Ticket`], `Confirm` (a live hold becomes a booking
//! with one ticket per seat or place), `CancelBooking` (seats return to
//! inventory, tickets are revoked) and `CheckIn`. Must not: take seats that
//! a live hold of the same holder does not own, change a confirmed booking's
//! owner, or decide refunds (the gateway refunds a refused `Confirm`).

use serde::{Deserialize, Serialize};

use super::{check_text, ga_change, BookingState, Ctx};
use crate::command::*;
use crate::error::BookingError;
use crate::event::Seat;
use crate::limits::MAX_PAYMENT_REF_LEN;
use crate::view::*;

/// One confirmed purchase. Kept for the life of the state, cancelled or not,
/// so a ticket, a retry or a support question can always be answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Booking {
    /// Dense number of the event.
    pub event: u32,
    /// The hold it was confirmed from (which points back with `booking_id`).
    pub hold_id: u64,
    /// The owner; never changes. `CancelBooking` must name them.
    pub holder: String,
    /// Dense reserved seats booked, as the hold had them (empty for general
    /// admission). Booked while `Confirmed`, returned when cancelled.
    pub seats: Vec<u32>,
    /// General admission: (section index, count) of places booked.
    pub ga: Option<(u32, u32)>,
    /// The payment provider's reference for the charge, as `Confirm` gave it,
    /// so a refund or a dispute can find the payment.
    pub payment_ref: String,
    /// Price paid, in cents: the hold's total.
    pub total_cents: u64,
    /// `Confirmed` or `Cancelled`.
    pub status: BookingStatus,
    /// Log time of the `Confirm`.
    pub created_at_ms: u64,
    /// Log time of the `CancelBooking`, once cancelled.
    pub cancelled_at_ms: Option<u64>,
    /// Ids of its tickets, one per seat (in the hold's seat order) or
    /// general-admission place.
    pub tickets: Vec<u64>,
}

/// What a ticket admits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TicketSeat {
    /// A dense reserved seat.
    Reserved(u32),
    /// (section index, n): the n-th GA place sold in that section.
    GeneralAdmission(u32, u32),
}

/// One ticket: the thing the door checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ticket {
    /// The booking it belongs to (and takes its owner and event from).
    pub booking_id: u64,
    /// The seat or place it admits to.
    pub seat: TicketSeat,
    /// Log time it was issued (the booking's confirmation).
    pub issued_at_ms: u64,
    /// Log time of the check-in; a ticket checks in once.
    pub checked_in_at_ms: Option<u64>,
    /// Set when its booking was cancelled; a revoked ticket does not check in.
    pub revoked: bool,
}

impl BookingState {
    /// `Confirm`: a live hold becomes a booking with its tickets; its seats
    /// go from held to booked, the holder's admission (if any) ends, and a
    /// confirmation is queued in the outbox.
    ///
    /// This plain `Confirm` carries no amount: it is the direct confirm of
    /// trusted gRPC clients (operators, test harnesses). It cannot complete a
    /// hold whose payment the gateway began with `BeginCharge`; the gateway
    /// sends `ConfirmCharge` only.
    pub(super) fn confirm(
        &mut self,
        hold_id: u64,
        holder: &str,
        payment_ref: &str,
        ctx: &mut Ctx,
    ) -> Outcome {
        check_text("payment_ref", payment_ref, MAX_PAYMENT_REF_LEN)?;
        if self.live_hold(hold_id, holder)?.payment.is_some() {
            return Err(BookingError::ChargeMismatch { hold_id });
        }
        self.confirm_live(hold_id, holder, payment_ref, ctx)
    }

    /// `ConfirmCharge`: the hold's payment must have been begun with exactly
    /// this charge and amount, so a payment completes only the hold it was
    /// begun for (a webhook for another hold or amount changes nothing).
    pub(super) fn confirm_charge(
        &mut self,
        hold_id: u64,
        holder: &str,
        charge_id: &str,
        amount_cents: u64,
        ctx: &mut Ctx,
    ) -> Outcome {
        check_text("charge_id", charge_id, MAX_PAYMENT_REF_LEN)?;
        let hold = self.live_hold(hold_id, holder)?;
        let bound = hold.status == HoldStatus::PaymentPending
            && hold
                .payment
                .as_ref()
                .is_some_and(|p| p.charge_id == charge_id && p.amount_cents == amount_cents);
        if !bound {
            return Err(BookingError::ChargeMismatch { hold_id });
        }
        self.confirm_live(hold_id, holder, charge_id, ctx)
    }

    /// The confirmation itself, for a live hold whose checks passed.
    fn confirm_live(
        &mut self,
        hold_id: u64,
        holder: &str,
        payment_ref: &str,
        ctx: &mut Ctx,
    ) -> Outcome {
        let clock = self.clock_ms;
        let booking_id = self.next_booking_id;
        self.next_booking_id += 1;
        let hold = self.holds.get_mut(hold_id).expect("checked above");
        hold.status = HoldStatus::Confirmed;
        hold.booking_id = Some(booking_id);
        self.derived.expiry.remove(&(hold.expires_at_ms, hold_id));
        let ev = &mut self.events[hold.event as usize];
        let mut tickets = Vec::new();
        for &seat in &hold.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Held(hold_id),
                "seat {} booked without its hold",
                ev.seat_id(seat)
            );
            ev.set_seat(seat, Seat::Booked(booking_id));
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Booked,
            });
            tickets.push(TicketSeat::Reserved(seat));
        }
        if let Some((si, count)) = hold.ga {
            let c = &mut ev.counters[si as usize];
            c.held -= count;
            c.booked += count;
            for _ in 0..count {
                c.ga_issued += 1;
                tickets.push(TicketSeat::GeneralAdmission(si, c.ga_issued));
            }
            ctx.changes.push(ga_change(ev, si));
        }
        let mut ticket_ids = Vec::with_capacity(tickets.len());
        for seat in tickets {
            let ticket_id = self.next_ticket_id;
            self.next_ticket_id += 1;
            self.tickets.insert(
                ticket_id,
                Ticket {
                    booking_id,
                    seat,
                    issued_at_ms: clock,
                    checked_in_at_ms: None,
                    revoked: false,
                },
            );
            ticket_ids.push(ticket_id);
        }
        let booking = Booking {
            event: hold.event,
            hold_id,
            holder: hold.holder.to_string(),
            seats: hold.seats.to_vec(),
            ga: hold.ga,
            payment_ref: payment_ref.to_string(),
            total_cents: hold.total_cents,
            status: BookingStatus::Confirmed,
            created_at_ms: clock,
            cancelled_at_ms: None,
            tickets: ticket_ids,
        };
        let event = hold.event;
        self.bookings.insert(booking_id, booking);
        self.end_shopping(event, holder);
        self.push_outbox(OutboxKind::BookingConfirmed, booking_id);
        Ok(Reply::Confirmed(
            self.booking_view(booking_id).expect("just inserted"),
        ))
    }

    /// `CancelBooking`: the owner gives a confirmed booking back; its seats
    /// return to inventory, its tickets are revoked, and the outbox says so.
    pub(super) fn cancel_booking(
        &mut self,
        booking_id: u64,
        holder: &str,
        ctx: &mut Ctx,
    ) -> Outcome {
        let clock = self.clock_ms;
        let booking = self
            .bookings
            .get_mut(&booking_id)
            .ok_or(BookingError::UnknownBooking { booking_id })?;
        if booking.holder != holder {
            return Err(BookingError::NotOwner);
        }
        if booking.status == BookingStatus::Cancelled {
            return Err(BookingError::BookingCancelled { booking_id });
        }
        // A ticket that let someone in cannot be refunded.
        if booking.tickets.iter().any(|t| {
            self.tickets
                .get(t)
                .is_some_and(|t| t.checked_in_at_ms.is_some())
        }) {
            return Err(BookingError::CancelClosed {
                booking_id,
                reason: "a ticket of it checked in".into(),
            });
        }
        booking.status = BookingStatus::Cancelled;
        booking.cancelled_at_ms = Some(clock);
        let ev = &mut self.events[booking.event as usize];
        for &seat in &booking.seats {
            assert!(
                ev.seats[seat as usize] == Seat::Booked(booking_id),
                "seat {} returned by booking {booking_id} that does not own it",
                ev.seat_id(seat)
            );
            ev.set_seat(seat, Seat::Available);
            ctx.changes.push(SeatChange {
                event_id: ev.id.clone(),
                seat: ev.seat_id(seat),
                state: SeatStatus::Available,
            });
        }
        if let Some((si, count)) = booking.ga {
            ev.counters[si as usize].booked -= count;
            ctx.changes.push(ga_change(ev, si));
        }
        for ticket_id in &booking.tickets {
            self.tickets
                .get_mut(ticket_id)
                .expect("a booking's ticket exists")
                .revoked = true;
        }
        let tickets_revoked = booking.tickets.clone();
        self.push_outbox(OutboxKind::BookingCancelled, booking_id);
        Ok(Reply::BookingCancelled {
            booking_id,
            tickets_revoked,
        })
    }

    /// `CancelBookingBefore`: `CancelBooking`, refused once log time is
    /// within `cutoff_ms` of the event's start.
    pub(super) fn cancel_booking_before(
        &mut self,
        booking_id: u64,
        holder: &str,
        cutoff_ms: u64,
        ctx: &mut Ctx,
    ) -> Outcome {
        let booking = self
            .bookings
            .get(&booking_id)
            .ok_or(BookingError::UnknownBooking { booking_id })?;
        if booking.holder != holder {
            return Err(BookingError::NotOwner);
        }
        let spec = &self.events[booking.event as usize].spec;
        // Validated at creation; an unreadable start is treated as "now".
        let starts_at_ms = crate::spec::parse_rfc3339_ms(&spec.starts_at)
            .map_or(0, |ms| u64::try_from(ms).unwrap_or(0));
        if booking.status == BookingStatus::Confirmed
            && self.clock_ms.saturating_add(cutoff_ms) >= starts_at_ms
        {
            return Err(BookingError::CancelClosed {
                booking_id,
                reason: format!(
                    "cancellations close {} minutes before the event starts",
                    cutoff_ms / 60_000
                ),
            });
        }
        self.cancel_booking(booking_id, holder, ctx)
    }

    /// `CheckIn`: marks a ticket used, once (door staff; no owner check).
    pub(super) fn check_in(&mut self, ticket_id: u64) -> Outcome {
        let ticket = self
            .tickets
            .get_mut(&ticket_id)
            .ok_or(BookingError::UnknownTicket { ticket_id })?;
        if ticket.revoked {
            return Err(BookingError::TicketRevoked { ticket_id });
        }
        if let Some(at) = ticket.checked_in_at_ms {
            return Err(BookingError::AlreadyCheckedIn {
                ticket_id,
                checked_in_at_ms: at,
            });
        }
        ticket.checked_in_at_ms = Some(self.clock_ms);
        Ok(Reply::CheckedIn {
            ticket_id,
            checked_in_at_ms: self.clock_ms,
        })
    }
}
