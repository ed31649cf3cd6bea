//! The waiting-room commands and admission, as the state applies them.
//!
//! Owns: `ReserveQueueBlock`, `LeaveQueue`, the retired `JoinQueue`'s
//! refusal, raising the admission watermark of an open sale (after every
//! change that can free a place, and in housekeeping), lapsing rounds, the
//! admission check of a hold, and ending a fan's shopping when they confirm.
//! The rules themselves live in
//! [`WaitingRoom`](crate::waiting_room::WaitingRoom). Must not: admit while
//! the sale is not open, or more places than the rule's slots.

use super::{check_text, BookingState};
use crate::command::*;
use crate::error::BookingError;
use crate::limits::MAX_HOLDER_LEN;
use crate::view::SaleState;
use crate::waiting_room::{admit_grace_ms, Refusal};

impl BookingState {
    /// When a round's grace ends in the event's room: it may admit then.
    pub(super) fn next_grace_end_ms(&self, event: u32) -> Option<u64> {
        let ev = &self.events[event as usize];
        ev.queue.as_ref()?.next_grace_end_ms(self.clock_ms)
    }

    /// True when the event's waiting room would admit somebody now.
    pub(super) fn can_admit(&self, event: u32) -> bool {
        let ev = &self.events[event as usize];
        match &ev.queue {
            Some(q) => {
                ev.sale == SaleState::Open && q.slots(ev.available_units(), self.clock_ms) > 0
            }
            None => false,
        }
    }

    /// Raises the watermark as far as the rule allows now: one round whose
    /// admissions last `hold_ttl_ms` of log time.
    pub(super) fn admit(&mut self, event: u32) {
        let ev = &mut self.events[event as usize];
        if ev.sale != SaleState::Open {
            return;
        }
        let available = ev.available_units();
        let until = self.clock_ms.saturating_add(ev.spec.hold_ttl_ms);
        let grace_until = self
            .clock_ms
            .saturating_add(admit_grace_ms(ev.spec.hold_ttl_ms));
        let Some(queue) = ev.queue.as_mut() else {
            return;
        };
        if queue.seed.is_none() {
            // Only a room converted from a format-3 snapshot of an opened
            // sale: it had no key; every replica derives the same one here.
            queue.open(*blake3::hash(format!("legacy/{}", ev.id).as_bytes()).as_bytes());
        }
        let slots = queue.slots(available, self.clock_ms);
        if slots == 0 {
            return;
        }
        queue.admit(slots, until, grace_until);
        self.derived.lapses.insert((until, event));
    }

    /// Folds the event's lapsed rounds (housekeeping, at `clock_ms`).
    pub(super) fn lapse_rounds(&mut self, event: u32) {
        if let Some(queue) = self.events[event as usize].queue.as_mut() {
            queue.lapse(self.clock_ms);
        }
    }

    /// The waiting-room check of a hold by `holder` presenting
    /// `position` (None: a plain `Hold`). `Ok(Some(until))`: admitted, and a
    /// successful hold records the holder as shopping until then.
    pub(super) fn check_admission(
        &self,
        event: u32,
        holder: &str,
        position: Option<u64>,
    ) -> Result<Option<u64>, BookingError> {
        let ev = &self.events[event as usize];
        let Some(queue) = &ev.queue else {
            return Ok(None);
        };
        queue
            .check(holder, position, self.clock_ms)
            .map_err(|refusal| match refusal {
                Refusal::Lapsed => BookingError::AdmissionLapsed {
                    event_id: ev.id.clone(),
                    holder: holder.into(),
                },
                Refusal::NotYet | Refusal::Done => BookingError::NotAdmitted {
                    event_id: ev.id.clone(),
                    holder: holder.into(),
                },
            })
    }

    /// After a successful first hold under an admission: the holder shops.
    pub(super) fn record_shopper(&mut self, event: u32, holder: &str, until_ms: u64) {
        if let Some(queue) = self.events[event as usize].queue.as_mut() {
            queue.record_shopper(holder, until_ms);
        }
    }

    /// `ReserveQueueBlock`: `count` positions for one gateway.
    pub(super) fn reserve_queue_block(&mut self, event_id: &str, count: u32) -> Outcome {
        let event = self.event_index(event_id)?;
        let max = self.settings.queue_block_max;
        if count == 0 || count > max {
            return Err(BookingError::InvalidRequest {
                reason: format!("a block is 1..={max} positions"),
            });
        }
        let ev = &mut self.events[event as usize];
        let opened = ev.opened_once;
        let queue = ev
            .queue
            .as_mut()
            .ok_or_else(|| BookingError::NoWaitingRoom {
                event_id: event_id.into(),
            })?;
        let first_position = queue
            .reserve(count)
            .ok_or_else(|| BookingError::QueueFull {
                event_id: event_id.into(),
            })?;
        // New places may be admitted at once if shoppers are few.
        self.admit(event);
        Ok(Reply::QueueBlock {
            event_id: event_id.to_string(),
            first_position,
            count,
            opened,
        })
    }

    /// `JoinQueue` is retired: it cost a log write and a record per fan.
    pub(super) fn join_queue(&mut self, event_id: &str, user: &str) -> Outcome {
        check_text("user", user, MAX_HOLDER_LEN)?;
        self.event_index(event_id)?;
        Err(BookingError::InvalidRequest {
            reason: "JoinQueue is retired: a gateway reserves positions in blocks \
                     (ReserveQueueBlock) and hands out signed tokens"
                .into(),
        })
    }

    /// `LeaveQueue`: the fan gives up their live admission, whose place goes
    /// to the next fan at once.
    pub(super) fn leave_queue(&mut self, event_id: &str, user: &str) -> Outcome {
        let event = self.event_index(event_id)?;
        let clock = self.clock_ms;
        let queue = self.events[event as usize].queue.as_mut().ok_or_else(|| {
            BookingError::NoWaitingRoom {
                event_id: event_id.to_string(),
            }
        })?;
        if !queue.finish(user, clock) {
            return Err(BookingError::NotInQueue {
                event_id: event_id.to_string(),
                user: user.to_string(),
            });
        }
        self.admit(event);
        Ok(Reply::QueueLeft {
            event_id: event_id.to_string(),
        })
    }

    /// A fan who confirmed a booking is done shopping: their admission ends.
    /// The slot it frees is filled by the next entry's housekeeping.
    pub(super) fn end_shopping(&mut self, event: u32, user: &str) {
        let clock = self.clock_ms;
        if let Some(queue) = self.events[event as usize].queue.as_mut() {
            queue.finish(user, clock);
        }
    }
}
