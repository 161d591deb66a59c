#!/usr/bin/env bash
# The cluster as a Docker Swarm stack (deploy/docker-stack.yml) on a
# single-node swarm: peers from Swarm's DNS (tasks.node), no shared dir.
# Deploy 3, scale to 5 and back to 3 (the removed tasks leave), kill a task
# (it expires; Swarm's replacement joins); every node's latest line lists
# every running task, all true, after each step.
#
# The engine is left exactly as found, even on failure: our stack, secret,
# network and image are removed, and the swarm is left again when this test
# made it. The image is used by its ID with --resolve-image never, so the
# engine never asks a registry, and the tasks' outside name server is
# loopback (stack-test.override.yml), so Swarm's DNS forwards no name out. Without a Docker engine it skips loudly,
# unless PULSE_REQUIRE_EXTERNAL=1 makes that a failure.
set -euo pipefail

# shellcheck disable=SC2034 # read by lib.sh in its messages
self=tests/docker/stack_test.sh
# skip, pass, fail, wait_for, now_ms and root; the compose-specific readers
# there are replaced below by the stack's own.
# shellcheck source=tests/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
interval=${PULSE_TEST_INTERVAL_MS:-500}


command -v docker >/dev/null || skip "no docker engine"
timeout 20 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || skip "no docker engine"
swarm_before=$(docker info --format '{{.Swarm.LocalNodeState}}')
case $swarm_before in
inactive | active) ;;
*) skip "the engine's swarm is '$swarm_before'" ;;
esac

# Swarm creates this bridge on init and leaves it behind on leave.
gwbridge_before=$(docker network ls -q --filter name='^docker_gwbridge$')

stack=pulse-stack-test-$$
secret=${stack}_cookie
tag=$stack:latest
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pulse-stack-test.XXXXXX")
service=${stack}_node
we_made_the_swarm=no

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    docker stack rm "$stack" >/dev/null 2>&1 || true
    local tries
    for ((tries = 0; tries < 60; tries++)); do
        [[ -z $(docker ps -aq --filter "label=com.docker.stack.namespace=$stack") ]] && break
        sleep 0.5
    done
    docker secret rm "$secret" >/dev/null 2>&1 || true
    for ((tries = 0; tries < 20; tries++)); do
        [[ -z $(docker network ls -q --filter "label=com.docker.stack.namespace=$stack") ]] && break
        docker network rm "${stack}_cluster" >/dev/null 2>&1 || sleep 0.5
    done
    if [[ $we_made_the_swarm == yes ]]; then
        docker swarm leave --force >/dev/null 2>&1 || true
        if [[ -z $gwbridge_before ]]; then
            for ((tries = 0; tries < 20; tries++)); do
                [[ -z $(docker network ls -q --filter name='^docker_gwbridge$') ]] && break
                docker network rm docker_gwbridge >/dev/null 2>&1 || sleep 0.5
            done
        fi
    fi
    docker rmi -f "$tag" >/dev/null 2>&1 || true
    local after gw
    after=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo unknown)
    gw=$(docker network ls -q --filter name='^docker_gwbridge$')
    if [[ $after != "$swarm_before" || -n $gw && -z $gwbridge_before ]]; then
        echo "WARNING: the engine is not as found: swarm '$swarm_before' -> '$after', docker_gwbridge '${gwbridge_before:-none}' -> '${gw:-none}'" >&2
        [[ $rc != 0 ]] || rc=1
    fi
    rm -rf "$tmp"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM


diagnose() {
    echo "--- tasks"
    docker service ps --no-trunc "$service" 2>&1 | head -n 30 || true
    local id
    for id in $(running_ids); do
        echo "--- last 8 lines of $id (${name_of[$id]:-?})"
        docker logs "$id" 2>&1 | tail -n 8 || true
    done
}




running_ids() {
    docker ps -q --no-trunc --filter "label=com.docker.stack.namespace=$stack" \
        --filter status=running | LC_ALL=C sort
}

# A task's node name, from its "listening on" line on stderr (learn_names
# in lib.sh asks this).
name_in_output() {
    docker logs "$1" 2>&1 |
        sed -nE 's/^[0-9:.]+ \[(info|INFO)\] node ([^ ]+) listening on .*/\2/p' | head -n 1
}

# The last status line of a container, as sorted "name=bool" words.
latest_of() {
    docker logs "$1" 2>&1 |
        grep -E "^[0-9:.]+ \[info\] ${2//./\\.}\[" | tail -n 1 |
        sed -E 's/^[^[]+\[info\] [^[]+\[//; s/\]$//; s/"//g; s/: /=/g; s/, /\n/g' |
        LC_ALL=C sort | paste -sd ' '
}

# converged N: N tasks run, and each one's latest line lists exactly those
# N nodes, all true.
converged() {
    local want id
    [[ $(running_ids | wc -l) -eq $1 ]] || return 1
    learn_names || return 1
    want=$(printf '%s=true\n' "${names[@]}" | LC_ALL=C sort | paste -sd ' ')
    for id in $(running_ids); do
        [[ $(latest_of "$id" "${name_of[$id]}") == "$want" ]] || return 1
    done
}

# --- build, swarm, secret, deploy -------------------------------------------

cargo build --release --quiet --target x86_64-unknown-linux-musl \
    --manifest-path "$root/Cargo.toml" || fail "cargo build --target x86_64-unknown-linux-musl"
docker build -q -t "$tag" "$root" >"$tmp/build.log" 2>&1 || {
    cat "$tmp/build.log"
    fail "docker build"
}
image_id=$(docker image inspect -f '{{.Id}}' "$tag")

if [[ $swarm_before == inactive ]]; then
    we_made_the_swarm=yes
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init"
fi
printf 'cookie-%s' "$$" | docker secret create "$secret" - >/dev/null
export PULSE_IMAGE=$image_id PULSE_SECRET=$secret PULSE_INTERVAL_MS=$interval
export PULSE_HEALTH_INTERVAL=1s
docker stack deploy --resolve-image never -c "$root/deploy/docker-stack.yml" \
    -c "$root/tests/docker/stack-test.override.yml" "$stack" \
    >"$tmp/deploy.log" 2>&1 || fail "stack deploy: $(cat "$tmp/deploy.log")"
# Before any task runs a lookup: its outside name server is loopback.
no_outside_dns() {
    local id
    for id in $(running_ids); do
        [[ $(docker inspect -f '{{json .HostConfig.Dns}}' "$id") == '["127.0.0.1"]' ]] || return 1
    done
    [[ -n $(running_ids) ]]
}

wait_for 60000 "tasks whose outside name server is loopback" no_outside_dns
t0=$(now_ms)
wait_for 90000 "3 tasks all see all 3 true" converged 3
pass "deploy 3: every latest line lists all 3 true ($(($(now_ms) - t0)) ms)"

wait_for 30000 "every task healthy" healthy_all
pass "every task reports healthy"

config=$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}} {{json .HostConfig.CapDrop}} {{.Config.User}}' "$(running_ids | head -n 1)")
[[ $config == 'true ["ALL"] 65532:65532' || $config == 'true ["ALL"] ' ]] ||
    fail "task config: read-only, cap_drop, user: $config"
pass "tasks run read-only, with every capability dropped, not as root"

status_out=$(PULSE_STACK=$stack COMPOSE_PROJECT_NAME=$stack-none "$root/run.sh" status 2>&1) ||
    fail "run.sh status: $status_out"
alive=$(grep -c ' true ' <<<"$status_out" || true)
((alive == 3)) || fail "run.sh status shows $alive alive, not 3: $status_out"
pass "run.sh status inside a task: 3 alive"

# --- scale to 5, back to 3 --------------------------------------------------

docker service scale --detach "$service=5" >/dev/null
t0=$(now_ms)
wait_for 60000 "5 tasks all see all 5 true" converged 5
pass "scale to 5: all 5 true everywhere ($(($(now_ms) - t0)) ms)"

mapfile -t before < <(running_ids)
docker service scale --detach "$service=3" >/dev/null
t0=$(now_ms)
wait_for 60000 "3 remaining tasks all see exactly themselves" converged 3
pass "scale to 3: the remaining 3 list exactly themselves ($(($(now_ms) - t0)) ms)"
mapfile -t after < <(running_ids)
removed=()
for id in "${before[@]}"; do
    [[ " ${after[*]} " == *" $id "* ]] || removed+=("${name_of[$id]}")
done
((${#removed[@]} == 2)) || fail "${#removed[@]} tasks went, not 2"
for id in "${after[@]}"; do
    log=$(docker logs "$id" 2>&1)
    for n in "${removed[@]}"; do
        grep -qF "node $n left" <<<"$log" || fail "${name_of[$id]} has no 'node $n left'"
        if grep -qF "node $n expired" <<<"$log"; then fail "${name_of[$id]} expired $n"; fi
    done
done
pass "the 2 removed tasks left: every remaining node logged 'left', none 'expired'"

# --- kill a task: it expires; Swarm's replacement joins ---------------------

victim_id=${after[0]}
victim=${name_of[$victim_id]}
docker kill "$victim_id" >/dev/null
replaced() {
    converged 3 && [[ " ${names[*]} " != *" $victim "* ]]
}
t0=$(now_ms)
wait_for 90000 "the killed task replaced and all 3 true" replaced
# Every survivor says so; its log may reach the engine a little after the
# line that showed convergence.
survivors_logged_expiry() {
    local id
    for id in "${after[@]:1}"; do
        docker logs "$id" 2>&1 | grep -qF "node $victim expired" || return 1
    done
}
wait_for 10000 "every survivor logs 'node $victim expired'" survivors_logged_expiry
pass "docker kill: $victim expired, its replacement joined, all 3 true ($(($(now_ms) - t0)) ms)"

printf '%d passed, 0 failed\n' "$passed"
