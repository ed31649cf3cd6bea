//! The corpus lookup itself: CI must never pass by silently skipping the proof.
//! (Its own test binary, because it changes the process environment.)

mod common;

#[test]
fn a_missing_corpus_fails_under_ci_and_skips_elsewhere() {
    // Goal: outside CI a missing corpus is a loud skip; with CI=true it is a failure.
    std::env::remove_var("CI");
    // This skip is the point of the test, not a suite that could not run:
    // keep it out of ./scripts/test.sh's list of skipped suites.
    std::env::remove_var(testkit::skip::SKIPS_FILE_ENV);
    assert!(common::corpus_dir("no-such-corpus").is_none());
    std::env::set_var("CI", "true");
    let found = std::panic::catch_unwind(|| common::corpus_dir("no-such-corpus"));
    assert!(
        found.is_err(),
        "a missing corpus under CI=true must fail the test"
    );
}
