//! The waiting-room commands and admission, as the state applies them.
//!
//! Owns: `JoinQueue`, `LeaveQueue`, admitting the next fans of an open sale
//! (after every change that can free a place, and in housekeeping), ending a
//! fan's shopping when they confirm, and keeping the lapse queue in step with
//! each admission. The line itself (fans, order, shuffle, the admission rule)
//! is [`WaitingRoom`](crate::waiting_room::WaitingRoom). Must not: admit while
//! the sale is not open, or more fans than the rule's slots.

use super::{check_text, BookingState};
use crate::command::*;
use crate::error::BookingError;
use crate::limits::MAX_HOLDER_LEN;
use crate::view::SaleState;
use crate::waiting_room::Joined;

impl BookingState {
    /// True when the event's waiting room would admit somebody now.
    pub(super) fn can_admit(&self, event: u32) -> bool {
        let ev = &self.events[event as usize];
        match &ev.queue {
            Some(q) => ev.sale == SaleState::Open && q.slots(ev.available_units()) > 0,
            None => false,
        }
    }

    /// Admits as many fans from the head of the line as the rule allows now,
    /// each for `hold_ttl_ms` of log time.
    pub(super) fn admit(&mut self, event: u32) {
        let ev = &mut self.events[event as usize];
        if ev.sale != SaleState::Open {
            return;
        }
        let available = ev.available_units();
        let until = self.clock_ms.saturating_add(ev.spec.hold_ttl_ms);
        let Some(queue) = ev.queue.as_mut() else {
            return;
        };
        let slots = queue.slots(available);
        if slots == 0 {
            return;
        }
        for user in queue.admit(slots, until) {
            self.derived.lapses.insert((until, event, user));
        }
    }

    /// `JoinQueue`: one place per user; joining again answers the place held.
    pub(super) fn join_queue(&mut self, event_id: &str, user: &str) -> Outcome {
        check_text("user", user, MAX_HOLDER_LEN)?;
        let event = self.event_index(event_id)?;
        let max_fans = self.settings.queue_max_fans;
        let ev = &mut self.events[event as usize];
        let opened = ev.opened_once;
        let queue = ev
            .queue
            .as_mut()
            .ok_or_else(|| BookingError::NoWaitingRoom {
                event_id: event_id.into(),
            })?;
        let already_joined = match queue.join(user, opened, max_fans) {
            Joined::New => false,
            Joined::Already => true,
            Joined::Full => {
                return Err(BookingError::QueueFull {
                    event_id: event_id.into(),
                })
            }
        };
        self.admit(event);
        let queue = self.events[event as usize]
            .queue
            .as_ref()
            .expect("checked above");
        let view = queue.view(event_id, user).expect("the user just joined");
        Ok(Reply::QueueJoined {
            queue: view,
            already_joined,
        })
    }

    /// `LeaveQueue`: the fan gives up their place (or admission), which goes
    /// to the next fan at once.
    pub(super) fn leave_queue(&mut self, event_id: &str, user: &str) -> Outcome {
        let event = self.event_index(event_id)?;
        let queue = self.events[event as usize].queue.as_mut().ok_or_else(|| {
            BookingError::NoWaitingRoom {
                event_id: event_id.to_string(),
            }
        })?;
        let lapse = queue.leave(user).map_err(|()| BookingError::NotInQueue {
            event_id: event_id.to_string(),
            user: user.to_string(),
        })?;
        if let Some(until) = lapse {
            self.derived
                .lapses
                .remove(&(until, event, user.to_string()));
        }
        // A freed place goes to the next fan at once.
        self.admit(event);
        Ok(Reply::QueueLeft {
            event_id: event_id.to_string(),
        })
    }

    /// A fan who confirmed a booking is done shopping: their admission ends
    /// and its lapse is no longer due. The slot it frees is filled by the
    /// next entry's housekeeping.
    pub(super) fn end_shopping(&mut self, event: u32, user: &str) {
        if let Some(queue) = self.events[event as usize].queue.as_mut() {
            if let Some(until) = queue.done(user) {
                self.derived
                    .lapses
                    .remove(&(until, event, user.to_string()));
            }
        }
    }
}
