//! Finding the shared checker corpus from a test.

use std::path::PathBuf;

/// `<repo>/../shared/checker-corpus/<name>`, or `None` (with a loud SKIP on
/// stderr) when it is missing outside CI. Under `CI=true` a missing corpus
/// fails the test: CI must never pass by skipping the proof.
pub fn corpus_dir(name: &str) -> Option<PathBuf> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = repo.join("../shared/checker-corpus").join(name);
    if dir.is_dir() {
        return Some(dir);
    }
    testkit::skip_or_fail(
        &format!("checker corpus {name}"),
        &format!(
            "not found at {} (CI must provide ../shared next to the repo)",
            dir.display()
        ),
    );
    None
}
