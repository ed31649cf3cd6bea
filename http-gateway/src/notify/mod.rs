//! The notification sender: delivers the replicated outbox (confirmed and
//! cancelled bookings) at least once to the sink `[notifications]` names, then
//! acknowledges what was delivered.
//!
//! Owns: the poll loop and its backoff. Order per round: read up to
//! [`BATCH_MAX`] messages, hand them to the sink in order, then `AckOutbox {
//! up_to }` for the longest delivered prefix. A crash between a delivery and
//! its ack delivers that message again (at least once; consumers dedupe on
//! the message id, which every sink carries: the JSON `id`, the e-mail's
//! `Message-ID`, the webhook's `Booking-Notification-Id`). A failed delivery
//! is retried from that message on, after a backoff that doubles per failed
//! round up to [`BACKOFF_MS_MAX`]. Must not: ack a message before its sink
//! accepted it (the file fsynced, the SMTP server's 250, a webhook's 2xx).
//!
//! Sinks: `file.rs` (JSON lines), `smtp.rs` (lettre), `webhook.rs` (signed
//! POSTs).
//!
//! Caveat: every gateway with a sink configured sends; run one sender per
//! cluster, or accept duplicates (still at least once).

mod file;
mod smtp;
mod webhook;

use std::time::Duration;

use cluster_config::NotificationSink;
use state_machine::{Command, OutboxMessage, Query, QueryResult};

use crate::cluster::Consistency;
use crate::AppState;

/// Messages taken from the outbox per round.
pub const BATCH_MAX: u32 = 256;
/// Longest wait between failed rounds.
pub const BACKOFF_MS_MAX: u64 = 30_000;
/// Bound of one delivery (an SMTP conversation, a webhook call).
pub const DELIVERY_TIMEOUT_MS: u64 = 10_000;

/// What a sink did with a batch: how many messages, from the first, were
/// accepted (and so may be acked), and why it stopped short, if it did.
pub(crate) struct Delivered {
    pub accepted: usize,
    /// Of the accepted: how many could not be addressed (no e-mail address
    /// for the holder and no `default_to`); acked, counted, never retried.
    pub undeliverable: usize,
    pub error: Option<String>,
}

/// A configured sink, ready to deliver.
pub(crate) enum Sender {
    File(file::FileSink),
    Smtp(Box<smtp::SmtpSender>),
    Webhook(webhook::WebhookSender),
}

impl Sender {
    /// Builds the sink `[notifications]` names (`None` for no sink): reads
    /// the secret files, builds the transports. An error names the file or
    /// setting.
    pub(crate) fn from_settings(state: &AppState) -> Result<Option<Sender>, String> {
        Ok(match &state.settings.notifications {
            NotificationSink::None => None,
            NotificationSink::File(path) => Some(Sender::File(file::FileSink::new(path.clone()))),
            NotificationSink::Smtp(smtp) => {
                Some(Sender::Smtp(Box::new(smtp::SmtpSender::new(smtp)?)))
            }
            NotificationSink::Webhook(w) => Some(Sender::Webhook(webhook::WebhookSender::new(
                w,
                &state.settings.notify_webhook_secret_path(),
            )?)),
        })
    }

    async fn deliver(&self, state: &AppState, messages: &[OutboxMessage]) -> Delivered {
        match self {
            Sender::File(f) => f.deliver(messages).await,
            Sender::Smtp(s) => s.deliver(state, messages).await,
            Sender::Webhook(w) => w.deliver(messages).await,
        }
    }
}

pub async fn run(state: AppState, sender: Sender, mut stop: tokio::sync::watch::Receiver<bool>) {
    let poll = Duration::from_millis(state.settings.notification_poll_ms.max(10));
    let mut failures: u32 = 0;
    loop {
        let wait = if failures == 0 {
            poll
        } else {
            let backoff = poll.as_millis() as u64 * (1u64 << failures.min(16));
            Duration::from_millis(backoff.min(BACKOFF_MS_MAX))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        match round(&state, &sender).await {
            Ok(_) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                state.metrics.notification_failures.inc();
                tracing::warn!(error = %e, failures, "notification round failed; will retry from the first unacknowledged message");
            }
        }
    }
}

/// One poll: returns how many messages were delivered and acknowledged.
pub(crate) async fn round(state: &AppState, sender: &Sender) -> Result<usize, String> {
    let answer = state
        .cluster
        .read(
            Query::Outbox { limit: BATCH_MAX },
            Consistency::Linearizable,
        )
        .await
        .map_err(|e| e.to_string())?;
    let messages = match answer.result {
        QueryResult::Outbox(m) => m,
        _ => return Err("unexpected answer to the outbox query".into()),
    };
    if messages.is_empty() {
        return Ok(0);
    }
    let delivered = sender.deliver(state, &messages).await;
    let accepted = delivered.accepted.min(messages.len());
    if accepted > 0 {
        let up_to = messages[accepted - 1].id;
        crate::api::submit_first_send(state, Command::AckOutbox { up_to })
            .await
            .map_err(|p| p.detail)?;
        state.metrics.notifications_sent.add(accepted as i64);
        state
            .metrics
            .notifications_undeliverable
            .inc_by(delivered.undeliverable as u64);
    }
    match delivered.error {
        Some(e) => Err(format!(
            "delivered {accepted} of {}; message {}: {e}",
            messages.len(),
            messages[accepted].id
        )),
        None => Ok(accepted),
    }
}
