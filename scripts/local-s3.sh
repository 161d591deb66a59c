#!/usr/bin/env bash
# An S3 server on this host for trying the S3 registry: Garage (an
# S3-compatible store, built by scripts/install-deps.sh) on 127.0.0.1:3900,
# with a bucket `pulse` and a key allowed on it.
#
#   scripts/local-s3.sh [start]   start it; writes the AWS_* variables pulse
#                                 reads to DIR/env (source it in each shell)
#   scripts/local-s3.sh stop      stop it and remove its data
#
# DIR is $PULSE_S3_DIR [/tmp/pulse-s3]. Garage is $PULSE_GARAGE/bin/garage
# [/opt/garage/bin/garage], else `garage` on PATH. Ports: $PULSE_S3_PORT
# [3900] for S3, the two after it for Garage's RPC and admin APIs.
set -euo pipefail

dir=${PULSE_S3_DIR:-/tmp/pulse-s3}
port=${PULSE_S3_PORT:-3900}
say() { printf 'local-s3: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

find_garage() {
    local root=${PULSE_GARAGE:-/opt/garage}
    if [[ -x $root/bin/garage ]]; then
        printf '%s\n' "$root/bin/garage"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    else
        die "no garage at $root/bin/garage or on PATH: scripts/install-deps.sh builds it (or set PULSE_GARAGE)"
    fi
}

running() { [[ -f $dir/pid ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; }

stop() {
    if running; then
        local pid
        pid=$(cat "$dir/pid")
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    say "stopped; $dir removed"
}

# cli ARGS...: `garage ARGS` against our server, retried for up to 30 s
# while it starts and applies its layout; prints its output.
cli() {
    local out
    for _ in $(seq 150); do
        if out=$("$garage" -c "$dir/garage.toml" "$@" 2>&1); then
            printf '%s\n' "$out"
            return 0
        fi
        running || die "garage exited: $(tail -n 20 "$dir/server.log")"
        sleep 0.2
    done
    die "garage $* failed: $out"
}

start() {
    running && die "already running (pid $(cat "$dir/pid")); 'scripts/local-s3.sh stop' first"
    garage=$(find_garage)
    rm -rf "$dir"
    mkdir -p "$dir"
    chmod 700 "$dir"
    cat >"$dir/garage.toml" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"

[admin]
api_bind_addr = "127.0.0.1:$((port + 2))"
EOF
    RUST_LOG=garage=warn setsid "$garage" -c "$dir/garage.toml" server >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    local id made key secret
    id=$(cli node id -q)
    id=${id%%@*}
    cli layout assign -z dc1 -c 1G "$id" >/dev/null
    cli layout apply --version 1 >/dev/null
    cli bucket create pulse >/dev/null
    made=$(cli key create pulse)
    key=$(awk '/Key ID:/ { print $NF }' <<<"$made")
    secret=$(awk '/Secret key:/ { print $NF }' <<<"$made")
    [[ -n $key && -n $secret ]] || die "no key in garage's output: $made"
    cli bucket allow --read --write --owner pulse --key "$key" >/dev/null
    (
        umask 077
        cat >"$dir/env" <<EOF
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$port
export AWS_REGION=garage
export AWS_ACCESS_KEY_ID=$key
export AWS_SECRET_ACCESS_KEY=$secret
EOF
    )
    say "Garage serves S3 on 127.0.0.1:$port, bucket pulse; '. $dir/env' sets the AWS_* variables pulse reads"
}

case ${1:-start} in
start) start ;;
stop) stop ;;
-h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
*) die "unknown command '$1' (start, stop)" ;;
esac
