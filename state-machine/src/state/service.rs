//! The commands that serve the gateway and the operator rather than sell
//! seats: payment-provider webhook ids, the notification outbox, and the
//! replicated settings.
//!
//! Owns: `RecordWebhook`, `AckOutbox`, `Configure`, and appending a message
//! to the outbox (for `bookings`). Must not: touch seats, holds or bookings,
//! or let a table outgrow its bound: the outbox drops its oldest message when
//! full (counted in `outbox_dropped`), and `Configure` trims the webhook
//! table and the outbox to their new bounds at once. The exactly-once table
//! is never trimmed: a lower `dedupe_max_entries` refuses new requests
//! until forgetting brings it below the bound.

use super::{check_text, BookingState};
use crate::command::*;
use crate::error::BookingError;
use crate::limits::MAX_WEBHOOK_ID_LEN;
use crate::settings::Settings;
use crate::view::{OutboxKind, OutboxMessage};

impl BookingState {
    /// `RecordWebhook`: remembers a provider's webhook event id; replies
    /// whether it was new.
    pub(super) fn record_webhook(&mut self, webhook_id: &str) -> Outcome {
        check_text("webhook_id", webhook_id, MAX_WEBHOOK_ID_LEN)?;
        let new = self.webhooks.record(
            webhook_id,
            self.clock_ms,
            self.settings.webhook_dedupe_max_entries,
        );
        Ok(Reply::WebhookRecorded { new })
    }

    /// `AckOutbox`: drops the delivered messages, those with `id <= up_to`.
    pub(super) fn ack_outbox(&mut self, up_to: u64) -> Outcome {
        let mut removed = 0;
        while self.outbox.front().is_some_and(|m| m.id <= up_to) {
            self.outbox.pop_front();
            removed += 1;
        }
        Ok(Reply::OutboxAcked { removed })
    }

    /// `Configure`: validates and installs new settings, then trims the
    /// webhook table and the outbox to their new bounds.
    pub(super) fn configure(&mut self, settings: &Settings) -> Outcome {
        settings
            .validate()
            .map_err(|reason| BookingError::InvalidSettings { reason })?;
        self.settings = settings.clone();
        self.webhooks.trim(self.settings.webhook_dedupe_max_entries);
        while self.outbox.len() > self.settings.outbox_max_entries as usize {
            self.outbox.pop_front();
            self.outbox_dropped += 1;
        }
        Ok(Reply::Configured)
    }

    /// Queues a notification about a booking, dropping the oldest message
    /// when the outbox is full.
    pub(super) fn push_outbox(&mut self, kind: OutboxKind, booking_id: u64) {
        let view = self
            .booking_view(booking_id)
            .expect("outbox message for a missing booking");
        let event_name = &self.events[self.bookings[&booking_id].event as usize]
            .spec
            .name;
        let places = match &view.general_admission {
            Some(ga) => format!("{} x general admission {}", ga.count, ga.section),
            None => view.seats.join(", "),
        };
        let text = match kind {
            OutboxKind::BookingConfirmed => format!(
                "Booking {booking_id} confirmed for {event_name}: {places}; total {} cents; tickets {:?}",
                view.total_cents,
                view.tickets.iter().map(|t| t.ticket_id).collect::<Vec<_>>()
            ),
            OutboxKind::BookingCancelled => {
                format!("Booking {booking_id} for {event_name} cancelled: {places}; tickets revoked")
            }
        };
        if self.outbox.len() >= self.settings.outbox_max_entries as usize {
            self.outbox.pop_front();
            self.outbox_dropped += 1;
        }
        let id = self.next_outbox_id;
        self.next_outbox_id += 1;
        self.outbox.push_back(OutboxMessage {
            id,
            kind,
            booking_id,
            event_id: view.event_id,
            holder: view.holder,
            at_ms: self.clock_ms,
            text,
        });
    }
}
