//! Events and their sales.
//!
//! Owns: `CreateEvent` (validation, the derived event id, the scheduled
//! opening), `OpenSale` and the opening itself (shared with the scheduled
//! opening in housekeeping, including the waiting-room shuffle seed), and
//! `CloseSale`. Must not: touch holds or bookings (closing a sale leaves
//! existing holds able to pay), or draw randomness other than the seed
//! derived from the opening log entry.

use super::{BookingState, Ctx};
use crate::command::*;
use crate::error::BookingError;
use crate::event::Event;
use crate::limits::MAX_EVENTS;
use crate::spec::{derive_slug, EventSpec};
use crate::view::SaleState;

impl BookingState {
    /// `CreateEvent`: validates the definition and adds the event, its sale
    /// not open (it opens by itself at `sale_opens_at` if set).
    pub(super) fn create_event(&mut self, spec: &EventSpec, ctx: &mut Ctx) -> Outcome {
        let times = spec
            .validate()
            .map_err(|reason| BookingError::InvalidEvent { reason })?;
        if self.events.len() >= MAX_EVENTS {
            return Err(BookingError::TooManyEvents {
                max: MAX_EVENTS as u64,
            });
        }
        let id = match &spec.id {
            Some(id) => {
                if self.event_by_id.contains_key(id) {
                    return Err(BookingError::EventExists {
                        event_id: id.clone(),
                    });
                }
                id.clone()
            }
            None => {
                // Two creations in one entry share the index: the position in
                // the batch, then a counter, keep derived ids unique.
                let base = derive_slug(&spec.name, ctx.index);
                let mut id = if ctx.position == 0 {
                    base.clone()
                } else {
                    format!("{base}-{}", ctx.position)
                };
                let mut n = 1;
                while self.event_by_id.contains_key(&id) {
                    n += 1;
                    id = format!("{base}-{}-{n}", ctx.position);
                }
                id
            }
        };
        let mut spec = spec.clone();
        spec.id = Some(id.clone());
        // Validation bounds years to 1970..=9999, so the instant is not negative.
        let sale_opens_at_ms = times.sale_opens_at_ms.map(|ms| ms.max(0) as u64);
        let event = self.events.len() as u32;
        self.events
            .push(Event::new(spec, ctx.index, self.clock_ms, sale_opens_at_ms));
        self.event_by_id.insert(id.clone(), event);
        if let Some(at) = sale_opens_at_ms {
            self.derived.scheduled_opens.insert((at, event));
        }
        Ok(Reply::EventCreated { event_id: id })
    }

    /// `OpenSale`: opens the sale now (idempotent).
    pub(super) fn open_sale(&mut self, event_id: &str, ctx: &mut Ctx) -> Outcome {
        let event = self.event_index(event_id)?;
        let fans_shuffled = self.open_event(event, ctx.index, ctx.stamp_ms);
        Ok(Reply::SaleOpened {
            event_id: event_id.to_string(),
            fans_shuffled,
        })
    }

    /// Opens a sale (idempotent), by command or by schedule; the first
    /// opening fixes the pre-queue's order key, derived from this entry's
    /// index and stamp. Returns how many positions the pre-queue holds.
    pub(super) fn open_event(&mut self, event: u32, index: u64, stamp_ms: u64) -> u64 {
        let ev = &mut self.events[event as usize];
        if let Some(at) = ev.sale_opens_at_ms.take() {
            self.derived.scheduled_opens.remove(&(at, event));
        }
        if ev.sale == SaleState::Open {
            return 0;
        }
        ev.sale = SaleState::Open;
        let mut shuffled = 0;
        if !ev.opened_once {
            ev.opened_once = true;
            if let Some(queue) = ev.queue.as_mut() {
                shuffled = queue.open(shuffle_seed(&ev.id, index, stamp_ms));
            }
        }
        if ev.queue.is_some() {
            self.derived.queue_events.insert(event);
            self.admit(event);
        }
        shuffled
    }

    /// `CloseSale` (idempotent): no new holds; existing holds may still pay.
    /// A scheduled opening that has not happened yet is cancelled.
    pub(super) fn close_sale(&mut self, event_id: &str) -> Outcome {
        let event = self.event_index(event_id)?;
        let ev = &mut self.events[event as usize];
        ev.sale = SaleState::Closed;
        if let Some(at) = ev.sale_opens_at_ms.take() {
            self.derived.scheduled_opens.remove(&(at, event));
        }
        self.derived.queue_events.remove(&event);
        Ok(Reply::SaleClosed {
            event_id: event_id.to_string(),
        })
    }
}

/// The pre-queue's order key: a hash of the event and the log entry that
/// opened the sale, so every replica draws the same order and nobody can
/// pick it by choosing when to join.
fn shuffle_seed(event_id: &str, index: u64, stamp_ms: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"booking/waiting-room-order/v2");
    h.update(&index.to_le_bytes());
    h.update(&stamp_ms.to_le_bytes());
    h.update(event_id.as_bytes());
    *h.finalize().as_bytes()
}
