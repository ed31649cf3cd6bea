#!/usr/bin/env bash
# Installs the peer systems `bench peers` compares against (Debian packages),
# only the ones that are missing. Idempotent. It does not start anything:
# `bench peers` starts private instances on loopback in temp dirs and stops
# them at the end. Needs root (apt-get).
set -euo pipefail
want=(etcd-server redis-server postgresql)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "peers-setup: all installed (${want[*]})"
  exit 0
fi
echo "peers-setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# The packages would start system-wide services on install; we run private
# instances only, so keep the init scripts from starting them.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get install -y --no-install-recommends "${missing[@]}" || {
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
}
