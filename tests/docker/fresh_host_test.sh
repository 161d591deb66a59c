#!/usr/bin/env bash
# The recipe's compose commands, exactly as written, on a fresh host: a host
# dir with /tmp's mode and no sync_dir/ or log/ in it, no image built yet.
#
#   docker-compose up -d
#   docker-compose scale node=5
#   docker-compose up -d --scale node=11
#
# Run once as root and once as a non-root user in the docker group (a
# throwaway user when this runs as root, else the invoking user): every node
# lists every node true, and that user can `ls` the registry and read the
# log. In between, `./run.sh cluster` on dirs a host node left behind. Each run has its own compose project, image tag and host dir (set
# through the environment, the commands stay as written), all removed on
# exit. Without a Docker engine it skips loudly, unless
# PULSE_REQUIRE_EXTERNAL=1 makes that a failure.
set -euo pipefail

self=tests/docker/fresh_host_test.sh
# shellcheck source=tests/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_docker

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pulse-fresh-host.XXXXXX")
chmod 0755 "$tmp"
mkdir -m 1777 "$tmp/home"
project=
log=
user=
made_user=

diagnose() {
    diagnose_cluster
    echo "--- host dir"
    ls -la "$PULSE_HOST_DIR" "$PULSE_HOST_DIR/sync_dir" 2>&1 || true
    echo "--- compose output"
    cat "$tmp/compose.log" 2>/dev/null || true
}

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $project ]]; then remove_project; fi
    if [[ -n $made_user ]]; then userdel "$made_user" >/dev/null 2>&1 || true; fi
    rm -rf "$tmp"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# The binary must be there before the recipe's commands (README: ./run.sh build).
"$root/run.sh" build || fail "./run.sh build"

# as_user CMD...: runs CMD in the repository as $user (here: as is), for
# at most 5 minutes.
as_user() {
    if [[ -z $user ]]; then
        (cd "$root" && timeout 300 "$@")
    else
        timeout 300 runuser -u "$user" -- env -C "$root" \
            COMPOSE_PROJECT_NAME="$COMPOSE_PROJECT_NAME" PULSE_IMAGE="$PULSE_IMAGE" \
            PULSE_HOST_DIR="$PULSE_HOST_DIR" PULSE_INTERVAL_MS="$PULSE_INTERVAL_MS" \
            HOME="$tmp/home" "$@"
    fi
}

# recipe_as WHO: the three commands on a fresh host dir, checked.
recipe_as() {
    local who=$1 n t0
    project=pulse-fresh-$$-$who
    export COMPOSE_PROJECT_NAME=$project PULSE_IMAGE=$project:latest
    export PULSE_HOST_DIR=$tmp/$who PULSE_INTERVAL_MS=500
    log=$PULSE_HOST_DIR/log/cluster.log
    mkdir -m 1777 "$PULSE_HOST_DIR"
    chmod 1777 "$PULSE_HOST_DIR"
    ! docker image inspect "$PULSE_IMAGE" >/dev/null 2>&1 || fail "image $PULSE_IMAGE exists before the test"

    t0=$(now_ms)
    as_user "${compose_cmd[@]}" up -d >"$tmp/compose.log" 2>&1 || fail "$who: up -d"
    wait_for 30000 "$who: after 'up -d' one node lists itself true" converged 1
    pass "$who: '${compose_cmd[*]} up -d' built the image; ${names[0]} lists itself true ($(($(now_ms) - t0)) ms)"

    for n in 5 11; do
        t0=$(now_ms)
        if ((n == 5)); then
            as_user "${compose_cmd[@]}" scale node=5 >"$tmp/compose.log" 2>&1 || fail "$who: scale node=5"
        else
            as_user "${compose_cmd[@]}" up -d --scale node=11 >"$tmp/compose.log" 2>&1 ||
                fail "$who: up -d --scale node=11"
        fi
        wait_for 60000 "$who: $n nodes all list all $n true" converged "$n"
        pass "$who: $n nodes, every latest line lists all $n true ($(($(now_ms) - t0)) ms)"
    done

    local listed
    listed=$(as_user ls "$PULSE_HOST_DIR/sync_dir") || fail "$who cannot ls the registry"
    [[ $(wc -l <<<"$listed") -eq 11 ]] || fail "$who: ls sync_dir shows $(wc -l <<<"$listed") entries: $listed"
    as_user grep -c . "$log" >/dev/null || fail "$who cannot read $log"
    pass "$who: ls sync_dir shows the 11 nodes, the log is readable"

    remove_project
    project=
}

recipe_as "$(id -un)"

# A host where a node run on the host left sync_dir/ and log/ behind, owned
# by this user with the usual 0755/0644: the containers' uid cannot write
# there, and ./run.sh cluster opens them (1777, as /tmp) and starts.
project=pulse-fresh-$$-left
export COMPOSE_PROJECT_NAME=$project PULSE_IMAGE=$project:latest
export PULSE_HOST_DIR=$tmp/left PULSE_INTERVAL_MS=500
log=$PULSE_HOST_DIR/log/cluster.log
mkdir -m 1777 "$PULSE_HOST_DIR"
chmod 1777 "$PULSE_HOST_DIR"
mkdir -m 0755 "$PULSE_HOST_DIR/sync_dir" "$PULSE_HOST_DIR/log"
echo "00:00:00.000 [info] a line from a node run on the host" >"$log"
chmod 0644 "$log"
timeout 300 "$root/run.sh" cluster 3 -d >"$tmp/compose.log" 2>&1 || fail "./run.sh cluster 3 -d: $(cat "$tmp/compose.log")"
grep -q "opening $PULSE_HOST_DIR/sync_dir" "$tmp/compose.log" || fail "run.sh did not say it opened sync_dir: $(cat "$tmp/compose.log")"
wait_for 60000 "3 nodes in dirs a host node left, all list all 3 true" converged 3
pass "dirs left by a host node: ./run.sh cluster opened them, 3 nodes list all 3 true"
remove_project
project=
if ((EUID == 0)); then
    made_user=pulse-fresh-$$
    made_user=${made_user:0:31}
    useradd --no-create-home --shell /usr/sbin/nologin --groups docker "$made_user" ||
        fail "useradd $made_user"
    user=$made_user
    recipe_as user
elif id -nG | tr ' ' '\n' | grep -qx docker; then
    pass "(this already ran as the non-root user $(id -un), in the docker group)"
else
    skip "not root and not in the docker group: the non-root run needs one or the other"
fi

printf '%d passed, 0 failed\n' "$passed"
