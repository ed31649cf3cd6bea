//! `[notifications]`: where the gateway delivers the replicated outbox
//! (confirmed and cancelled bookings), and its parsing.
//!
//! Owns: the section's types and their checks (a sink's required keys, keys
//! of another sink refused, addresses and URLs that can work). Must not:
//! deliver anything (the gateway's `notify` module does) or read the secret
//! files (paths only).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::parse::{take, Opt, Source};
use crate::ConfigError;

/// How the SMTP connection is secured (`smtp_security`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP: only for a relay on loopback or a trusted network.
    None,
    /// Plain connection upgraded with STARTTLS (port 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `sink = "smtp"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SmtpSink {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// File holding the SMTP password (never the password in the file).
    pub password_file: Option<PathBuf>,
    /// The From address, e.g. `Tickets <tickets@example.com>`.
    pub from: String,
    /// Where a notification goes when its holder is not an email address
    /// (e.g. a box office); without it such a notification is counted as
    /// undeliverable and acknowledged.
    pub default_to: Option<String>,
}

/// `sink = "webhook"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookSink {
    /// `http://` or `https://` URL each notification is POSTed to.
    pub url: String,
    /// HMAC secret of the `Booking-Signature` header (default
    /// `<data_dir>/gateway/notify-webhook-secret`, created random on first start).
    pub secret_file: Option<PathBuf>,
}

/// Where notifications go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationSink {
    /// Not sent; the outbox keeps them (bounded, oldest dropped).
    None,
    /// Appended to a JSON-lines file, fsynced before the ack.
    File(PathBuf),
    Smtp(SmtpSink),
    Webhook(WebhookSink),
}

/// `[notifications]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotificationsSection {
    pub sink: NotificationSink,
    /// How often the sender polls the outbox, in ms.
    pub poll_ms: u64,
}

impl Default for NotificationsSection {
    fn default() -> Self {
        NotificationsSection {
            sink: NotificationSink::None,
            poll_ms: 500,
        }
    }
}

/// Longest poll interval, in ms (a minute).
pub const NOTIFY_POLL_MS_MAX: u64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNotifications {
    sink: Opt<String>,
    poll_ms: Opt<u64>,
    file: Opt<String>,
    smtp_host: Opt<String>,
    smtp_port: Opt<u16>,
    smtp_security: Opt<String>,
    smtp_username: Opt<String>,
    smtp_password_file: Opt<String>,
    from: Opt<String>,
    default_to: Opt<String>,
    webhook_url: Opt<String>,
    webhook_secret_file: Opt<String>,
}

/// A mailbox the SMTP sink can use: `addr@domain` or `Name <addr@domain>`.
fn mailbox_ok(text: &str) -> bool {
    let addr = match (text.find('<'), text.rfind('>')) {
        (Some(a), Some(b)) if a < b => &text[a + 1..b],
        _ => text,
    };
    let mut parts = addr.trim().split('@');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(l), Some(d), None) if !l.is_empty() && (d.contains('.') || d == "localhost")
    )
}

fn text(src: &Source<'_>, key: &str, v: Opt<String>) -> Result<Option<String>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let span = v.span();
    let t = v.into_inner();
    if t.trim().is_empty() {
        return Err(src.error(key, Some(span), "must not be empty".into()));
    }
    Ok(Some(t))
}

fn required(
    src: &Source<'_>,
    key: &str,
    v: Option<String>,
    sink: &str,
) -> Result<String, ConfigError> {
    v.ok_or_else(|| src.error(key, None, format!("is required with sink = {sink:?}")))
}

pub(crate) fn notifications_section(
    src: &Source<'_>,
    raw: Option<RawNotifications>,
) -> Result<NotificationsSection, ConfigError> {
    let d = NotificationsSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let (poll_ms, span) = take(raw.poll_ms, d.poll_ms);
    if poll_ms == 0 || poll_ms > NOTIFY_POLL_MS_MAX {
        return Err(src.error(
            "notifications.poll_ms",
            span,
            format!("{poll_ms}: must be in 1..={NOTIFY_POLL_MS_MAX}"),
        ));
    }
    let (kind, kind_span) = take(raw.sink, "none".to_string());
    // Keys of one sink given with another are refused: a typo in `sink`
    // must not silently drop the operator's SMTP or webhook settings.
    let given = |key: &'static str, present: bool| present.then_some(key);
    let smtp_keys = [
        given("smtp_host", raw.smtp_host.is_some()),
        given("smtp_port", raw.smtp_port.is_some()),
        given("smtp_security", raw.smtp_security.is_some()),
        given("smtp_username", raw.smtp_username.is_some()),
        given("smtp_password_file", raw.smtp_password_file.is_some()),
        given("from", raw.from.is_some()),
        given("default_to", raw.default_to.is_some()),
    ];
    let webhook_keys = [
        given("webhook_url", raw.webhook_url.is_some()),
        given("webhook_secret_file", raw.webhook_secret_file.is_some()),
    ];
    let file_keys = [given("file", raw.file.is_some())];
    let stray = |keys: &[Option<&'static str>], of: &str| -> Result<(), ConfigError> {
        match keys.iter().flatten().next() {
            Some(key) if kind != of => Err(src.error(
                &format!("notifications.{key}"),
                None,
                format!("belongs to sink = {of:?}, but sink = {kind:?}"),
            )),
            _ => Ok(()),
        }
    };
    stray(&smtp_keys, "smtp")?;
    stray(&webhook_keys, "webhook")?;
    stray(&file_keys, "file")?;
    let sink = match kind.as_str() {
        "none" => NotificationSink::None,
        "file" => {
            let path = text(src, "notifications.file", raw.file)?;
            NotificationSink::File(PathBuf::from(required(
                src,
                "notifications.file",
                path,
                "file",
            )?))
        }
        "smtp" => {
            let host = text(src, "notifications.smtp_host", raw.smtp_host)?;
            let host = required(src, "notifications.smtp_host", host, "smtp")?;
            let from_span = raw.from.as_ref().map(|f| f.span());
            let from = text(src, "notifications.from", raw.from)?;
            let from = required(src, "notifications.from", from, "smtp")?;
            if !mailbox_ok(&from) {
                return Err(src.error(
                    "notifications.from",
                    from_span,
                    format!("{from:?} is not an email address"),
                ));
            }
            let to_span = raw.default_to.as_ref().map(|f| f.span());
            let default_to = text(src, "notifications.default_to", raw.default_to)?;
            if let Some(to) = &default_to {
                if !mailbox_ok(to) {
                    return Err(src.error(
                        "notifications.default_to",
                        to_span,
                        format!("{to:?} is not an email address"),
                    ));
                }
            }
            let (security, sec_span) = take(raw.smtp_security, "starttls".to_string());
            let security = match security.as_str() {
                "none" => SmtpSecurity::None,
                "starttls" => SmtpSecurity::Starttls,
                "tls" => SmtpSecurity::Tls,
                other => {
                    return Err(src.error(
                        "notifications.smtp_security",
                        sec_span,
                        format!("{other:?}: must be \"none\", \"starttls\" or \"tls\""),
                    ))
                }
            };
            let default_port = match security {
                SmtpSecurity::None => 25,
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
            };
            let (port, port_span) = take(raw.smtp_port, default_port);
            if port == 0 {
                return Err(src.error(
                    "notifications.smtp_port",
                    port_span,
                    "must not be 0".into(),
                ));
            }
            NotificationSink::Smtp(SmtpSink {
                host,
                port,
                security,
                username: text(src, "notifications.smtp_username", raw.smtp_username)?,
                password_file: text(
                    src,
                    "notifications.smtp_password_file",
                    raw.smtp_password_file,
                )?
                .map(PathBuf::from),
                from,
                default_to,
            })
        }
        "webhook" => {
            let url_span = raw.webhook_url.as_ref().map(|u| u.span());
            let url = text(src, "notifications.webhook_url", raw.webhook_url)?;
            let url = required(src, "notifications.webhook_url", url, "webhook")?;
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
                return Err(src.error(
                    "notifications.webhook_url",
                    url_span,
                    format!("{url:?}: must be an http:// or https:// URL with a host"),
                ));
            }
            NotificationSink::Webhook(WebhookSink {
                url,
                secret_file: text(
                    src,
                    "notifications.webhook_secret_file",
                    raw.webhook_secret_file,
                )?
                .map(PathBuf::from),
            })
        }
        other => {
            return Err(src.error(
                "notifications.sink",
                kind_span,
                format!("{other:?}: must be \"none\", \"file\", \"smtp\" or \"webhook\""),
            ))
        }
    };
    Ok(NotificationsSection { sink, poll_ms })
}

#[cfg(test)]
mod tests {
    use super::mailbox_ok;

    #[test]
    fn mailboxes() {
        assert!(mailbox_ok("tickets@example.com"));
        assert!(mailbox_ok("Tickets <tickets@example.com>"));
        assert!(mailbox_ok("root@localhost"));
        assert!(!mailbox_ok("alice"));
        assert!(!mailbox_ok("a@b@c.com"));
        assert!(!mailbox_ok("@example.com"));
    }
}
