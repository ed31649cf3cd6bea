//! From text to a validated [`ClusterConfig`]: a serde pass over a private
//! "raw" shape that keeps the source span of every value, then the semantic
//! checks, each of which names its key and the line of the value at fault.
//!
//! Must not: touch the file system (the caller read the text) or fill in a
//! default anywhere but from [`crate::defaults`] via the sections' `Default`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::parse_edge::{
    auth_section, gateway_section, payments_section, RawAuth, RawGateway, RawPayments,
};
use crate::parse_tls::{tls_section, RawTls};
use crate::{
    limits, BookingSection, ClusterConfig, ClusterSection, ConfigError, NodeSection, RaftSection,
};

/// A value that may be absent from the file, with where it was if present.
pub(crate) type Opt<T> = Option<Spanned<T>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    cluster: Option<RawCluster>,
    raft: Option<RawRaft>,
    booking: Option<RawBooking>,
    node: Opt<Vec<RawNode>>,
    gateway: Option<RawGateway>,
    auth: Option<RawAuth>,
    payments: Option<RawPayments>,
    notifications: Option<crate::notify::RawNotifications>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    name: Opt<String>,
    data_dir: Opt<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRaft {
    heartbeat_interval_ms: Opt<u64>,
    election_timeout_ms: Opt<[u64; 2]>,
    snapshot_every_entries: Opt<u64>,
    max_in_snapshot_log_to_keep: Opt<u64>,
    install_snapshot_timeout_ms: Opt<u64>,
    rpc_timeout_ms: Opt<u64>,
    propose_batch_max: Opt<usize>,
    propose_linger_us: Opt<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBooking {
    hold_ttl_ms: Opt<u64>,
    payment_window_ms: Opt<u64>,
    expiry_sweep_ms: Opt<u64>,
    cancel_cutoff_ms: Opt<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: Spanned<u64>,
    addr: Spanned<SocketAddr>,
    metrics_addr: Opt<SocketAddr>,
    cert_file: Opt<String>,
    key_file: Opt<String>,
}

/// The text and its origin, to turn a span into `path:line:col` and a key.
pub(crate) struct Source<'a> {
    text: &'a str,
    origin: &'a Path,
}

impl Source<'_> {
    pub(crate) fn error(
        &self,
        key: &str,
        span: Option<Range<usize>>,
        message: String,
    ) -> ConfigError {
        let (line, column) = match span {
            Some(span) => {
                let (line, column) = line_col(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            path: self.origin.to_path_buf(),
            key: Some(key.to_string()),
            line,
            column,
            message,
        }
    }
}

/// Takes a present value with its span, or the default without one.
pub(crate) fn take<T>(value: Opt<T>, default: T) -> (T, Option<Range<usize>>) {
    match value {
        Some(spanned) => {
            let span = spanned.span();
            (spanned.into_inner(), Some(span))
        }
        None => (default, None),
    }
}

pub(crate) fn parse(text: &str, origin: &Path) -> Result<ClusterConfig, ConfigError> {
    let src = Source { text, origin };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|s| key_at(text, s.start));
        let (line, column) = match &span {
            Some(s) => {
                let (l, c) = line_col(text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            path: origin.to_path_buf(),
            key,
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;

    let cluster = cluster_section(&src, raw.cluster)?;
    let raft = raft_section(&src, raw.raft)?;
    let booking = booking_section(&src, raw.booking)?;
    let nodes = node_sections(&src, raw.node)?;
    let gateway = gateway_section(&src, raw.gateway, &nodes)?;
    let auth = auth_section(&src, raw.auth)?;
    let payments = payments_section(&src, raw.payments)?;
    let notifications = crate::notify::notifications_section(&src, raw.notifications)?;
    let tls = tls_section(&src, raw.tls, &nodes)?;
    let base_dir = match origin.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(ClusterConfig {
        cluster,
        raft,
        booking,
        nodes,
        gateway,
        auth,
        payments,
        notifications,
        tls,
        base_dir,
    })
}

fn cluster_section(
    src: &Source<'_>,
    raw: Option<RawCluster>,
) -> Result<ClusterSection, ConfigError> {
    let default = ClusterSection::default();
    let Some(raw) = raw else { return Ok(default) };
    let (name, name_span) = take(raw.name, default.name);
    if name.is_empty() || name.len() > limits::CLUSTER_NAME_LEN_MAX {
        return Err(src.error(
            "cluster.name",
            name_span,
            format!(
                "must be 1 to {} characters long",
                limits::CLUSTER_NAME_LEN_MAX
            ),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(src.error(
            "cluster.name",
            name_span,
            format!("{name:?} may only hold ASCII letters, digits, '-', '_' and '.'"),
        ));
    }
    let (data_dir, data_dir_span) = take(
        raw.data_dir,
        default.data_dir.to_string_lossy().into_owned(),
    );
    if data_dir.trim().is_empty() {
        return Err(src.error(
            "cluster.data_dir",
            data_dir_span,
            "must not be empty".to_string(),
        ));
    }
    Ok(ClusterSection {
        name,
        data_dir: PathBuf::from(data_dir),
    })
}

fn raft_section(src: &Source<'_>, raw: Option<RawRaft>) -> Result<RaftSection, ConfigError> {
    let d = RaftSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let (heartbeat_interval_ms, heartbeat_span) =
        take(raw.heartbeat_interval_ms, d.heartbeat_interval_ms);
    let (election_timeout_ms, election_span) = take(raw.election_timeout_ms, d.election_timeout_ms);
    let (snapshot_every_entries, snapshot_span) =
        take(raw.snapshot_every_entries, d.snapshot_every_entries);
    let (max_in_snapshot_log_to_keep, _) = take(
        raw.max_in_snapshot_log_to_keep,
        d.max_in_snapshot_log_to_keep,
    );
    let (install_snapshot_timeout_ms, install_span) = take(
        raw.install_snapshot_timeout_ms,
        d.install_snapshot_timeout_ms,
    );
    let (rpc_timeout_ms, rpc_span) = take(raw.rpc_timeout_ms, d.rpc_timeout_ms);
    let (propose_batch_max, batch_span) = take(raw.propose_batch_max, d.propose_batch_max);
    let (propose_linger_us, linger_span) = take(raw.propose_linger_us, d.propose_linger_us);

    let in_range = |key: &str, value: u64, span: &Option<Range<usize>>, max: u64| {
        if value == 0 || value > max {
            Err(src.error(
                key,
                span.clone(),
                format!("{value} is out of range: must be between 1 and {max}"),
            ))
        } else {
            Ok(())
        }
    };
    in_range(
        "raft.heartbeat_interval_ms",
        heartbeat_interval_ms,
        &heartbeat_span,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    let [election_min, election_max] = election_timeout_ms;
    in_range(
        "raft.election_timeout_ms",
        election_min,
        &election_span,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    in_range(
        "raft.election_timeout_ms",
        election_max,
        &election_span,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    if election_min >= election_max {
        return Err(src.error(
            "raft.election_timeout_ms",
            election_span,
            format!("[min, max] = [{election_min}, {election_max}]: min must be less than max"),
        ));
    }
    if election_min <= heartbeat_interval_ms {
        // A follower would start elections between two heartbeats of a healthy
        // leader. Blame whichever of the two keys the file actually sets.
        let (key, span) = if election_span.is_some() {
            ("raft.election_timeout_ms", election_span)
        } else {
            ("raft.heartbeat_interval_ms", heartbeat_span)
        };
        return Err(src.error(
            key,
            span,
            format!(
                "election timeout min ({election_min} ms) must be greater than \
                 raft.heartbeat_interval_ms ({heartbeat_interval_ms} ms)"
            ),
        ));
    }
    in_range(
        "raft.snapshot_every_entries",
        snapshot_every_entries,
        &snapshot_span,
        u64::MAX,
    )?;
    in_range(
        "raft.install_snapshot_timeout_ms",
        install_snapshot_timeout_ms,
        &install_span,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    in_range(
        "raft.rpc_timeout_ms",
        rpc_timeout_ms,
        &rpc_span,
        limits::RAFT_TIMEOUT_MS_MAX,
    )?;
    in_range(
        "raft.propose_batch_max",
        propose_batch_max as u64,
        &batch_span,
        limits::PROPOSE_BATCH_MAX_MAX as u64,
    )?;
    if propose_linger_us > limits::PROPOSE_LINGER_US_MAX {
        return Err(src.error(
            "raft.propose_linger_us",
            linger_span,
            format!(
                "{propose_linger_us} is out of range: must be at most {}",
                limits::PROPOSE_LINGER_US_MAX
            ),
        ));
    }
    Ok(RaftSection {
        heartbeat_interval_ms,
        election_timeout_ms,
        snapshot_every_entries,
        max_in_snapshot_log_to_keep,
        install_snapshot_timeout_ms,
        rpc_timeout_ms,
        propose_batch_max,
        propose_linger_us,
    })
}

fn booking_section(
    src: &Source<'_>,
    raw: Option<RawBooking>,
) -> Result<BookingSection, ConfigError> {
    let d = BookingSection::default();
    let Some(raw) = raw else { return Ok(d) };
    let (hold_ttl_ms, hold_span) = take(raw.hold_ttl_ms, d.hold_ttl_ms);
    let (payment_window_ms, payment_span) = take(raw.payment_window_ms, d.payment_window_ms);
    let (expiry_sweep_ms, sweep_span) = take(raw.expiry_sweep_ms, d.expiry_sweep_ms);
    let (cancel_cutoff_ms, cutoff_span) = take(raw.cancel_cutoff_ms, d.cancel_cutoff_ms);
    if cancel_cutoff_ms > limits::CANCEL_CUTOFF_MS_MAX {
        return Err(src.error(
            "booking.cancel_cutoff_ms",
            cutoff_span,
            format!(
                "{cancel_cutoff_ms} is out of range: must be at most {}",
                limits::CANCEL_CUTOFF_MS_MAX
            ),
        ));
    }
    for (key, value, span) in [
        ("booking.hold_ttl_ms", hold_ttl_ms, hold_span),
        ("booking.payment_window_ms", payment_window_ms, payment_span),
        ("booking.expiry_sweep_ms", expiry_sweep_ms, sweep_span),
    ] {
        if value == 0 || value > limits::BOOKING_DURATION_MS_MAX {
            return Err(src.error(
                key,
                span,
                format!(
                    "{value} is out of range: must be between 1 and {}",
                    limits::BOOKING_DURATION_MS_MAX
                ),
            ));
        }
    }
    Ok(BookingSection {
        hold_ttl_ms,
        payment_window_ms,
        expiry_sweep_ms,
        cancel_cutoff_ms,
    })
}

fn node_sections(
    src: &Source<'_>,
    raw: Opt<Vec<RawNode>>,
) -> Result<Vec<NodeSection>, ConfigError> {
    let (raw_nodes, list_span) = take(raw, Vec::new());
    if raw_nodes.is_empty() {
        return Err(src.error(
            "node",
            list_span,
            "no [[node]] tables: a cluster needs at least one node (id and addr)".to_string(),
        ));
    }
    if raw_nodes.len() > limits::NODES_MAX {
        return Err(src.error(
            "node",
            list_span,
            format!(
                "{} [[node]] tables: at most {} are allowed",
                raw_nodes.len(),
                limits::NODES_MAX
            ),
        ));
    }
    // Every socket address any node binds, with the key that claimed it first,
    // so a clash names both places.
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let mut addrs: HashMap<SocketAddr, String> = HashMap::new();
    let mut nodes = Vec::with_capacity(raw_nodes.len());
    for (i, raw) in raw_nodes.into_iter().enumerate() {
        let position = i + 1;
        let id_key = format!("node[{position}].id");
        let id = *raw.id.get_ref();
        if id == 0 {
            return Err(src.error(
                &id_key,
                Some(raw.id.span()),
                "node ids start at 1".to_string(),
            ));
        }
        if let Some(first) = ids.insert(id, position) {
            return Err(src.error(
                &id_key,
                Some(raw.id.span()),
                format!("duplicate node id {id} (already used by node[{first}])"),
            ));
        }
        let mut claim = |key: String,
                         addr: SocketAddr,
                         span: Range<usize>|
         -> Result<(), ConfigError> {
            if addr.port() == 0 {
                return Err(src.error(
                    &key,
                    Some(span),
                    format!("{addr}: port 0 is not allowed; peers must know the port"),
                ));
            }
            if addr.ip().is_unspecified() {
                return Err(src.error(
                    &key,
                    Some(span),
                    format!("{addr}: an unspecified address cannot be dialled by peers; give the host's address"),
                ));
            }
            if let Some(first) = addrs.insert(addr, key.clone()) {
                return Err(src.error(
                    &key,
                    Some(span),
                    format!("duplicate address {addr} (already used by {first})"),
                ));
            }
            Ok(())
        };
        let addr = *raw.addr.get_ref();
        claim(format!("node[{position}].addr"), addr, raw.addr.span())?;
        let metrics_addr = match raw.metrics_addr {
            Some(m) => {
                claim(
                    format!("node[{position}].metrics_addr"),
                    *m.get_ref(),
                    m.span(),
                )?;
                Some(m.into_inner())
            }
            None => None,
        };
        let cert_file =
            crate::parse_tls::path(src, &format!("node[{position}].cert_file"), raw.cert_file)?;
        let key_file =
            crate::parse_tls::path(src, &format!("node[{position}].key_file"), raw.key_file)?;
        nodes.push(NodeSection {
            id,
            addr,
            metrics_addr,
            cert_file,
            key_file,
        });
    }
    Ok(nodes)
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// Best-effort dotted key at a byte offset, for errors that the TOML parser
/// reports with only a span: the `key = ...` on that line inside the nearest
/// table header above it, or the header itself. `[[node]]` tables are numbered.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = strip_comment(&text[line_start..line_end]).trim();

    let mut section: Option<String> = None;
    let mut node_tables = 0usize;
    for header_line in text[..line_start].lines() {
        if let Some(name) = header_name(header_line) {
            section = Some(if name.1 {
                if name.0 == "node" {
                    node_tables += 1;
                    format!("node[{node_tables}]")
                } else {
                    name.0
                }
            } else {
                name.0
            });
        }
    }
    if let Some((name, is_array)) = header_name(line) {
        return Some(if is_array && name == "node" {
            format!("node[{}]", node_tables + 1)
        } else {
            name
        });
    }
    let local = line
        .split_once('=')
        .map(|(lhs, _)| lhs.trim().trim_matches('"').to_string());
    match (section, local) {
        (Some(section), Some(local)) if !local.is_empty() => Some(format!("{section}.{local}")),
        (None, Some(local)) if !local.is_empty() => Some(local),
        (section, _) => section,
    }
}

/// `[name]` → ("name", false); `[[name]]` → ("name", true).
fn header_name(line: &str) -> Option<(String, bool)> {
    let line = strip_comment(line).trim();
    if let Some(inner) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        return Some((inner.trim().to_string(), true));
    }
    if let Some(inner) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
        // `[1, 2]` is an array value on a continuation line, not a header.
        let inner = inner.trim();
        if !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"'))
        {
            return Some((inner.to_string(), false));
        }
    }
    None
}

/// Cuts a `#` comment, ignoring `#` inside a basic or literal string.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') => return &line[..i],
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
    }
    line
}
