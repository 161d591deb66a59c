#!/usr/bin/env bash
# Checks deploy/docker-compose.s3.yml offline: compose parses it with dummy
# values (no store is contacted, no container started), and refuses it
# without PULSE_REGISTRY, so a missing registry cannot pass unnoticed.
# Without docker-compose (v1) or `docker compose` (v2) it skips loudly,
# unless PULSE_REQUIRE_EXTERNAL=1 makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
self=scripts/validate-compose-s3.sh
# shellcheck source=../tests/docker/lib.sh
source tests/docker/lib.sh

if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null; then
    compose=(docker-compose)
else
    skip "neither 'docker compose' nor 'docker-compose' is installed"
fi
file=deploy/docker-compose.s3.yml
# Only the dummy values given here, none from the caller's environment.
config() { env -i PATH="$PATH" HOME="$HOME" "$@" "${compose[@]}" -f "$file" config; }

out=$(config PULSE_REGISTRY=s3://bucket/pulse/ PULSE_COOKIE=cookie \
    AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret)
grep -q 'PULSE_REGISTRY: s3://bucket/pulse/' <<<"$out" || {
    echo "FAIL - $file: PULSE_REGISTRY not passed on:" >&2
    echo "$out" >&2
    exit 1
}
if config PULSE_COOKIE=cookie >/dev/null 2>&1; then
    echo "FAIL - $file passed without PULSE_REGISTRY" >&2
    exit 1
fi
echo "ok - $file parses, and needs PULSE_REGISTRY"
