//! The sections only the HTTP gateway reads: `[gateway]`, `[auth]` and
//! `[payments]`. Same rules as [`crate::parse`]: every value keeps its span,
//! every refusal names its key and line, defaults come from the sections'
//! `Default`.
//!
//! Must not: look at the file system. Whether `[auth] mode = "jwt"` has its
//! issuer, audience and keys, whether demo mode or the simulated provider sit
//! on a loopback address, and whether the key files exist are the gateway's
//! start-up checks: a node reads the same file and needs none of it.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;

use crate::parse::{take, Opt, Source};
use crate::{
    limits, AuthMode, AuthSection, ConfigError, GatewaySection, IpNet, NodeSection,
    PaymentProviderKind, PaymentsSection,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    listen: Opt<SocketAddr>,
    admin_token: Opt<String>,
    admin_token_file: Opt<String>,
    cluster_timeout_ms: Opt<u64>,
    session_secret_file: Opt<String>,
    ticket_key_file: Opt<String>,
    header_read_timeout_ms: Opt<u64>,
    body_read_timeout_ms: Opt<u64>,
    request_timeout_ms: Opt<u64>,
    connections_max: Opt<u32>,
    connections_per_address_max: Opt<u32>,
    keep_alive_idle_ms: Opt<u64>,
    ws_clients_max: Opt<u32>,
    ws_clients_per_address_max: Opt<u32>,
    allowed_origins: Opt<Vec<String>>,
    rate_per_address_per_s: Opt<u32>,
    rate_per_address_burst: Opt<u32>,
    rate_per_user_per_s: Opt<u32>,
    rate_per_user_burst: Opt<u32>,
    trusted_proxies: Opt<Vec<String>>,
    queue_block_max: Opt<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    mode: Opt<String>,
    jwt_issuer: Opt<String>,
    jwt_audience: Opt<String>,
    jwt_keys_file: Opt<String>,
    jwt_leeway_s: Opt<u64>,
    demo_session_ttl_s: Opt<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPayments {
    provider: Opt<String>,
    webhook_secret_file: Opt<String>,
    webhook_tolerance_s: Opt<u64>,
}

/// `value` in `1..=max`, or an error naming `key`.
fn in_range(
    src: &Source<'_>,
    key: &str,
    value: u64,
    span: Option<Range<usize>>,
    max: u64,
) -> Result<(), ConfigError> {
    if value == 0 || value > max {
        return Err(src.error(
            key,
            span,
            format!("{value} is out of range: must be between 1 and {max}"),
        ));
    }
    Ok(())
}

/// An optional path: present and not blank, or an error naming `key`.
fn path(src: &Source<'_>, key: &str, value: Opt<String>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let span = v.span();
    let text = v.into_inner();
    if text.trim().is_empty() {
        return Err(src.error(key, Some(span), "must not be empty".to_string()));
    }
    Ok(Some(PathBuf::from(text)))
}

/// A bounded `u32` knob with its default.
fn bounded_u32(
    src: &Source<'_>,
    key: &str,
    value: Opt<u32>,
    default: u32,
    max: u32,
) -> Result<u32, ConfigError> {
    let (v, span) = take(value, default);
    in_range(src, key, v as u64, span, max as u64)?;
    Ok(v)
}

/// A bounded `u64` knob with its default.
fn bounded_u64(
    src: &Source<'_>,
    key: &str,
    value: Opt<u64>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let (v, span) = take(value, default);
    in_range(src, key, v, span, max)?;
    Ok(v)
}

pub(crate) fn gateway_section(
    src: &Source<'_>,
    raw: Option<RawGateway>,
    nodes: &[NodeSection],
) -> Result<GatewaySection, ConfigError> {
    let d = GatewaySection::default();
    let Some(raw) = raw else {
        return check_gateway_clash(src, d, None, nodes);
    };
    let (listen, listen_span) = take(raw.listen, d.listen);
    let admin_token = match raw.admin_token {
        None => None,
        Some(t) => {
            let span = t.span();
            let token = t.into_inner();
            if token.trim().is_empty() {
                return Err(src.error(
                    "gateway.admin_token",
                    Some(span),
                    "must not be empty; leave the key out to use admin_token_file".to_string(),
                ));
            }
            if token.chars().count() < limits::ADMIN_TOKEN_LEN_MIN
                || !token.chars().all(|c| c.is_ascii_graphic())
            {
                return Err(src.error(
                    "gateway.admin_token",
                    Some(span),
                    format!(
                        "must be at least {} visible ASCII characters (a random token: \
                         `openssl rand -hex 32`)",
                        limits::ADMIN_TOKEN_LEN_MIN
                    ),
                ));
            }
            Some(token)
        }
    };
    let admin_token_file = path(src, "gateway.admin_token_file", raw.admin_token_file)?;
    let cluster_timeout_ms = bounded_u64(
        src,
        "gateway.cluster_timeout_ms",
        raw.cluster_timeout_ms,
        d.cluster_timeout_ms,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    let session_secret_file = path(src, "gateway.session_secret_file", raw.session_secret_file)?;
    let ticket_key_file = path(src, "gateway.ticket_key_file", raw.ticket_key_file)?;
    let header_read_timeout_ms = bounded_u64(
        src,
        "gateway.header_read_timeout_ms",
        raw.header_read_timeout_ms,
        d.header_read_timeout_ms,
        limits::HEADER_READ_TIMEOUT_MS_MAX,
    )?;
    let body_read_timeout_ms = bounded_u64(
        src,
        "gateway.body_read_timeout_ms",
        raw.body_read_timeout_ms,
        d.body_read_timeout_ms,
        limits::REQUEST_TIMEOUT_MS_MAX,
    )?;
    let request_timeout_ms = bounded_u64(
        src,
        "gateway.request_timeout_ms",
        raw.request_timeout_ms,
        d.request_timeout_ms,
        limits::REQUEST_TIMEOUT_MS_MAX,
    )?;
    let cap = |key: &str, value: Opt<u32>, default: u32| {
        bounded_u32(src, key, value, default, limits::CONNECTIONS_MAX_MAX)
    };
    let connections_max = cap(
        "gateway.connections_max",
        raw.connections_max,
        d.connections_max,
    )?;
    let connections_per_address_max = cap(
        "gateway.connections_per_address_max",
        raw.connections_per_address_max,
        d.connections_per_address_max,
    )?;
    let keep_alive_idle_ms = bounded_u64(
        src,
        "gateway.keep_alive_idle_ms",
        raw.keep_alive_idle_ms,
        d.keep_alive_idle_ms,
        limits::KEEP_ALIVE_IDLE_MS_MAX,
    )?;
    let ws_clients_max = cap(
        "gateway.ws_clients_max",
        raw.ws_clients_max,
        d.ws_clients_max,
    )?;
    let ws_clients_per_address_max = cap(
        "gateway.ws_clients_per_address_max",
        raw.ws_clients_per_address_max,
        d.ws_clients_per_address_max,
    )?;
    let rate = |key: &str, value: Opt<u32>, default: u32| {
        bounded_u32(src, key, value, default, limits::RATE_MAX)
    };
    let rate_per_address_per_s = rate(
        "gateway.rate_per_address_per_s",
        raw.rate_per_address_per_s,
        d.rate_per_address_per_s,
    )?;
    let rate_per_address_burst = rate(
        "gateway.rate_per_address_burst",
        raw.rate_per_address_burst,
        d.rate_per_address_burst,
    )?;
    let rate_per_user_per_s = rate(
        "gateway.rate_per_user_per_s",
        raw.rate_per_user_per_s,
        d.rate_per_user_per_s,
    )?;
    let rate_per_user_burst = rate(
        "gateway.rate_per_user_burst",
        raw.rate_per_user_burst,
        d.rate_per_user_burst,
    )?;
    let allowed_origins = origins(src, raw.allowed_origins)?;
    let trusted_proxies = proxies(src, raw.trusted_proxies)?;
    let queue_block_max = bounded_u32(
        src,
        "gateway.queue_block_max",
        raw.queue_block_max,
        d.queue_block_max,
        limits::QUEUE_BLOCK_MAX_MAX,
    )?;
    check_gateway_clash(
        src,
        GatewaySection {
            listen,
            admin_token,
            admin_token_file,
            cluster_timeout_ms,
            session_secret_file,
            ticket_key_file,
            header_read_timeout_ms,
            body_read_timeout_ms,
            request_timeout_ms,
            connections_max,
            connections_per_address_max,
            keep_alive_idle_ms,
            ws_clients_max,
            ws_clients_per_address_max,
            allowed_origins,
            rate_per_address_per_s,
            rate_per_address_burst,
            rate_per_user_per_s,
            rate_per_user_burst,
            trusted_proxies,
            queue_block_max,
        },
        listen_span,
        nodes,
    )
}

/// `scheme://host[:port]` with no path, or `"*"`; compared to the browser's
/// `Origin` header as written, lower-cased.
fn origins(src: &Source<'_>, raw: Opt<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let (list, span) = take(raw, Vec::new());
    if list.len() > limits::LIST_LEN_MAX {
        return Err(src.error(
            "gateway.allowed_origins",
            span,
            format!("{} entries: at most {}", list.len(), limits::LIST_LEN_MAX),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for origin in list {
        let ok = origin == "*"
            || origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https")
                    && !rest.is_empty()
                    && !rest.contains('/')
                    && rest.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                    })
            });
        if !ok {
            return Err(src.error(
                "gateway.allowed_origins",
                span,
                format!(
                    "{origin:?} is not an origin: write scheme://host[:port] \
                     (e.g. \"https://tickets.example.com\") or \"*\""
                ),
            ));
        }
        out.push(origin.to_ascii_lowercase());
    }
    Ok(out)
}

/// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
fn proxies(src: &Source<'_>, raw: Opt<Vec<String>>) -> Result<Vec<IpNet>, ConfigError> {
    let (list, span) = take(raw, Vec::new());
    if list.len() > limits::LIST_LEN_MAX {
        return Err(src.error(
            "gateway.trusted_proxies",
            span,
            format!("{} entries: at most {}", list.len(), limits::LIST_LEN_MAX),
        ));
    }
    let mut out = Vec::with_capacity(list.len());
    for entry in list {
        let net = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from));
        match net {
            Ok(net) => out.push(net.trunc()),
            Err(_) => {
                return Err(src.error(
                    "gateway.trusted_proxies",
                    span,
                    format!("{entry:?} is not a CIDR (e.g. \"10.0.0.0/8\") or an IP address"),
                ))
            }
        }
    }
    Ok(out)
}

/// The gateway usually runs on a node's host; it must not take a node's port.
fn check_gateway_clash(
    src: &Source<'_>,
    gateway: GatewaySection,
    listen_span: Option<Range<usize>>,
    nodes: &[NodeSection],
) -> Result<GatewaySection, ConfigError> {
    for (i, node) in nodes.iter().enumerate() {
        let clash = if node.addr == gateway.listen {
            Some("addr")
        } else if node.metrics_addr == Some(gateway.listen) {
            Some("metrics_addr")
        } else {
            None
        };
        if let Some(field) = clash {
            return Err(src.error(
                "gateway.listen",
                listen_span,
                format!("{} is also node[{}].{field}", gateway.listen, i + 1),
            ));
        }
    }
    Ok(gateway)
}

pub(crate) fn auth_section(
    src: &Source<'_>,
    raw: Option<RawAuth>,
) -> Result<AuthSection, ConfigError> {
    let d = AuthSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let mode = match raw.mode {
        None => d.mode,
        Some(m) => match m.get_ref().as_str() {
            "jwt" => AuthMode::Jwt,
            "demo" => AuthMode::Demo,
            other => {
                return Err(src.error(
                    "auth.mode",
                    Some(m.span()),
                    format!("{other:?}: must be \"jwt\" or \"demo\""),
                ))
            }
        },
    };
    let text = |key: &str, value: Opt<String>| -> Result<Option<String>, ConfigError> {
        let Some(v) = value else { return Ok(None) };
        let span = v.span();
        let t = v.into_inner();
        if t.trim().is_empty() || t.len() > 1024 {
            return Err(src.error(key, Some(span), "must be 1 to 1024 characters".to_string()));
        }
        Ok(Some(t))
    };
    let jwt_issuer = text("auth.jwt_issuer", raw.jwt_issuer)?;
    let jwt_audience = text("auth.jwt_audience", raw.jwt_audience)?;
    let jwt_keys_file = path(src, "auth.jwt_keys_file", raw.jwt_keys_file)?;
    let (jwt_leeway_s, leeway_span) = take(raw.jwt_leeway_s, d.jwt_leeway_s);
    if jwt_leeway_s > limits::JWT_LEEWAY_S_MAX {
        return Err(src.error(
            "auth.jwt_leeway_s",
            leeway_span,
            format!(
                "{jwt_leeway_s} is out of range: must be at most {}",
                limits::JWT_LEEWAY_S_MAX
            ),
        ));
    }
    let demo_session_ttl_s = bounded_u64(
        src,
        "auth.demo_session_ttl_s",
        raw.demo_session_ttl_s,
        d.demo_session_ttl_s,
        limits::DEMO_SESSION_TTL_S_MAX,
    )?;
    Ok(AuthSection {
        mode,
        jwt_issuer,
        jwt_audience,
        jwt_keys_file,
        jwt_leeway_s,
        demo_session_ttl_s,
    })
}

pub(crate) fn payments_section(
    src: &Source<'_>,
    raw: Option<RawPayments>,
) -> Result<PaymentsSection, ConfigError> {
    let d = PaymentsSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let provider = match raw.provider {
        None => d.provider,
        Some(p) => match p.get_ref().as_str() {
            "none" => PaymentProviderKind::None,
            "simulated" => PaymentProviderKind::Simulated,
            other => {
                return Err(src.error(
                    "payments.provider",
                    Some(p.span()),
                    format!("{other:?}: must be \"none\" or \"simulated\""),
                ))
            }
        },
    };
    let webhook_secret_file = path(src, "payments.webhook_secret_file", raw.webhook_secret_file)?;
    let webhook_tolerance_s = bounded_u64(
        src,
        "payments.webhook_tolerance_s",
        raw.webhook_tolerance_s,
        d.webhook_tolerance_s,
        limits::WEBHOOK_TOLERANCE_S_MAX,
    )?;
    Ok(PaymentsSection {
        provider,
        webhook_secret_file,
        webhook_tolerance_s,
    })
}
