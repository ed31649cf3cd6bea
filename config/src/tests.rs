//! Unit tests: the shipped files parse to the documented defaults, and every
//! kind of bad file is refused with an error that names its key and line.

use std::path::Path;

use super::*;

const ORIGIN: &str = "/etc/booking/cluster.toml";

/// A minimal valid file: one node, everything else defaulted.
const ONE_NODE: &str = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n";

fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
    ClusterConfig::from_toml_str(text, Path::new(ORIGIN))
}

/// Parses `text`, expects a refusal, and checks the key, the line and that the
/// rendered message carries both (an operator reads only the message).
#[track_caller]
fn assert_refused(text: &str, key: &str, line: usize) -> ConfigError {
    let err = parse(text).expect_err("the file should be refused");
    assert_eq!(err.key(), Some(key), "wrong key in: {err}");
    assert_eq!(err.line(), Some(line), "wrong line in: {err}");
    let shown = err.to_string();
    assert!(
        shown.contains(&format!("`{key}`")),
        "message does not name the key: {shown}"
    );
    assert!(
        shown.contains(&format!("{ORIGIN}:{line}:")),
        "message does not name the line: {shown}"
    );
    err
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
    assert_eq!(config.gateway.admin_token, "dev-admin-token");
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

// Goal: a TOML syntax error names its line.
#[test]
fn syntax_error_names_the_line() {
    let err = parse(&format!("{ONE_NODE}[raft]\nheartbeat_interval_ms = = 5\n")).unwrap_err();
    assert_eq!(err.line(), Some(5), "{err}");
    assert_eq!(err.key(), Some("raft.heartbeat_interval_ms"), "{err}");
}

// Goal: an unknown key in a section is refused with its dotted name and line.
#[test]
fn unknown_key_in_section_is_refused() {
    let err = assert_refused(
        &format!("[raft]\nheartbeat_interval_ms = 100\nheartbeat_ms = 50\n{ONE_NODE}"),
        "raft.heartbeat_ms",
        3,
    );
    assert!(err.to_string().contains("unknown field"), "{err}");
}

// Goal: an unknown top-level table is refused.
#[test]
fn unknown_section_is_refused() {
    assert_refused(&format!("{ONE_NODE}\n[rafts]\nx = 1\n"), "rafts", 5);
}

// Goal: an unknown key inside a [[node]] is refused with the node's position.
#[test]
fn unknown_key_in_node_is_refused() {
    assert_refused(
        &format!(
            "{}[[node]]\nid = 4\naddr = \"127.0.0.1:7104\"\nport = 3\n",
            nodes3()
        ),
        "node[4].port",
        16,
    );
}

// Goal: a value of the wrong type names its key.
#[test]
fn wrong_type_is_refused() {
    assert_refused(
        &format!("[booking]\nhold_ttl_ms = \"ten minutes\"\n{ONE_NODE}"),
        "booking.hold_ttl_ms",
        2,
    );
}

// Goal: an address that does not parse names its key.
#[test]
fn bad_address_is_refused() {
    assert_refused(
        "[[node]]\nid = 1\naddr = \"localhost\"\n",
        "node[1].addr",
        3,
    );
}

// Goal: a file without nodes is refused, naming `node`.
#[test]
fn empty_node_list_is_refused() {
    let err = parse("[cluster]\nname = \"x\"\n").unwrap_err();
    assert_eq!(err.key(), Some("node"), "{err}");
    assert!(err.to_string().contains("at least one node"), "{err}");
    assert_refused("node = []\n", "node", 1);
}

// Goal: a node without an address is refused.
#[test]
fn node_without_addr_is_refused() {
    let err = parse("[[node]]\nid = 1\n").unwrap_err();
    assert!(err.to_string().contains("addr"), "{err}");
    assert_eq!(err.key(), Some("node[1]"), "{err}");
}

// Goal: two nodes with one id are refused at the second one.
#[test]
fn duplicate_node_id_is_refused() {
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 1\naddr = \"127.0.0.1:7102\"\n";
    let err = assert_refused(text, "node[2].id", 5);
    assert!(err.to_string().contains("duplicate node id 1"), "{err}");
}

// Goal: two nodes with one address are refused at the second one.
#[test]
fn duplicate_node_addr_is_refused() {
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:7101\"\n";
    let err = assert_refused(text, "node[2].addr", 6);
    assert!(err.to_string().contains("node[1].addr"), "{err}");
}

// Goal: a metrics address equal to another node's gRPC address is refused.
#[test]
fn metrics_addr_clashing_with_a_node_addr_is_refused() {
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:7101\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:7102\"\nmetrics_addr = \"127.0.0.1:7101\"\n";
    assert_refused(text, "node[2].metrics_addr", 7);
}

// Goal: node id 0 is refused.
#[test]
fn node_id_zero_is_refused() {
    assert_refused(
        "[[node]]\nid = 0\naddr = \"127.0.0.1:7101\"\n",
        "node[1].id",
        2,
    );
}

// Goal: port 0 and 0.0.0.0 are refused as node addresses (peers dial them).
#[test]
fn undialable_node_addr_is_refused() {
    assert_refused(
        "[[node]]\nid = 1\naddr = \"127.0.0.1:0\"\n",
        "node[1].addr",
        3,
    );
    assert_refused(
        "[[node]]\nid = 1\naddr = \"0.0.0.0:7101\"\n",
        "node[1].addr",
        3,
    );
}

// Goal: election timeout min not above the heartbeat is refused.
#[test]
fn election_min_not_above_heartbeat_is_refused() {
    let text = format!(
        "[raft]\nheartbeat_interval_ms = 400\nelection_timeout_ms = [400, 800]\n{ONE_NODE}"
    );
    let err = assert_refused(&text, "raft.election_timeout_ms", 3);
    assert!(err.to_string().contains("heartbeat_interval_ms"), "{err}");
    // With the election timeout defaulted, the heartbeat (the key in the file) is blamed.
    assert_refused(
        &format!("[raft]\nheartbeat_interval_ms = 500\n{ONE_NODE}"),
        "raft.heartbeat_interval_ms",
        2,
    );
}

// Goal: election timeout min ≥ max is refused.
#[test]
fn election_min_not_below_max_is_refused() {
    let err = assert_refused(
        &format!("[raft]\nelection_timeout_ms = [800, 800]\n{ONE_NODE}"),
        "raft.election_timeout_ms",
        2,
    );
    assert!(
        err.to_string().contains("min must be less than max"),
        "{err}"
    );
}

// Goal: an election timeout that is not a pair is refused.
#[test]
fn election_timeout_not_a_pair_is_refused() {
    assert_refused(
        &format!("[raft]\nelection_timeout_ms = [400]\n{ONE_NODE}"),
        "raft.election_timeout_ms",
        2,
    );
}

// Goal: zero timeouts and sizes are refused, each by name.
#[test]
fn zero_values_are_refused() {
    for key in [
        "heartbeat_interval_ms",
        "snapshot_every_entries",
        "install_snapshot_timeout_ms",
        "rpc_timeout_ms",
        "propose_batch_max",
    ] {
        assert_refused(
            &format!("[raft]\n{key} = 0\n{ONE_NODE}"),
            &format!("raft.{key}"),
            2,
        );
    }
    assert_refused(
        &format!("[raft]\nelection_timeout_ms = [0, 800]\n{ONE_NODE}"),
        "raft.election_timeout_ms",
        2,
    );
    for key in ["hold_ttl_ms", "payment_window_ms", "expiry_sweep_ms"] {
        assert_refused(
            &format!("[booking]\n{key} = 0\n{ONE_NODE}"),
            &format!("booking.{key}"),
            2,
        );
    }
}

// Goal: absurdly large values are refused (a bound on everything).
#[test]
fn out_of_range_values_are_refused() {
    assert_refused(
        &format!("[raft]\npropose_linger_us = 5000000\n{ONE_NODE}"),
        "raft.propose_linger_us",
        2,
    );
    assert_refused(
        &format!("[raft]\npropose_batch_max = 1000000\n{ONE_NODE}"),
        "raft.propose_batch_max",
        2,
    );
    assert_refused(
        &format!("[booking]\nhold_ttl_ms = 999999999999\n{ONE_NODE}"),
        "booking.hold_ttl_ms",
        2,
    );
    assert_refused(
        &format!("[raft]\nheartbeat_interval_ms = -5\n{ONE_NODE}"),
        "raft.heartbeat_interval_ms",
        2,
    );
}

// Goal: the gateway's cluster timeout defaults to 5 s, parses, and refuses 0 and absurd values.
#[test]
fn gateway_cluster_timeout_parses_and_is_bounded() {
    assert_eq!(parse(ONE_NODE).unwrap().gateway.cluster_timeout_ms, 5_000);
    let config = parse(&format!("[gateway]\ncluster_timeout_ms = 1000\n{ONE_NODE}")).unwrap();
    assert_eq!(config.gateway.cluster_timeout_ms, 1_000);
    assert_refused(
        &format!("[gateway]\ncluster_timeout_ms = 0\n{ONE_NODE}"),
        "gateway.cluster_timeout_ms",
        2,
    );
    assert_refused(
        &format!("[gateway]\ncluster_timeout_ms = 999999999\n{ONE_NODE}"),
        "gateway.cluster_timeout_ms",
        2,
    );
}

// Goal: bad cluster names and empty data_dir are refused.
#[test]
fn bad_cluster_section_is_refused() {
    assert_refused(
        &format!("[cluster]\nname = \"\"\n{ONE_NODE}"),
        "cluster.name",
        2,
    );
    assert_refused(
        &format!("[cluster]\nname = \"a b\"\n{ONE_NODE}"),
        "cluster.name",
        2,
    );
    assert_refused(
        &format!("[cluster]\ndata_dir = \" \"\n{ONE_NODE}"),
        "cluster.data_dir",
        2,
    );
}

// Goal: a gateway on a node's port or with an empty token is refused.
#[test]
fn bad_gateway_section_is_refused() {
    assert_refused(
        &format!("{ONE_NODE}[gateway]\nlisten = \"127.0.0.1:7101\"\n"),
        "gateway.listen",
        5,
    );
    assert_refused(
        &format!("{ONE_NODE}[gateway]\nadmin_token = \"\"\n"),
        "gateway.admin_token",
        5,
    );
    assert_refused(
        &format!("{ONE_NODE}[gateway]\nlisten = \"127.0.0.1:8080\"\nbogus = 1\n"),
        "gateway.bogus",
        6,
    );
}

// Goal: comments and multi-line arrays do not confuse key lookup for errors.
#[test]
fn key_lookup_handles_comments() {
    let text = "# top comment\n[raft] # the raft section\nheartbeat_interval_ms = 100 # ms\nsnapshot_evry = 3 # typo\n";
    assert_refused(&format!("{text}{ONE_NODE}"), "raft.snapshot_evry", 4);
}
