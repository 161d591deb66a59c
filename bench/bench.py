#!/usr/bin/env python3
"""Benchmark for pulse: what a node costs and how fast the cluster converges,
side by side with the recipe's Elixir node.

Run from the repository root:

    python3 bench/bench.py                       # N = 2, 11, 50, 100, 150 (+ Elixir at 2, 11)
    python3 bench/bench.py --sizes 2,11 --out /tmp/bench.json
    python3 bench/bench.py --smoke               # CI: N = 11 only, short windows, < 1 min

It builds the static musl binary (`cargo build --release --target
x86_64-unknown-linux-musl`, the one the image ships; the glibc release build
when the musl target is missing), starts real nodes on their own loopback addresses
(127.0.0.2, 127.0.0.3, ...), prints a table with each figure next to its
target, and writes every figure to bench/results.json (or --out).

Exit status: 0 when every measurement could be taken, whatever the figures;
1 when the benchmark itself broke (a node never printed a status line, the
cluster never converged, a node was never detected down, ...); 2 for bad
usage. Missed targets never change the exit status.

Only the Python 3 standard library is used. All traffic stays on
127.0.0.0/8. Every process started here runs in its own session and is
killed with its process group on exit, Ctrl-C or failure.
"""

import argparse
import json
import math
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "recipe_node"
MUSL = "x86_64-unknown-linux-musl"
COOKIE = "pulse-bench-cookie"
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

# The console line of both pulse and the Elixir recipe:
# "23:50:09.641 [INFO] message" / "08:27:40.557 [info] message".
LINE_RE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \[(\w+)\] (.*)$")


class BenchError(Exception):
    """The benchmark itself broke (not a missed target)."""


def now():
    return time.monotonic()


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes: every child in its own session, killed with its group at the end.


class Procs:
    def __init__(self):
        self.lock = threading.Lock()
        self.live = []  # Popen objects not yet known to be reaped

    def spawn(self, argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        with self.lock:
            p = subprocess.Popen(argv, start_new_session=True, **kw)
            self.live.append(p)
        return p

    def kill_group(self, p, sig=signal.SIGKILL):
        # Only while the leader is unreaped: its PID (and so the group ID)
        # cannot have been reused.
        if p.returncode is None:
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def cleanup(self):
        with self.lock:
            procs = list(self.live)
            self.live.clear()
        for p in procs:
            self.kill_group(p)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdout, p.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass


PROCS = Procs()


# --------------------------------------------------------------------------
# Nodes and the reader thread that timestamps their stdout lines.


def keyword_key(name):
    """How a node name appears as a key in a status line (Elixir's inspect)."""
    if re.fullmatch(r"[a-z_][A-Za-z0-9_@]*", name):
        return name
    return f'"{name}"'


def entries(msg):
    """The {key: value} of a status line's message."""
    body = msg[msg.index("[") + 1 : -1]
    if not body:
        return {}
    out = {}
    for part in body.split(", "):
        k, _, v = part.rpartition(": ")
        out[k] = v
    return out


class Node:
    def __init__(self, name, proc, t_exec):
        self.name = name
        self.proc = proc
        self.t_exec = t_exec
        self.first_status = None
        self.history = deque(maxlen=200)  # (t, message) of status lines
        self.status_times = []  # t of every status line
        self.other = deque(maxlen=200)  # (t, message) of other lines
        self.seq = 0
        self.buf = b""
        self.eof = None
        self.exit_time = None

    def is_status(self, msg):
        return msg.startswith(self.name + "[") and msg.endswith("]")


class Reader:
    """One thread reads every node's stdout and timestamps each line when it
    arrives (monotonic clock)."""

    def __init__(self):
        self.sel = selectors.EpollSelector()
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self.run, name="reader", daemon=True)
        self.thread.start()

    def add(self, node):
        fd = node.proc.stdout.fileno()
        os.set_blocking(fd, False)
        with self.cond:
            self.sel.register(fd, selectors.EVENT_READ, node)

    def run(self):
        while not self.stop:
            try:
                events = self.sel.select(0.2)
            except (OSError, ValueError):
                if self.stop:
                    return
                time.sleep(0.01)
                continue
            t = now()
            for key, _ in events:
                node = key.data
                with self.cond:
                    # The fd may have been unregistered (and its number reused)
                    # since select returned.
                    current = self.sel.get_map().get(key.fd)
                    if current is None or current.data is not node:
                        continue
                    try:
                        data = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        try:
                            self.sel.unregister(key.fd)
                        except (KeyError, ValueError):
                            pass
                        node.eof = t
                        self.cond.notify_all()
                        continue
                    self.feed(node, data, t)

    def feed(self, node, data, t):
        buf = node.buf + data
        *lines, node.buf = buf.split(b"\n")
        got = False
        for raw in lines:
            m = LINE_RE.match(raw.decode("utf-8", "replace"))
            if not m:
                node.other.append((t, raw.decode("utf-8", "replace")))
                continue
            msg = m.group(2)
            if node.is_status(msg):
                node.history.append((t, msg))
                node.status_times.append(t)
                node.seq += 1
                if node.first_status is None:
                    node.first_status = t
                got = True
            else:
                node.other.append((t, msg))
        if got:
            self.cond.notify_all()

    def remove(self, node):
        """Stops reading a node's stdout and closes it (before the fd number
        can be reused by a new pipe)."""
        with self.cond:
            try:
                self.sel.unregister(node.proc.stdout.fileno())
            except (KeyError, ValueError):
                pass
            node.proc.stdout.close()

    def close(self):
        self.stop = True
        self.thread.join(timeout=2)
        self.sel.close()


class Pred:
    """A predicate on status messages, cached per node and line."""

    def __init__(self, fn, what):
        self.fn = fn
        self.what = what
        self.cache = {}

    def latest(self, node, since):
        if not node.history:
            return False
        t, msg = node.history[-1]
        if t <= since:
            return False
        hit = self.cache.get(node.name)
        if hit and hit[0] == node.seq:
            return hit[1]
        ok = self.fn(msg)
        self.cache[node.name] = (node.seq, ok)
        return ok


def lists(name, value):
    pat = re.compile(r"(?:\[|, )" + re.escape(keyword_key(name)) + r": " + value + r"(?=,|\])")
    return Pred(lambda m: pat.search(m) is not None, f"lists {name} {value}")


def absent(name):
    pat = re.compile(r"(?:\[|, )" + re.escape(keyword_key(name)) + r": ")
    return Pred(lambda m: pat.search(m) is None, f"has no entry for {name}")


def present(name):
    pat = re.compile(r"(?:\[|, )" + re.escape(keyword_key(name)) + r": ")
    return Pred(lambda m: pat.search(m) is not None, f"lists {name}")


def all_true(names):
    keys = {keyword_key(n) for n in names}

    def fn(msg):
        e = entries(msg)
        return e.keys() == keys and all(v == "true" for v in e.values())

    return Pred(fn, f"lists exactly the {len(keys)} nodes, all true")


# --------------------------------------------------------------------------
# /proc readings


def proc_children():
    """ppid -> [pid] for every process."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        ppid = int(s[s.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid, kids):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def stat_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def schedstat_ns(pid):
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_field(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v[:8]) - idle


def system_threads():
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------
# Runtimes: how to start a node of each kind.


class PulseRuntime:
    label = "pulse"
    start_timeout = 10.0
    removes_record_on_leave = True
    expires = True

    def __init__(self, binary, interval_ms):
        self.binary = binary
        self.interval_ms = interval_ms

    def name(self, i):
        return f"p{i}@127.0.0.{i + 1}"

    def setup(self, run_dir):
        pass

    def teardown(self):
        pass

    def spawn(self, name, sync_dir, log_file, stderr):
        argv = [
            str(self.binary), "--name", name, "--cookie", COOKIE,
            "--sync-dir", str(sync_dir), "--log-file", str(log_file),
            "--interval", str(self.interval_ms),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        return PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)

    def register_hung(self, name, port):
        return None


class ElixirRuntime:
    label = "elixir"
    start_timeout = 60.0
    removes_record_on_leave = False  # the recipe never removes its file
    expires = False  # ... nor anyone else's

    def __init__(self, interval_ms):
        self.interval_ms = interval_ms
        self.epmd = None
        self.epmd_port = None
        self.build = None

    def name(self, i):
        # run.sh keeps the BEAM's listener and EPMD on 127.0.0.1, so every
        # Elixir node lives there.
        return f"e{i}@127.0.0.1"

    def setup(self, run_dir):
        # A private EPMD on its own port, so nothing else on the machine is
        # touched and it dies with the benchmark.
        self.epmd_port = free_port()
        self.epmd = PROCS.spawn(
            ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_connectable(("127.0.0.1", self.epmd_port), 10, "epmd")
        self.build = run_dir / "recipe_build"
        self.build.mkdir(exist_ok=True)
        log("compiling the recipe node once (mix compile)")
        r = subprocess.run(
            ["mix", "compile"], cwd=FIXTURE, env=self.env(run_dir),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=300, text=True,
        )
        if r.returncode != 0:
            raise BenchError(f"mix compile failed:\n{r.stdout[-2000:]}")

    def env(self, run_dir, sync_dir=None, log_file=None):
        env = dict(os.environ)
        env.update(
            MIX_BUILD_PATH=str(self.build),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            INTERVAL_MS=str(self.interval_ms),
        )
        if sync_dir:
            env["SYNC_DIR"] = str(sync_dir) + "/"
        if log_file:
            env["LOG_FILE"] = str(log_file)
        return env

    def teardown(self):
        if self.epmd is not None:
            PROCS.kill_group(self.epmd)
            self.epmd.wait()
            self.epmd = None

    def spawn(self, name, sync_dir, log_file, stderr):
        env = self.env(sync_dir.parent, sync_dir, log_file)
        return PROCS.spawn(
            [str(FIXTURE / "run.sh"), name, COOKIE],
            stdout=subprocess.PIPE, stderr=stderr, env=env,
        )

    def register_hung(self, name, port):
        """Registers NAME (the part before @) with our EPMD at PORT, as a
        node does (ALIVE2_REQ); the registration lasts while the socket is
        open."""
        s = socket.create_connection(("127.0.0.1", self.epmd_port), timeout=5)
        alive = name.split("@")[0].encode()
        body = struct.pack(">BHBBHHH", 120, port, 77, 0, 6, 5, len(alive)) + alive + b"\0\0"
        s.sendall(struct.pack(">H", len(body)) + body)
        head = recv_exact(s, 2)
        if head[1] != 0:
            s.close()
            raise BenchError(f"epmd refused to register {name}: result {head[1]}")
        recv_exact(s, 4 if head[0] == 118 else 2)
        return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise BenchError("epmd closed the connection")
        buf += chunk
    return buf


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connectable(addr, timeout, what):
    deadline = now() + timeout
    while True:
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            if now() > deadline:
                raise BenchError(f"{what} never listened on {addr[0]}:{addr[1]}")
            time.sleep(0.02)


# --------------------------------------------------------------------------
# The hung peer: accepts TCP, never answers, and keeps a fresh registry record.


class HungPeer:
    def __init__(self, name, sync_dir, scratch, interval_s):
        self.name = name
        self.sync_dir = sync_dir
        self.scratch = scratch
        self.interval_s = interval_s
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.accepted = 0
        self.epmd_sock = None
        self.threads = [
            threading.Thread(target=self.serve, name="hung-serve", daemon=True),
            threading.Thread(target=self.heartbeat, name="hung-beat", daemon=True),
        ]

    def start(self, runtime):
        self.write_record()
        self.epmd_sock = runtime.register_hung(self.name, self.port)
        for t in self.threads:
            t.start()

    def write_record(self):
        ms = int(time.time() * 1000)
        text = f"pulse 1\nname {self.name}\naddr 127.0.0.1:{self.port}\nheartbeat {ms}\n"
        tmp = self.scratch / f"hung-record.{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, self.sync_dir / self.name)  # same filesystem: atomic

    def heartbeat(self):
        while not self.stopping.wait(self.interval_s):
            try:
                self.write_record()
            except OSError:
                pass

    def serve(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ, None)
        while not self.stopping.is_set():
            for key, _ in sel.select(0.2):
                if key.data is None:
                    try:
                        conn, _ = self.sock.accept()
                    except OSError:
                        continue
                    conn.setblocking(False)
                    self.accepted += 1
                    sel.register(conn, selectors.EVENT_READ, "conn")
                else:
                    # Read and drop whatever comes; never write a byte.
                    try:
                        data = key.fileobj.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
        for key in list(sel.get_map().values()):
            key.fileobj.close()
        sel.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            if t.is_alive():
                t.join(timeout=2)
        if self.epmd_sock is not None:
            self.epmd_sock.close()
        try:
            (self.sync_dir / self.name).unlink()
        except OSError:
            pass


# --------------------------------------------------------------------------
# A cluster of one runtime's nodes and the waits on their status lines.


class Cluster:
    def __init__(self, runtime, run_dir, reader, interval_s):
        self.rt = runtime
        self.dir = run_dir
        self.sync = run_dir / "sync"
        self.sync.mkdir()
        self.log_file = run_dir / "cluster.log"
        self.reader = reader
        self.interval = interval_s
        self.nodes = []  # live ones
        self.all = []  # every node started

    def start(self, i):
        name = self.rt.name(i)
        with open(self.dir / f"{name}.stderr", "wb") as err:
            t0 = now()
            p = self.rt.spawn(name, self.sync, self.log_file, err)
        node = Node(name, p, t0)
        self.reader.add(node)
        self.nodes.append(node)
        self.all.append(node)
        return node

    def wait_first_status(self, node):
        deadline = node.t_exec + self.rt.start_timeout
        with self.reader.cond:
            while node.first_status is None:
                if node.eof is not None or node.proc.poll() is not None:
                    raise BenchError(f"{node.name} exited before its first status line "
                                     f"(code {node.proc.poll()}); {self.tail(node)}")
                left = deadline - now()
                if left <= 0:
                    raise BenchError(f"{node.name} printed no status line within "
                                     f"{self.rt.start_timeout:.0f} s; {self.tail(node)}")
                self.reader.cond.wait(min(left, 0.25))
        return node.first_status - node.t_exec

    def tail(self, node):
        other = [m for _, m in list(node.other)[-3:]]
        try:
            err = (self.dir / f"{node.name}.stderr").read_text(errors="replace")[-400:]
        except OSError:
            err = ""
        return f"last lines: {other}; stderr: {err!r}"

    def wait_all(self, observers, pred, since, timeout, must=True):
        """Waits until every observer's latest status line (printed after
        `since`) satisfies pred. Returns (worst, {name: seconds}) where each
        node's time is that of the first line of its final run of satisfying
        lines, or None on timeout when not `must`."""
        deadline = now() + timeout
        with self.reader.cond:
            while True:
                pending = [n for n in observers if not pred.latest(n, since)]
                if not pending:
                    break
                for n in pending:
                    if n.proc.poll() is not None:
                        raise BenchError(f"{n.name} died (code {n.proc.returncode}) while "
                                         f"waiting until every node {pred.what}")
                left = deadline - now()
                if left <= 0:
                    if not must:
                        return None, {}
                    n = pending[0]
                    last = n.history[-1][1] if n.history else "(none)"
                    if len(last) > 300:
                        last = last[:300] + "..."
                    raise BenchError(
                        f"{len(pending)} of {len(observers)} nodes never {pred.what} "
                        f"within {timeout:.0f} s; e.g. {n.name}: {last}")
                self.reader.cond.wait(min(left, 0.25))
            per = {}
            for n in observers:
                first = None
                for t, msg in reversed(n.history):
                    if t <= since or not pred.fn(msg):
                        break
                    first = t
                per[n.name] = first - since
        return max(per.values()), per

    def wait_lines(self, observers, count, since, timeout):
        """Waits until every observer printed `count` status lines after `since`."""
        deadline = now() + timeout
        with self.reader.cond:
            while True:
                short = [n for n in observers
                         if sum(1 for t in n.status_times[-count - 1 :] if t > since) < count]
                if not short:
                    return
                left = deadline - now()
                if left <= 0:
                    raise BenchError(f"{len(short)} nodes printed fewer than {count} status "
                                     f"lines in {timeout:.0f} s (e.g. {short[0].name})")
                self.reader.cond.wait(min(left, 0.25))

    def stop_all(self):
        """SIGTERM every live node, wait for them, kill what is left."""
        sent = {}
        for n in self.nodes:
            if n.proc.poll() is None:
                try:
                    os.kill(n.proc.pid, signal.SIGTERM)
                    sent[n.name] = now()
                except ProcessLookupError:
                    pass
        deadline = now() + 10
        exits, codes = [], []
        for n in self.nodes:
            if n.name not in sent:
                continue
            try:
                n.proc.wait(timeout=max(0.0, deadline - now()))
                exits.append(now() - sent[n.name])
                codes.append(n.proc.returncode)
            except subprocess.TimeoutExpired:
                PROCS.kill_group(n.proc)
                n.proc.wait()
                codes.append(None)
        for n in self.all:
            PROCS.kill_group(n.proc)
            n.proc.wait()
            self.reader.remove(n)
        self.nodes = []
        return {
            "stopped": len(sent),
            "exit_0": sum(1 for c in codes if c == 0),
            "max_exit_s": max(exits) if exits else None,
        }


# --------------------------------------------------------------------------
# Statistics helpers


def median(xs):
    return statistics.median(xs) if xs else None


def p95(xs):
    if not xs:
        return None
    s = sorted(xs)
    return s[max(0, math.ceil(0.95 * len(s)) - 1)]


def ms(x):
    return None if x is None else x * 1000.0


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


# --------------------------------------------------------------------------
# One scenario: N nodes of one runtime.


class Opts:
    pass


def scenario(rt, n, opts, reader, base_dir):
    """Runs every phase for N nodes of one runtime. A phase that breaks is
    recorded in res["errors"] and the next one still runs, except when the
    nodes could not even be started."""
    interval = opts.interval_ms / 1000.0
    run_dir = base_dir / f"{rt.label}-{n}"
    run_dir.mkdir()
    res = {"runtime": rt.label, "n": n, "interval_ms": opts.interval_ms, "errors": []}
    cl = Cluster(rt, run_dir, reader, interval)
    state = {"hung": None}

    def start_nodes():
        # One node after the other, each timed from exec to its first status line.
        startups = []
        for i in range(1, n + 1):
            node = cl.start(i)
            startups.append(cl.wait_first_status(node))
        res["startup_ms"] = {"median": ms(median(startups)), "p95": ms(p95(startups)),
                             "max": ms(max(startups)), "samples": [ms(s) for s in startups]}

    def steady():
        # Every node lists all N nodes true, then a few more rounds.
        everyone = all_true([x.name for x in cl.nodes])
        worst, _ = cl.wait_all(cl.nodes, everyone, cl.nodes[-1].t_exec,
                               10 + 10 * interval + 0.1 * n)
        res["steady_after_last_start_ms"] = ms(worst)
        cl.wait_lines(cl.nodes, opts.settle_rounds, now(),
                      10 + 10 * interval * opts.settle_rounds)

    def window():
        # CPU, memory and round period of the N nodes over a window.
        everyone = all_true([x.name for x in cl.nodes])
        pids = [x.proc.pid for x in cl.nodes]
        kids = proc_children()
        trees = {p: tree(p, kids) for p in pids}
        m0, h0 = machine_ticks(), self_cpu()
        t0 = now()
        s0 = {p: sum(stat_ticks(q) for q in trees[p]) for p in pids}
        t0s = now()
        ss0 = {p: sum(schedstat_ns(q) for q in trees[p]) for p in pids}
        t0ss = now()
        time.sleep(opts.window_s)  # a measurement window, not a wait for a condition
        kids = proc_children()
        trees = {p: tree(p, kids) for p in pids}
        t1 = now()
        s1 = {p: sum(stat_ticks(q) for q in trees[p]) for p in pids}
        t1s = now()
        ss1 = {p: sum(schedstat_ns(q) for q in trees[p]) for p in pids}
        t1ss = now()
        m1, h1 = machine_ticks(), self_cpu()
        rss = [sum(status_field(q, "VmRSS") for q in trees[p]) for p in pids]
        threads = [sum(status_field(q, "Threads") for q in trees[p]) for p in pids]
        # Each reading takes a while: the window runs from middle to middle.
        w_stat = ((t1 + t1s) - (t0 + t0s)) / 2
        w_ss = ((t1s + t1ss) - (t0s + t0ss)) / 2
        per_node_stat = [(s1[p] - s0[p]) / CLK_TCK / (w_stat / interval) for p in pids]
        per_node_ss = [(ss1[p] - ss0[p]) / 1e9 / (w_ss / interval) for p in pids]
        ticks = sum(s1[p] - s0[p] for p in pids)
        res["rss_kib"] = {"median": median(rss), "max": max(rss), "samples": rss}
        res["threads"] = {"median": median(threads), "max": max(threads)}
        res["cpu"] = {
            "window_s": w_stat,
            "ticks_counted": ticks,
            "clk_tck": CLK_TCK,
            "per_node_per_round_us_stat": {"mean": 1e6 * statistics.mean(per_node_stat),
                                           "max": 1e6 * max(per_node_stat)},
            "per_node_per_round_us_schedstat": {"mean": 1e6 * statistics.mean(per_node_ss),
                                                "max": 1e6 * max(per_node_ss)},
            "cores_all_nodes_stat": ticks / CLK_TCK / w_stat,
            "cores_all_nodes_schedstat": sum(ss1[p] - ss0[p] for p in pids) / 1e9 / w_ss,
            "cores_machine_busy": (m1 - m0) / CLK_TCK / (t1 - t0),
            "cores_harness": (h1 - h0) / (t1 - t0),
        }
        lines = true_lines = 0
        win_gaps = []
        with reader.cond:
            for x in cl.nodes:
                win_gaps += gaps([t for t in x.status_times if t0 <= t <= t1])
                for t, msg in x.history:
                    if t0 <= t <= t1:
                        lines += 1
                        true_lines += everyone.fn(msg)
        res["steady_window"] = {"lines": lines,
                                "all_true_pct": 100.0 * true_lines / lines if lines else None}
        res["period_baseline_ms"] = {"mean": ms(statistics.mean(win_gaps)) if win_gaps else None,
                                     "max": ms(max(win_gaps)) if win_gaps else None}

    def hung_peer():
        # Round period with a peer that accepts TCP and never answers.
        hung = state["hung"] = HungPeer("hung@127.0.0.1", cl.sync, run_dir, interval)
        t_h = now()
        hung.start(rt)
        worst, _ = cl.wait_all(cl.nodes, present(hung.name), t_h, 30 + 10 * interval)
        res["hung_listed_ms"] = ms(worst)
        t_from = now()
        cl.wait_lines(cl.nodes, opts.hung_rounds + 1, t_from,
                      30 + 20 * interval * opts.hung_rounds)
        hung_gaps, odd = [], []
        with reader.cond:
            for x in cl.nodes:
                ts = [t for t in x.status_times if t > t_from][: opts.hung_rounds + 1]
                for t, g in zip(ts[1:], gaps(ts)):
                    hung_gaps.append(g)
                    if abs(g - interval) > 0.05:
                        odd.append({"node": x.name, "at_s": round(t - t_from, 3),
                                    "gap_ms": round(g * 1000, 1)})
            listed_false = all(lists(hung.name, "false").fn(x.history[-1][1]) for x in cl.nodes)
        res["period_hung_ms"] = {"mean": ms(statistics.mean(hung_gaps)), "max": ms(max(hung_gaps)),
                                 "gaps": len(hung_gaps), "off_by_more_than_50ms": odd}
        res["hung_listed_false"] = listed_false
        res["hung_connections_accepted"] = hung.accepted

    def convergence():
        # One more node: until every node lists it true (from its exec).
        hung, state["hung"] = state["hung"], None
        if hung is not None:
            # Not measured: let every round blocked on the hung peer finish
            # and the peer leave every line, so it cannot delay the join.
            t_stop = now()
            hung.stop()
            cl.wait_all(cl.nodes, absent(hung.name), t_stop, 30 + 10 * interval)
        joiner = cl.start(n + 1)
        worst, _ = cl.wait_all(cl.nodes, lists(joiner.name, "true"), joiner.t_exec,
                               rt.start_timeout + 10 * interval)
        res["convergence_ms"] = ms(worst)
        if joiner.first_status:
            res["joiner_startup_ms"] = ms(joiner.first_status - joiner.t_exec)

    def kill9():
        # kill -9 one node: until every other node lists it false (then gone).
        victim = cl.nodes[len(cl.nodes) // 2]
        others = [x for x in cl.nodes if x is not victim]
        t_kill = now()
        PROCS.kill_group(victim.proc)
        victim.proc.wait()
        cl.nodes.remove(victim)
        worst, _ = cl.wait_all(others, lists(victim.name, "false"), t_kill, 10 * interval)
        res["kill9_detect_ms"] = ms(worst)
        if rt.expires:
            worst, _ = cl.wait_all(others, absent(victim.name), t_kill, 30 * interval)
            res["kill9_expire_ms"] = ms(worst)
        else:
            res["kill9_expire_ms"] = None
            res["kill9_expire_note"] = "the recipe never expires a dead node's file"
            # Not a measurement: clear the file so the next phase sees a clean cluster.
            try:
                (cl.sync / victim.name).unlink()
            except OSError:
                pass

    def sigterm():
        # SIGTERM one node: until it is gone from every other node's line.
        victim = cl.nodes[1]
        others = [x for x in cl.nodes if x is not victim]
        done = {}

        def waiter(p=victim.proc):
            p.wait()
            done["t"] = now()

        wt = threading.Thread(target=waiter, daemon=True)
        t_term = now()
        os.kill(victim.proc.pid, signal.SIGTERM)
        wt.start()
        try:
            worst, _ = cl.wait_all(others, absent(victim.name), t_term,
                                   10 * interval if rt.removes_record_on_leave else 5 * interval,
                                   must=rt.removes_record_on_leave)
            res["sigterm_gone_ms"] = ms(worst)
            if worst is None:
                res["sigterm_gone_note"] = "never: the recipe leaves its registry file behind"
        finally:
            wt.join(timeout=10)
            if "t" not in done:
                PROCS.kill_group(victim.proc)
                victim.proc.wait()
            res["sigterm_exit_ms"] = ms(done["t"] - t_term) if "t" in done else None
            res["sigterm_exit_code"] = victim.proc.returncode
            with reader.cond:
                res["sigterm_logged_left"] = any(f"node {victim.name} left" in m
                                                 for _, m in victim.other)
            cl.nodes.remove(victim)

    phases = [("start", start_nodes), ("steady", steady), ("window", window),
              ("hung peer", hung_peer), ("convergence", convergence), ("kill -9", kill9),
              ("SIGTERM", sigterm)]
    try:
        for name, fn in phases:
            log(f"{rt.label} N={n}: {name}")
            try:
                fn()
            except BenchError as e:
                log(f"{rt.label} N={n}: BROKE in phase {name}: {e}")
                res["errors"].append(f"{name}: {e}")
                if name == "start":
                    break
    finally:
        if state["hung"] is not None:
            state["hung"].stop()
        res["shutdown"] = cl.stop_all()
    return res


# --------------------------------------------------------------------------
# Build, sizes, limits


def cargo_build(extra, what):
    cmd = ["cargo", "build", "--release", *extra]
    log(f"building {what}: {' '.join(cmd)}")
    r = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL)
    return r.returncode == 0


def shown(path):
    """A path as printed and stored: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def ensure_binary(opts):
    if opts.binary:
        b = Path(opts.binary).resolve()
        if not b.is_file():
            raise BenchError(f"--binary {b} does not exist")
        return b
    # The shipped binary is the static musl one (musl's allocator also keeps
    # a node's RSS far below glibc's per-thread arenas); the glibc release
    # build is the fallback when the musl target is not installed.
    musl = REPO / "target" / MUSL / "release" / "pulse"
    if not opts.no_build:
        cargo_build(["--target", MUSL], "the static musl binary")
    if musl.exists():
        return musl
    b = REPO / "target" / "release" / "pulse"
    if not opts.no_build or not b.exists():
        if not cargo_build([], "the release binary") and not b.exists():
            raise BenchError("cargo build --release failed")
    if not b.exists():
        raise BenchError(f"{b} missing after the build")
    return b


def elf_is_static(path):
    """True when the ELF file has no PT_INTERP (no dynamic loader)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", table, i * phentsize)
        if ptype == 3:
            return False
    return True


def sizes(opts, binary):
    out = {"release_binary": {"path": shown(binary), "bytes": binary.stat().st_size}}
    musl = REPO / "target" / MUSL / "release" / "pulse"
    note = None
    if not opts.smoke and not opts.no_build:
        installed = subprocess.run(["rustup", "target", "list", "--installed"],
                                   capture_output=True, text=True)
        if MUSL not in installed.stdout.split():
            log(f"adding the {MUSL} target (rustup target add)")
            subprocess.run(["rustup", "target", "add", MUSL], stdin=subprocess.DEVNULL)
        if not cargo_build(["--target", MUSL], "the static musl binary"):
            note = "musl build failed"
    if musl.exists():
        out["musl_binary"] = {"path": shown(musl), "bytes": musl.stat().st_size,
                              "static": elf_is_static(musl)}
    else:
        out["musl_binary"] = {"bytes": None, "note": note or "not built (--smoke/--no-build skip it)"}
    out["image"] = docker_image_size()
    return out


def docker_image_size():
    if not shutil.which("docker"):
        return {"bytes": None, "note": "no docker client"}
    try:
        r = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
                           capture_output=True, text=True, timeout=20)
    except (subprocess.TimeoutExpired, OSError) as e:
        return {"bytes": None, "note": f"docker: {e}"}
    if r.returncode != 0:
        return {"bytes": None, "note": "docker: " + (r.stderr.strip().splitlines() or ["error"])[-1]}
    refs = [x for x in r.stdout.split() if x.split(":")[0].rsplit("/", 1)[-1] == "pulse"]
    if not refs:
        return {"bytes": None, "note": "no pulse image"}
    refs.sort(key=lambda x: (not x.endswith(":latest"), x))
    ref = refs[0]
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", ref],
                       capture_output=True, text=True, timeout=20)
    try:
        return {"ref": ref, "bytes": int(r.stdout.strip())}
    except ValueError:
        return {"ref": ref, "bytes": None, "note": r.stderr.strip()}


def raise_limits(max_n):
    notes = []
    for res_name in ("RLIMIT_NOFILE", "RLIMIT_NPROC"):
        which = getattr(resource, res_name)
        soft, hard = resource.getrlimit(which)
        if soft != hard:
            try:
                resource.setrlimit(which, (hard, hard))
                notes.append(f"{res_name} soft {fmt_lim(soft)} -> {fmt_lim(hard)}")
            except (ValueError, OSError) as e:
                notes.append(f"{res_name}: could not raise {fmt_lim(soft)} to {fmt_lim(hard)}: {e}")
        else:
            notes.append(f"{res_name} {fmt_lim(soft)}")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    threads_max = int(Path("/proc/sys/kernel/threads-max").read_text())
    used = system_threads()
    need = (max_n + 1) * (max_n + 8)
    notes.append(f"threads: {used} in use, ~{need} needed at N={max_n}, "
                 f"pid_max {pid_max}, threads-max {threads_max}")
    if used + need > min(pid_max, threads_max):
        notes.append("WARNING: that may not fit; nodes may fail to start threads")
    return notes


def fmt_lim(v):
    return "unlimited" if v == resource.RLIM_INFINITY else str(v)


# --------------------------------------------------------------------------
# Targets and the table


def targets(interval_ms):
    return {
        "startup_ms": "< 10",
        "idle_rss_mib": "< 2 (at N=2)",
        "cores_all_nodes_at_150": "< 0.8 (at N=150)",
        "convergence_ms": f"<= {interval_ms + 100} (interval + 100 ms)",
        "kill9_detect_ms": f"<= {interval_ms} (one interval)",
        "period_hung_ms": f"mean within 1% of {interval_ms}, max <= {interval_ms + 100}",
        "sigterm_exit_ms": "< 1000 (issue 2)",
    }


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def rows(interval_ms):
    """(label, target text, getter, format, check(value, n) -> True/False/None)."""
    I = interval_ms
    return [
        ("startup median (ms)", "< 10", lambda r: get(r, "startup_ms", "median"), "{:.1f}",
         lambda v, n: v < 10),
        ("startup p95 (ms)", "< 10", lambda r: get(r, "startup_ms", "p95"), "{:.1f}",
         lambda v, n: v < 10),
        ("RSS median (MiB)", "< 2 idle (N=2)", lambda r: kib_mib(get(r, "rss_kib", "median")),
         "{:.2f}", lambda v, n: (v < 2) if n <= 2 else None),
        ("RSS max (MiB)", "", lambda r: kib_mib(get(r, "rss_kib", "max")), "{:.2f}", None),
        ("threads per node (median)", "", lambda r: get(r, "threads", "median"), "{:.0f}", None),
        ("CPU/node/round (us, stat)", "",
         lambda r: stat_only(r, get(r, "cpu", "per_node_per_round_us_stat", "mean")), "{:.0f}",
         None),
        ("CPU/node/round (us, schedstat)", "",
         lambda r: get(r, "cpu", "per_node_per_round_us_schedstat", "mean"), "{:.0f}", None),
        ("cores, all nodes (stat)", "< 0.8 (N=150)",
         lambda r: stat_only(r, get(r, "cpu", "cores_all_nodes_stat")), "{:.3f}",
         lambda v, n: (v < 0.8) if n >= 150 else None),
        ("cores, all nodes (schedstat)", "< 0.8 (N=150)",
         lambda r: get(r, "cpu", "cores_all_nodes_schedstat"), "{:.3f}",
         lambda v, n: (v < 0.8) if n >= 150 else None),
        ("cores, machine busy (/proc/stat)", "", lambda r: get(r, "cpu", "cores_machine_busy"),
         "{:.3f}", None),
        ("cores, this harness", "", lambda r: get(r, "cpu", "cores_harness"), "{:.3f}", None),
        ("steady lines all true (%)", "100", lambda r: get(r, "steady_window", "all_true_pct"),
         "{:.1f}", lambda v, n: v >= 100),
        ("round gap, steady, mean (ms)", "", lambda r: get(r, "period_baseline_ms", "mean"),
         "{:.1f}", None),
        ("round gap, steady, max (ms)", "", lambda r: get(r, "period_baseline_ms", "max"),
         "{:.1f}", None),
        ("convergence, +1 node (ms)", f"<= {I + 100}", lambda r: get(r, "convergence_ms"),
         "{:.0f}", lambda v, n: v <= I + 100),
        ("kill -9 -> all false (ms)", f"<= {I}", lambda r: get(r, "kill9_detect_ms"), "{:.0f}",
         lambda v, n: v <= I),
        ("kill -9 -> expired (ms)", "", lambda r: get(r, "kill9_expire_ms"), "{:.0f}", None),
        ("SIGTERM -> gone (ms)", "", lambda r: get(r, "sigterm_gone_ms"), "{:.0f}", None),
        ("SIGTERM -> exit (ms)", "< 1000", lambda r: get(r, "sigterm_exit_ms"), "{:.0f}",
         lambda v, n: v < 1000),
        ("hung peer: round gap mean (ms)", f"{I} +-1%", lambda r: get(r, "period_hung_ms", "mean"),
         "{:.1f}", lambda v, n: abs(v - I) <= I / 100),
        ("hung peer: round gap max (ms)", f"<= {I + 100}",
         lambda r: get(r, "period_hung_ms", "max"), "{:.1f}", lambda v, n: v <= I + 100),
    ]


def stat_only(r, v):
    """A utime+stime figure, or None when too few clock ticks were counted
    for it to mean anything (see the schedstat row instead)."""
    return v if (get(r, "cpu", "ticks_counted") or 0) >= 50 else None


def kib_mib(v):
    return None if v is None else v / 1024.0


def cell(r, getter, fmt, check, n):
    v = getter(r) if r else None
    if v is None:
        return "n/a", None
    text = fmt.format(v)
    verdict = check(v, n) if check else None
    if verdict is True:
        text += " ok"
    elif verdict is False:
        text += " MISS"
    return text, verdict


def render(results, opts, size_info, header):
    out = []
    I = opts.interval_ms
    pulse = {r["n"]: r for r in results if r["runtime"] == "pulse"}
    elixir = {r["n"]: r for r in results if r["runtime"] == "elixir"}
    spec = rows(I)
    ns = sorted(pulse)
    misses = []
    out.append("")
    out += header
    out.append("")
    if ns:
        w0 = max(len(s[0]) for s in spec)
        w1 = max(len("target"), max(len(s[1]) for s in spec))
        cols = [f"N={n}" for n in ns]
        widths = []
        cells = {}
        for n in ns:
            col = []
            for label, _, g, f, c in spec:
                text, verdict = cell(pulse[n], g, f, c, n)
                col.append(text)
                if verdict is False:
                    misses.append(f"{label} at N={n}: {text}")
            cells[n] = col
            widths.append(max(len(f"N={n}"), max(len(t) for t in col)))
        out.append(f"pulse, interval {I} ms")
        line = f"{'metric':<{w0}}  {'target':<{w1}}" + "".join(
            f"  {c:>{w}}" for c, w in zip(cols, widths))
        out.append(line)
        out.append("-" * len(line))
        for i, (label, tgt, *_rest) in enumerate(spec):
            out.append(f"{label:<{w0}}  {tgt:<{w1}}" + "".join(
                f"  {cells[n][i]:>{w}}" for n, w in zip(ns, widths)))
        errs = [f"N={r['n']}: {e}" for r in pulse.values() for e in r["errors"]]
        for e in errs:
            out.append(f"  BROKEN {e}")
    if elixir:
        out.append("")
        out.append("pulse vs the recipe's Elixir node (ratio = pulse / elixir)")
        ratio_rows = [s for s in spec if s[0] not in (
            "cores, machine busy (/proc/stat)", "cores, this harness", "CPU/node/round (us, stat)",
            "cores, all nodes (stat)")]
        w0 = max(len(s[0]) for s in ratio_rows)
        hdr = f"{'metric':<{w0}}  {'N':>3}  {'pulse':>12}  {'elixir':>12}  {'ratio':>9}"
        out.append(hdr)
        out.append("-" * len(hdr))
        for label, _, g, f, _c in ratio_rows:
            for n in sorted(elixir):
                pv = g(pulse.get(n)) if pulse.get(n) else None
                ev = g(elixir[n])
                pt = f.format(pv) if pv is not None else "n/a"
                et = f.format(ev) if ev is not None else "n/a"
                ratio = "n/a"
                if pv is not None and ev:
                    ratio = f"{pv / ev:.3g}"
                out.append(f"{label:<{w0}}  {n:>3}  {pt:>12}  {et:>12}  {ratio:>9}")
        for r in elixir.values():
            for key in ("kill9_expire_note", "sigterm_gone_note"):
                if key in r:
                    out.append(f"  elixir N={r['n']}: {key.split('_note')[0]}: {r[key]}")
            for e in r["errors"]:
                out.append(f"  BROKEN elixir N={r['n']}: {e}")
    out.append("")
    out.append("sizes")
    rb = size_info["release_binary"]["bytes"]
    rel = size_info["release_binary"]["path"]
    out.append(f"  measured binary ({rel})    {rb:>10} bytes  ({rb / MiB:.2f} MiB)")
    mb = size_info["musl_binary"].get("bytes")
    if mb is not None:
        st = size_info["musl_binary"].get("static")
        out.append(f"  static musl binary ({MUSL})  {mb:>10} bytes  ({mb / MiB:.2f} MiB)"
                   f"{', static' if st else ', NOT static' if st is False else ''}")
    else:
        out.append(f"  static musl binary  n/a ({size_info['musl_binary'].get('note')})")
    im = size_info["image"]
    if im.get("bytes") is not None:
        out.append(f"  image {im['ref']}  {im['bytes']:>10} bytes  ({im['bytes'] / MiB:.2f} MiB)")
    else:
        out.append(f"  image  n/a ({im.get('note')})")
    out.append("")
    if misses:
        out.append("missed targets:")
        out += [f"  {m}" for m in misses]
    else:
        out.append("missed targets: none")
    return out, misses


# --------------------------------------------------------------------------


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Benchmark pulse nodes on this host (and the recipe's Elixir node).",
        epilog="Exit status: 0 measured (targets may be missed), 1 the benchmark broke, 2 usage.")
    ap.add_argument("--sizes", default="2,11,50,100,150", help="cluster sizes N for pulse")
    ap.add_argument("--elixir-sizes", default="2,11",
                    help="sizes for the Elixir recipe node ('' to skip; skipped when elixir is missing)")
    ap.add_argument("--interval", type=int, default=1000, dest="interval_ms", help="interval in ms")
    ap.add_argument("--window", type=float, default=None, dest="window_s",
                    help="steady measurement window in seconds [10; 3 with --smoke]")
    ap.add_argument("--hung-rounds", type=int, default=None,
                    help="status lines per node measured with the hung peer [6; 4 with --smoke]")
    ap.add_argument("--out", default=str(REPO / "bench" / "results.json"), help="JSON output path")
    ap.add_argument("--smoke", action="store_true",
                    help="CI smoke run: N=11 only, no Elixir, short windows, no musl build")
    ap.add_argument("--binary", help="use this pulse binary instead of building one")
    ap.add_argument("--no-build", action="store_true",
                    help="do not run cargo when the release binary exists; skip the musl build")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, registry)")
    a = ap.parse_args(argv)

    def sizes_of(text):
        try:
            v = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            ap.error(f"bad size list: {text!r}")
        if any(x < 2 or x > 250 for x in v):
            ap.error("sizes must be between 2 and 250")
        return v

    opts = Opts()
    opts.smoke = a.smoke
    opts.sizes = [11] if a.smoke else sizes_of(a.sizes)
    opts.elixir_sizes = [] if a.smoke else sizes_of(a.elixir_sizes)
    opts.interval_ms = a.interval_ms
    if not 100 <= a.interval_ms <= 15000:
        ap.error("--interval must be between 100 and 15000")
    opts.window_s = a.window_s or (3.0 if a.smoke else 10.0)
    opts.settle_rounds = 1 if a.smoke else 2
    opts.hung_rounds = a.hung_rounds or (4 if a.smoke else 6)
    opts.out = Path(a.out)
    opts.binary = a.binary
    opts.no_build = a.no_build
    opts.keep = a.keep
    opts.argv = argv
    return opts


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    opts = parse_args(argv)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    started = time.time()
    base_dir = Path(tempfile.mkdtemp(prefix="pulse-bench-"))
    reader = None
    results, broken = [], []
    size_info = None
    header = []
    try:
        binary = ensure_binary(opts)
        size_info = sizes(opts, binary)
        limit_notes = raise_limits(max(opts.sizes + opts.elixir_sizes))
        elixir_ok = bool(shutil.which("elixir") and shutil.which("mix") and shutil.which("epmd"))
        header = [
            f"pulse benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}  host {platform.node()}, "
            f"{os.cpu_count()} cores, kernel {platform.release()}",
            f"command: python3 bench/bench.py {' '.join(argv)}".rstrip(),
            f"binary: {shown(binary)}",
            "limits: " + "; ".join(limit_notes),
            f"window {opts.window_s:.0f} s steady, {opts.hung_rounds} rounds with the hung peer; "
            f"load average at start {os.getloadavg()[0]:.2f}",
        ]
        if opts.elixir_sizes and not elixir_ok:
            header.append("elixir: not installed, Elixir comparison skipped")
            opts.elixir_sizes = []
        for line in header:
            log(line)
        reader = Reader()
        plan = [(PulseRuntime(binary, opts.interval_ms), n) for n in opts.sizes]
        if opts.elixir_sizes:
            plan += [(None, n) for n in opts.elixir_sizes]
        ex = None
        for rt, n in plan:
            if rt is None:
                if ex is None:
                    ex = ElixirRuntime(opts.interval_ms)
                    try:
                        ex.setup(base_dir)
                    except BenchError as e:
                        log(f"elixir setup broke: {e}")
                        broken.append(f"elixir setup: {e}")
                        break
                rt = ex
            r = scenario(rt, n, opts, reader, base_dir)
            results.append(r)
            broken += [f"{r['runtime']} N={n}: {e}" for e in r["errors"]]
        if ex is not None:
            ex.teardown()
    except BenchError as e:
        log(f"BROKE: {e}")
        broken.append(str(e))
    except KeyboardInterrupt as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}); cleaning up")
        return 130
    finally:
        PROCS.cleanup()
        if reader:
            reader.close()
        if not opts.keep:
            shutil.rmtree(base_dir, ignore_errors=True)
        else:
            log(f"run directory kept: {base_dir}")

    misses = []
    if size_info is not None:
        table, misses = render(results, opts, size_info, header)
        print("\n".join(table), flush=True)
    doc = {
        "meta": {
            "command": ["python3", "bench/bench.py", *argv],
            "started_unix": started,
            "duration_s": time.time() - started,
            "host": platform.node(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "interval_ms": opts.interval_ms,
            "window_s": opts.window_s,
            "hung_rounds": opts.hung_rounds,
            "smoke": opts.smoke,
            "header": header,
        },
        "targets": targets(opts.interval_ms),
        "sizes": size_info,
        "runs": results,
        "missed_targets": misses,
        "broken": broken,
    }
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nfigures written to {shown(Path(opts.out))}")
    if broken:
        print("BENCHMARK BROKEN:\n  " + "\n  ".join(broken), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        PROCS.cleanup()
