#!/usr/bin/env bash
# Runs every test of the workspace in the release profile (the one profile the
# project builds in, so `cargo run --release -- up`, the tests, jepsen and the
# benchmarks share one build).
set -euo pipefail
cd "$(dirname "$0")/.."
# Formatting first: it is the cheapest check and fails fast.
cargo fmt --all --check
# The `booking` binary alone must resolve the same dependency features as the
# workspace build, so `cargo run --release -- up` reuses this build.
./scripts/check-feature-alignment.sh

# The deliberately broken node for `jepsen selftest`, built first and copied
# aside. Building only the binary resolves features without the dev-dependencies,
# so a few crates (openraft and what depends on it) compile twice on a cold
# cache; the normal build below then re-links target/release/booking without
# the bugs. Costs a few minutes, measured in CI's log.
cargo build --workspace --release --bin booking --features booking/fault-injection-bugs
cp target/release/booking target/release/booking-fault-bugs

cargo build --workspace --release --all-targets
# Lints after the build: clippy checks the same profile, so it reuses the
# dependencies' artifacts and only re-checks the workspace's own crates.
cargo clippy --workspace --all-targets --release -- -D warnings

# Every test that cannot run here (no root, no Chromium, no schemathesis)
# appends `test: reason` to this file (testkit::skip_or_fail); the list is
# printed at the end, whatever the outcome, so a skip is never only a line in
# a test's captured output. Under CI=true a skip is a failure instead.
export BOOKING_TEST_SKIPS
BOOKING_TEST_SKIPS="$(mktemp -t booking-test-skips.XXXXXX)"
print_skips() {
  if [ -s "$BOOKING_TEST_SKIPS" ]; then
    echo
    echo "== SKIPPED: $(wc -l <"$BOOKING_TEST_SKIPS") test(s) could not run here and proved nothing:"
    sed 's/^/   - /' "$BOOKING_TEST_SKIPS"
  else
    echo
    echo "== no test skipped"
  fi
  rm -f "$BOOKING_TEST_SKIPS"
}
trap print_skips EXIT
cargo test --workspace --release --no-fail-fast
