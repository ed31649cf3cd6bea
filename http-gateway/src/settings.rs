//! Everything the gateway can be told, with defaults in one place, and the
//! start-up checks that refuse an unsafe configuration.
//!
//! Owns: [`GatewaySettings`] (built from `cluster.toml`'s `[gateway]` section
//! plus gateway-only knobs that the config crate does not have yet), and
//! [`SettingsError`]. Must not: read files (secrets are loaded by
//! [`crate::keys`]) or open sockets.
//!
//! Caveat: keys other than `listen`, `admin_token` and `cluster_timeout_ms` are not yet in
//! `cluster.toml`; until the config crate grows them they are set in code
//! (`booking gateway` uses the defaults below). See
//! `docs/config-and-node-interface.md`, "gateway needs these config keys".

use std::net::SocketAddr;
use std::path::PathBuf;

/// The admin token that ships in the default `cluster.toml`. Accepted only on
/// a loopback listen address.
pub const DEFAULT_ADMIN_TOKEN: &str = "dev-admin-token";

/// Gateway configuration. Every field has a default in [`GatewaySettings::default`].
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// `[gateway] listen`: where the HTTP server listens.
    pub listen: SocketAddr,
    /// `[gateway] admin_token`: bearer token for event creation, sale
    /// opening, check-in and the cluster endpoint.
    pub admin_token: String,
    /// Where the gateway keeps its key files when no explicit path is given
    /// (`<cluster.data_dir>/gateway` under `booking`).
    pub data_dir: PathBuf,
    /// Secret for session and waiting-room tokens (HMAC-SHA256). When `None`,
    /// it is derived from `admin_token` and `cluster_name`, so gateways that
    /// share a `cluster.toml` accept each other's tokens.
    pub token_secret_file: Option<PathBuf>,
    /// Ed25519 ticket signing key: a file holding a 32-byte seed in hex. All
    /// gateways of a cluster must point at the same key. Created with a fresh
    /// random seed if missing (`booking up` creates it once for everyone).
    /// When `None` and `ticket_key_seed` is `None`, `<data_dir>/ticket-key.hex`.
    pub ticket_key_file: Option<PathBuf>,
    /// Alternative to the key file: derive the ticket key from this string
    /// (tests and demos; anyone who knows the seed can forge tickets).
    pub ticket_key_seed: Option<String>,
    /// Secret the payment provider signs webhooks with. When `None`, derived
    /// from the token secret.
    pub webhook_secret: Option<String>,
    /// Accepted age of a webhook timestamp, either way, in seconds.
    pub webhook_tolerance_s: u64,
    /// Label mixed into derived secrets; the cluster's name.
    pub cluster_name: String,
    /// Lifetime of a session token, in seconds.
    pub session_ttl_s: u64,
    /// Largest request body on any route, in bytes (413 beyond).
    pub body_limit_bytes: usize,
    /// Largest body of `POST /v1/events` (a 50 000-seat layout), in bytes.
    pub event_body_limit_bytes: usize,
    /// Requests per second each client address may make (token bucket).
    pub rate_per_address_per_s: u32,
    /// Burst size of the per-address bucket.
    pub rate_per_address_burst: u32,
    /// Requests per second each signed-in user may make.
    pub rate_per_user_per_s: u32,
    /// Burst size of the per-user bucket.
    pub rate_per_user_burst: u32,
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
    /// `Cache-Control: max-age` of the static event layout, in seconds.
    pub event_cache_max_age_s: u64,
    /// Newline-delimited JSON file the notification sender appends confirmed
    /// bookings to. `None` disables the sender.
    pub notification_sink: Option<PathBuf>,
    /// How often the notification sender polls the outbox, in ms.
    pub notification_poll_ms: u64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_token: DEFAULT_ADMIN_TOKEN.to_string(),
            data_dir: PathBuf::from("data/gateway"),
            token_secret_file: None,
            ticket_key_file: None,
            ticket_key_seed: None,
            webhook_secret: None,
            webhook_tolerance_s: 300,
            cluster_name: "local".to_string(),
            session_ttl_s: 24 * 3600,
            body_limit_bytes: 64 * 1024,
            event_body_limit_bytes: 4 * 1024 * 1024,
            rate_per_address_per_s: 2_000,
            rate_per_address_burst: 4_000,
            rate_per_user_per_s: 50,
            rate_per_user_burst: 100,
            cluster_timeout_ms: 5_000,
            payment_attempts_max: 3,
            payment_backoff_ms: 50,
            payment_timeout_ms: 30_000,
            ws_clients_max: 10_000,
            event_cache_max_age_s: 60,
            notification_sink: None,
            notification_poll_ms: 500,
        }
    }
}

/// Why the gateway refused its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "refusing the default admin token {DEFAULT_ADMIN_TOKEN:?} on non-loopback address {0}: set [gateway] admin_token"
    )]
    DefaultAdminTokenExposed(SocketAddr),
    #[error("[gateway] {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("cannot use key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
}

impl GatewaySettings {
    /// Settings from a parsed `cluster.toml`: `[gateway]` keys (`listen`,
    /// `admin_token`, `cluster_timeout_ms`), the cluster
    /// name, and `<data_dir>/gateway` for key files; the rest defaulted.
    pub fn from_config(config: &cluster_config::ClusterConfig) -> GatewaySettings {
        GatewaySettings {
            listen: config.gateway.listen,
            admin_token: config.gateway.admin_token.clone(),
            cluster_timeout_ms: config.gateway.cluster_timeout_ms,
            data_dir: config.data_dir().join("gateway"),
            cluster_name: config.cluster.name.clone(),
            ..GatewaySettings::default()
        }
    }

    /// Start-up checks; the message names the key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.admin_token == DEFAULT_ADMIN_TOKEN && !self.listen.ip().is_loopback() {
            return Err(SettingsError::DefaultAdminTokenExposed(self.listen));
        }
        if self.admin_token.len() < 8 {
            return Err(SettingsError::Invalid {
                key: "admin_token",
                message: "at least 8 characters".into(),
            });
        }
        let positive: [(&'static str, u64); 9] = [
            ("session_ttl_s", self.session_ttl_s),
            ("body_limit_bytes", self.body_limit_bytes as u64),
            ("event_body_limit_bytes", self.event_body_limit_bytes as u64),
            ("rate_per_address_per_s", self.rate_per_address_per_s as u64),
            ("rate_per_address_burst", self.rate_per_address_burst as u64),
            ("rate_per_user_per_s", self.rate_per_user_per_s as u64),
            ("rate_per_user_burst", self.rate_per_user_burst as u64),
            ("cluster_timeout_ms", self.cluster_timeout_ms),
            ("payment_attempts_max", self.payment_attempts_max as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(SettingsError::Invalid {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if self.payment_attempts_max > 10 {
            return Err(SettingsError::Invalid {
                key: "payment_attempts_max",
                message: "at most 10".into(),
            });
        }
        if self.ws_clients_max == 0 {
            return Err(SettingsError::Invalid {
                key: "ws_clients_max",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_admin_token_refused_off_loopback() {
        // Goal: the default admin token is accepted on loopback only.
        let mut s = GatewaySettings::default();
        assert!(s.validate().is_ok());
        s.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(matches!(
            s.validate(),
            Err(SettingsError::DefaultAdminTokenExposed(_))
        ));
        s.admin_token = "a-long-real-secret".into();
        assert!(s.validate().is_ok());
    }
}
