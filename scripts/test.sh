#!/usr/bin/env bash
# Runs every test of the workspace in the release profile (the one profile the
# project builds in, so `cargo run --release -- up`, the tests, jepsen and the
# benchmarks share one build).
set -euo pipefail
cd "$(dirname "$0")/.."

# The deliberately broken node for `jepsen selftest`, built first and copied
# aside: the same workspace-wide dependency features as the build below, so
# only raft-node and the booking binary compile twice (once with the bugs),
# and the normal build then re-links target/release/booking without them.
cargo build --workspace --release --bin booking --features booking/fault-injection-bugs
cp target/release/booking target/release/booking-fault-bugs

cargo build --workspace --release --all-targets
cargo test --workspace --release --no-fail-fast
