//! The SMTP sink (lettre): one e-mail per message to the holder, with a
//! plain-text and an HTML part and, for a confirmed booking, each ticket's
//! QR code (its signed code, as SVG) attached.
//!
//! Owns: addressing (the holder when it is an e-mail address, else
//! `default_to`, else undeliverable), the message and the transport. Must
//! not: acknowledge anything (`mod.rs` does), or send a message twice within
//! a batch. The `Message-ID` is derived from the outbox id, so a repeated
//! delivery after a crash carries the same id and mail systems can dedupe it.

use std::time::Duration;

use cluster_config::{SmtpSecurity, SmtpSink};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use state_machine::{OutboxKind, OutboxMessage, Query, QueryResult};

use super::{Delivered, DELIVERY_TIMEOUT_MS};
use crate::cluster::Consistency;
use crate::tickets::{qr_svg, sign_code};
use crate::AppState;

pub(crate) struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    default_to: Option<Mailbox>,
}

impl SmtpSender {
    pub(crate) fn new(cfg: &SmtpSink) -> Result<SmtpSender, String> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| format!("notifications.from {:?}: {e}", cfg.from))?;
        let default_to = match &cfg.default_to {
            Some(to) => Some(
                to.parse::<Mailbox>()
                    .map_err(|e| format!("notifications.default_to {to:?}: {e}"))?,
            ),
            None => None,
        };
        let builder = match cfg.security {
            SmtpSecurity::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host)
            }
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                    .map_err(|e| format!("notifications.smtp_host {:?}: {e}", cfg.host))?
            }
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)
                .map_err(|e| format!("notifications.smtp_host {:?}: {e}", cfg.host))?,
        };
        let mut builder = builder
            .port(cfg.port)
            .timeout(Some(Duration::from_millis(DELIVERY_TIMEOUT_MS)));
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| {
                        format!("notifications.smtp_password_file {}: {e}", path.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => return Err("notifications.smtp_username needs smtp_password_file".into()),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpSender {
            transport: builder.build(),
            from,
            default_to,
        })
    }

    /// Sends the messages in order; stops at the first the server refuses.
    pub(crate) async fn deliver(&self, state: &AppState, messages: &[OutboxMessage]) -> Delivered {
        let mut out = Delivered {
            accepted: 0,
            undeliverable: 0,
            error: None,
        };
        for m in messages {
            let to = match m.holder.parse::<Mailbox>() {
                Ok(to) => to,
                Err(_) => match &self.default_to {
                    Some(to) => to.clone(),
                    None => {
                        tracing::warn!(id = m.id, holder = %m.holder, "notification not sent: the holder is not an e-mail address and [notifications] default_to is not set");
                        out.accepted += 1;
                        out.undeliverable += 1;
                        continue;
                    }
                },
            };
            let email = match self.email(state, m, to).await {
                Ok(email) => email,
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            };
            match self.transport.send(email).await {
                Ok(_) => out.accepted += 1,
                Err(e) => {
                    out.error = Some(format!("SMTP: {e}"));
                    return out;
                }
            }
        }
        out
    }

    async fn email(
        &self,
        state: &AppState,
        m: &OutboxMessage,
        to: Mailbox,
    ) -> Result<Message, String> {
        let (subject, headline) = match m.kind {
            OutboxKind::BookingConfirmed => (
                format!("Your tickets: booking {}", m.booking_id),
                "Your booking is confirmed.",
            ),
            OutboxKind::BookingCancelled => (
                format!("Booking {} cancelled", m.booking_id),
                "Your booking was cancelled; its tickets are no longer valid.",
            ),
        };
        let plain = format!(
            "{headline}\n\n{}\n\nBooking {} for event {}.\n",
            m.text, m.booking_id, m.event_id
        );
        let html = format!(
            "<!doctype html><html><body><p>{}</p><p>{}</p><p>Booking {} for event {}.</p></body></html>",
            escape(headline),
            escape(&m.text),
            m.booking_id,
            escape(&m.event_id)
        );
        let mut body = MultiPart::mixed().multipart(MultiPart::alternative_plain_html(plain, html));
        if m.kind == OutboxKind::BookingConfirmed {
            for (ticket_id, seat, svg) in self.ticket_qrs(state, m.booking_id).await? {
                body = body.singlepart(
                    Attachment::new(format!("ticket-{ticket_id}-{seat}.svg")).body(
                        svg,
                        ContentType::parse("image/svg+xml").map_err(|e| e.to_string())?,
                    ),
                );
            }
        }
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<outbox-{}.booking-{}@booking>",
                m.id, m.booking_id
            )))
            .multipart(body)
            .map_err(|e| format!("building the e-mail: {e}"))
    }

    /// Each live ticket of the booking: id, seat and the QR of its signed code.
    async fn ticket_qrs(
        &self,
        state: &AppState,
        booking_id: u64,
    ) -> Result<Vec<(u64, String, String)>, String> {
        let answer = state
            .cluster
            .read(Query::Booking { booking_id }, Consistency::Linearizable)
            .await
            .map_err(|e| format!("reading booking {booking_id}: {e}"))?;
        let view = match answer.result {
            QueryResult::Booking(Ok(view)) => view,
            // Gone (cancelled and forgotten): the e-mail goes without QR codes.
            QueryResult::Booking(Err(_)) => return Ok(Vec::new()),
            _ => return Err("unexpected answer to the booking query".into()),
        };
        let mut out = Vec::new();
        for t in view.tickets.iter().filter(|t| !t.revoked) {
            let svg = qr_svg(&sign_code(state.keys.ticket_key(), t)).map_err(|e| e.to_string())?;
            out.push((t.ticket_id, t.seat.replace(['#', '/'], "-"), svg));
        }
        Ok(out)
    }
}

/// Minimal HTML escaping for text from the store.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
