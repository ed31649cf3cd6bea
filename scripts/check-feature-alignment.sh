#!/usr/bin/env bash
# Fails when the `booking` binary alone would resolve different features of a
# dependency than the workspace build does, which would make
# `cargo run --release -- up` after ./scripts/test.sh recompile crates. The
# fix is the feature-alignment block in the root Cargo.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(rustc -vV | sed -n 's/^host: //p')
tree() {
  cargo tree --target "$target" -e normal,build "$@" -f '{p}|{f}' --prefix none \
    | sed 's/ (\*)//g' | sort -u
}
tree --workspace -e dev >/tmp/booking-features-ws.$$
tree -p booking >/tmp/booking-features-bin.$$
# Every (crate, features) line of the binary's build must appear in the workspace's.
drift=$(comm -23 /tmp/booking-features-bin.$$ /tmp/booking-features-ws.$$ || true)
rm -f /tmp/booking-features-ws.$$ /tmp/booking-features-bin.$$
if [ -n "$drift" ]; then
  echo "feature drift: these crates build with other features for \`booking\` alone than for the workspace:" >&2
  echo "$drift" >&2
  echo "(align them in the root Cargo.toml's feature-alignment block)" >&2
  exit 1
fi
echo "feature alignment: ok (the booking binary shares the workspace build)"
