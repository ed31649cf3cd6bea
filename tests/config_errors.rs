//! `booking node` refuses a bad start before starting anything: the message
//! names the file, the line and the key (or the bad `--id`, or the missing
//! file), and the exit code is 2. One table of cases, run by one loop.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// Two valid nodes.
const NODES: &str =
    "[[node]]\nid = 1\naddr = \"127.0.0.1:31901\"\n[[node]]\nid = 2\naddr = \"127.0.0.1:31902\"\n";

/// One refused start: the file's text (`None`: there is no file), the
/// `--id` asked for, and the fragments stderr must contain.
struct Refusal {
    what: &'static str,
    text: Option<String>,
    id: &'static str,
    fragments: &'static [&'static str],
}

/// Every refused start, one per line.
#[rustfmt::skip]
fn refusals() -> Vec<Refusal> {
    let with_nodes = |section: &str| Some(format!("{section}{NODES}"));
    vec![
        Refusal { what: "an unknown key", text: with_nodes("[raft]\nheartbeat_interval_ms = 100\nelection_timeout = 5\n"), id: "1", fragments: &["raft.election_timeout", "cluster.toml:3:", "unknown field"] },
        Refusal { what: "a duplicate node id", text: Some("[[node]]\nid = 1\naddr = \"127.0.0.1:31901\"\n[[node]]\nid = 1\naddr = \"127.0.0.1:31902\"\n".into()), id: "1", fragments: &["node[2].id", "cluster.toml:5:"] },
        Refusal { what: "a bad election timeout", text: with_nodes("[raft]\nheartbeat_interval_ms = 100\nelection_timeout_ms = [900, 800]\n"), id: "1", fragments: &["raft.election_timeout_ms", "cluster.toml:3:"] },
        Refusal { what: "an id that is not in the file", text: Some(NODES.into()), id: "7", fragments: &["--id 7", "ids: 1, 2"] },
        Refusal { what: "a missing file", text: None, id: "1", fragments: &["/nonexistent/cluster.toml"] },
        Refusal { what: "plaintext gRPC off loopback", text: Some("[tls]\nmode = \"off\"\n[[node]]\nid = 1\naddr = \"10.9.9.9:31901\"\n".into()), id: "1", fragments: &["tls.mode", "cluster.toml:2:", "not loopback"] },
        // TLS is on by default and nothing made the certificates: the first
        // file looked for is the CA (raft-node's tests/tls.rs: the node's own).
        Refusal { what: "a node without certificates", text: Some(NODES.into()), id: "1", fragments: &["[tls] CA certificate", "certs/ca.pem", "does not exist", "booking certs"] },
    ]
}

/// Runs `booking node --config <file> --id <id>` with `env`; returns
/// (exit code, stderr).
fn run_node(text: Option<&str>, id: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = match text {
        Some(text) => {
            let path = dir.path().join("cluster.toml");
            std::fs::write(&path, text).unwrap();
            path
        }
        None => PathBuf::from("/nonexistent/cluster.toml"),
    };
    let output = Command::new(common::booking_bin())
        .args(["node", "--config"])
        .arg(&path)
        .args(["--id", id])
        .envs(env.iter().copied())
        .output()
        .expect("run booking");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

// Goal: every bad start of the table exits 2 with a message naming what is wrong.
#[test]
fn every_bad_start_is_refused_naming_the_key_and_line() {
    let mut failures = Vec::new();
    for case in refusals() {
        let (code, stderr) = run_node(case.text.as_deref(), case.id, &[]);
        let missing: Vec<&str> = case
            .fragments
            .iter()
            .copied()
            .filter(|f| !stderr.contains(f))
            .collect();
        if code != Some(2) || !missing.is_empty() {
            failures.push(format!(
                "{}: exit {code:?}, missing {missing:?}\n    stderr: {stderr}",
                case.what
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// Goal: a normal build contains no deliberate bugs: asked for one through
// BOOKING_FAULT_BUG, the node refuses to start (exit 2) instead of silently
// running clean, so `jepsen selftest` can never pass on the wrong binary.
// (Also guards the workspace build: if feature unification ever enabled
// `fault-injection-bugs`, this binary would start instead.)
#[cfg(not(feature = "fault-injection-bugs"))]
#[test]
fn fault_bug_requested_of_a_normal_build_refuses_to_start() {
    let (code, stderr) = run_node(
        Some(NODES),
        "1",
        &[("BOOKING_FAULT_BUG", "stale-local-reads")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("built without fault-injection-bugs"),
        "{stderr}"
    );
}
