#!/usr/bin/env bash
# Runs pulse: one node on this host, or a cluster of containers.
#
#   ./run.sh [pulse flags...]   build if needed, run one node here (foreground)
#   ./run.sh cluster N [-d]     build the static binary and the image, start N
#                               containers, follow the shared log (-d: don't);
#                               without a Docker engine: N nodes on 127.0.0.2..
#   ./run.sh scale N            grow or shrink the running cluster to N nodes
#   ./run.sh status             ping every registered node once, print a table
#   ./run.sh logs               follow the shared log
#   ./run.sh watch [FLAGS]      who reaches whom, redrawn every interval, from
#                               the shared log (pulse watch: --once, --json)
#   ./run.sh down               stop the cluster (every node leaves gracefully)
#   ./run.sh help               this text; `./run.sh --help` is pulse's own
#
# Environment: PULSE_HOST_DIR (host dir holding sync_dir/ and log/, default
# /tmp as in the recipe), PULSE_COOKIE (default "pulse" for the cluster
# commands), PULSE_INTERVAL_MS, COMPOSE_PROJECT_NAME (default "pulse"),
# PULSE_UID/PULSE_GID (the containers' user; see prepare_dirs).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
musl_target=x86_64-unknown-linux-musl
host_dir=${PULSE_HOST_DIR:-/tmp}
sync_dir=$host_dir/sync_dir
log_file=$host_dir/log/cluster.log
project=${COMPOSE_PROJECT_NAME:-pulse}

say() { printf 'run.sh: %s\n' "$*" >&2; }
die() {
    say "$*"
    exit 1
}

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# Every cluster member must share the cookie: the cluster commands default
# it to what docker-compose.yml defaults it to. A single host node keeps
# pulse's own default ($HOME/.erlang.cookie).
cluster_cookie() {
    if [[ -z ${PULSE_COOKIE:-} && -z ${PULSE_COOKIE_FILE:-} ]]; then
        export PULSE_COOKIE=pulse
    fi
}

positive() {
    [[ $1 =~ ^[1-9][0-9]*$ ]] || die "expected a node count (1 or more), got '$1'"
}

# --- building ---------------------------------------------------------------

host_binary() {
    # cargo itself decides whether anything needs rebuilding.
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" >&2
    printf '%s\n' "$here/target/release/pulse"
}

musl_binary() {
    # A scratch image has no loader or libc: the binary must be static musl.
    if command -v rustup >/dev/null &&
        ! rustup target list --installed | grep -x "$musl_target" >/dev/null; then
        say "adding the Rust target $musl_target"
        rustup target add "$musl_target" >&2
    fi
    cargo build --release --quiet --target "$musl_target" \
        --manifest-path "$here/Cargo.toml" >&2
}

# --- Docker -----------------------------------------------------------------

compose_cmd=()

docker_answers() {
    command -v docker >/dev/null &&
        timeout 20 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

# Prefers `docker compose` (v2), else Debian's docker-compose (v1); the
# compose file is written for both.
find_compose() {
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose)
    elif command -v docker-compose >/dev/null &&
        docker-compose version >/dev/null 2>&1; then
        compose_cmd=(docker-compose)
    else
        die "a Docker engine answers, but neither 'docker compose' nor 'docker-compose' is installed"
    fi
}

compose() {
    [[ ${#compose_cmd[@]} -gt 0 ]] || find_compose
    "${compose_cmd[@]}" -p "$project" -f "$here/docker-compose.yml" "$@"
}

# The shared dirs are bind-mounted, so Docker would create missing ones as
# root and the nodes (never root) could not write there. Containers run as
# the invoking user when that is not root, so the files stay theirs; when
# root invokes, they run as 65532 and the dirs get /tmp's mode 1777 instead.
prepare_dirs() {
    if [[ -z ${PULSE_UID:-} ]]; then
        if ((EUID != 0)); then
            PULSE_UID=$EUID
            PULSE_GID=$(id -g)
        else
            PULSE_UID=65532
            PULSE_GID=65532
        fi
    fi
    export PULSE_UID PULSE_GID=${PULSE_GID:-$PULSE_UID}
    export PULSE_HOST_DIR=$host_dir
    mkdir -p "$sync_dir" "$(dirname "$log_file")"
    if [[ $PULSE_UID == "$EUID" ]]; then
        for p in "$sync_dir" "$(dirname "$log_file")"; do
            [[ -w $p ]] || die "$p is not writable by uid $EUID; set PULSE_HOST_DIR to another dir"
        done
        [[ ! -e $log_file || -w $log_file ]] ||
            die "$log_file is not writable by uid $EUID; set PULSE_HOST_DIR to another dir"
    else
        chmod 1777 "$sync_dir" "$(dirname "$log_file")" ||
            die "cannot open $host_dir/{sync_dir,log} to uid $PULSE_UID; set PULSE_HOST_DIR or PULSE_UID"
        # A log file left by a node run on the host as root must stay appendable.
        if [[ -e $log_file ]]; then chmod a+rw "$log_file"; fi
    fi
}

build_image() {
    musl_binary
    prepare_dirs
    local version
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n 1)
    compose build --build-arg "VERSION=$version" >&2
}

running_containers() {
    docker ps -q --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=node"
}

follow_log() {
    say "following $log_file (Ctrl-C stops following; './run.sh down' stops the cluster)"
    exec tail -n 20 -F "$log_file"
}

# --- without Docker: nodes on loopback addresses ----------------------------

local_cluster() {
    local n=$1 bin i
    ((n <= 250)) || die "at most 250 local nodes (127.0.0.2 .. 127.0.0.251)"
    bin=$(host_binary)
    mkdir -p "$sync_dir" "$(dirname "$log_file")"
    say "starting $n nodes on 127.0.0.2 .. 127.0.0.$((n + 1)), registry $sync_dir, log $log_file"
    local -a pids=()
    # Each node gets its own session so the terminal's Ctrl-C reaches only
    # this script, which then sends exactly one SIGTERM to each node (a
    # second signal would make pulse exit at once without leaving).
    local detach=()
    if command -v setsid >/dev/null; then detach=(setsid); fi
    stop_local() {
        trap - INT TERM HUP
        say "stopping ${#pids[@]} nodes"
        kill -TERM "${pids[@]}" 2>/dev/null || true
        for pid in "${pids[@]}"; do wait "$pid" || true; done
        exit 0
    }
    trap stop_local INT TERM HUP
    for ((i = 2; i <= n + 1; i++)); do
        "${detach[@]}" "$bin" --ip "127.0.0.$i" --sync-dir "$sync_dir" \
            --log-file "$log_file" &
        pids+=("$!")
    done
    # Returns when every node has ended, or early on a signal (the trap).
    for pid in "${pids[@]}"; do wait "$pid" || true; done
}

# --- commands ---------------------------------------------------------------

cmd_cluster() {
    local n=${1:-} follow=yes
    positive "$n"
    case ${2:-} in
    "") ;;
    -d | --detach) follow=no ;;
    *) die "cluster: unknown option '$2'" ;;
    esac
    if ! docker_answers; then
        say "no Docker engine answers ('docker info' failed): running $n nodes directly on this host instead"
        if [[ $follow == no ]]; then say "-d is ignored: local nodes run in the foreground (Ctrl-C stops them)"; fi
        local_cluster "$n"
        return
    fi
    build_image
    compose up -d --scale "node=$n" >&2
    compose ps >&2
    if [[ $follow == yes ]]; then follow_log; fi
}

cmd_scale() {
    local n=${1:-}
    positive "$n"
    docker_answers || die "no Docker engine answers; 'scale' needs the container cluster"
    # Only the count changes: running nodes are kept as they are even when
    # the sources changed since (a rebuilt image would make compose recreate
    # them all, under new names). The image is built only when missing.
    if docker image inspect "${PULSE_IMAGE:-pulse:latest}" >/dev/null 2>&1; then
        prepare_dirs
    else
        build_image
    fi
    compose up -d --no-build --no-recreate --scale "node=$n" >&2
}

cmd_down() {
    docker_answers || die "no Docker engine answers; nothing to take down (local nodes stop with Ctrl-C)"
    prepare_dirs
    compose down --remove-orphans
}

cmd_status() {
    # Inside a container when the cluster runs: no host build needed. Else
    # the host binary (the host also reaches container addresses directly).
    local id=
    if docker_answers; then id=$(running_containers | awk 'NR == 1'); fi
    if [[ -n $id ]]; then
        # docker exec, not compose exec: compose picks container #1, which
        # may be the one that was stopped or killed.
        docker exec "$id" /pulse status
    else
        "$(host_binary)" status --sync-dir "$sync_dir"
    fi
}

case ${1:-} in
cluster | scale | status) cluster_cookie ;;
esac
case ${1:-} in
cluster) cmd_cluster "${@:2}" ;;
scale) cmd_scale "${@:2}" ;;
down) cmd_down ;;
status) cmd_status ;;
logs) follow_log ;;
watch) exec "$(host_binary)" watch --log-file "$log_file" "${@:2}" ;;
help) usage ;;
*)
    # One node on this host, every argument passed through to pulse.
    bin=$(host_binary)
    exec "$bin" "$@"
    ;;
esac
