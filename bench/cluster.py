"""A cluster of one runtime's nodes and the waits on their status lines."""

import os
import signal
import subprocess

from common import PROCS, BenchError, now
from lines import Node


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
        self.confirmed = 0  # views asked another way (Serf's RPC) that agreed

    def start(self, i):
        name = self.rt.name(i)
        with open(self.dir / f"{name}.stderr", "wb") as err:
            t0 = now()
            p = self.rt.spawn(name, self.sync, self.log_file, err)
        node = Node(name, p, t0, self.rt.parser(name))
        self.reader.add(node)
        self.nodes.append(node)
        self.all.append(node)
        return node

    def wait_first_status(self, node):
        """Seconds from exec to the node's first status line, as the harness
        read it and as the node stamped it (None when not known)."""
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
            stamp = node.status_at[0][1]
        return node.first_status - node.t_exec, None if stamp is None else stamp - node.t_exec

    def tail(self, node):
        other = [m for _, m in list(node.other)[-3:]]
        try:
            err = (self.dir / f"{node.name}.stderr").read_text(errors="replace")[-400:]
        except OSError:
            err = ""
        return f"last lines: {other}; stderr: {err!r}"

    def wait_all(self, observers, pred, since, timeout, must=True):
        """Waits until every observer's latest status line (printed after
        `since`) satisfies pred. Returns the worst node's seconds from
        `since` to the first line of its final run of satisfying lines, as
        the harness read it and as the node stamped it (None when a stamp
        is not known); (None, None) on timeout when not `must`."""
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
                        return None, None
                    n = pending[0]
                    last = n.history[-1][1] if n.history else "(none)"
                    if len(last) > 300:
                        last = last[:300] + "..."
                    raise BenchError(
                        f"{len(pending)} of {len(observers)} nodes never {pred.what} "
                        f"within {timeout:.0f} s; e.g. {n.name}: {last}")
                self.reader.cond.wait(min(left, 0.25))
            read, stamped = [], []
            for n in observers:
                first = None
                for t, msg, stamp in reversed(n.history):
                    if t <= since or not pred.fn(msg):
                        break
                    first = (t, stamp)
                read.append(first[0] - since)
                stamped.append(None if first[1] is None else first[1] - since)
        self.confirm(observers, pred)
        worst_stamped = None if None in stamped else max(stamped)
        return max(read), worst_stamped

    def confirm(self, observers, pred):
        """Asks every observer's view another way where the runtime has one
        (Serf's RPC) and breaks when it disagrees with the status lines."""
        if not self.rt.asks_again:
            return
        wrong = self.rt.disagreeing(observers, pred)
        if wrong:
            name, line = wrong[0]
            raise BenchError(f"{len(wrong)} of {len(observers)} nodes' lines said they "
                             f"{pred.what}, but asked again they do not; e.g. {name}: "
                             f"{line[:300]}")
        self.confirmed += len(observers)

    def wait_lines(self, observers, count, since, timeout):
        """Waits until every observer printed `count` status lines after `since`."""
        deadline = now() + timeout
        with self.reader.cond:
            while True:
                short = [n for n in observers
                         if sum(1 for t, _ in n.status_at[-count - 1 :] if t > since) < count]
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


