# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # self, project and log come from the test; waited, names are read there
# Shared by the shell tests beside it (sourced, not run): loud skips, the
# compose command, polling with a deadline, reading a compose cluster's
# state from its shared log.
#
# The sourcing test sets: self (its path, for messages), project (its own
# compose project), log (the shared log file), and defines diagnose (what to
# print when a check fails).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

skip() {
    printf '\n*** SKIPPED (%s): %s ***\n\n' "$1" "$self"
    if [[ ${PULSE_REQUIRE_EXTERNAL:-0} == 1 ]]; then
        echo "PULSE_REQUIRE_EXTERNAL=1: a skip is a failure" >&2
        exit 1
    fi
    exit 0
}

# need_docker: a Docker engine and a compose (v2 when present, else
# Debian's v1, the same choice as run.sh) in compose_cmd, or a loud skip.
need_docker() {
    command -v docker >/dev/null || skip "no docker engine"
    timeout 20 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || skip "no docker engine"
    if docker compose version >/dev/null 2>&1; then
        compose_cmd=(docker compose)
    elif command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; then
        compose_cmd=(docker-compose)
    else
        skip "no docker compose"
    fi
}

passed=0
pass() {
    passed=$((passed + 1))
    printf 'ok %d - %s\n' "$passed" "$*"
}

fail() {
    printf 'FAIL - %s\n' "$*"
    diagnose || true
    printf '%d passed, 1 failed\n' "$passed"
    exit 1
}

now_ms() { date +%s%3N; }

# wait_for MS WHAT CMD...: polls CMD until it succeeds; fails after MS.
waited=0
wait_for() {
    local limit=$1 what=$2 start
    shift 2
    start=$(now_ms)
    until "$@"; do
        (($(now_ms) - start < limit)) || fail "$what (not within $limit ms)"
        sleep 0.1
    done
    waited=$(($(now_ms) - start))
}

running_ids() {
    docker ps -q --no-trunc --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=node" | LC_ALL=C sort
}

# healthy_all: every running container of the cluster passes its health check.
healthy_all() {
    local id
    for id in $(running_ids); do
        [[ $(docker inspect -f '{{.State.Health.Status}}' "$id") == healthy ]] || return 1
    done
}

# The last status line of each node in the shared log, as
# "NAME<TAB>k=v k=v ...", keys unquoted, in the line's own order.
latest_lines() {
    awk '
        match($0, /^[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]+ \[(INFO|info)\] [^ \[]+\[/) {
            n = split(substr($0, 1, RLENGTH - 1), head, " ")
            body = substr($0, RLENGTH + 1)
            sub(/\]$/, "", body)
            last[head[n]] = body
        }
        END {
            for (name in last) {
                out = ""
                k = split(last[name], entries, ", ")
                for (i = 1; i <= k; i++) {
                    e = entries[i]
                    gsub(/"/, "", e)
                    sub(/: /, "=", e)
                    out = out (i > 1 ? " " : "") e
                }
                printf "%s\t%s\n", name, out
            }
        }' "$log" 2>/dev/null
}

# refresh_latest: latest[NAME] is the last status line of NAME as
# "k=v k=v ...", sorted by key.
declare -A latest=()
refresh_latest() {
    local n entries
    latest=()
    while IFS=$'\t' read -r n entries; do
        latest[$n]=$(tr ' ' '\n' <<<"$entries" | LC_ALL=C sort | paste -sd ' ')
    done < <(latest_lines)
}

# learn_names: names holds the node name of each running container (from the
# last status line in its own output: a restarted container's output holds
# its former node's lines too), name_of[ID] each one's.
declare -A name_of=()
names=()
name_in_output() {
    docker logs "$1" 2>&1 |
        sed -nE 's/^[0-9:.]+ \[(INFO|info)\] ([^ []+)\[.*/\2/p' | tail -n 1
}
learn_names() {
    local id n
    names=()
    for id in $(running_ids); do
        n=${name_of[$id]:-}
        if [[ -z $n ]]; then
            n=$(name_in_output "$id") || true
            [[ -n $n ]] || return 1
            name_of[$id]=$n
        fi
        names+=("$n")
    done
}

# converged N: N containers run, and the latest line of each lists exactly
# those N nodes, all true (in any order).
converged() {
    local n want
    [[ $(running_ids | wc -l) -eq $1 ]] || return 1
    learn_names || return 1
    refresh_latest
    want=$(printf '%s=true\n' "${names[@]}" | LC_ALL=C sort | paste -sd ' ')
    for n in "${names[@]}"; do [[ ${latest[$n]:-} == "$want" ]] || return 1; done
}

# The project's containers and the last lines of the shared log.
diagnose_cluster() {
    echo "--- containers of $project"
    docker ps -a --filter "label=com.docker.compose.project=$project" \
        --format '{{.ID}} {{.Names}} {{.Status}}' || true
    echo "--- latest status line per node"
    latest_lines || true
    echo "--- last 30 lines of $log"
    tail -n 30 "$log" 2>&1 || true
    local id
    for id in $(docker ps -aq --filter "label=com.docker.compose.project=$project" | head -n 3); do
        echo "--- docker logs --tail 5 $id"
        docker logs --tail 5 "$id" 2>&1 || true
    done
}

# remove_project: containers, network and image of $project; Docker 20.10
# may refuse to remove a network whose endpoints it is still releasing, so
# ask again until it is gone (at most ~10 s).
remove_project() {
    "${compose_cmd[@]}" -p "$project" -f "$root/docker-compose.yml" \
        down --volumes --remove-orphans --rmi all --timeout 5 >/dev/null 2>&1 || true
    if [[ -n ${PULSE_IMAGE:-} ]]; then docker rmi -f "$PULSE_IMAGE" >/dev/null 2>&1 || true; fi
    local tries nets
    for ((tries = 0; tries < 20; tries++)); do
        nets=$(docker network ls -q --filter "label=com.docker.compose.project=$project")
        [[ -n $nets ]] || break
        # shellcheck disable=SC2086 # one network id per word
        docker network rm $nets >/dev/null 2>&1 || sleep 0.5
    done
}
