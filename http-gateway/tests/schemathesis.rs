//! schemathesis (PyPI) against `/openapi.json` of a gateway in JWT mode
//! (`[auth] mode = "jwt"`, the production setting) over a real 3-node
//! cluster: generated requests to every operation, once with a user's JWT
//! and once with the admin token, checked for no 5xx
//! (`not_a_server_error`) and for answers that match the document
//! (`response_schema_conformance`). Examples per operation are bounded so a
//! run takes a few minutes at most on 2 cores.
//!
//! Finds the tool through `SCHEMATHESIS` (the path of its `st`, which
//! `.ci/run` sets after installing a pinned version into a virtualenv), else
//! `st` on `PATH`. Without it the test says so loudly and skips, except under
//! `CI=true`, where it fails.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::json;

/// Generated cases per operation and per token.
const EXAMPLES_PER_OPERATION: u32 = 40;
/// Bound on one schemathesis run.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

fn schemathesis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SCHEMATHESIS").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("st"))
        .find(|p| p.is_file())
}

/// A JWKS with one fresh Ed25519 key and a day-long token for `sub` from it.
fn jwt_issuer(sub: &str) -> (String, String) {
    use jsonwebtoken::{jwk::Jwk, Algorithm, EncodingKey, Header};
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    der.extend_from_slice(&seed);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = json!({ "keys": [jwk] }).to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let claims = json!({ "iss": "https://id.example.test/", "aud": "booking", "sub": sub,
                         "exp": now + 86_400, "scope": "openid" });
    (jwks, jsonwebtoken::encode(&header, &claims, &key).unwrap())
}

/// Runs schemathesis against `gw` with `token`; returns (passed, output).
async fn run(st: &PathBuf, gw: &Gw, token: &str, workdir: &std::path::Path) -> (bool, String) {
    let child = tokio::process::Command::new(st)
        .arg("run")
        .arg(gw.url("/openapi.json"))
        .args(["--url", &gw.base])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", &EXAMPLES_PER_OPERATION.to_string()])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: hypothesis under CPython 3.11 fails with "AST constructor
        // recursion depth mismatch" when two threads describe strategies at once.
        .args(["--workers", "1"])
        .args(["--seed", "4"])
        .args(["--request-timeout", "20"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // The page's WebSocket route answers 400 to a plain GET by design.
        .args(["--exclude-path", "/v1/events/{event_id}/live"])
        .args(["--suppress-health-check", "all"])
        .arg("--no-color")
        // schemathesis keeps its example database in the working directory.
        .current_dir(workdir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("schemathesis starts");
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("schemathesis finishes within its bound")
        .expect("schemathesis output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    // Goal: generated requests to every documented operation never get a 5xx or an answer the document does not allow.
    let Some(st) = schemathesis() else {
        testkit::skip_or_fail(
            "schemathesis_finds_no_server_error_and_no_schema_mismatch",
            "schemathesis is not installed (.ci/run installs it and sets SCHEMATHESIS to its `st`)",
        );
        return;
    };
    // JWT mode: an Ed25519 issuer key made here, its JWKS in a file.
    let keys_dir = tempfile::tempdir().unwrap();
    let (jwks, alice) = jwt_issuer("alice");
    let keys_file = keys_dir.path().join("jwks.json");
    std::fs::write(&keys_file, jwks).unwrap();
    let settings = http_gateway::GatewaySettings {
        auth: http_gateway::settings::AuthSettings {
            mode: http_gateway::settings::AuthMode::Jwt,
            jwt_issuer: Some("https://id.example.test/".into()),
            jwt_audience: Some("booking".into()),
            jwt_keys_file: Some(keys_file),
            ..Default::default()
        },
        ..settings()
    };
    let cluster = Arc::new(real::RealCluster::start().await);
    let gw = Arc::new(start_real_on(cluster, settings).await);
    // Something for the generated requests to find: an open event with a
    // hold, a booking and tickets.
    gw.open_event("gig").await;
    let (_, r) = gw.hold_and_pay(&alice, "gig", &["A-1-1"], "tok_ok").await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = gw.hold(&alice, "gig", json!({ "seats": ["A-1-2"] })).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let workdir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (who, token) in [("user", alice.as_str()), ("admin", ADMIN)] {
        let (ok, out) = run(&st, &gw, token, workdir.path()).await;
        eprintln!("== schemathesis with the {who} token:\n{out}");
        if !ok {
            failures.push(who);
        }
    }
    assert!(
        failures.is_empty(),
        "schemathesis found problems with the {failures:?} token(s); see the output above"
    );
}
