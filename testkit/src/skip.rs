//! The one way a test says it could not run: [`skip_or_fail`].
//!
//! Owns: the rule "a test that needs something absent (root, Chromium,
//! schemathesis, a corpus) skips loudly, except under `CI=true`, where it
//! fails", and the record that makes a skip visible in the summary of
//! `./scripts/test.sh` (which sets [`SKIPS_FILE_ENV`] and prints the file at
//! the end), not only in a test's captured stderr.
//!
//! Must not: decide *whether* something is available; the caller checks and
//! passes its reason.

use std::io::Write;

/// Environment variable naming a file to which every skip appends one line
/// (`test: reason`). Unset outside `./scripts/test.sh`: the skip is then only
/// printed.
pub const SKIPS_FILE_ENV: &str = "BOOKING_TEST_SKIPS";

/// True when running under CI (`CI=true`), where a skip is a failure.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips `test` because of `reason`: panics under `CI=true`; otherwise
/// prints a loud banner on stderr and records the skip for the test script's
/// summary. The caller returns right after (the test proved nothing).
pub fn skip_or_fail(test: &str, reason: &str) {
    if under_ci() {
        panic!("CI=true, so this is a failure, not a skip: {test}: {reason}");
    }
    eprintln!("\n*** SKIPPED {test}: {reason} ***\n*** this test proved nothing; under CI=true it would fail ***\n");
    record(test, reason);
}

/// Appends `test: reason` to the file named by [`SKIPS_FILE_ENV`], if set.
/// A failure to record is printed, never fatal: the banner is already out.
fn record(test: &str, reason: &str) {
    let Some(path) = std::env::var_os(SKIPS_FILE_ENV) else {
        return;
    };
    let line = format!("{test}: {}\n", reason.replace('\n', " "));
    // One write of one short line to an O_APPEND file: test binaries running
    // at once do not interleave within a line.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("testkit: could not record the skip in {path:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_outside_ci_is_recorded_in_the_skips_file() {
        if under_ci() {
            // The other half of the rule: under CI the same call must panic.
            let panicked = std::panic::catch_unwind(|| skip_or_fail("t", "r")).is_err();
            assert!(panicked, "a skip under CI=true must fail the test");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("skips");
        std::env::set_var(SKIPS_FILE_ENV, &path);
        skip_or_fail("some_test", "no chromium\non PATH");
        skip_or_fail("other_test", "not root");
        std::env::remove_var(SKIPS_FILE_ENV);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "some_test: no chromium on PATH\nother_test: not root\n"
        );
    }
}
