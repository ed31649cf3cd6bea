//! Unit tests: the shipped files parse to the documented defaults, and every
//! kind of bad file is refused with an error that names its key and line
//! (one table, [`refusals`], run by one loop).

use std::path::{Path, PathBuf};

use super::*;

const ORIGIN: &str = "/etc/booking/cluster.toml";

/// A minimal valid file: one node, everything else defaulted.
const ONE_NODE: &str = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n";

fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    ClusterConfig::from_toml_str(text, Path::new(ORIGIN))
}

fn nodes3() -> String {
    (1..=3)
        .map(|i| format!("[[node]]\nid = {i}\naddr = \"127.0.0.1:710{i}\"\nmetrics_addr = \"127.0.0.1:910{i}\"\n"))
        .collect()
}

// Goal: a file with only a node gets every documented default.
#[test]
fn defaults_fill_every_absent_key() {
    let config = parse(ONE_NODE).unwrap();
    assert_eq!(config.cluster, ClusterSection::default());
    assert_eq!(config.raft, RaftSection::default());
    assert_eq!(config.booking, BookingSection::default());
    assert_eq!(config.gateway, GatewaySection::default());
    assert_eq!(config.raft.election_timeout_ms, [400, 800]);
    assert_eq!(config.booking.hold_ttl_ms, 600_000);
    assert_eq!(config.gateway.admin_token, None);
    assert_eq!(config.auth, AuthSection::default());
    assert_eq!(config.auth.mode, AuthMode::Jwt);
    assert_eq!(config.payments.provider, PaymentProviderKind::None);
    assert_eq!(config.base_dir, Path::new("/etc/booking"));
    assert_eq!(
        config.node_data_dir(1),
        Path::new("/etc/booking/data/node-1")
    );
    assert_eq!(
        config.endpoints(),
        vec!["http://127.0.0.1:7101".to_string()]
    );
}

// Goal: the root cluster.toml is the documented local 3-node cluster.
#[test]
fn shipped_cluster_toml_is_the_local_three_node_cluster() {
    let config = parse(include_str!("../../cluster.toml")).unwrap();
    assert_eq!(config.node_ids(), vec![1, 2, 3]);
    assert_eq!(
        config.endpoints(),
        vec![
            "http://127.0.0.1:7101",
            "http://127.0.0.1:7102",
            "http://127.0.0.1:7103"
        ]
    );
    assert_eq!(
        config.node(3).unwrap().metrics_addr,
        Some("127.0.0.1:9103".parse().unwrap())
    );
    assert_eq!(config.gateway, GatewaySection::default());
    assert_eq!(config.raft, RaftSection::default());
    assert_eq!(config.booking, BookingSection::default());
    assert_eq!(config.cluster, ClusterSection::default());
    // What `booking up` needs: name-only sessions and the simulated provider,
    // both of which the gateway accepts on loopback only.
    assert_eq!(config.auth.mode, AuthMode::Demo);
    assert_eq!(config.payments.provider, PaymentProviderKind::Simulated);
    assert!(config.gateway.listen.ip().is_loopback());
}

// Goal: the 5-node example parses and uses its own ports.
#[test]
fn five_node_example_parses() {
    let config = parse(include_str!("../../examples/cluster-5.toml")).unwrap();
    assert_eq!(config.node_ids(), vec![1, 2, 3, 4, 5]);
    let local = parse(include_str!("../../cluster.toml")).unwrap();
    for node in &config.nodes {
        assert!(
            local.nodes.iter().all(|l| l.addr != node.addr),
            "{} clashes with cluster.toml",
            node.addr
        );
    }
    assert_ne!(config.gateway.listen, local.gateway.listen);
}

// Goal: load() reads a real file, resolves data_dir against the file's directory.
#[test]
fn load_resolves_relative_data_dir_against_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[cluster]\ndata_dir = \"state\"\n{ONE_NODE}"),
    )
    .unwrap();
    let config = ClusterConfig::load(&path).unwrap();
    assert_eq!(
        config.node_data_dir(1),
        dir.path().join("state").join("node-1")
    );
}

// Goal: a missing file is an error that names the path.
#[test]
fn missing_file_names_the_path() {
    let err = ClusterConfig::load(Path::new("/nonexistent/cluster.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/cluster.toml"),
        "{err}"
    );
}

// Goal: the gateway's cluster timeout defaults to 5 s and parses (its bounds are in the table).
#[test]
fn gateway_cluster_timeout_parses() {
    assert_eq!(parse(ONE_NODE).unwrap().gateway.cluster_timeout_ms, 5_000);
    let config = parse(&format!("[gateway]\ncluster_timeout_ms = 1000\n{ONE_NODE}")).unwrap();
    assert_eq!(config.gateway.cluster_timeout_ms, 1_000);
}

/// One bad file: what it shows, its text, the key and line the error must
/// name, and a fragment the message must also carry (an operator reads only
/// the message).
struct Refusal {
    what: &'static str,
    text: String,
    key: String,
    /// `None`: the problem is at no place in the file (a missing table).
    line: Option<usize>,
    fragment: &'static str,
}

fn refused(
    what: &'static str,
    text: String,
    key: &str,
    line: Option<usize>,
    fragment: &'static str,
) -> Refusal {
    Refusal {
        what,
        text,
        key: key.to_string(),
        line,
        fragment,
    }
}

/// `section` followed by one node.
fn before_node(section: &str) -> String {
    format!("{section}{ONE_NODE}")
}

/// One node followed by `section`.
fn after_node(section: &str) -> String {
    format!("{ONE_NODE}{section}")
}

/// Every kind of bad file, one per line.
#[rustfmt::skip]
fn refusals() -> Vec<Refusal> {
    let mut table = vec![
        refused("a TOML syntax error", after_node("[raft]\nheartbeat_interval_ms = = 5\n"), "raft.heartbeat_interval_ms", Some(5), ""),
        refused("an unknown key in a section", before_node("[raft]\nheartbeat_interval_ms = 100\nheartbeat_ms = 50\n"), "raft.heartbeat_ms", Some(3), "unknown field"),
        refused("an unknown top-level table", after_node("\n[rafts]\nx = 1\n"), "rafts", Some(5), ""),
        refused("an unknown key in a [[node]]", format!("{}[[node]]\nid = 4\naddr = \"127.0.0.1:7104\"\nport = 3\n", nodes3()), "node[4].port", Some(16), ""),
        refused("a value of the wrong type", before_node("[booking]\nhold_ttl_ms = \"ten minutes\"\n"), "booking.hold_ttl_ms", Some(2), ""),
        refused("an address that does not parse", "[[node]]\nid = 1\naddr = \"localhost\"\n".into(), "node[1].addr", Some(3), ""),
        refused("no [[node]] at all", "[cluster]\nname = \"x\"\n".into(), "node", None, "at least one node"),
        refused("an empty node list", "node = []\n".into(), "node", Some(1), "at least one node"),
        refused("a node without an address", "[[node]]\nid = 1\n".into(), "node[1]", Some(1), "missing field `addr`"),
        refused("two nodes with one id", "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 1\naddr = \"127.0.0.1:7102\"\n".into(), "node[2].id", Some(5), "duplicate node id 1"),
        refused("two nodes with one address", "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:7101\"\n".into(), "node[2].addr", Some(6), "node[1].addr"),
        refused("a metrics address on another node's gRPC address", "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:7102\"\nmetrics_addr = \"127.0.0.1:7101\"\n".into(), "node[2].metrics_addr", Some(7), ""),
        refused("node id 0", "[[node]]\nid = 0\naddr = \"127.0.0.1:7101\"\n".into(), "node[1].id", Some(2), ""),
        refused("port 0 (peers dial it)", "[[node]]\nid = 1\naddr = \"127.0.0.1:0\"\n".into(), "node[1].addr", Some(3), ""),
        refused("0.0.0.0 (peers dial it)", "[[node]]\nid = 1\naddr = \"0.0.0.0:7101\"\n".into(), "node[1].addr", Some(3), ""),
        refused("an election timeout min not above the heartbeat", before_node("[raft]\nheartbeat_interval_ms = 400\nelection_timeout_ms = [400, 800]\n"), "raft.election_timeout_ms", Some(3), "heartbeat_interval_ms"),
        // With the election timeout defaulted, the heartbeat (the key in the file) is blamed.
        refused("a heartbeat not below the default election timeout", before_node("[raft]\nheartbeat_interval_ms = 500\n"), "raft.heartbeat_interval_ms", Some(2), ""),
        refused("an election timeout min not below its max", before_node("[raft]\nelection_timeout_ms = [800, 800]\n"), "raft.election_timeout_ms", Some(2), "min must be less than max"),
        refused("an election timeout that is not a pair", before_node("[raft]\nelection_timeout_ms = [400]\n"), "raft.election_timeout_ms", Some(2), ""),
        refused("a zero election timeout", before_node("[raft]\nelection_timeout_ms = [0, 800]\n"), "raft.election_timeout_ms", Some(2), ""),
        refused("an absurd linger", before_node("[raft]\npropose_linger_us = 5000000\n"), "raft.propose_linger_us", Some(2), ""),
        refused("an absurd batch", before_node("[raft]\npropose_batch_max = 1000000\n"), "raft.propose_batch_max", Some(2), ""),
        refused("an absurd hold TTL", before_node("[booking]\nhold_ttl_ms = 999999999999\n"), "booking.hold_ttl_ms", Some(2), ""),
        refused("a negative heartbeat", before_node("[raft]\nheartbeat_interval_ms = -5\n"), "raft.heartbeat_interval_ms", Some(2), ""),
        refused("a zero gateway cluster timeout", before_node("[gateway]\ncluster_timeout_ms = 0\n"), "gateway.cluster_timeout_ms", Some(2), ""),
        refused("an absurd gateway cluster timeout", before_node("[gateway]\ncluster_timeout_ms = 999999999\n"), "gateway.cluster_timeout_ms", Some(2), ""),
        refused("an empty cluster name", before_node("[cluster]\nname = \"\"\n"), "cluster.name", Some(2), ""),
        refused("a cluster name with a space", before_node("[cluster]\nname = \"a b\"\n"), "cluster.name", Some(2), ""),
        refused("a blank data_dir", before_node("[cluster]\ndata_dir = \" \"\n"), "cluster.data_dir", Some(2), ""),
        refused("a gateway on a node's port", after_node("[gateway]\nlisten = \"127.0.0.1:7101\"\n"), "gateway.listen", Some(5), ""),
        refused("an empty admin token", after_node("[gateway]\nadmin_token = \"\"\n"), "gateway.admin_token", Some(5), ""),
        // The old shipped default is too short to be a secret.
        refused("the old dev admin token", after_node("[gateway]\nadmin_token = \"dev-admin-token\"\n"), "gateway.admin_token", Some(5), ""),
        refused("an absurd header-read timeout", after_node("[gateway]\nheader_read_timeout_ms = 30001\n"), "gateway.header_read_timeout_ms", Some(5), ""),
        refused("a zero keep-alive idle timeout", after_node("[gateway]\nkeep_alive_idle_ms = 0\n"), "gateway.keep_alive_idle_ms", Some(5), "between 1 and 600000"),
        refused("a zero queue block", after_node("[gateway]\nqueue_block_max = 0\n"), "gateway.queue_block_max", Some(5), "between 1 and 100000"),
        refused("a queue block the state machine refuses", after_node("[gateway]\nqueue_block_max = 100001\n"), "gateway.queue_block_max", Some(5), "between 1 and 100000"),
        refused("no connections per address", after_node("[gateway]\nconnections_per_address_max = 0\n"), "gateway.connections_per_address_max", Some(5), ""),
        refused("a zero user rate", after_node("[gateway]\nrate_per_user_per_s = 0\n"), "gateway.rate_per_user_per_s", Some(5), ""),
        refused("an origin with a path", after_node("[gateway]\nallowed_origins = [\"https://x.example/path\"]\n"), "gateway.allowed_origins", Some(5), ""),
        refused("a proxy network that does not parse", after_node("[gateway]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"), "gateway.trusted_proxies", Some(5), ""),
        refused("an empty session secret path", after_node("[gateway]\nsession_secret_file = \"\"\n"), "gateway.session_secret_file", Some(5), ""),
        refused("an unknown auth mode", after_node("[auth]\nmode = \"open\"\n"), "auth.mode", Some(5), ""),
        refused("an absurd JWT leeway", after_node("[auth]\njwt_leeway_s = 301\n"), "auth.jwt_leeway_s", Some(5), ""),
        refused("an empty JWT issuer", after_node("[auth]\njwt_issuer = \"\"\n"), "auth.jwt_issuer", Some(5), ""),
        refused("an unknown payment provider", after_node("[payments]\nprovider = \"stripe\"\n"), "payments.provider", Some(5), ""),
        refused("a zero webhook tolerance", after_node("[payments]\nwebhook_tolerance_s = 0\n"), "payments.webhook_tolerance_s", Some(5), ""),
        refused("an unknown notification sink", after_node("[notifications]\nsink = \"pigeon\"\n"), "notifications.sink", Some(5), ""),
        refused("a zero notification poll", after_node("[notifications]\npoll_ms = 0\n"), "notifications.poll_ms", Some(5), ""),
        refused("smtp without a host", after_node("[notifications]\nsink = \"smtp\"\nfrom = \"t@example.com\"\n"), "notifications.smtp_host", None, "required"),
        refused("a From that is no address", after_node("[notifications]\nsink = \"smtp\"\nsmtp_host = \"mx\"\nfrom = \"tickets\"\n"), "notifications.from", Some(7), ""),
        refused("an smtp key with the file sink", after_node("[notifications]\nsink = \"file\"\nfile = \"n.jsonl\"\nsmtp_host = \"mx\"\n"), "notifications.smtp_host", None, "belongs to sink"),
        refused("a webhook URL that is not http", after_node("[notifications]\nsink = \"webhook\"\nwebhook_url = \"ftp://x\"\n"), "notifications.webhook_url", Some(6), ""),
        refused("an absurd cancel cutoff", after_node("[booking]\ncancel_cutoff_ms = 99999999999999\n"), "booking.cancel_cutoff_ms", Some(5), ""),
        refused("an unknown gateway key", after_node("[gateway]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n"), "gateway.bogus", Some(6), ""),
        refused("an unknown TLS mode", after_node("[tls]\nmode = \"maybe\"\n"), "tls.mode", Some(5), "\"on\""),
        refused("plaintext gRPC off loopback", "[[node]]\nid = 1\naddr = \"10.0.0.1:7101\"\n[tls]\nmode = \"off\"\n".into(), "tls.mode", Some(5), "not loopback"),
        refused("an unknown TLS key", after_node("[tls]\ncert_file = \"x.pem\"\n"), "tls.cert_file", Some(5), "unknown field"),
        refused("an empty CA path", after_node("[tls]\nca_file = \"\"\n"), "tls.ca_file", Some(5), ""),
        refused("an admin role that is not a URI", after_node("[tls]\nadmin_role_uri = \"admin\"\n"), "tls.admin_role_uri", Some(5), "not a URI"),
        refused("one URI for nodes and admins", after_node("[tls]\nadmin_role_uri = \"urn:booking:role:node\"\n"), "tls.admin_role_uri", Some(5), "must differ"),
        refused("an empty node certificate path", "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\ncert_file = \"\"\n".into(), "node[1].cert_file", Some(4), ""),
        // Comments do not confuse the key lookup for errors.
        refused("a typo among comments", before_node("# top comment\n[raft] # the raft section\nheartbeat_interval_ms = 100 # ms\nsnapshot_evry = 3 # typo\n"), "raft.snapshot_evry", Some(4), ""),
    ];
    // Zero timeouts and sizes, each by name.
    for key in [
        "heartbeat_interval_ms",
        "snapshot_every_entries",
        "install_snapshot_timeout_ms",
        "rpc_timeout_ms",
        "propose_batch_max",
    ] {
        let text = before_node(&format!("[raft]\n{key} = 0\n"));
        table.push(refused("a zero raft value", text, &format!("raft.{key}"), Some(2), ""));
    }
    for key in ["hold_ttl_ms", "payment_window_ms", "expiry_sweep_ms"] {
        let text = before_node(&format!("[booking]\n{key} = 0\n"));
        table.push(refused("a zero booking value", text, &format!("booking.{key}"), Some(2), ""));
    }
    table
}

/// What is wrong with the answer to `case`, if anything.
fn mismatch(case: &Refusal) -> Option<String> {
    let err = match parse(&case.text) {
        Ok(_) => return Some("accepted".into()),
        Err(err) => err,
    };
    let shown = err.to_string();
    let mut wrong = Vec::new();
    if err.key() != Some(case.key.as_str()) {
        wrong.push(format!("key {:?}, expected {:?}", err.key(), case.key));
    }
    if err.line() != case.line {
        wrong.push(format!("line {:?}, expected {:?}", err.line(), case.line));
    }
    if !shown.contains(&format!("`{}`", case.key)) {
        wrong.push("the message does not name the key".into());
    }
    if let Some(line) = case.line {
        if !shown.contains(&format!("{ORIGIN}:{line}:")) {
            wrong.push("the message does not name the line".into());
        }
    }
    if !shown.contains(case.fragment) {
        wrong.push(format!("the message lacks {:?}", case.fragment));
    }
    (!wrong.is_empty())
        .then(|| format!("{}: {}\n    message: {shown}", case.what, wrong.join("; ")))
}

// Goal: every bad file of the table is refused, naming its key and line in the message.
#[test]
fn every_bad_file_is_refused_naming_its_key_and_line() {
    let failures: Vec<String> = refusals().iter().filter_map(mismatch).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// Goal: every gateway knob parses, relative files stay relative (resolved
// against the file's directory), and proxies become truncated networks.
#[test]
fn gateway_auth_and_payments_keys_parse() {
    let text = format!(
        "{ONE_NODE}[gateway]\nadmin_token_file = \"secrets/admin\"\nheader_read_timeout_ms = 5000\n\
         connections_per_address_max = 8\nws_clients_per_address_max = 2\n\
         allowed_origins = [\"https://Tickets.example.com\", \"http://127.0.0.1:8080\"]\n\
         trusted_proxies = [\"10.1.2.3/8\", \"2001:db8::1\"]\nrate_per_user_per_s = 7\n\
         keep_alive_idle_ms = 2500\nqueue_block_max = 250\n\
         [auth]\nmode = \"jwt\"\njwt_issuer = \"https://id.example.com/\"\njwt_audience = \"booking\"\n\
         jwt_keys_file = \"jwks.json\"\njwt_leeway_s = 30\n\
         [payments]\nprovider = \"simulated\"\nwebhook_secret_file = \"/run/whsec\"\n"
    );
    let c = parse(&text).unwrap();
    assert_eq!(
        c.gateway.admin_token_file,
        Some(PathBuf::from("secrets/admin"))
    );
    assert_eq!(
        c.resolve(c.gateway.admin_token_file.as_deref().unwrap()),
        Path::new("/etc/booking/secrets/admin")
    );
    assert_eq!(c.gateway.header_read_timeout_ms, 5_000);
    assert_eq!(c.gateway.connections_per_address_max, 8);
    assert_eq!(c.gateway.ws_clients_per_address_max, 2);
    assert_eq!(
        c.gateway.allowed_origins,
        vec!["https://tickets.example.com", "http://127.0.0.1:8080"]
    );
    assert_eq!(
        c.gateway.trusted_proxies,
        vec![
            "10.0.0.0/8".parse::<IpNet>().unwrap(),
            "2001:db8::1/128".parse().unwrap()
        ]
    );
    assert_eq!(c.gateway.rate_per_user_per_s, 7);
    assert_eq!(c.gateway.keep_alive_idle_ms, 2_500);
    assert_eq!(c.gateway.queue_block_max, 250);
    assert_eq!(c.auth.mode, AuthMode::Jwt);
    assert_eq!(
        c.auth.jwt_issuer.as_deref(),
        Some("https://id.example.com/")
    );
    assert_eq!(c.auth.jwt_leeway_s, 30);
    assert_eq!(c.payments.provider, PaymentProviderKind::Simulated);
    assert_eq!(
        c.resolve(c.payments.webhook_secret_file.as_deref().unwrap()),
        Path::new("/run/whsec")
    );
    assert_eq!(c.gateway_dir(), Path::new("/etc/booking/data/gateway"));
}

// Goal: each notification sink parses with its defaults (no section: none).
#[test]
fn notification_sinks_parse() {
    use crate::{NotificationSink, SmtpSecurity};
    assert_eq!(
        parse(ONE_NODE).unwrap().notifications.sink,
        NotificationSink::None
    );
    let c = parse(&format!(
        "{ONE_NODE}[notifications]\nsink = \"smtp\"\nsmtp_host = \"mx.example.com\"\n\
         from = \"Tickets <t@example.com>\"\nsmtp_username = \"t\"\nsmtp_password_file = \"pw\"\n"
    ))
    .unwrap();
    let NotificationSink::Smtp(smtp) = c.notifications.sink else {
        panic!("{:?}", c.notifications.sink)
    };
    assert_eq!((smtp.port, smtp.security), (587, SmtpSecurity::Starttls));
    assert_eq!(smtp.password_file, Some(PathBuf::from("pw")));
    let c = parse(&format!(
        "{ONE_NODE}[notifications]\nsink = \"webhook\"\nwebhook_url = \"https://hooks.example.com/booking\"\npoll_ms = 250\n"
    ))
    .unwrap();
    assert_eq!(c.notifications.poll_ms, 250);
    assert!(
        matches!(c.notifications.sink, NotificationSink::Webhook(w) if w.url.ends_with("/booking"))
    );
}

// Goal: TLS is on by default with the `booking certs` layout under
// <data_dir>/certs; every file key and a node's own files override it.
#[test]
fn tls_defaults_and_overrides() {
    let c = parse(ONE_NODE).unwrap();
    assert!(c.tls_on());
    assert_eq!(c.tls, TlsSection::default());
    let files = c.tls_files();
    assert_eq!(files.ca_cert, Path::new("/etc/booking/data/certs/ca.pem"));
    assert_eq!(
        files.admin_key,
        Path::new("/etc/booking/data/certs/admin.key")
    );
    assert_eq!(
        c.node_tls_files(1),
        (
            PathBuf::from("/etc/booking/data/certs/node-1.pem"),
            PathBuf::from("/etc/booking/data/certs/node-1.key")
        )
    );
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\ncert_file = \"/pki/n1.crt\"\nkey_file = \"n1.key\"\n\
                [tls]\ndir = \"pki\"\nca_file = \"/pki/ca.crt\"\nadmin_role_uri = \"spiffe://example/ops\"\n";
    let c = parse(text).unwrap();
    assert_eq!(c.tls_files().ca_cert, Path::new("/pki/ca.crt"));
    assert_eq!(
        c.tls_files().client_cert,
        Path::new("/etc/booking/pki/client.pem")
    );
    assert_eq!(c.tls.admin_role_uri, "spiffe://example/ops");
    assert_eq!(
        c.node_tls_files(1),
        (
            PathBuf::from("/pki/n1.crt"),
            PathBuf::from("/etc/booking/n1.key")
        )
    );
    // A node not in the file (being added) gets the default names.
    assert_eq!(
        c.node_tls_files(9).0,
        Path::new("/etc/booking/pki/node-9.pem")
    );
    // Plaintext is accepted on loopback (experiments), with the mode kept.
    let off = parse(&format!("{ONE_NODE}[tls]\nmode = \"off\"\n")).unwrap();
    assert!(!off.tls_on());
}
