//! Goal: the suite can fail. `jepsen selftest` runs a control run (must be
//! valid) and one run per deliberate bug of the node (each must be caught),
//! against the broken build `scripts/test.sh` makes:
//! `<repo>/target/release/booking-fault-bugs` (or `$BOOKING_FAULT_BIN`).
//!
//! Without that binary the test prints a loud SKIP, except under `CI=true`,
//! where it fails. One test in this file: the networked runs use fixed
//! namespace names, and cargo runs test binaries one after another, so it
//! never overlaps `cluster_matrix`. Reports stay in
//! `<target tmp>/jepsen-selftest/`. Seven runs of 30 s of workload each (the
//! control and six bugs; `skip-fdatasync` under the power-loss nemesis,
//! which needs root, `/dev/fuse` and `fusermount3`; `unbounded-stamp` under
//! clock-leap), about 6-7 minutes in all.

use std::path::PathBuf;
use std::process::Command;

const TIME_LIMIT_S: &str = "30";
const SEED: &str = "1";

#[test]
fn selftest_catches_every_node_bug_and_passes_the_control_run() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let broken = std::env::var_os("BOOKING_FAULT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo.join("target")
                .join("release")
                .join("booking-fault-bugs")
        });
    if !broken.is_file() {
        let why = format!(
            "no broken build at {} (scripts/test.sh makes it: `cargo build --workspace --release \
             --bin booking --features booking/fault-injection-bugs`, then copy \
             target/release/booking there; or set BOOKING_FAULT_BIN)",
            broken.display()
        );
        testkit::skip_or_fail(
            "selftest_catches_every_node_bug_and_passes_the_control_run",
            &why,
        );
        return;
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("jepsen-selftest");
    let status = Command::new(env!("CARGO_BIN_EXE_jepsen"))
        .args(["selftest", "--time-limit", TIME_LIMIT_S, "--seed", SEED])
        .args(["--nodes", "3", "--check-time-limit", "60"])
        .arg("--out")
        .arg(&out)
        .arg("--booking-bin")
        .arg(&broken)
        .status()
        .expect("the jepsen binary runs");
    let summary = std::fs::read_to_string(out.join("selftest.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", out.join("selftest.json").display()));
    let summary: serde_json::Value = serde_json::from_str(&summary).expect("selftest.json is JSON");
    let cases = summary["cases"].as_array().expect("cases");
    let result_of = |name: &str| {
        cases
            .iter()
            .find(|c| c["case"] == name)
            .unwrap_or_else(|| panic!("no case {name} in {summary:#}"))["result"]
            .clone()
    };
    // Each bug was caught in every run we made (see the README's catch-rate
    // table): every case must be Caught, the control run valid, and the
    // command must exit 0; anything else means the suite lost its teeth.
    for bug in fault_bugs::Bug::ALL {
        assert_eq!(
            result_of(bug.name()),
            "Caught",
            "{bug}; all cases: {summary:#}"
        );
    }
    for c in cases {
        let r = &c["result"];
        assert!(
            r == "Caught" || r == "ControlValid",
            "case {}: {r}; all cases: {summary:#}",
            c["case"]
        );
    }
    assert_eq!(
        status.code(),
        Some(0),
        "jepsen selftest failed; per case: {summary:#}"
    );
}
