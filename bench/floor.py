"""The floor: examples/floor.rs, a bare ping-pong over K kept loopback TCP
connections in the shape of a pulse node (one pinger thread writing every
request then reading every reply, one answerer thread per connection),
measured the way a node is measured.

With K = N links at the cluster's interval, the floor process sends and
answers what one node of an N-node cluster does per round, so its CPU per
round and per ping sit directly beside a node's. With interval 0 (one link,
back to back) it gives the cost of one round trip alone.

The floor is driven over its stdin: "count" makes it print "pings=P
failed=F", so the pings are counted exactly at the edges of the CPU window;
closing stdin stops it."""

import os
import re
import selectors
import subprocess
import time

from common import PROCS, BenchError, log, now
from procfs import cpu_figures, cpu_reading, status_field, trees_of

COUNT_RE = re.compile(r"^pings=(\d+) failed=(\d+)$")


class Floor:
    """One running floor process and its stdout, read line by line against
    deadlines."""

    def __init__(self, binary, links, interval_ms, run_dir):
        self.links = links
        argv = [str(binary), "--links", str(links), "--interval", str(interval_ms)]
        self.stderr_path = run_dir / f"floor-{links}-{interval_ms}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = PROCS.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=err)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def line(self, timeout, what):
        deadline = now() + timeout
        while b"\n" not in self.buf:
            left = deadline - now()
            if left <= 0:
                raise BenchError(f"floor (K={self.links}) printed no {what} within "
                                 f"{timeout:.0f} s (exit code {self.proc.poll()}); "
                                 f"stdout so far {self.buf[-200:]!r}; stderr {self.stderr()!r}")
            if not self.sel.select(min(left, 0.25)):
                continue
            try:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
            except BlockingIOError:
                continue
            if not chunk:
                raise BenchError(f"floor (K={self.links}) closed its stdout before its {what} "
                                 f"(exit code {self.exit_code()}); stderr {self.stderr()!r}")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\n", 1)
        return raw.decode("utf-8", "replace")

    def count(self):
        """(pings, failed) so far."""
        try:
            self.proc.stdin.write(b"count\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise BenchError(f"floor (K={self.links}) stopped reading its stdin: {e} "
                             f"(exit code {self.proc.poll()}); stderr {self.stderr()!r}")
        text = self.line(10, "count")
        m = COUNT_RE.match(text)
        if not m:
            raise BenchError(f"floor answered {text!r} to count")
        return int(m.group(1)), int(m.group(2))

    def exit_code(self):
        """The exit code of a floor that closed its stdout (it is exiting)."""
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "none yet"

    def stderr(self):
        try:
            return self.stderr_path.read_text(errors="replace")[-300:]
        except OSError:
            return ""

    def stop(self):
        """Closes stdin (its stop signal) and waits for a clean exit; kills
        its group if it does not come."""
        if self.proc.poll() is not None:
            stopped = f"exited early with code {self.proc.returncode}"
        try:
            self.proc.stdin.close()
            if self.proc.returncode is None:
                stopped = self.line(10, "stopped line")
            self.proc.wait(timeout=10)
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            stopped = f"killed: {e}"
        PROCS.kill_group(self.proc)
        self.proc.wait()
        self.sel.close()
        self.proc.stdout.close()
        return stopped


def measure(binary, links, interval_ms, window_s, run_dir):
    """CPU, memory and threads of the floor with `links` links over a window,
    with the pings it completed in it."""
    label = f"K={links}" + ("" if interval_ms else ", tight loop")
    log(f"floor {label}")
    res = {"runtime": "floor", "n": links, "links": links, "interval_ms": interval_ms,
           "errors": []}
    fl = Floor(binary, links, interval_ms, run_dir)
    try:
        ready = fl.line(10, "ready line")
        if ready != f"ready links={links}":
            raise BenchError(f"floor said {ready!r} instead of ready")
        # Its first round is done.
        deadline = now() + 10 + 2 * interval_ms / 1000
        while fl.count()[0] < links:
            if now() > deadline:
                raise BenchError(f"floor {label}: its first round took more than "
                                 f"{2 * interval_ms} ms")
            time.sleep(0.02)  # polling the condition above
        trees = trees_of([fl.proc.pid])
        before = cpu_reading(trees)
        p0, f0 = fl.count()
        time.sleep(window_s)  # a measurement window, not a wait for a condition
        p1, f1 = fl.count()
        after = cpu_reading(trees)
        pings = p1 - p0
        if pings <= 0 or f1 > f0:
            raise BenchError(f"floor {label}: {pings} pings, {f1 - f0} failed in the window; "
                             f"stderr {fl.stderr()!r}")
        w = after[0] - before[0]
        # A "round" is one interval; a tight loop has no interval, so its
        # figures are per ping only.
        interval_s = interval_ms / 1000 if interval_ms else w
        res["pings"] = pings
        res["pings_per_s"] = pings / w
        res["cpu"] = cpu_figures(before, after, interval_s, pings / (w / interval_s))
        pid = fl.proc.pid
        res["rss_kib"] = {"median": status_field(pid, "VmRSS"),
                          "max": status_field(pid, "VmRSS")}
        res["threads"] = {"median": status_field(pid, "Threads"),
                          "max": status_field(pid, "Threads")}
    except BenchError as e:
        log(f"floor {label}: BROKE: {e}")
        res["errors"].append(str(e))
    finally:
        res["stopped"] = fl.stop()
    return res
