//! The corpus lookup itself: CI must never pass by silently skipping the proof.
//! (Its own test binary, because it changes the process environment.)

mod common;

#[test]
fn a_missing_corpus_fails_under_ci_and_skips_elsewhere() {
    // Goal: outside CI a missing corpus is a loud skip; with CI=true it is a failure.
    std::env::remove_var("CI");
    assert!(common::corpus_dir("no-such-corpus").is_none());
    std::env::set_var("CI", "true");
    let found = std::panic::catch_unwind(|| common::corpus_dir("no-such-corpus"));
    assert!(
        found.is_err(),
        "a missing corpus under CI=true must fail the test"
    );
}
