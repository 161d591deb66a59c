#!/usr/bin/env bash
# Every check pulse has, in the order CI runs them: dependencies, formatting,
# lints, unit and integration tests (against real erl of OTP 25 and 27, and
# elixir), the Docker cluster tests, a smoke run of the benchmark, and the
# README's commands.
#
# Tests that need Erlang, Elixir or a Docker engine skip loudly when those
# are missing; PULSE_REQUIRE_EXTERNAL=1 (set by CI) turns a skip into a
# failure.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

step "dependencies"
scripts/install-deps.sh
# The OTP 27 that install-deps builds, unless the caller names another.
if [ -z "${PULSE_OTP27:-}" ] && [ -x /opt/otp-27/bin/erl ]; then
    export PULSE_OTP27=/opt/otp-27
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test

step "docker cluster test"
tests/docker/cluster_test.sh

step "the recipe's compose commands on a fresh host (root and non-root)"
tests/docker/fresh_host_test.sh

step "kubernetes manifests (offline)"
scripts/validate-k8s.sh

step "the S3 compose example (offline)"
scripts/validate-compose-s3.sh

step "docker swarm stack test"
tests/docker/stack_test.sh

if [ -f bench/bench.py ]; then
    step "benchmark smoke run"
    # Writes under target/bench-smoke/, never over the committed figures.
    python3 bench/bench.py --smoke
fi

step "the README's commands, as written"
tests/docker/readme_test.sh
