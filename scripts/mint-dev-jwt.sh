#!/usr/bin/env bash
# A stand-in identity provider for trying `[auth] mode = "jwt"` by hand: makes
# an Ed25519 key pair (once), the JWKS document the gateway reads, and prints
# a signed token. Needs only openssl (3.x) and coreutils.
#
#   scripts/mint-dev-jwt.sh DIR SUB [SCOPE] [ISSUER] [AUDIENCE] [TTL_S]
#
# DIR gets key.pem (private, 0600) and jwks.json (public: point
# `[auth] jwt_keys_file` at it). SCOPE is space-separated, e.g.
# "booking:admin" or "booking:scan". A real identity provider publishes its
# JWKS at a URL; copy it to the file (and again when it rotates keys: the
# gateway re-reads the file when it changes).
set -euo pipefail
dir=${1:?usage: mint-dev-jwt.sh DIR SUB [SCOPE] [ISSUER] [AUDIENCE] [TTL_S]}
sub=${2:?usage: mint-dev-jwt.sh DIR SUB [SCOPE] [ISSUER] [AUDIENCE] [TTL_S]}
scope=${3:-}
issuer=${4:-https://id.example.test/}
audience=${5:-booking}
ttl_s=${6:-3600}

b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }

mkdir -p "$dir"
if [ ! -f "$dir/key.pem" ]; then
  (umask 077 && openssl genpkey -algorithm ed25519 -out "$dir/key.pem")
fi
# The raw 32-byte public key is the tail of its DER encoding.
x=$(openssl pkey -in "$dir/key.pem" -pubout -outform DER | tail -c 32 | b64url)
kid=$(printf '%s' "$x" | cut -c1-16)
printf '{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"%s","x":"%s"}]}\n' \
  "$kid" "$x" > "$dir/jwks.json"

now=$(date +%s)
header=$(printf '{"alg":"EdDSA","typ":"JWT","kid":"%s"}' "$kid" | b64url)
payload=$(printf '{"iss":"%s","aud":"%s","sub":"%s","scope":"%s","iat":%d,"nbf":%d,"exp":%d}' \
  "$issuer" "$audience" "$sub" "$scope" "$now" "$now" "$((now + ttl_s))" | b64url)
# Ed25519 signs the message itself (-rawin), which openssl reads from a file.
input=$(mktemp)
trap 'rm -f "$input"' EXIT
printf '%s.%s' "$header" "$payload" > "$input"
signature=$(openssl pkeyutl -sign -inkey "$dir/key.pem" -rawin -in "$input" | b64url)
printf '%s.%s.%s\n' "$header" "$payload" "$signature"
