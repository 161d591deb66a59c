#!/usr/bin/env python3
"""Abuse run for pulse: a small cluster under socket, registry and process
faults for a fixed time, then the figures.

Run from the repository root:

    python3 bench/abuse.py                 # 60 s
    python3 bench/abuse.py --seconds 20

It builds the release binary, starts five nodes on 127.0.0.1 sharing one
registry and one log in a temporary directory (one answers EPMD requests
itself, one has a stdout nobody reads), and meanwhile:

- sends wrong-cookie handshakes under new and hostile names (newlines, a
  forged status line, terminal escape codes), garbage bytes, and silent
  connections that are held open, to every listener;
- holds silent connections to the EPMD stand-in and times port lookups;
- fills the registry with junk: hostile file names, oversized and binary
  files, a FIFO, a symlink, a record of an impostor that answers under a
  hostile name, a record of a peer that never answers;
- stops one node (SIGSTOP, SIGCONT 3 s later) and kills another (kill -9,
  started again at once), in turns.

Then it prints: faults injected, crashes, torn lines in the shared log,
forged lines, warning lines, live nodes reported false, the largest gap between two status
lines of a node nobody stopped, the most threads and the largest RSS of any
node, the slowest EPMD lookup. Exit status 0 when the run could be made, 1
when a figure shows a failure (a crash, a torn or forged line, a live node
reported false), 2 for bad usage.

Only the Python 3 standard library is used. All traffic stays on 127.0.0.1;
every connection and every process is bounded in number and time, and
everything started here is killed on exit.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COOKIE = "abuse-cookie"
INTERVAL_MS = 250
FLAGS = 0x01070F94
FORGED = '\n12:00:00.000 [info] forged@127.0.0.1["forged@127.0.0.1": true]'
ESCAPES = "\x1b[2J\x1b]0;owned\x07"
# pulse before the Logger format wrote [INFO] and [WARN]: still read, to compare.
LINE_RE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \[(info|warning|error|INFO|WARN|ERROR)\] (.*)$")
MAX_HELD = 200  # silent connections held open per target at once

# Names: stable nodes are never stopped or killed; their view is judged.
STABLE = ["ab1@127.0.0.1", "ab2@127.0.0.1", "ab-epmd@127.0.0.1", "ab-mute@127.0.0.1"]
STOPPED = "ab-stop@127.0.0.1"
KILLED = "ab-kill@127.0.0.1"


def log(msg):
    print(f"[abuse {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build():
    r = subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO)
    if r.returncode != 0:
        sys.exit("abuse: cargo build --release failed")
    return REPO / "target" / "release" / "pulse"


class Counter:
    """Faults injected, by kind; shared by the abuse threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, kind, n=1):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + n


class Cluster:
    def __init__(self, binary, work, epmd_port):
        self.binary = binary
        self.work = work
        self.sync = work / "sync_dir"
        self.log = work / "log" / "cluster.log"
        self.epmd_port = epmd_port
        self.procs = {}
        self.expected_exit = set()
        self.crashes = []

    def start(self, name, extra=(), stdout=subprocess.DEVNULL):
        cmd = [str(self.binary), "--name", name, "--cookie", COOKIE,
               "--interval", str(INTERVAL_MS), "--sync-dir", str(self.sync),
               "--log-file", str(self.log), *extra]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.work),
               "ERL_EPMD_PORT": str(self.epmd_port)}
        err = open(self.work / f"{name}.stderr", "ab")
        p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                             stderr=err, start_new_session=True)
        err.close()
        self.procs[name] = p
        return p

    def addr(self, name):
        try:
            text = (self.sync / name).read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("addr "):
                host, port = line[5:].rsplit(":", 1)
                return (host, int(port))
        return None

    def check_crashes(self):
        for name, p in self.procs.items():
            if p.poll() is not None and p.pid not in self.expected_exit:
                self.crashes.append((name, p.returncode))
                self.expected_exit.add(p.pid)

    def stop_all(self):
        for p in self.procs.values():
            self.expected_exit.add(p.pid)
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def send_msg(s, msg):
    s.sendall(struct.pack(">H", len(msg)) + msg)


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def recv_msg(s):
    (n,) = struct.unpack(">H", recv_exact(s, 2))
    return recv_exact(s, n)


def wrong_cookie(addr, name):
    with socket.create_connection(addr, timeout=2) as s:
        s.settimeout(2)
        send_msg(s, b"N" + struct.pack(">QIH", FLAGS, 1, len(name)) + name)
        recv_msg(s)
        recv_msg(s)
        send_msg(s, b"r" + struct.pack(">I", 1) + b"\x55" * 16)
        while s.recv(64):
            pass


def garbage(addr, i):
    with socket.create_connection(addr, timeout=2) as s:
        s.sendall(bytes((i * 7 + k * 13) & 0xFF for k in range(512)))


def port_please(port, alive):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(5)
        body = b"z" + alive.encode()
        s.sendall(struct.pack(">H", len(body)) + body)
        reply = s.recv(64)
    return time.monotonic() - started, reply[:2] == b"w\x00"


def socket_abuse(cluster, stop, counts, name):
    """Handshakes, garbage and silent connections against one listener."""
    held = []
    i = 0
    while not stop.is_set():
        i += 1
        addr = cluster.addr(name)
        if addr is not None:
            try:
                hostile = (f"x{i}@127.0.0.1" + (FORGED + ESCAPES if i % 3 == 0 else "")).encode()
                wrong_cookie(addr, hostile)
                counts.add("wrong-cookie handshakes")
            except OSError:
                counts.add("wrong-cookie handshakes (cut short)")
            try:
                garbage(addr, i)
                counts.add("garbage connections")
            except OSError:
                pass
            try:
                c = socket.create_connection(addr, timeout=1)
                held.append(c)
                counts.add("silent connections")
            except OSError:
                pass
        while len(held) > MAX_HELD:
            held.pop(0).close()
        stop.wait(0.02)
    for c in held:
        c.close()


def epmd_abuse(cluster, stop, counts, lookups):
    held = []
    while not stop.is_set():
        for _ in range(5):
            try:
                held.append(socket.create_connection(("127.0.0.1", cluster.epmd_port), timeout=1))
                counts.add("silent EPMD connections")
            except OSError:
                pass
        while len(held) > 40:
            held.pop(0).close()
        try:
            took, ok = port_please(cluster.epmd_port, "ab-epmd")
            lookups.append((took, ok))
        except OSError:
            lookups.append((5.0, False))
        stop.wait(0.1)
    for c in held:
        c.close()


def impostor_server(stop, name):
    """Answers every handshake under `name`, then hangs up."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    srv.settimeout(0.2)

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            with c:
                try:
                    c.settimeout(1)
                    recv_msg(c)
                    send_msg(c, b"sok")
                    n = name.encode()
                    send_msg(c, b"N" + struct.pack(">QIIH", FLAGS, 7, 1, len(n)) + n)
                except OSError:
                    pass
        srv.close()

    t = threading.Thread(target=serve, name="abuse-impostor", daemon=True)
    t.start()
    return srv.getsockname()[1], t


def hung_server(stop):
    """Accepts and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(256)
    srv.settimeout(0.2)
    held = []

    def serve():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                held.append(c)
                while len(held) > 100:
                    held.pop(0).close()
            except OSError:
                continue
        for c in held:
            c.close()
        srv.close()

    t = threading.Thread(target=serve, name="abuse-hung", daemon=True)
    t.start()
    return srv.getsockname()[1], t


def write_record(sync, name, addr):
    ms = int(time.time() * 1000)
    tmp = sync / f".{name}.abuse.tmp"
    tmp.write_text(f"pulse 1\nname {name}\naddr {addr}\nheartbeat {ms}\n")
    os.replace(tmp, sync / name)


def registry_abuse(cluster, stop, counts, impostor_port, hung_port):
    sync = cluster.sync
    i = 0
    while not stop.is_set():
        i += 1
        try:
            write_record(sync, "imp@127.0.0.1", f"127.0.0.1:{impostor_port}")
            write_record(sync, "hung@127.0.0.1", f"127.0.0.1:{hung_port}")
            (sync / f"junk{i % 5}{FORGED}{ESCAPES}").write_text("x")
            (sync / "big@127.0.0.1").write_bytes(b"7" * 100_000)
            (sync / "bin@127.0.0.1").write_bytes(bytes(range(256)))
            (sync / "garbled@127.0.0.1").write_text("pulse 1\nname nope\n" + FORGED)
            if not (sync / "fifo@127.0.0.1").exists():
                os.mkfifo(sync / "fifo@127.0.0.1")
            if not (sync / "link@127.0.0.1").is_symlink():
                os.symlink("/dev/zero", sync / "link@127.0.0.1")
            counts.add("registry junk writes", 8)
        except OSError:
            pass
        stop.wait(1.0)


def process_abuse(cluster, stop, counts):
    turn = 0
    while not stop.wait(5.0):
        turn += 1
        if turn % 2:
            p = cluster.procs[STOPPED]
            os.kill(p.pid, signal.SIGSTOP)
            counts.add("SIGSTOP (3 s)")
            stop.wait(3.0)
            os.kill(p.pid, signal.SIGCONT)
        else:
            p = cluster.procs[KILLED]
            cluster.expected_exit.add(p.pid)
            p.kill()
            p.wait()
            counts.add("kill -9 and restart")
            cluster.start(KILLED, ["--epmd", "off"])


def sample(cluster, stop, peaks):
    while not stop.wait(0.5):
        cluster.check_crashes()
        for p in list(cluster.procs.values()):
            try:
                status = Path(f"/proc/{p.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("Threads:"):
                    peaks["threads"] = max(peaks["threads"], int(line.split()[1]))
                if line.startswith("VmRSS:"):
                    peaks["rss_kib"] = max(peaks["rss_kib"], int(line.split()[1]))


def parse_status(message, me):
    if not (message.startswith(me + "[") and message.endswith("]")):
        return None
    body = message[len(me) + 1:-1]
    out = {}
    if not body:
        return out
    for entry in body.split(", "):
        if ": " not in entry:
            return None
        key, value = entry.rsplit(": ", 1)
        out[key.strip('"')] = value == "true"
    return out


def judge_log(path, warm_until_ms):
    """Torn lines, forged lines, live nodes reported false, largest gap."""
    torn = forged = false_live = warnings = 0
    examples = []
    last = {}
    gap = 0
    text = path.read_bytes().decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        torn += 1
    for line in text.splitlines():
        m = LINE_RE.match(line)
        if not m:
            torn += 1
            continue
        h, mi, s, ms, level, message = m.groups()
        warnings += level in ("warning", "WARN")
        t = ((int(h) * 60 + int(mi)) * 60 + int(s)) * 1000 + int(ms)
        if message.startswith("forged") or "\x1b" in line:
            forged += 1
        for me in STABLE:
            status = parse_status(message, me)
            if status is None:
                continue
            if me in last and t >= last[me]:
                gap = max(gap, t - last[me])
            last[me] = t
            if t >= warm_until_ms:
                wrong = [n for n in STABLE if status.get(n) is not True]
                false_live += len(wrong)
                if wrong and len(examples) < 5:
                    examples.append(line[:300])
    return torn, forged, false_live, gap, examples, warnings


def ms_of_day_now():
    now = time.time()
    lt = time.localtime(now)
    return ((lt.tm_hour * 60 + lt.tm_min) * 60 + lt.tm_sec) * 1000 + int(now * 1000) % 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--binary", help="a pulse binary (default: build the release one)")
    args = ap.parse_args()
    if not 5 <= args.seconds <= 600:
        ap.error("--seconds: 5 to 600")
    binary = Path(args.binary) if args.binary else build()
    work = Path(tempfile.mkdtemp(prefix="pulse-abuse-"))
    epmd_port = free_port()
    cluster = Cluster(binary, work, epmd_port)
    stop = threading.Event()
    counts = Counter()
    peaks = {"threads": 0, "rss_kib": 0}
    lookups = []
    threads = []
    try:
        cluster.start("ab1@127.0.0.1", ["--epmd", "off"])
        cluster.start("ab2@127.0.0.1", ["--epmd", "off"])
        cluster.start("ab-epmd@127.0.0.1", ["--epmd", "serve"])
        # Its stdout is a pipe nobody reads (the Popen keeps it open).
        cluster.start("ab-mute@127.0.0.1", ["--epmd", "off"], stdout=subprocess.PIPE)
        cluster.start(STOPPED, ["--epmd", "off"])
        cluster.start(KILLED, ["--epmd", "off"])
        deadline = time.monotonic() + 10
        while any(cluster.addr(n) is None for n in cluster.procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        warm_until = ms_of_day_now() + 2000
        impostor_port, t1 = impostor_server(stop, "other@127.0.0.1" + FORGED + ESCAPES)
        hung_port, t2 = hung_server(stop)
        threads += [t1, t2]
        jobs = [(f"abuse-sockets-{n}", socket_abuse, (cluster, stop, counts, n)) for n in cluster.procs]
        jobs += [
            ("abuse-epmd", epmd_abuse, (cluster, stop, counts, lookups)),
            ("abuse-registry", registry_abuse, (cluster, stop, counts, impostor_port, hung_port)),
            ("abuse-processes", process_abuse, (cluster, stop, counts)),
            ("abuse-sample", sample, (cluster, stop, peaks)),
        ]
        for name, fn, fargs in jobs:
            t = threading.Thread(target=fn, args=fargs, name=name, daemon=True)
            t.start()
            threads.append(t)
        log(f"abusing 6 nodes for {args.seconds} s in {work}")
        stop.wait(args.seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        cluster.check_crashes()
        cluster.stop_all()
    torn, forged, false_live, gap, examples, warnings = judge_log(cluster.log, warm_until)
    total = sum(counts.counts.values())
    slowest = max((t for t, _ in lookups), default=0.0)
    failed_lookups = sum(1 for _, ok in lookups if not ok)
    print(f"pulse abuse run: {args.seconds} s, 6 nodes, {INTERVAL_MS} ms interval")
    print(f"  faults injected                   {total}")
    for kind, n in sorted(counts.counts.items()):
        print(f"    {kind:<32}  {n}")
    print(f"  crashes                           {len(cluster.crashes)} {cluster.crashes or ''}")
    print(f"  torn lines in the shared log      {torn}")
    print(f"  forged lines in the shared log    {forged}")
    print(f"  warning lines in the shared log   {warnings}")
    print(f"  live nodes reported false         {false_live}")
    for line in examples:
        print(f"    e.g. {line}")
    print(f"  max gap between status lines      {gap} ms")
    print(f"  max threads of a node             {peaks['threads']}")
    print(f"  max RSS of a node                 {peaks['rss_kib'] / 1024:.1f} MiB")
    print(f"  EPMD lookups, slowest / failed    {slowest * 1000:.0f} ms / {failed_lookups} of {len(lookups)}")
    for name in cluster.procs:
        err = (work / f"{name}.stderr").read_text(errors="replace").strip()
        if err:
            print(f"  stderr of {name}: {err[-300:]}")
    downs = {}
    for line in cluster.log.read_text(errors="replace").splitlines():
        m = LINE_RE.match(line)
        if m and m.group(5) in ("warning", "WARN"):
            msg = m.group(6)
            # Group by the message's shape: digits and names vary.
            key = re.sub(r"\d+", "N", msg)[:70]
            if any(f"node {n} is down" in msg for n in STABLE):
                key = "STABLE DOWN: " + msg[:150]
            downs[key] = downs.get(key, 0) + 1
    print("  warnings by kind:")
    for key, n in sorted(downs.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    {n:>5}  {key}")
    bad = cluster.crashes or torn or forged or false_live
    if bad:
        print(f"  kept for a look: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
