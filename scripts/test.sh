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
cargo test --workspace --release --no-fail-fast
