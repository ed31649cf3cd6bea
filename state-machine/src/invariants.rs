//! Whole-state consistency checks.
//!
//! Owns: [`BookingState::check_invariants`], the list of properties that must
//! hold after every applied entry: no seat in two live holds or bookings,
//! counters agree with seats (so held + booked + available = capacity per
//! section), general admission never oversold, indexes agree with the data.
//! Must not: change state. Caveat: it is O(state); tests call it after every
//! apply and restore calls it once, `apply` itself only asserts the cheap
//! per-transition facts.

use crate::event::Seat;
use crate::state::BookingState;
use crate::view::{BookingStatus, HoldStatus};

impl BookingState {
    /// Ok, or a sentence naming the first broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (i, ev) in self.events.iter().enumerate() {
            if self.event_by_id.get(&ev.id) != Some(&(i as u32)) {
                return Err(format!("event {} missing from the id index", ev.id));
            }
        }
        if self.event_by_id.len() != self.events.len() {
            return Err("event id index has extra entries".into());
        }
        self.holds.check()?;
        let mut live = 0usize;
        for (hold_id, hold) in self.holds.iter() {
            if hold_id >= self.next_hold_id {
                return Err(format!("hold {hold_id} is not below the id counter"));
            }
            let ev = self
                .events
                .get(hold.event as usize)
                .ok_or(format!("hold {hold_id}: no such event"))?;
            if hold.status.is_live() {
                live += 1;
                if hold.expires_at_ms <= self.clock_ms {
                    return Err(format!(
                        "hold {hold_id} is live but due at {}",
                        hold.expires_at_ms
                    ));
                }
                if !self.derived.expiry.contains(&(hold.expires_at_ms, hold_id)) {
                    return Err(format!("live hold {hold_id} missing from the expiry queue"));
                }
                for &seat in &hold.seats {
                    if ev.seats.get(seat as usize) != Some(&Seat::Held(hold_id)) {
                        return Err(format!(
                            "seat {seat} of live hold {hold_id} is not held by it"
                        ));
                    }
                }
            }
            if hold.status == HoldStatus::Confirmed {
                let b = hold.booking_id.and_then(|b| self.bookings.get(&b));
                if b.is_none_or(|b| b.hold_id != hold_id) {
                    return Err(format!("confirmed hold {hold_id} has no matching booking"));
                }
            }
        }
        if self.derived.expiry.len() != live {
            return Err(format!(
                "expiry queue has {} entries for {live} live holds",
                self.derived.expiry.len()
            ));
        }
        for (&booking_id, b) in &self.bookings {
            if booking_id >= self.next_booking_id {
                return Err(format!("booking {booking_id} is not below the id counter"));
            }
            let ev = self
                .events
                .get(b.event as usize)
                .ok_or(format!("booking {booking_id}: no such event"))?;
            let want = match b.status {
                BookingStatus::Confirmed => Some(Seat::Booked(booking_id)),
                BookingStatus::Cancelled => None,
            };
            for &seat in &b.seats {
                let state = ev.seats.get(seat as usize).copied();
                if let Some(w) = want {
                    if state != Some(w) {
                        return Err(format!("seat {seat} of booking {booking_id} is {state:?}"));
                    }
                } else if state == Some(Seat::Booked(booking_id)) {
                    return Err(format!(
                        "seat {seat} still booked by cancelled booking {booking_id}"
                    ));
                }
            }
            for t in &b.tickets {
                let ticket = self
                    .tickets
                    .get(t)
                    .ok_or(format!("booking {booking_id}: ticket {t} missing"))?;
                if ticket.booking_id != booking_id
                    || ticket.revoked != (b.status == BookingStatus::Cancelled)
                {
                    return Err(format!("ticket {t} disagrees with booking {booking_id}"));
                }
            }
        }
        for (ei, ev) in self.events.iter().enumerate() {
            let mut held = vec![0u32; ev.counters.len()];
            let mut booked = vec![0u32; ev.counters.len()];
            for (seat, state) in ev.seats.iter().enumerate() {
                let section = ev.section_of_seat(seat as u32) as usize;
                match *state {
                    Seat::Available => {}
                    Seat::Held(h) => {
                        held[section] += 1;
                        match self.holds.get(h) {
                            Some(hold) if hold.status.is_live() && hold.event as usize == ei => {}
                            _ => {
                                return Err(format!(
                                    "seat {} held by {h}, which is not a live hold",
                                    ev.seat_id(seat as u32)
                                ))
                            }
                        }
                    }
                    Seat::Booked(b) => {
                        booked[section] += 1;
                        match self.bookings.get(&b) {
                            Some(bk)
                                if bk.status == BookingStatus::Confirmed
                                    && bk.event as usize == ei => {}
                            _ => {
                                return Err(format!(
                                    "seat {} booked by {b}, not a confirmed booking",
                                    ev.seat_id(seat as u32)
                                ))
                            }
                        }
                    }
                }
            }
            for hold in self
                .holds
                .values()
                .filter(|h| h.event as usize == ei && h.status.is_live())
            {
                if let Some((si, n)) = hold.ga {
                    *held
                        .get_mut(si as usize)
                        .ok_or("GA hold of a missing section")? += n;
                }
            }
            for b in self
                .bookings
                .values()
                .filter(|b| b.event as usize == ei && b.status == BookingStatus::Confirmed)
            {
                if let Some((si, n)) = b.ga {
                    *booked
                        .get_mut(si as usize)
                        .ok_or("GA booking of a missing section")? += n;
                }
            }
            for (si, section) in ev.layout.sections.iter().enumerate() {
                let c = &ev.counters[si];
                if c.held != held[si] || c.booked != booked[si] {
                    return Err(format!(
                        "event {} section {}: counters held={} booked={} but found held={} booked={}",
                        ev.id, section.id, c.held, c.booked, held[si], booked[si]
                    ));
                }
                if c.held as u64 + c.booked as u64 > section.capacity as u64 {
                    return Err(format!("event {} section {} oversold", ev.id, section.id));
                }
            }
            for (r, row) in ev.layout.rows.iter().enumerate() {
                let rf = &ev.rows_free[r];
                let mut free = 0;
                for i in 0..row.seats {
                    let is_free = ev.seats[(row.seat_start + i) as usize] == Seat::Available;
                    let bit = rf.bits[(i / 64) as usize] & (1 << (i % 64)) != 0;
                    if is_free != bit {
                        return Err(format!(
                            "event {} row {}: free bitset wrong at seat {}",
                            ev.id,
                            row.label,
                            i + 1
                        ));
                    }
                    free += is_free as u32;
                }
                if free != rf.free {
                    return Err(format!(
                        "event {} row {}: free count {} but {free} free",
                        ev.id, row.label, rf.free
                    ));
                }
            }
            if let Some(q) = &ev.queue {
                let fail = |what: &str| Err(format!("event {}: waiting room: {what}", ev.id));
                let places = q.next_position.saturating_sub(1);
                if q.next_position == 0 || q.pre_count > places || q.admitted_places > places {
                    return fail("watermark or pre-queue past the positions handed out");
                }
                let mut floor = q.lapsed_places;
                let mut last_until = None;
                for r in &q.rounds {
                    if r.upto_places < floor || last_until.is_some_and(|u| u >= r.until_ms) {
                        return fail("rounds out of order");
                    }
                    if !self.derived.lapses.contains(&(r.until_ms, ei as u32)) {
                        return fail("a round is missing from the lapse queue");
                    }
                    floor = r.upto_places;
                    last_until = Some(r.until_ms);
                }
                if floor != q.admitted_places {
                    return fail("the last round does not end at the watermark");
                }
                for (user, s) in &q.shoppers {
                    if !q.rounds.iter().any(|r| r.until_ms == s.until_ms) {
                        return fail(&format!("shopper {user} belongs to no live round"));
                    }
                }
            }
        }
        if let Some((&t, _)) = self.tickets.last_key_value() {
            if t >= self.next_ticket_id {
                return Err(format!("ticket {t} is not below the id counter"));
            }
        }
        self.dedupe.check()?;
        if self.outbox.len() > self.settings.outbox_max_entries as usize {
            return Err("outbox over its bound".into());
        }
        Ok(())
    }
}
