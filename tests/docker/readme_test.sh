#!/usr/bin/env bash
# The README's commands, taken from README.md itself and run as written, so
# the README cannot drift from what works. Each code block that follows a
# `<!-- readme-test: NAME -->` marker is run on a fresh host: no
# /tmp/sync_dir or /tmp/log, no EPMD, no image built.
#
#   compose        ./run.sh build, the recipe's docker-compose commands; then,
#                  in the dirs the containers left, the two-terminals block
#                  again as a plain user (nobody), as a user would go on
#   two-terminals  two pulse nodes by hand, then Ctrl-C
#   iex            pulse started before any EPMD, then Node.ping from iex
#   mixed          two of the recipe's Elixir nodes and two pulse nodes
#   s3             a local S3 server (scripts/local-s3.sh), its variables
#                  sourced, two pulse nodes meeting through it alone
#
# How a block's lines are run: a line starting a node (target/release/pulse,
# the recipe node's run.sh) or ending in `&` runs in the background, as in
# its own terminal; a line sourcing a file (`. FILE`) is run before every
# later line of the block, as in a terminal that sourced it; `iex ...` is fed the `iex> ` lines after it, and the line
# after each of those is the output it must print; `tail -f` is read by the
# test instead; everything else runs in the foreground and must exit 0.
#
# The README's paths are the real /tmp/sync_dir and /tmp/log: what was there
# is moved aside and put back on exit. Its EPMD is the default one, so the
# test gives this run an EPMD port of its own (ERL_EPMD_PORT; pulse, erl,
# iex and epmd all read it) and kills that EPMD after each block. The compose
# project and the image tag are this run's own too (COMPOSE_PROJECT_NAME,
# PULSE_IMAGE), removed on exit. Skips loudly without Docker or Elixir,
# unless PULSE_REQUIRE_EXTERNAL=1 makes that a failure.
#
# Env: README_TEST_ONLY=NAME runs one block.
set -euo pipefail

self=tests/docker/readme_test.sh
# shellcheck source=tests/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
for tool in elixir iex mix epmd; do
    command -v "$tool" >/dev/null || skip "no $tool"
done
[[ -x ${PULSE_GARAGE:-/opt/garage}/bin/garage ]] || command -v garage >/dev/null ||
    skip "no garage (scripts/install-deps.sh builds it)"
need_docker

readme=$root/README.md
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pulse-readme-test.XXXXXX")
project=pulse-readme-$$
log=/tmp/log/cluster.log
export COMPOSE_PROJECT_NAME=$project PULSE_IMAGE=$project:latest
ERL_EPMD_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export ERL_EPMD_PORT
block=
pids=()
outs=()
# Who runs a block's nodes, and from where: root from the clone, or a plain
# user (see as_plain_user) from a copy of the binary it can reach.
runner=()
workdir=$root
# What the block's lines so far sourced (`. FILE`), run before each line.
prelude=:

diagnose() {
    echo "--- block '$block' of $readme"
    block_lines "$block" | sed 's/^/    /'
    local i
    for i in "${!outs[@]}"; do
        echo "--- output of: ${outs[$i]#*|}"
        tail -n 15 "${outs[$i]%%|*}" 2>&1 || true
    done
    echo "--- /tmp/sync_dir"
    ls -la /tmp/sync_dir 2>&1 || true
    if [[ $block == compose ]]; then diagnose_cluster; else
        echo "--- last 20 lines of $log"
        tail -n 20 "$log" 2>&1 || true
    fi
}

# --- a fresh host, and the old one put back ------------------------------------

for p in /tmp/sync_dir /tmp/log /tmp/pulse-s3; do
    if [[ -e $p || -L $p ]]; then
        mkdir -p "$tmp/saved"
        mv "$p" "$tmp/saved/"
    fi
done

# Each node runs in a process group of its own (see background): SIGTERM to
# the group, then wait until every process of it is gone (SIGKILL after
# 10 s), so nothing writes to /tmp/sync_dir once it is removed.
stop_nodes() {
    local pid tries
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for ((tries = 0; tries < 100; tries++)); do
            kill -0 -- "-$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    pids=()
}

# Stops what a block left: its nodes, its EPMD, its dirs.
fresh_host() {
    stop_nodes
    outs=()
    epmd -kill >/dev/null 2>&1 || true
    if [[ -d /tmp/pulse-s3 ]]; then "$root/scripts/local-s3.sh" stop >/dev/null 2>&1 || true; fi
    rm -rf /tmp/sync_dir /tmp/log /tmp/pulse-s3
    prelude=:
}

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    fresh_host
    remove_project
    local p
    for p in sync_dir log pulse-s3; do
        if [[ -e $tmp/saved/$p || -L $tmp/saved/$p ]]; then mv "$tmp/saved/$p" /tmp/; fi
    done
    rm -rf "$tmp" "${plain:-}"
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- reading the README --------------------------------------------------------

# block_lines NAME: the lines of the code block after the NAME marker.
block_lines() {
    awk -v want="<!-- readme-test: $1 -->" '
        $0 == want { found = 1; next }
        found == 1 && /^```/ { found = 2; next }
        found == 2 && /^```/ { exit }
        found == 2 { print }' "$readme"
}

# --- running a block -------------------------------------------------------------

# background LINE: starts LINE (a node) as if in its own terminal.
background() {
    local line=${1%&} n=${#outs[@]}
    line=${line%% }
    (cd "$workdir" && exec setsid "${runner[@]}" bash -c "$prelude; exec $line") >"$tmp/out.$n" 2>&1 &
    pids+=("$!")
    outs+=("$tmp/out.$n|$line")
}

# node_output NAME: the output file of the background line with --name NAME
# or the recipe node NAME.
node_output() {
    local o
    for o in "${outs[@]}"; do
        [[ ${o#*|} == *" $1 "* || ${o#*|} == *"--name $1"* ]] && printf '%s\n' "${o%%|*}" && return 0
    done
    fail "no node named $1 in block '$block'"
}

# in_foreground LINE: the line must exit 0 within 15 minutes (a first
# cargo build is slow); docker-compose may be v2 here.
in_foreground() {
    local line=$1
    if [[ $line == docker-compose* && ${compose_cmd[*]} != docker-compose ]]; then
        line="${compose_cmd[*]}${line#docker-compose}"
    fi
    (cd "$root" && timeout 900 bash -c "$prelude; $line") >"$tmp/fg.out" 2>&1 ||
        fail "'$line' exited with $? in block '$block': $(tail -n 20 "$tmp/fg.out")"
}

# iex_session CMD INPUTS...: iex (CMD) reading the inputs; prints its output.
iex_session() {
    local cmd=$1
    shift
    (cd "$root" && printf '%s\n' "$@" | timeout 60 bash -c "$cmd") 2>&1 || true
}

# names_in_block: every node name the block starts, in order.
names_in_block() {
    block_lines "$block" | grep -oE '(--name |run\.sh )[^ ]+@[^ ]+' | awk '{ print $2 }'
}

# latest_status_lists NAME ALL...: the node's latest line in the shared log
# lists exactly ALL, all true.
latest_lists_all() {
    local me=$1 want got
    shift
    want=$(printf '%s=true\n' "$@" | LC_ALL=C sort | paste -sd ' ')
    got=$(latest_lines | awk -F '\t' -v me="$me" '$1 == me { print $2 }' | tr ' ' '\n' | LC_ALL=C sort | paste -sd ' ')
    [[ $got == "$want" ]]
}

all_list_all() {
    local n
    for n in "$@"; do latest_lists_all "$n" "$@" || return 1; done
}

# run_block NAME [keep-dirs]: runs the block on a fresh host, or with
# keep-dirs in the /tmp/sync_dir and /tmp/log that are there.
run_block() {
    block=$1
    local lines line iex_cmd='' inputs=() expects=() expect_next=0
    mapfile -t lines < <(block_lines "$block")
    ((${#lines[@]} > 0)) || fail "README.md has no block after <!-- readme-test: $block -->"
    if [[ ${2:-} == keep-dirs ]]; then stop_nodes; outs=(); else fresh_host; fi
    for line in "${lines[@]}"; do
        if ((expect_next)); then
            expects+=("$line")
            expect_next=0
            continue
        fi
        case $line in
        "" | "#"* | "** "* | " "*) ;; # comments and iex's further output lines
        "iex> "*)
            inputs+=("${line#iex> }")
            expect_next=1
            ;;
        "iex "*) iex_cmd=$line ;;
        "tail -f "*) ;;
        ". "*) prelude+="; ${line%% #*}" ;;
        target/release/pulse* | *recipe_node/run.sh* | *"&") background "$line" ;;
        *) in_foreground "$line" ;;
        esac
        # The recipe's promise after each compose command: everyone sees
        # everyone.
        case $line in
        *"scale node="*) converge_after "$line" "${line##*node=}" ;;
        *" up -d") converge_after "$line" 1 ;;
        esac
    done
    check_"${block//-/_}"
    fresh_host
}

# --- what each block promises ------------------------------------------------------

converge_after() {
    local t0
    t0=$(now_ms)
    wait_for 60000 "after '$1' every node lists all $2 true" converged "$2"
    pass "compose: after '$1' all $2 nodes list all $2 true ($(($(now_ms) - t0)) ms)"
}

check_compose() {
    local listed
    listed=$(ls /tmp/sync_dir) || fail "ls /tmp/sync_dir"
    [[ $(wc -l <<<"$listed") -eq 11 ]] || fail "ls /tmp/sync_dir shows: $listed"
    [[ -s $log ]] || fail "$log is empty"
    pass "compose: the host lists 11 entries in /tmp/sync_dir and reads $log"
    remove_project
    ! docker image inspect "$PULSE_IMAGE" >/dev/null 2>&1 || fail "image $PULSE_IMAGE left behind"
    # A user goes on by hand in the dirs the containers made (uid 65532).
    if ((EUID == 0)); then
        as_plain_user run_block two-terminals keep-dirs
        block=compose
        pass "compose, then two-terminals as nobody in the dirs the containers left"
    fi
}

# as_plain_user CMD...: runs CMD with the block's nodes started as nobody,
# from a copy of the release binary in a dir that user can reach (the
# clone's own path may not be). Foreground lines (the build) stay root's.
as_plain_user() {
    plain=$(mktemp -d /tmp/pulse-readme-plain.XXXXXX)
    chmod 755 "$plain"
    mkdir -p "$plain/target/release"
    # The block's own build line runs later, as root in the clone; the copy
    # is needed first.
    (cd "$root" && cargo build --release --quiet) || fail "cargo build --release"
    cp "$root/target/release/pulse" "$plain/target/release/pulse"
    chmod -R a+rX "$plain"
    runner=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    workdir=$plain
    "$@"
    runner=()
    workdir=$root
}

# prints_and_logs LINE NAME...: every NAME printed "NAME" + LINE, and the
# shared log holds it too.
prints_and_logs() {
    local line=$1 n
    shift
    for n in "$@"; do
        grep -qF "] ${n}${line}" "$(node_output "$n")" || return 1
        grep -qF "] ${n}${line}" "$log" 2>/dev/null || return 1
    done
}

# printed NAME TEXT: the node NAME printed TEXT.
printed() { grep -qF "$2" "$(node_output "$1")"; }

check_two_terminals() {
    local all rc
    mapfile -t all < <(names_in_block)
    ((${#all[@]} == 2)) || fail "two-terminals starts ${#all[@]} nodes: ${all[*]}"
    local line="[\"${all[0]}\": true, \"${all[1]}\": true]"
    wait_for 10000 "both nodes print and log ${all[0]}$line" prints_and_logs "$line" "${all[@]}"
    pass "two-terminals: both print and log ${all[0]}$line after $waited ms"
    # Ctrl-C in a1's terminal.
    kill -INT "${pids[0]}"
    timeout 5 tail --pid="${pids[0]}" -f /dev/null || fail "${all[0]} still runs 5 s after Ctrl-C"
    wait "${pids[0]}" && rc=0 || rc=$?
    ((rc == 0)) || fail "${all[0]} exited $rc after Ctrl-C"
    printed "${all[0]}" "node ${all[0]} left" || fail "${all[0]} did not log that it left"
    wait_for 5000 "${all[1]} logs that ${all[0]} left" printed "${all[1]}" "node ${all[0]} left"
    pass "two-terminals: Ctrl-C: ${all[0]} left, exited 0, ${all[1]} logged it"
}

check_iex() {
    if ((${#inputs[@]} == 0)) || [[ -z $iex_cmd ]]; then fail "the iex block has no iex session"; fi
    local out sessions=0 expect=${expects[0]} t0
    t0=$(now_ms)
    # The first iex starts the EPMD that pulse, started first, found missing;
    # pulse registers once it answers. A user would type the ping again.
    until out=$(iex_session "$iex_cmd" "${inputs[@]}") && [[ $out == *"$expect"* ]]; do
        sessions=$((sessions + 1))
        (($(now_ms) - t0 < 15000)) ||
            fail "iex printed no '$expect' for '${inputs[*]}' in $sessions sessions over 15 s; the last one: $out"
        sleep 0.5
    done
    pass "iex: '${inputs[*]}' printed $expect (session $((sessions + 1)), after $(($(now_ms) - t0)) ms)"
    # Every answer the block shows, in the session that got the first one.
    for expect in "${expects[@]:1}"; do
        [[ $out == *"$expect"* ]] || fail "iex printed no '$expect'; it printed: $out"
        pass "iex: printed $expect"
    done
}

check_mixed() {
    local all
    mapfile -t all < <(names_in_block)
    ((${#all[@]} == 4)) || fail "the mixed block starts ${#all[@]} nodes: ${all[*]}"
    wait_for 90000 "every node's latest line lists all four true" all_list_all "${all[@]}"
    pass "mixed: ${all[*]}: every node's latest line lists all four true ($waited ms)"
}

check_s3() {
    local all
    mapfile -t all < <(names_in_block)
    ((${#all[@]} == 2)) || fail "the s3 block starts ${#all[@]} nodes: ${all[*]}"
    wait_for 30000 "both nodes' latest lines list both true" all_list_all "${all[@]}"
    [[ ! -e /tmp/sync_dir ]] || fail "the s3 block made /tmp/sync_dir: $(ls /tmp/sync_dir)"
    pass "s3: ${all[*]} list each other true through the local S3 alone ($waited ms)"
}

for b in compose two-terminals iex mixed s3; do
    if [[ -z ${README_TEST_ONLY:-} || ${README_TEST_ONLY} == "$b" ]]; then run_block "$b"; fi
done
printf '%d passed, 0 failed\n' "$passed"
