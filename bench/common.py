"""What every part of the benchmark shares: the repository's paths, the
error that means "the benchmark broke", the clock, progress logging, the
child processes (each in its own session, killed with its group at the
end) and small statistics functions."""

import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "recipe_node"
MUSL = "x86_64-unknown-linux-musl"
COOKIE = "pulse-bench-cookie"
MiB = 1024 * 1024


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
# Statistics and paths


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


def shown(path):
    """A path as printed and stored: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)

