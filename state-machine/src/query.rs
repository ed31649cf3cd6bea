//! Read-only questions to the state.
//!
//! Owns: [`Query`] and [`QueryResult`]. Must not: change state (queries take
//! `&self`) or look at a clock: answers reflect `applied_index`/`clock_ms`, and
//! a hold past due is already expired because every entry expires due holds
//! at its start.

use serde::{Deserialize, Serialize};

use crate::error::BookingError;
use crate::view::*;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Events,
    Event {
        event_id: String,
    },
    Availability {
        event_id: String,
    },
    Hold {
        hold_id: u64,
    },
    Booking {
        booking_id: u64,
    },
    Ticket {
        ticket_id: u64,
    },
    /// The waiting room's watermark and rounds: a gateway reads it (stale,
    /// cached) and places every fan's token against it without another call.
    WaitingRoom {
        event_id: String,
    },
    /// The oldest `limit` undelivered messages (capped at 10 000).
    Outbox {
        limit: u32,
    },
    Status,
}

/// Bound on one outbox query's answer.
pub const MAX_OUTBOX_QUERY: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryResult {
    Events(Vec<EventSummary>),
    Event(Result<EventView, BookingError>),
    Availability(Result<AvailabilityView, BookingError>),
    Hold(Result<HoldView, BookingError>),
    Booking(Result<BookingView, BookingError>),
    Ticket(Result<TicketView, BookingError>),
    WaitingRoom(Result<WaitingRoomView, BookingError>),
    Outbox(Vec<OutboxMessage>),
    Status(StatusView),
}

use crate::event::{Event, Seat};
use crate::state::{BookingState, TicketSeat};

impl BookingState {
    /// Answers a read-only question from the applied state.
    pub fn query(&self, q: &Query) -> QueryResult {
        match q {
            Query::Events => QueryResult::Events(
                self.events
                    .iter()
                    .map(|ev| EventSummary {
                        event_id: ev.id.clone(),
                        name: ev.spec.name.clone(),
                        venue: ev.spec.venue.clone(),
                        starts_at: ev.spec.starts_at.clone(),
                        sale: ev.sale,
                        capacity: ev.layout.capacity,
                        available: ev.available_units(),
                    })
                    .collect(),
            ),
            Query::Event { event_id } => QueryResult::Event(self.event(event_id).map(|ev| {
                let held = ev.counters.iter().map(|c| c.held).sum();
                let booked = ev.counters.iter().map(|c| c.booked).sum();
                EventView {
                    spec: ev.spec.clone(),
                    sale: ev.sale,
                    created_index: ev.created_index,
                    capacity: ev.layout.capacity,
                    available: ev.available_units(),
                    held,
                    booked,
                    queue_waiting: ev.queue.as_ref().map(|q| q.waiting_len()),
                    queue_shopping: ev.queue.as_ref().map(|q| q.shopping(self.clock_ms)),
                }
            })),
            Query::Availability { event_id } => {
                QueryResult::Availability(self.event(event_id).map(|ev| self.availability(ev)))
            }
            Query::Hold { hold_id } => QueryResult::Hold(self.hold_view(*hold_id)),
            Query::Booking { booking_id } => QueryResult::Booking(
                self.booking_view(*booking_id)
                    .ok_or(BookingError::UnknownBooking {
                        booking_id: *booking_id,
                    }),
            ),
            Query::Ticket { ticket_id } => QueryResult::Ticket(self.ticket_view(*ticket_id).ok_or(
                BookingError::UnknownTicket {
                    ticket_id: *ticket_id,
                },
            )),
            Query::WaitingRoom { event_id } => {
                QueryResult::WaitingRoom(self.event(event_id).and_then(|ev| {
                    let queue = ev
                        .queue
                        .as_ref()
                        .ok_or_else(|| BookingError::NoWaitingRoom {
                            event_id: event_id.clone(),
                        })?;
                    Ok(queue.view(event_id, ev.spec.hold_ttl_ms, self.clock_ms))
                }))
            }
            Query::Outbox { limit } => QueryResult::Outbox(
                self.outbox
                    .iter()
                    .take((*limit).min(MAX_OUTBOX_QUERY) as usize)
                    .cloned()
                    .collect(),
            ),
            Query::Status => QueryResult::Status(StatusView {
                applied_index: self.applied_index,
                clock_ms: self.clock_ms,
                events: self.events.len() as u64,
                holds_live: self.derived.expiry.len() as u64,
                holds_remembered: self.holds.len() as u64,
                bookings: self.bookings.len() as u64,
                tickets: self.tickets.len() as u64,
                dedupe_entries: self.dedupe.len() as u64,
                webhook_entries: self.webhooks.len() as u64,
                outbox_len: self.outbox.len() as u64,
                outbox_dropped: self.outbox_dropped,
                next_deadline_ms: self.next_deadline_ms(),
            }),
        }
    }

    fn event(&self, event_id: &str) -> Result<&Event, BookingError> {
        self.event_by_id
            .get(event_id)
            .map(|&i| &self.events[i as usize])
            .ok_or_else(|| BookingError::UnknownEvent {
                event_id: event_id.to_string(),
            })
    }

    fn availability(&self, ev: &Event) -> AvailabilityView {
        let sections = ev
            .layout
            .sections
            .iter()
            .zip(&ev.counters)
            .map(|(s, c)| SectionAvailability {
                section: s.id.clone(),
                general_admission: s.ga_capacity.is_some(),
                price_cents: s.price_cents,
                capacity: s.capacity,
                available: s.capacity - c.held - c.booked,
                held: c.held,
                booked: c.booked,
                rows: (s.row_start..s.row_end)
                    .map(|r| {
                        let row = &ev.layout.rows[r as usize];
                        let states = ev.seats
                            [row.seat_start as usize..(row.seat_start + row.seats) as usize]
                            .iter()
                            .map(|seat| match seat {
                                Seat::Available => '.',
                                Seat::Held(_) => 'H',
                                Seat::Booked(_) => 'B',
                            })
                            .collect();
                        RowAvailability {
                            label: row.label.clone(),
                            states,
                        }
                    })
                    .collect(),
            })
            .collect();
        AvailabilityView {
            event_id: ev.id.clone(),
            applied_index: self.applied_index,
            clock_ms: self.clock_ms,
            sale: ev.sale,
            sections,
        }
    }

    fn ga_places(ev: &Event, ga: Option<(u32, u32)>) -> Option<crate::command::GaPlaces> {
        ga.map(|(si, count)| crate::command::GaPlaces {
            section: ev.layout.sections[si as usize].id.clone(),
            count,
        })
    }

    pub(crate) fn hold_view(&self, hold_id: u64) -> Result<HoldView, BookingError> {
        let Some(hold) = self.holds.get(hold_id) else {
            return Err(BookingError::UnknownHold { hold_id });
        };
        let ev = &self.events[hold.event as usize];
        Ok(HoldView {
            hold_id,
            event_id: ev.id.clone(),
            holder: hold.holder.to_string(),
            seats: hold.seats.iter().map(|&s| ev.seat_id(s)).collect(),
            general_admission: Self::ga_places(ev, hold.ga),
            status: hold.status,
            created_at_ms: hold.created_at_ms,
            expires_at_ms: hold.expires_at_ms,
            total_cents: hold.total_cents,
            booking_id: hold.booking_id,
            charge_id: hold.payment.as_ref().map(|p| p.charge_id.clone()),
        })
    }

    pub(crate) fn booking_view(&self, booking_id: u64) -> Option<BookingView> {
        let b = self.bookings.get(&booking_id)?;
        let ev = &self.events[b.event as usize];
        Some(BookingView {
            booking_id,
            hold_id: b.hold_id,
            event_id: ev.id.clone(),
            holder: b.holder.clone(),
            seats: b.seats.iter().map(|&s| ev.seat_id(s)).collect(),
            general_admission: Self::ga_places(ev, b.ga),
            payment_ref: b.payment_ref.clone(),
            total_cents: b.total_cents,
            status: b.status,
            created_at_ms: b.created_at_ms,
            cancelled_at_ms: b.cancelled_at_ms,
            tickets: b
                .tickets
                .iter()
                .map(|&t| self.ticket_view(t).expect("a booking's ticket exists"))
                .collect(),
        })
    }

    pub(crate) fn ticket_view(&self, ticket_id: u64) -> Option<TicketView> {
        let t = self.tickets.get(&ticket_id)?;
        let b = &self.bookings[&t.booking_id];
        let ev = &self.events[b.event as usize];
        let seat = match t.seat {
            TicketSeat::Reserved(s) => ev.seat_id(s),
            TicketSeat::GeneralAdmission(si, n) => {
                format!("{}#{n}", ev.layout.sections[si as usize].id)
            }
        };
        Some(TicketView {
            ticket_id,
            booking_id: t.booking_id,
            event_id: ev.id.clone(),
            holder: b.holder.clone(),
            seat,
            issued_at_ms: t.issued_at_ms,
            checked_in_at_ms: t.checked_in_at_ms,
            revoked: t.revoked,
        })
    }
}
