//! Smoke runs of the `bench` binary at tiny sizes against a real 3-node
//! cluster and gateway (and the peers, when installed; under CI=true they
//! must be). Asserts the audits and the JSON fields; never a timing.
//!
//! Needs the `booking` binary: `BENCH_BOOKING_BIN`, else the one next to
//! `bench` (the workspace release build makes both); without it the test fails under CI=true and is skipped with a
//! message otherwise.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound on one bench invocation in this test.
const RUN_BOUND: Duration = Duration::from_secs(300);

fn booking_bin() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("BENCH_BOOKING_BIN") {
        return Some(PathBuf::from(b));
    }
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_bench"));
    let sibling = bench.parent()?.join("booking");
    if sibling.exists() {
        return Some(sibling);
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/booking");
    repo.exists().then_some(repo)
}

/// Runs `bench ARGS`, bounded by [`RUN_BOUND`]; returns (exit code, stdout).
fn run_bench(args: &[&str]) -> (i32, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("stdout");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start bench");
    let deadline = Instant::now() + RUN_BOUND;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline {
            // SIGTERM lets bench stop its children; then make sure.
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(3));
            let _ = child.kill();
            panic!("bench {args:?} did not finish within {RUN_BOUND:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&out_path).expect("stdout"),
    )
}

fn last_json(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON in {stdout}"));
    serde_json::from_str(line).expect("valid JSON")
}

fn booking_or_skip() -> Option<PathBuf> {
    match booking_bin() {
        Some(b) => Some(b),
        None => {
            testkit::skip_or_fail(
                "bench smoke",
                "no booking binary next to bench (cargo build --workspace --release)",
            );
            None
        }
    }
}

#[test]
fn flash_sale_tiny_sells_no_seat_twice() {
    // Goal: a tiny flash sale through the gateway sells each seat at most once, replicas agree, and the JSON has its fields.
    let Some(booking) = booking_or_skip() else {
        return;
    };
    let booking = booking.display().to_string();
    let args = [
        "flash-sale",
        "--booking-bin",
        &booking,
        "--seats",
        "200",
        "--fans",
        "2000",
        "--rate",
        "1000",
        "--users",
        "200",
        "--echo-s",
        "1",
        "--echo-connections",
        "16",
        "--duration-max-s",
        "60",
        "--png",
        "flash.png",
        "--json",
    ];
    let (code, stdout) = run_bench(&args);
    let v = last_json(&stdout);
    for field in [
        "sold",
        "double_sold",
        "sellout_ms",
        "holds_per_s",
        "hold_p50_ms",
        "hold_p99_ms",
        "replicas_agree",
        "echo_requests_per_s",
    ] {
        assert!(v.get(field).is_some(), "field {field} missing in {v}");
    }
    let sold = v["sold"].as_u64().expect("sold");
    assert!(sold <= 200, "oversold: {v}");
    assert!(sold > 0, "nothing sold: {v}");
    assert_eq!(v["double_sold"], 0, "double sale: {v}");
    assert_eq!(v["replicas_agree"], true, "replicas disagree: {v}");
    // CPU per request: every process of the stack used some, and so did
    // the echo server.
    for who in ["gateway_us", "nodes_us", "generator_us"] {
        assert!(
            v["cpu_per_request"][who].as_f64().unwrap_or(0.0) > 0.0,
            "CPU per request, {who}: {v}"
        );
    }
    assert!(v["echo_server_cpu_us"].as_f64().is_some(), "{v}");
    assert_eq!(code, 0, "bench exit code {code}: {v}");
}

#[test]
fn peers_tiny_oversell_nothing() {
    // Goal: the peers workload runs against our store (client and gateway) and any installed peer with zero oversell and a matching read-back.
    let Some(booking) = booking_or_skip() else {
        return;
    };
    let booking = booking.display().to_string();
    let have = |p: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {p}"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    // Our store with mutual TLS (the default) and with `[tls] mode = "off"`.
    let mut systems = vec!["ours-client", "ours-gateway", "ours-client-plaintext"];
    let peers_installed = have("etcd")
        && have("redis-server")
        && std::path::Path::new("/usr/lib/postgresql").exists();
    if peers_installed {
        systems.extend(["etcd", "redis-always", "pg-for-update", "pg-optimistic"]);
    } else {
        // Our own rows still run; only the peer rows are skipped.
        testkit::skip_or_fail(
            "bench smoke: peer rows",
            "etcd, redis-server or postgresql is not installed (.ci/apt-packages lists them)",
        );
    }
    let systems = systems.join(",");
    let mut args = vec![
        "peers",
        "--booking-bin",
        &booking,
        "--seats",
        "100",
        "--ops",
        "300",
        "--clients",
        "4",
        "--systems",
        &systems,
        "--duration-max-s",
        "30",
        "--json",
    ];
    if testkit::skip::under_ci() {
        args.push("--require-peers");
    }
    let (code, stdout) = run_bench(&args);
    let v = last_json(&stdout);
    let rows = v["rows"].as_array().expect("rows");
    assert!(
        rows.len() >= 6,
        "expected uniform and hot rows for our three paths: {v}"
    );
    for r in rows {
        assert_eq!(r["oversold"], 0, "oversold: {r}");
        assert!(r["audit"] == "ok" || r["audit"] == "skipped", "audit: {r}");
        if r["audit"] == "ok" {
            assert!(
                r["ops_done"].as_u64().unwrap_or(0) > 0,
                "no operation answered: {r}"
            );
        }
    }
    assert_eq!(code, 0, "bench exit code {code}: {v}");
}

#[test]
fn waiting_room_sale_100k_fans_sells_exactly_the_seats() {
    // Goal: 100 000 fans through the waiting room buy exactly the seats on every replica, none twice, and holds without admission are refused.
    let Some(booking) = booking_or_skip() else {
        return;
    };
    let booking = booking.display().to_string();
    let args = [
        "flash-sale",
        "--waiting-room",
        "--booking-bin",
        &booking,
        "--seats",
        "300",
        "--fans",
        "100000",
        "--arrival-s",
        "10",
        "--admit-batch",
        "200",
        "--hold-ttl-ms",
        "5000",
        "--snapshot-every",
        "50",
        "--echo-s",
        "1",
        "--echo-connections",
        "16",
        "--join-ceiling-s",
        "1",
        "--duration-max-s",
        "90",
        "--png",
        "room.png",
        "--json",
    ];
    let (code, stdout) = run_bench(&args);
    let v = last_json(&stdout);
    for field in [
        "joins_per_s",
        "join_p50_ms",
        "join_p99_ms",
        "join_p999_ms",
        "hold_p50_ms",
        "hold_p99_ms",
        "hold_p999_ms",
        "sellout_ms",
        "goodput_seats_per_s",
        "share_without_log_write",
        "snapshot_bytes_max",
        "echo_requests_per_s",
        "joins_per_echo",
        "goal_zero_oversell",
        "png",
    ] {
        assert!(v.get(field).is_some(), "field {field} missing in {v}");
    }
    let per_replica = v["sold_per_replica"].as_array().expect("sold_per_replica");
    assert_eq!(per_replica.len(), 3, "three replicas audited: {v}");
    for sold in per_replica {
        assert_eq!(
            sold.as_u64(),
            Some(300),
            "every replica sold exactly the seats: {v}"
        );
    }
    assert_eq!(v["double_sold"], 0, "double sale: {v}");
    assert_eq!(v["replicas_agree"], true, "replicas disagree: {v}");
    assert_eq!(v["audit_exact"], true, "audit: {v}");
    assert_eq!(v["fans_started"], 100_000, "every fan started: {v}");
    // The closed-loop join capacity ran on its own event (the sale's audit
    // above is exact regardless), and the CPU clocks were read.
    let ceiling = &v["join_ceiling"];
    assert!(
        ceiling["joins_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "join capacity: {v}"
    );
    assert!(
        v["join_ceiling_per_echo"].as_f64().unwrap_or(0.0) > 0.0,
        "{v}"
    );
    for who in ["gateway_us", "nodes_us"] {
        assert!(
            v["cpu_per_request"][who].as_f64().unwrap_or(0.0) > 0.0,
            "CPU per request, {who}: {v}"
        );
    }
    let joins = v["joins"].as_u64().expect("joins");
    assert!(
        joins > 0 && joins + v["join_failed"].as_u64().unwrap_or(0) == 100_000,
        "joins: {v}"
    );
    assert!(
        v["admitted"].as_u64().unwrap_or(0) >= 300,
        "fewer admitted than seats sold: {v}"
    );
    // Admission is enforced: waiting users' holds (with their token and
    // without one) were all refused.
    let probes = v["probe_holds"].as_u64().expect("probe_holds");
    assert!(probes > 0, "no admission probe ran: {v}");
    assert_eq!(
        v["probe_holds_refused"].as_u64(),
        Some(probes),
        "probe: {v}"
    );
    assert_eq!(
        v["probe_holds_accepted"], 0,
        "a hold without admission was accepted: {v}"
    );
    assert!(
        v["snapshot_bytes_max"].as_u64().unwrap_or(0) > 0,
        "no snapshot size measured: {v}"
    );
    assert_eq!(code, 0, "bench exit code {code}: {v}");
}
