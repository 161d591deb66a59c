#!/usr/bin/env bash
# Runs pulse: one node on this host, or a cluster of containers.
#
#   ./run.sh [pulse flags...]   build if needed, run one node here (foreground);
#                               also ./run.sh run|health [flags...]
#   ./run.sh build              build the static binary the image needs
#                               (cargo build --release --target x86_64-unknown-linux-musl)
#   ./run.sh cluster N [-d]     build the static binary and the image, start N
#                               containers, follow the shared log (-d: don't);
#                               without a Docker engine: N nodes on 127.0.0.2..
#   ./run.sh stack N [-d]       the same image as a Docker Swarm stack of N
#                               tasks (deploy/docker-stack.yml): peers from
#                               Swarm's DNS, no shared dir; makes this engine
#                               a single-node swarm when it is not in one
#   ./run.sh scale N            grow or shrink the running cluster (or stack)
#   ./run.sh status             ping every registered node once, print a table
#                               (no cluster running: the nodes on this host)
#   ./run.sh logs               follow the shared log (stack: service logs)
#   ./run.sh watch [FLAGS]      who reaches whom, redrawn every interval, from
#                               the shared log (pulse watch: --once, --json)
#   ./run.sh down               stop the cluster or the stack (every node
#                               leaves gracefully)
#   ./run.sh help               this text; `./run.sh --help` is pulse's own
#
# scale, status, logs and down say which cluster they act on: the compose
# project, or the stack when it is pulse's (its service carries the label
# com.pulse.stack=1; another program's stack of that name is left alone).
# With both running they ask which: --compose or --stack.
#
# Breaking the container cluster on purpose; NODE is a container's index
# (3, node_3 or node-3) or its node name (md5@address):
#   ./run.sh kill NODE          SIGKILL: dies at once, without leaving
#   ./run.sh stop NODE          SIGTERM: leaves gracefully and exits 0
#   ./run.sh pause NODE         freeze every process of it (cgroup freezer)
#   ./run.sh unpause NODE       thaw it
#   ./run.sh cut NODE           take it off the cluster network (a partition)
#   ./run.sh heal NODE          put it back on the network, same address
#   ./run.sh restart NODE       SIGTERM, then start it again (a new node name)
#
# Environment: PULSE_HOST_DIR (host dir mounted as the containers' /tmp,
# holding sync_dir/ and log/; default /tmp as in the recipe), PULSE_COOKIE
# (default "pulse" for the cluster commands), PULSE_INTERVAL_MS,
# COMPOSE_PROJECT_NAME (default "pulse", from .env, as for docker-compose),
# PULSE_STACK (the stack's name, default "pulse"), CARGO_TARGET_DIR (where
# the host commands look for what cargo built, as cargo itself does).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
musl_target=x86_64-unknown-linux-musl
# Where cargo puts what it builds, as cargo itself decides it.
target_dir=${CARGO_TARGET_DIR:-$here/target}
host_dir=${PULSE_HOST_DIR:-/tmp}
sync_dir=$host_dir/sync_dir
log_file=$host_dir/log/cluster.log
# .env gives docker-compose the same default, so the recipe's bare
# `docker-compose up -d` and run.sh drive the same cluster.
project=${COMPOSE_PROJECT_NAME:-pulse}
stack=${PULSE_STACK:-pulse}
container_uid=${PULSE_UID:-65532}

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

# built_from_sources BIN: BIN exists and no source is newer than it.
built_from_sources() {
    [[ -x $1 ]] &&
        [[ -z $(find "$here/src" "$here/Cargo.toml" "$here/Cargo.lock" -newer "$1" -print -quit 2>/dev/null) ]]
}

host_binary() {
    # The static binary of './run.sh build' runs on any Linux of its
    # architecture: when it is as new as the sources and runs here, it
    # spares a second build of the same code.
    local musl=$target_dir/$musl_target/release/pulse bin=$target_dir/release/pulse
    if built_from_sources "$musl" && "$musl" --version >/dev/null 2>&1; then
        printf '%s\n' "$musl"
        return
    fi
    # cargo itself decides what needs rebuilding; a build of its own takes
    # half a minute the first time, so it is said before, not after.
    built_from_sources "$bin" ||
        say "building pulse for this host first (cargo build --release; about 30 s the first time)"
    cargo build --release --quiet --manifest-path "$here/Cargo.toml" >&2
    printf '%s\n' "$bin"
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

# The containers mount the host dir as their /tmp and create sync_dir/ and
# log/ in it themselves, as uid 65532. That needs a host dir they may write
# (/tmp always is) and, where the two dirs exist already (say from a node
# run on the host), dirs and a log file that uid may write too. Dirs this
# user owns are opened as /tmp is (mode 1777); anything else gets a clear
# error instead of a cluster whose every container exits 1.
prepare_dirs() {
    export PULSE_HOST_DIR=$host_dir
    if [[ ! -d $host_dir ]]; then
        mkdir -p "$host_dir"
        chmod 1777 "$host_dir"
    fi
    local p
    for p in "$host_dir" "$sync_dir" "$(dirname "$log_file")"; do
        [[ -d $p ]] || continue
        shared_dir "$p" || die "$p belongs to uid $(stat -c %u "$p") with mode $(stat -c %a "$p"): the nodes (uid $container_uid) cannot write there; remove it or 'chmod 1777 $p'"
    done
    if [[ -e $log_file && $(stat -c %u "$log_file") != "$container_uid" ]]; then
        if [[ -O $log_file ]]; then
            chmod a+rw "$log_file"
        elif [[ $(stat -c %a "$log_file") != *6 ]]; then
            die "$log_file belongs to uid $(stat -c %u "$log_file"): the nodes (uid $container_uid) cannot append to it; remove it"
        fi
    fi
}

# shared_dir DIR: the containers' uid may write DIR (opening it as /tmp is
# when this user owns it).
shared_dir() {
    local mode
    mode=$(stat -c %a "$1")
    [[ $(stat -c %u "$1") == "$container_uid" ]] && return 0
    # Writable by others: the last octal digit has the write bit.
    (((8#${mode: -1} & 2) != 0)) && return 0
    if [[ -O $1 ]]; then
        say "opening $1 to the containers' uid $container_uid (chmod 1777, as /tmp)"
        chmod 1777 "$1"
        return 0
    fi
    return 1
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

# --- Docker Swarm -------------------------------------------------------------

# deploy/docker-stack.yml sets this label on the node service. Another
# program's stack may be called "pulse" too: run.sh acts only on a stack
# whose service carries the label.
stack_label=com.pulse.stack

# A stack of that name is deployed, ours or not.
stack_exists() {
    docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qxF "$stack"
}

# The stack is pulse's: its node service is in it and carries our label.
stack_ours() {
    [[ $(docker service inspect --format \
        "{{index .Spec.Labels \"com.docker.stack.namespace\"}} {{index .Spec.Labels \"$stack_label\"}}" \
        "${stack}_node" 2>/dev/null) == "$stack 1" ]]
}

stack_tasks() {
    docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_node"
}

stack_containers() {
    docker ps -q --filter "label=com.docker.stack.namespace=$stack"
}

# The cookie goes to the tasks as a Docker secret, created once per stack.
stack_secret() {
    export PULSE_SECRET=${PULSE_SECRET:-${stack}_cookie}
    if ! docker secret inspect "$PULSE_SECRET" >/dev/null 2>&1; then
        printf '%s' "$PULSE_COOKIE" | docker secret create "$PULSE_SECRET" - >/dev/null
    fi
}

cmd_stack() {
    local n=${1:-} follow=yes state
    positive "$n"
    case ${2:-} in
    "") ;;
    -d | --detach) follow=no ;;
    *) die "stack: unknown option '$2'" ;;
    esac
    docker_answers || die "no Docker engine answers; 'stack' needs one"
    if stack_exists && ! stack_ours; then
        die "a stack '$stack' is deployed that is not pulse's (its service ${stack}_node has no label $stack_label=1): deploying would change it; PULSE_STACK=NAME deploys pulse under another name (a pulse stack from before that label: 'docker stack rm $stack' first)"
    fi
    state=$(docker info --format '{{.Swarm.LocalNodeState}}')
    if [[ $state == inactive ]]; then
        say "this engine is in no swarm: making it a single-node swarm ('docker swarm leave --force' undoes it)"
        docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    fi
    build_image
    stack_secret
    # The image is used as built here, never looked up in a registry.
    docker stack deploy --resolve-image never -c "$here/deploy/docker-stack.yml" "$stack" >&2
    docker service scale --detach "${stack}_node=$n" >&2
    if [[ $follow == yes ]]; then
        say "following the service's logs (Ctrl-C stops following; './run.sh down' removes the stack)"
        exec docker service logs --follow --tail 20 "${stack}_node"
    fi
}

stack_down() {
    docker stack rm "$stack"
    local tries
    for ((tries = 0; tries < 60; tries++)); do
        [[ -n $(stack_containers) ]] || break
        sleep 0.5
    done
    docker secret rm "${PULSE_SECRET:-${stack}_cookie}" >/dev/null 2>&1 || true
    say "stack $stack removed; the engine stays in its swarm ('docker swarm leave --force' leaves it)"
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
    cluster_flag "$@"
    local n=${rest[0]:-}
    positive "$n"
    [[ ${#rest[@]} -le 1 ]] || die "scale: unknown option '${rest[1]}'"
    docker_answers || die "no Docker engine answers; 'scale' needs the container cluster"
    pick_cluster "scale $n" "$flag"
    case $target in
    none) die "$(nothing_of_ours): nothing to scale; './run.sh cluster $n' or './run.sh stack $n' starts one" ;;
    stack)
        say "scaling the stack '$stack' (service ${stack}_node) to $n tasks"
        docker service scale --detach "${stack}_node=$n" >&2
        return
        ;;
    esac
    say "scaling the compose project '$project' to $n nodes"
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

# Whether the compose project has anything for 'down' to remove: compose
# itself would only complain that its network is not found.
compose_exists() {
    [[ -n $(docker ps -aq --filter "label=com.docker.compose.project=$project") ||
        -n $(docker network ls -q --filter "label=com.docker.compose.project=$project") ]]
}

# cluster_flag ARGS...: takes --compose or --stack out of ARGS into `flag`;
# the other arguments are left in `rest`.
cluster_flag() {
    flag=
    rest=()
    local a
    for a in "$@"; do
        case $a in
        --compose | --stack)
            if [[ -n $flag && $flag != "$a" ]]; then
                say "--compose and --stack: one or the other"
                exit 2
            fi
            flag=$a
            ;;
        *) rest+=("$a") ;;
        esac
    done
}

# pick_cluster COMMAND FLAG: sets `target` to compose or stack, the cluster
# of pulse's that COMMAND (as typed, for the hint) acts on, or to none. A
# FLAG (--compose, --stack) names one; with none and both present, this
# asks which instead of guessing. A stack of our name that is not ours is
# never picked, and said to be left alone. Needs a Docker engine.
pick_cluster() {
    local command=$1 want=$2 compose=no ours=no foreign=no
    target=none
    if compose_exists; then compose=yes; fi
    if stack_ours; then
        ours=yes
    elif stack_exists; then
        foreign=yes
    fi
    if [[ $foreign == yes ]]; then
        say "the stack '$stack' is not pulse's (its service ${stack}_node has no label $stack_label=1): leaving it alone (PULSE_STACK names pulse's stack)"
    fi
    case $want in
    --compose)
        [[ $compose == yes ]] || die "$command: the compose project '$project' has no containers or network"
        target=compose
        ;;
    --stack)
        [[ $ours == yes ]] || die "$command: no stack of pulse's is called '$stack' (PULSE_STACK names it)"
        target=stack
        ;;
    *)
        if [[ $compose == yes && $ours == yes ]]; then
            say "both the compose project '$project' and the stack '$stack' are pulse's: say which one, './run.sh $command --compose' or './run.sh $command --stack'"
            exit 2
        elif [[ $compose == yes ]]; then
            target=compose
        elif [[ $ours == yes ]]; then
            target=stack
        fi
        ;;
    esac
}

# What pick_cluster found nothing of, in words.
nothing_of_ours() {
    printf "nothing of pulse's is running (no stack of pulse's called '%s', no containers or network of the compose project '%s')" "$stack" "$project"
}

cmd_down() {
    cluster_flag "$@"
    [[ ${#rest[@]} -eq 0 ]] || die "down: unknown option '${rest[0]}'"
    docker_answers || die "no Docker engine answers; nothing to take down (local nodes stop with Ctrl-C)"
    pick_cluster down "$flag"
    case $target in
    none) say "$(nothing_of_ours)" ;;
    stack)
        say "removing the stack '$stack' (docker stack rm): every task leaves gracefully"
        stack_down
        ;;
    compose)
        say "taking down the compose project '$project': every node leaves gracefully"
        compose down --remove-orphans
        ;;
    esac
}

cmd_status() {
    cluster_flag "$@"
    # Inside a container when the cluster runs: no host build needed. Else
    # the host binary (the host also reaches container addresses directly).
    local id= where
    target=none
    if docker_answers; then
        pick_cluster status "$flag"
        case $target in
        compose)
            id=$(running_containers | awk 'NR == 1')
            where="the compose project '$project'"
            ;;
        stack)
            id=$(stack_tasks | awk 'NR == 1')
            where="the stack '$stack'"
            ;;
        none) where="no compose project '$project' or stack of pulse's runs" ;;
        esac
    elif [[ -n $flag ]]; then
        die "status $flag: no Docker engine answers"
    else
        where="no Docker engine answers"
    fi
    if [[ -n $id ]]; then
        say "status of $where, from inside its container $(docker inspect -f '{{.Name}}' "$id" | sed 's,^/,,')"
        # docker exec, not compose exec: compose picks container #1, which
        # may be the one that was stopped or killed.
        docker exec "$id" /pulse status "${rest[@]}"
    else
        if [[ $target != none ]]; then where="$where has no running container"; fi
        say "$where: pinging the nodes registered in $sync_dir from this host"
        "$(host_binary)" status --sync-dir "$sync_dir" "${rest[@]}"
    fi
}

cmd_logs() {
    cluster_flag "$@"
    [[ ${#rest[@]} -eq 0 ]] || die "logs: unknown option '${rest[0]}'"
    if docker_answers; then
        pick_cluster logs "$flag"
        case $target in
        stack)
            say "following the logs of the stack '$stack' (service ${stack}_node; Ctrl-C stops following)"
            exec docker service logs --follow --tail 20 "${stack}_node"
            ;;
        compose) say "the compose project '$project' logs to $log_file" ;;
        none) say "no compose project '$project' or stack of pulse's runs: $log_file has what nodes on this host write" ;;
        esac
    elif [[ -n $flag ]]; then
        die "logs $flag: no Docker engine answers"
    fi
    follow_log
}

# --- breaking the cluster on purpose -----------------------------------------

# The project's one network (compose's "default").
cluster_network() {
    docker network ls -q --filter "label=com.docker.compose.project=$project" | awk 'NR == 1'
}

container_ip() {
    docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}' "$1" | awk '{ print $1 }'
}

# The node name a container runs under, from its latest status line.
node_name_of() {
    docker logs --tail 20 "$1" 2>&1 |
        sed -nE 's/^[0-9:.]+ \[[A-Za-z]+\] ([^ []+@[^ []+)\[.*/\1/p' | tail -n 1
}

# find_node NODE: sets node_id and node_label for NODE, given as 3, node_3,
# a container name or a node name (md5@address).
find_node() {
    local want=${1#node[_-]} id index
    node_id=
    while read -r id index; do
        if [[ $want == "$index" || $want == "$(docker inspect -f '{{.Name}}' "$id")" ||
            $want == "/$(docker inspect -f '{{.Name}}' "$id")" ||
            ($want == *@* && $want == "$(node_name_of "$id")") ]]; then
            node_id=$id
            node_label="node_$index"
            break
        fi
    done < <(docker ps -a --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=node" \
        --format '{{.ID}} {{.Label "com.docker.compose.container-number"}}')
    [[ -n $node_id ]] || die "no container of the cluster '$project' is '$1' (see 'docker ps' or './run.sh status')"
    local name
    name=$(node_name_of "$node_id")
    if [[ -n $name ]]; then node_label="$node_label ($name)"; fi
}

cmd_chaos() {
    local verb=$1 target=${2:-} net ip old
    [[ -n $target ]] || die "$verb: which node? (an index as in node_3, or a node name)"
    docker_answers || die "no Docker engine answers; '$verb' acts on the container cluster"
    find_node "$target"
    case $verb in
    kill)
        docker kill --signal KILL "$node_id" >/dev/null
        say "killed $node_label with SIGKILL: it left no word; the others list it false at their next round and drop it after the TTL"
        ;;
    stop)
        docker stop --time 10 "$node_id" >/dev/null
        say "stopped $node_label with SIGTERM (exit code $(docker inspect -f '{{.State.ExitCode}}' "$node_id")): it left the registry; the others log that it left"
        ;;
    pause)
        docker pause "$node_id" >/dev/null
        say "paused $node_label: frozen, its pings time out, the others list it false until 'unpause'; paused longer than the TTL (5 intervals by default) it expires, and joins again on 'unpause'"
        ;;
    unpause)
        docker unpause "$node_id" >/dev/null
        say "unpaused $node_label: it runs again; the others list it true within an interval plus the timeout, or once the dial backoff (at most 16 s) of a link whose dials timed out is over"
        ;;
    cut)
        net=$(cluster_network)
        [[ -n $net ]] || die "the cluster '$project' has no network"
        docker network disconnect "$net" "$node_id"
        say "cut $node_label off the cluster network: it lists every other node false, and they list it false, until 'heal'"
        ;;
    heal)
        net=$(cluster_network)
        [[ -n $net ]] || die "the cluster '$project' has no network"
        docker network connect --alias node "$net" "$node_id"
        ip=$(container_ip "$node_id")
        say "healed $node_label: back on the cluster network at $ip; every line lists it true again within an interval plus the timeout, or once the dial backoff (at most 16 s) of a link whose dials timed out is over"
        # A node's name and listener carry its address: should another
        # container have taken the address meanwhile, this one is unreachable.
        [[ $node_label == *"@$ip)" ]] ||
            say "warning: $node_label came back at another address, $ip, where nobody reaches it; './run.sh restart $target' gives it a new name"
        ;;
    restart)
        old=$(node_name_of "$node_id")
        docker restart --time 10 "$node_id" >/dev/null
        say "restarted $node_label: it left gracefully and came back as a new node, $(new_name_of "$node_id" "$old")"
        ;;
    esac
}

# new_name_of ID OLD: the node name in the container's first line after a
# restart (it differs from OLD: the name holds the start time).
new_name_of() {
    local tries name
    for ((tries = 0; tries < 100; tries++)); do
        name=$(node_name_of "$1")
        if [[ -n $name && $name != "$2" ]]; then
            printf '%s\n' "$name"
            return 0
        fi
        sleep 0.1
    done
    printf '(no status line yet)\n'
}

cmd_build() {
    musl_binary
    local bin=$here/target/$musl_target/release/pulse
    say "built $bin ($(stat -c %s "$bin") bytes); 'docker-compose up -d' builds the image around it"
}

case ${1:-} in
cluster | stack | scale | status) cluster_cookie ;;
esac
case ${1:-} in
build) cmd_build ;;
cluster) cmd_cluster "${@:2}" ;;
stack) cmd_stack "${@:2}" ;;
scale) cmd_scale "${@:2}" ;;
down) cmd_down "${@:2}" ;;
status) cmd_status "${@:2}" ;;
logs) cmd_logs "${@:2}" ;;
kill | stop | pause | unpause | cut | heal | restart) cmd_chaos "$@" ;;
watch) exec "$(host_binary)" watch --log-file "$log_file" "${@:2}" ;;
help) usage ;;
"" | -* | run | health)
    # One node on this host, every argument passed through to pulse.
    bin=$(host_binary)
    exec "$bin" "$@"
    ;;
*)
    # A mistyped command, not a flag for pulse: say so in run.sh's terms.
    say "unknown command '$1': the commands are build, cluster, stack, scale, status, logs, watch, down, kill, stop, pause, unpause, cut, heal, restart, run, health and help ('./run.sh help' says what each does)"
    exit 2
    ;;
esac
