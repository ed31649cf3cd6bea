//! Everything the gateway can be told, with defaults in one place, and the
//! start-up checks that refuse an unsafe configuration.
//!
//! Owns: [`GatewaySettings`] (built from `cluster.toml`'s `[gateway]`,
//! `[auth]`, `[payments]` and `[booking] cancel_cutoff_ms` plus a few
//! gateway-only knobs), and [`SettingsError`]. Must not: read files (secrets
//! and JWKS documents are loaded by [`crate::keys`] and [`crate::jwt`]) or
//! open sockets.
//!
//! Start-up refusals (each names its key):
//! - `[auth] mode = "jwt"` (the default) without `jwt_issuer`,
//!   `jwt_audience` or `jwt_keys_file`;
//! - `[auth] mode = "demo"` or `[payments] provider = "simulated"` on an
//!   address that is not loopback (both let anyone act as anyone or pay
//!   with nothing);
//! - a value out of range.
//!
//! Caveat: the loopback checks look at the address the gateway listens on.
//! A reverse proxy or tunnel in front of a loopback gateway exposes it
//! anyway: demo mode and the simulated provider are for a developer's
//! machine and tests, never behind a proxy.

use std::net::SocketAddr;
use std::path::PathBuf;

use cluster_config::defaults;
pub use cluster_config::{AuthMode, IpNet, PaymentProviderKind};

/// `[auth]` as the gateway uses it: the config's own section (one
/// definition, one set of defaults), with `jwt_keys_file` resolved against
/// the config file's directory by [`GatewaySettings::from_config`].
pub type AuthSettings = cluster_config::AuthSection;

/// Gateway configuration. Every field has a default in [`GatewaySettings::default`].
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// `[gateway] listen`: where the HTTP server listens.
    pub listen: SocketAddr,
    /// `[gateway] admin_token`: the operators' bearer token, if set inline.
    pub admin_token: Option<String>,
    /// File holding the admin token; read at start if it exists (default
    /// `<data_dir>/admin-token`, which `booking up` creates). With neither
    /// this nor `admin_token`, only JWTs with `booking:admin` are operators.
    pub admin_token_file: Option<PathBuf>,
    /// Where the gateway keeps the secret files it creates when no explicit
    /// path is given (`<cluster.data_dir>/gateway` under `booking`).
    pub data_dir: PathBuf,
    /// Secret for demo session tokens and waiting-room tokens (HMAC-SHA256):
    /// random bytes, created 0600 when missing. Default `<data_dir>/session-secret`.
    pub session_secret_file: Option<PathBuf>,
    /// Ed25519 ticket signing key (a 32-byte seed in hex), created 0600 when
    /// missing. Default `<data_dir>/ticket-key.hex`.
    pub ticket_key_file: Option<PathBuf>,
    /// Secret the payment provider signs webhooks with; created random when
    /// missing. Default `<data_dir>/webhook-secret`.
    pub webhook_secret_file: Option<PathBuf>,
    /// Accepted age of a webhook timestamp, either way, in seconds.
    pub webhook_tolerance_s: u64,
    /// `[auth]`.
    pub auth: AuthSettings,
    /// `[payments] provider`.
    pub payment_provider: PaymentProviderKind,
    /// `[booking] cancel_cutoff_ms`: no cancel this long before the event starts.
    pub cancel_cutoff_ms: u64,
    /// Largest request body on any route, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Largest body of `POST /v1/events` (a 50 000-seat layout), in bytes.
    pub event_body_limit_bytes: usize,
    /// Longest wait for a request's headers, in ms.
    pub header_read_timeout_ms: u64,
    /// Longest wait for a request body, in ms (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Longest a request may take to be answered, in ms (408 beyond).
    pub request_timeout_ms: u64,
    /// Connections served at once. Past it, up to
    /// [`crate::server::WAITING_CONNECTIONS_MAX`] more are accepted and wait,
    /// each asking the oldest served connection to close after its current
    /// request (see [`crate::server`]); the rest wait in the kernel's accept
    /// queue.
    pub connections_max: usize,
    /// How long a keep-alive connection may go without a request before it
    /// is closed, in ms. An idle HTTP/1 connection is also under
    /// `header_read_timeout_ms` (hyper's timer runs while it waits for the
    /// next request head), so it lasts the smaller of the two.
    pub keep_alive_idle_ms: u64,
    /// Open connections per client address (IPv6: /64); more are closed at
    /// once. Trusted proxies are exempt (every client comes through them).
    pub connections_per_address_max: usize,
    /// Requests per second each client address may make (token bucket).
    pub rate_per_address_per_s: u32,
    /// Burst size of the per-address bucket.
    pub rate_per_address_burst: u32,
    /// Requests per second each signed-in user may make.
    pub rate_per_user_per_s: u32,
    /// Burst size of the per-user bucket.
    pub rate_per_user_burst: u32,
    /// Peers whose `Forwarded` / `X-Forwarded-For` header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Upper bound on one cluster call (submit, read, status), in ms. A write
    /// that times out answers 503 `outcome_unknown`.
    pub cluster_timeout_ms: u64,
    /// Attempts at a charge that fails transiently (first try included).
    pub payment_attempts_max: u32,
    /// Backoff before the second attempt; doubles after each, in ms.
    pub payment_backoff_ms: u64,
    /// Upper bound on one call to the payment provider, in ms.
    pub payment_timeout_ms: u64,
    /// Concurrent live WebSocket clients; more get 503.
    pub ws_clients_max: usize,
    /// Concurrent live WebSocket clients per client address; more get 429.
    pub ws_clients_per_address_max: usize,
    /// Origins (lower-case `scheme://host[:port]`) whose pages may open the
    /// live seat map besides the gateway's own; `"*"` allows any.
    pub allowed_origins: Vec<String>,
    /// `Cache-Control: max-age` of the static event layout, in seconds.
    pub event_cache_max_age_s: u64,
    /// Where the notification sender delivers the outbox (`[notifications]`,
    /// paths resolved); `None` disables the sender.
    pub notifications: cluster_config::NotificationSink,
    /// HMAC secret of the notification webhook (default
    /// `<data_dir>/notify-webhook-secret`, created random on first start).
    pub notify_webhook_secret_file: Option<PathBuf>,
    /// How often the notification sender polls the outbox, in ms.
    pub notification_poll_ms: u64,
    /// Largest block of waiting-room positions reserved with one log write
    /// (see [`crate::queue_desk`]); at most the state machine's default
    /// `Settings::queue_block_max`, which would refuse a larger one.
    pub queue_block_max: u32,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: None,
            admin_token_file: None,
            data_dir: PathBuf::from("data/gateway"),
            session_secret_file: None,
            ticket_key_file: None,
            webhook_secret_file: None,
            webhook_tolerance_s: defaults::WEBHOOK_TOLERANCE_S,
            auth: AuthSettings::default(),
            payment_provider: PaymentProviderKind::None,
            cancel_cutoff_ms: defaults::CANCEL_CUTOFF_MS,
            body_limit_bytes: 64 * 1024,
            event_body_limit_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: defaults::HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: defaults::BODY_READ_TIMEOUT_MS,
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            connections_max: defaults::CONNECTIONS_MAX as usize,
            connections_per_address_max: defaults::CONNECTIONS_PER_ADDRESS_MAX as usize,
            keep_alive_idle_ms: defaults::KEEP_ALIVE_IDLE_MS,
            rate_per_address_per_s: defaults::RATE_PER_ADDRESS_PER_S,
            rate_per_address_burst: defaults::RATE_PER_ADDRESS_BURST,
            rate_per_user_per_s: defaults::RATE_PER_USER_PER_S,
            rate_per_user_burst: defaults::RATE_PER_USER_BURST,
            trusted_proxies: Vec::new(),
            cluster_timeout_ms: defaults::GATEWAY_CLUSTER_TIMEOUT_MS,
            payment_attempts_max: 3,
            payment_backoff_ms: 50,
            payment_timeout_ms: 30_000,
            ws_clients_max: defaults::WS_CLIENTS_MAX as usize,
            ws_clients_per_address_max: defaults::WS_CLIENTS_PER_ADDRESS_MAX as usize,
            allowed_origins: Vec::new(),
            event_cache_max_age_s: 60,
            notifications: cluster_config::NotificationSink::None,
            notify_webhook_secret_file: None,
            notification_poll_ms: 500,
            queue_block_max: defaults::GATEWAY_QUEUE_BLOCK_MAX,
        }
    }
}

/// Why the gateway refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("cannot use key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    /// The `[notifications]` sink cannot be built (a secret file, an
    /// address); the message names the key or file.
    #[error("[notifications]: {0}")]
    Notifications(String),
}

impl SettingsError {
    fn invalid(key: &'static str, message: impl Into<String>) -> SettingsError {
        SettingsError::Invalid {
            key,
            message: message.into(),
        }
    }
}

impl GatewaySettings {
    /// Settings from a parsed `cluster.toml`: `[gateway]`, `[auth]`,
    /// `[payments]`, `[booking] cancel_cutoff_ms`, and `<data_dir>/gateway`
    /// for the files the gateway creates; paths in the file are resolved
    /// against its directory.
    pub fn from_config(config: &cluster_config::ClusterConfig) -> GatewaySettings {
        let g = &config.gateway;
        let resolve = |p: &Option<PathBuf>| p.as_deref().map(|p| config.resolve(p));
        GatewaySettings {
            listen: g.listen,
            admin_token: g.admin_token.clone(),
            admin_token_file: resolve(&g.admin_token_file),
            data_dir: config.gateway_dir(),
            session_secret_file: resolve(&g.session_secret_file),
            ticket_key_file: resolve(&g.ticket_key_file),
            webhook_secret_file: resolve(&config.payments.webhook_secret_file),
            webhook_tolerance_s: config.payments.webhook_tolerance_s,
            auth: AuthSettings {
                jwt_keys_file: resolve(&config.auth.jwt_keys_file),
                ..config.auth.clone()
            },
            payment_provider: config.payments.provider,
            cancel_cutoff_ms: config.booking.cancel_cutoff_ms,
            header_read_timeout_ms: g.header_read_timeout_ms,
            body_read_timeout_ms: g.body_read_timeout_ms,
            request_timeout_ms: g.request_timeout_ms,
            connections_max: g.connections_max as usize,
            connections_per_address_max: g.connections_per_address_max as usize,
            keep_alive_idle_ms: g.keep_alive_idle_ms,
            rate_per_address_per_s: g.rate_per_address_per_s,
            rate_per_address_burst: g.rate_per_address_burst,
            rate_per_user_per_s: g.rate_per_user_per_s,
            rate_per_user_burst: g.rate_per_user_burst,
            trusted_proxies: g.trusted_proxies.clone(),
            cluster_timeout_ms: g.cluster_timeout_ms,
            ws_clients_max: g.ws_clients_max as usize,
            ws_clients_per_address_max: g.ws_clients_per_address_max as usize,
            allowed_origins: g.allowed_origins.clone(),
            notifications: resolved_sink(config),
            notify_webhook_secret_file: match &config.notifications.sink {
                cluster_config::NotificationSink::Webhook(w) => resolve(&w.secret_file),
                _ => None,
            },
            notification_poll_ms: config.notifications.poll_ms,
            queue_block_max: g.queue_block_max,
            ..GatewaySettings::default()
        }
    }

    /// The admin token file to read: the configured one, else the default
    /// that `booking up` writes.
    pub fn admin_token_path(&self) -> PathBuf {
        self.admin_token_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("admin-token"))
    }

    /// The session-token secret file.
    pub fn session_secret_path(&self) -> PathBuf {
        self.session_secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("session-secret"))
    }

    /// The ticket signing key file.
    pub fn ticket_key_path(&self) -> PathBuf {
        self.ticket_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("ticket-key.hex"))
    }

    /// The webhook secret file.
    pub fn notify_webhook_secret_path(&self) -> PathBuf {
        self.notify_webhook_secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("notify-webhook-secret"))
    }

    pub fn webhook_secret_path(&self) -> PathBuf {
        self.webhook_secret_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("webhook-secret"))
    }

    /// Start-up checks against the address the gateway listens on (which
    /// may differ from `listen` when a test binds port 0); the message names
    /// the key.
    pub fn validate_for(&self, local: SocketAddr) -> Result<(), SettingsError> {
        let loopback = local.ip().is_loopback();
        match self.auth.mode {
            AuthMode::Demo if !loopback => {
                return Err(SettingsError::invalid(
                    "[auth] mode",
                    format!(
                        "\"demo\" lets anyone sign in as anyone; it is refused on the \
                         non-loopback address {local}: use mode = \"jwt\" with your identity provider"
                    ),
                ))
            }
            AuthMode::Demo => {}
            AuthMode::Jwt => {
                let missing = if self.auth.jwt_issuer.is_none() {
                    Some("[auth] jwt_issuer")
                } else if self.auth.jwt_audience.is_none() {
                    Some("[auth] jwt_audience")
                } else if self.auth.jwt_keys_file.is_none() {
                    Some("[auth] jwt_keys_file")
                } else {
                    None
                };
                if let Some(key) = missing {
                    return Err(SettingsError::invalid(
                        key,
                        "required with [auth] mode = \"jwt\" (the default): the gateway \
                         verifies users' tokens with the issuer, audience and JWKS keys of \
                         your identity provider (or set mode = \"demo\" on loopback)",
                    ));
                }
            }
        }
        if self.payment_provider == PaymentProviderKind::Simulated && !loopback {
            return Err(SettingsError::invalid(
                "[payments] provider",
                format!(
                    "\"simulated\" confirms bookings without taking money; it is refused on \
                     the non-loopback address {local}"
                ),
            ));
        }
        if let Some(token) = &self.admin_token {
            if token.len() < cluster_config::limits::ADMIN_TOKEN_LEN_MIN {
                return Err(SettingsError::invalid(
                    "[gateway] admin_token",
                    format!(
                        "at least {} characters",
                        cluster_config::limits::ADMIN_TOKEN_LEN_MIN
                    ),
                ));
            }
        }
        let positive: [(&'static str, u64); 16] = [
            ("demo_session_ttl_s", self.auth.demo_session_ttl_s),
            ("body_limit_bytes", self.body_limit_bytes as u64),
            ("event_body_limit_bytes", self.event_body_limit_bytes as u64),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("body_read_timeout_ms", self.body_read_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("connections_max", self.connections_max as u64),
            (
                "connections_per_address_max",
                self.connections_per_address_max as u64,
            ),
            ("rate_per_address_per_s", self.rate_per_address_per_s as u64),
            ("rate_per_address_burst", self.rate_per_address_burst as u64),
            ("rate_per_user_per_s", self.rate_per_user_per_s as u64),
            ("rate_per_user_burst", self.rate_per_user_burst as u64),
            ("cluster_timeout_ms", self.cluster_timeout_ms),
            ("payment_attempts_max", self.payment_attempts_max as u64),
            ("keep_alive_idle_ms", self.keep_alive_idle_ms),
            ("queue_block_max", self.queue_block_max as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(SettingsError::invalid(key, "must be at least 1"));
            }
        }
        if self.header_read_timeout_ms > cluster_config::limits::HEADER_READ_TIMEOUT_MS_MAX {
            return Err(SettingsError::invalid(
                "[gateway] header_read_timeout_ms",
                "at most 30000",
            ));
        }
        // Added to instants by the connection supervisor: bounded, so the
        // sum cannot overflow.
        if self.keep_alive_idle_ms > cluster_config::limits::KEEP_ALIVE_IDLE_MS_MAX {
            return Err(SettingsError::invalid(
                "[gateway] keep_alive_idle_ms",
                format!("at most {}", cluster_config::limits::KEEP_ALIVE_IDLE_MS_MAX),
            ));
        }
        // A block larger than the state machine's bound is refused, and with
        // it every join that needed the block.
        let block_max = state_machine::Settings::default().queue_block_max;
        if self.queue_block_max > block_max {
            return Err(SettingsError::invalid(
                "[gateway] queue_block_max",
                format!(
                    "{} is more than the state machine's queue_block_max ({block_max}), \
                     which refuses larger blocks",
                    self.queue_block_max
                ),
            ));
        }
        if self.payment_attempts_max > 10 {
            return Err(SettingsError::invalid("payment_attempts_max", "at most 10"));
        }
        if self.ws_clients_max == 0 || self.ws_clients_per_address_max == 0 {
            return Err(SettingsError::invalid(
                "[gateway] ws_clients_max",
                "must be at least 1 (also ws_clients_per_address_max)",
            ));
        }
        Ok(())
    }

    /// [`GatewaySettings::validate_for`] at the configured `listen` address.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.validate_for(self.listen)
    }
}

/// `[notifications]` with its paths resolved against the file's directory.
fn resolved_sink(config: &cluster_config::ClusterConfig) -> cluster_config::NotificationSink {
    use cluster_config::NotificationSink as S;
    match &config.notifications.sink {
        S::None => S::None,
        S::File(p) => S::File(config.resolve(p)),
        S::Smtp(smtp) => {
            let mut smtp = smtp.clone();
            smtp.password_file = smtp.password_file.as_deref().map(|p| config.resolve(p));
            S::Smtp(smtp)
        }
        S::Webhook(w) => {
            let mut w = w.clone();
            w.secret_file = w.secret_file.as_deref().map(|p| config.resolve(p));
            S::Webhook(w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> GatewaySettings {
        GatewaySettings {
            auth: AuthSettings {
                mode: AuthMode::Demo,
                ..AuthSettings::default()
            },
            ..GatewaySettings::default()
        }
    }

    #[test]
    fn demo_mode_and_simulated_payments_only_on_loopback() {
        // Goal: the two "anyone may" switches are refused off loopback, naming the key.
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let mut s = demo();
        assert!(s.validate().is_ok());
        let e = s.validate_for(public).unwrap_err().to_string();
        assert!(e.contains("[auth] mode"), "{e}");
        s.auth.mode = AuthMode::Jwt;
        s.auth.jwt_issuer = Some("https://id.example/".into());
        s.auth.jwt_audience = Some("booking".into());
        s.auth.jwt_keys_file = Some("jwks.json".into());
        assert!(s.validate_for(public).is_ok());
        s.payment_provider = PaymentProviderKind::Simulated;
        let e = s.validate_for(public).unwrap_err().to_string();
        assert!(e.contains("[payments] provider"), "{e}");
    }

    #[test]
    fn jwt_mode_without_keys_names_the_missing_key() {
        // Goal: the built-in default (jwt) refuses to start without its issuer, audience and keys.
        let mut s = GatewaySettings::default();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("[auth] jwt_issuer"), "{e}");
        s.auth.jwt_issuer = Some("i".into());
        s.auth.jwt_audience = Some("a".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("[auth] jwt_keys_file"), "{e}");
    }

    #[test]
    fn queue_block_max_is_bounded_by_the_state_machine() {
        // Goal: the gateway never asks for a block the state machine refuses,
        // and the config crate's bound is the same number.
        let sm_max = state_machine::Settings::default().queue_block_max;
        assert_eq!(cluster_config::limits::QUEUE_BLOCK_MAX_MAX, sm_max);
        let mut s = demo();
        s.queue_block_max = sm_max;
        assert!(s.validate().is_ok());
        s.queue_block_max = sm_max + 1;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("[gateway] queue_block_max"), "{e}");
        s.queue_block_max = 0;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("queue_block_max"), "{e}");
    }

    #[test]
    fn keep_alive_idle_out_of_range_is_refused() {
        // Goal: an idle timeout of 0 (every connection closed at once) or
        // past the config bound (an instant overflow) is refused by name.
        let mut s = demo();
        for bad in [0, cluster_config::limits::KEEP_ALIVE_IDLE_MS_MAX + 1] {
            s.keep_alive_idle_ms = bad;
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains("keep_alive_idle_ms"), "{bad}: {e}");
        }
        s.keep_alive_idle_ms = cluster_config::limits::KEEP_ALIVE_IDLE_MS_MAX;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn short_admin_token_is_refused() {
        // Goal: an inline admin token must look like a secret.
        let mut s = demo();
        s.admin_token = Some("dev-admin-token".into());
        assert!(s.validate().is_err());
        s.admin_token = Some("a-long-real-secret-0123".into());
        assert!(s.validate().is_ok());
    }
}
