//! `[tls]` and the per-node certificate keys: the same rules as
//! [`crate::parse`] (every value keeps its span, every refusal names its key
//! and line, defaults from [`crate::TlsSection::default`]).
//!
//! Owns one check that reads several sections: `mode = "off"` is refused
//! unless every node address is loopback, because plaintext on a reachable
//! port lets anyone change membership or submit holds for anyone.
//!
//! Must not: look at the file system. Whether the certificate files exist is
//! the node's start-up check (it names the missing file), and `booking certs`
//! creates them.

use std::path::PathBuf;

use serde::Deserialize;

use crate::parse::{take, Opt, Source};
use crate::{ConfigError, NodeSection, TlsMode, TlsSection};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    mode: Opt<String>,
    dir: Opt<String>,
    ca_file: Opt<String>,
    ca_key_file: Opt<String>,
    client_cert_file: Opt<String>,
    client_key_file: Opt<String>,
    admin_cert_file: Opt<String>,
    admin_key_file: Opt<String>,
    node_role_uri: Opt<String>,
    admin_role_uri: Opt<String>,
}

/// An optional path: present and not blank, or an error naming `key`.
pub(crate) fn path(
    src: &Source<'_>,
    key: &str,
    value: Opt<String>,
) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = value else { return Ok(None) };
    let span = v.span();
    let text = v.into_inner();
    if text.trim().is_empty() {
        return Err(src.error(key, Some(span), "must not be empty".to_string()));
    }
    Ok(Some(PathBuf::from(text)))
}

/// Whether `text` has the shape of an absolute URI (`scheme:rest`, no
/// whitespace): what a URI subject-alternative name must be.
pub fn looks_like_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && text.chars().all(|c| c.is_ascii_graphic())
}

fn role_uri(
    src: &Source<'_>,
    key: &str,
    value: Opt<String>,
    default: String,
) -> Result<(String, Option<std::ops::Range<usize>>), ConfigError> {
    let (uri, span) = take(value, default);
    if !looks_like_uri(&uri) {
        return Err(src.error(
            key,
            span,
            format!(
                "{uri:?} is not a URI (scheme:rest, no spaces), e.g. \"urn:booking:role:admin\""
            ),
        ));
    }
    Ok((uri, span))
}

pub(crate) fn tls_section(
    src: &Source<'_>,
    raw: Option<RawTls>,
    nodes: &[NodeSection],
) -> Result<TlsSection, ConfigError> {
    let d = TlsSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let (mode_text, mode_span) = take(raw.mode, "on".to_string());
    let mode = match mode_text.as_str() {
        "on" => TlsMode::On,
        "off" => TlsMode::Off,
        other => {
            return Err(src.error(
                "tls.mode",
                mode_span,
                format!("{other:?} is not a mode: \"on\" (mutual TLS) or \"off\" (plaintext, loopback only)"),
            ))
        }
    };
    if mode == TlsMode::Off {
        if let Some(n) = nodes.iter().find(|n| !n.addr.ip().is_loopback()) {
            return Err(src.error(
                "tls.mode",
                mode_span,
                format!(
                    "\"off\" (plaintext gRPC) is refused: node {} listens on {}, which is not \
                     loopback; anyone who reaches it could change membership or submit holds. \
                     Use mode = \"on\" (`booking certs` makes the certificates)",
                    n.id, n.addr
                ),
            ));
        }
    }
    let (node_role_uri, _) =
        role_uri(src, "tls.node_role_uri", raw.node_role_uri, d.node_role_uri)?;
    let (admin_role_uri, admin_span) = role_uri(
        src,
        "tls.admin_role_uri",
        raw.admin_role_uri,
        d.admin_role_uri,
    )?;
    if admin_role_uri == node_role_uri {
        return Err(src.error(
            "tls.admin_role_uri",
            admin_span,
            "must differ from tls.node_role_uri: an administrator is not a node".to_string(),
        ));
    }
    Ok(TlsSection {
        mode,
        dir: path(src, "tls.dir", raw.dir)?,
        ca_file: path(src, "tls.ca_file", raw.ca_file)?,
        ca_key_file: path(src, "tls.ca_key_file", raw.ca_key_file)?,
        client_cert_file: path(src, "tls.client_cert_file", raw.client_cert_file)?,
        client_key_file: path(src, "tls.client_key_file", raw.client_key_file)?,
        admin_cert_file: path(src, "tls.admin_cert_file", raw.admin_cert_file)?,
        admin_key_file: path(src, "tls.admin_key_file", raw.admin_key_file)?,
        node_role_uri,
        admin_role_uri,
    })
}
