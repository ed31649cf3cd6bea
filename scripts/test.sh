#!/usr/bin/env bash
# Runs every test of the workspace in the release profile (the one profile the
# project builds in, so `cargo run --release -- up`, the tests, jepsen and the
# benchmarks share one build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --release --all-targets
cargo test --workspace --release --no-fail-fast
