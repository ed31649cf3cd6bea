//! The webhook sink: each message POSTed as JSON to the configured URL,
//! signed like the payment webhooks (`Booking-Signature: t=<s>,v1=<hex
//! HMAC-SHA256 of "t.body">`), with `Booking-Notification-Id` for dedupe.
//!
//! Owns: the HTTP client and the signature. Must not: acknowledge anything
//! (`mod.rs` does); a message counts as delivered only on a 2xx answer.

use std::path::Path;
use std::time::Duration;

use cluster_config::WebhookSink;
use state_machine::OutboxMessage;

use super::{Delivered, DELIVERY_TIMEOUT_MS};
use crate::payments::sign_webhook;

pub(crate) struct WebhookSender {
    url: String,
    secret: Vec<u8>,
    http: reqwest::Client,
}

impl WebhookSender {
    pub(crate) fn new(cfg: &WebhookSink, secret_path: &Path) -> Result<WebhookSender, String> {
        let secret = crate::keys::read_secret(secret_path).map_err(|e| e.to_string())?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(DELIVERY_TIMEOUT_MS))
            // A redirect could send the signed body elsewhere: refuse it.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        Ok(WebhookSender {
            url: cfg.url.clone(),
            secret,
            http,
        })
    }

    pub(crate) async fn deliver(&self, messages: &[OutboxMessage]) -> Delivered {
        let mut out = Delivered {
            accepted: 0,
            undeliverable: 0,
            error: None,
        };
        for m in messages {
            let body = match serde_json::to_vec(m) {
                Ok(b) => b,
                Err(e) => {
                    out.error = Some(e.to_string());
                    return out;
                }
            };
            let now_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let sent = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header(
                    "booking-signature",
                    sign_webhook(&self.secret, now_s, &body),
                )
                .header("booking-notification-id", m.id.to_string())
                .body(body)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => out.accepted += 1,
                Ok(r) => {
                    out.error = Some(format!("{} answered {}", self.url, r.status()));
                    return out;
                }
                Err(e) => {
                    out.error = Some(format!("{}: {e}", self.url));
                    return out;
                }
            }
        }
        out
    }
}
