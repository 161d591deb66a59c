#!/usr/bin/env bash
# Installs what the tests and the container build need, when it is missing:
# the musl target (for the static binary in the scratch image), Erlang (the
# judge of the wire code: Debian's OTP 25, and an OTP 27 built once from the
# source archive in ../shared/otp when that is beside the clone), Elixir (the
# recipe's own node, for the mixed cluster test), tmux (a terminal for the
# watch colour test), python3 (the judge of the JSON output, and the
# benchmark), matplotlib for the benchmark's plot, and Garage (the S3
# server of the S3 registry's tests, built once from crates.io). Without
# root or apt it says what is missing and goes on: the tests that need it
# then skip loudly (or fail, under PULSE_REQUIRE_EXTERNAL=1), and the
# benchmark skips its plot with a note.
set -euo pipefail

if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
        echo "install-deps: adding the x86_64-unknown-linux-musl target"
        rustup target add x86_64-unknown-linux-musl ||
            echo "install-deps: WARNING: the musl target could not be added; the image build falls back to a static glibc binary"
    fi
fi

missing=()
command -v erl >/dev/null 2>&1 || missing+=(erlang-base)
command -v elixir >/dev/null 2>&1 || missing+=(elixir)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
command -v serf >/dev/null 2>&1 || missing+=(serf)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "install-deps: WARNING: missing ${missing[*]} (install them with apt-get as root); tests needing them will skip"
    fi
fi

# OTP 27, the second release the Erlang tests run against (see
# tests/util/erlang.rs): taken from PULSE_OTP27 when set, else built once into
# /opt/otp-27 from ../shared/otp (about 6 minutes) and reused after.
otp27=${PULSE_OTP27:-/opt/otp-27}
builder="$(cd "$(dirname "$0")/.." && pwd)/../shared/otp/build-otp27.sh"
if [ -x "$otp27/bin/erl" ]; then
    :
elif [ -f "$builder" ] && [ "$(id -u)" = 0 ]; then
    echo "install-deps: building OTP 27 into $otp27 (once per machine, about 6 minutes)"
    bash "$builder" "$otp27"
else
    echo "install-deps: WARNING: no OTP 27 at $otp27: set PULSE_OTP27 to an OTP 27 installation (or put its erl first on PATH); the OTP 27 runs of the Erlang tests will skip"
fi

# Garage, the S3 server the S3 registry's tests start on loopback
# (tests/util/garage.rs): built from crates.io once per machine into
# /opt/garage (or the PULSE_GARAGE directory) and reused after. The build
# takes long (16 minutes on 2 shared cores), so it is skipped when a garage
# is already there or on PATH.
garage_root=${PULSE_GARAGE:-/opt/garage}
if [ -x "$garage_root/bin/garage" ] || command -v garage >/dev/null 2>&1; then
    :
elif command -v cargo >/dev/null 2>&1; then
    echo "install-deps: building Garage 2.5.0 into $garage_root (once per machine; it takes long: about 16 minutes on 2 cores)"
    cargo install garage --version 2.5.0 --locked --no-default-features \
        --features bundled-libs,sqlite --root "$garage_root" ||
        echo "install-deps: WARNING: Garage did not build; the S3 tests will skip"
else
    echo "install-deps: WARNING: no garage and no cargo to build it (cargo install garage --version 2.5.0 --locked --no-default-features --features bundled-libs,sqlite --root $garage_root); the S3 tests will skip"
fi

# The benchmark's plot. Debian's package serves Debian's python3; another
# python3 first on the PATH (pyenv, a venv) gets it from PyPI through pip.
if ! python3 -c 'import matplotlib' >/dev/null 2>&1; then
    if [ "$(python3 -c 'import sys; print(sys.prefix)')" = /usr ] &&
        [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "install-deps: installing python3-matplotlib"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null
    elif python3 -m pip --version >/dev/null 2>&1; then
        echo "install-deps: installing matplotlib with pip"
        python3 -m pip install --quiet matplotlib ||
            echo "install-deps: WARNING: pip could not install matplotlib; the benchmark skips its plot"
    else
        echo "install-deps: WARNING: matplotlib missing (apt-get install python3-matplotlib, or pip install matplotlib); the benchmark skips its plot"
    fi
fi
