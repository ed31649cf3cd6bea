//! `booking node` refuses a bad cluster.toml before starting anything: the
//! message names the file, the line and the key, and the exit code is 2.

mod common;

use std::process::Command;

/// Runs `booking node --config <file with text> --id 1`; returns (exit code, stderr).
fn run_node_with(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(common::booking_bin())
        .args(["node", "--config"])
        .arg(&path)
        .args(["--id", "1"])
        .output()
        .expect("run booking");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const NODES: &str =
    "[[node]]\nid = 1\naddr = \"127.0.0.1:31901\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:31902\"\n";

// Goal: an unknown key stops the node with the key and its line.
#[test]
fn unknown_key_is_named_with_its_line() {
    let (code, stderr) = run_node_with(&format!(
        "[raft]\nheartbeat_interval_ms = 100\nelection_timeout = 5\n{NODES}"
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("raft.election_timeout"), "{stderr}");
    assert!(stderr.contains("cluster.toml:3:"), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");
}

// Goal: a duplicate node id stops the node, naming the second node's id line.
#[test]
fn duplicate_node_id_is_named() {
    let text = "[[node]]\nid = 1\naddr = \"127.0.0.1:31901\"\n[[node]]\nid = 1\naddr = \"127.0.0.1:31902\"\n";
    let (code, stderr) = run_node_with(text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("node[2].id") && stderr.contains("cluster.toml:5:"),
        "{stderr}"
    );
}

// Goal: a bad election timeout stops the node, naming the key.
#[test]
fn bad_timeout_is_named() {
    let (code, stderr) = run_node_with(&format!(
        "[raft]\nheartbeat_interval_ms = 100\nelection_timeout_ms = [900, 800]\n{NODES}"
    ));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("raft.election_timeout_ms") && stderr.contains("cluster.toml:3:"),
        "{stderr}"
    );
}

// Goal: an id that is not in the file is a usage error naming the known ids.
#[test]
fn unknown_node_id_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, NODES).unwrap();
    let output = Command::new(common::booking_bin())
        .args(["node", "--config"])
        .arg(&path)
        .args(["--id", "7"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--id 7") && stderr.contains("ids: 1, 2"),
        "{stderr}"
    );
}

// Goal: a missing file is reported with its path.
#[test]
fn missing_file_is_named() {
    let output = Command::new(common::booking_bin())
        .args(["node", "--config", "/nonexistent/cluster.toml", "--id", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/cluster.toml"), "{stderr}");
}

// Goal: a normal build contains no deliberate bugs: asked for one through
// BOOKING_FAULT_BUG, the node refuses to start (exit 2) instead of silently
// running clean, so `jepsen selftest` can never pass on the wrong binary.
// (Also guards the workspace build: if feature unification ever enabled
// `fault-injection-bugs`, this binary would start instead.)
#[cfg(not(feature = "fault-injection-bugs"))]
#[test]
fn fault_bug_requested_of_a_normal_build_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, NODES).unwrap();
    let output = Command::new(common::booking_bin())
        .args(["node", "--config"])
        .arg(&path)
        .args(["--id", "1"])
        .env("BOOKING_FAULT_BUG", "stale-local-reads")
        .output()
        .expect("run booking");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("built without fault-injection-bugs"),
        "{stderr}"
    );
}
