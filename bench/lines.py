"""Nodes and their status lines: one reader thread timestamps every line a
node prints on its stdout when it arrives (monotonic clock), and predicates
say what a status line shows.

Each status line also keeps the time the node itself stamped on it, moved
onto the same monotonic clock: on a saturated machine the harness reads a
pipe late, and the node's own stamp says when the node made the line.

A node whose runtime prints no status lines (Serf) has a parser that makes
one, without a stamp, from each line that changes what the node knows."""

import os
import re
import selectors
import threading
import time
from collections import deque

from common import now

# The console line of both pulse and the Elixir recipe:
# "23:50:09.641 [INFO] message" / "08:27:40.557 [info] message".
LINE_RE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{3}) \[\w+\] (.*)$")

# A membership event line: "p1@127.0.0.2: node p51@127.0.0.52 joined".
JOINED_RE = re.compile(r"^(?:\S+: )?node (\S+) joined$")

# A stamp further than this from the line's arrival is not trusted (the
# node and the harness disagree on the time zone, or the clock jumped).
STAMP_TRUST_S = 60.0


def stamped_at(stamp, t, wall):
    """The monotonic time of a line's own stamp (`HH:MM:SS.mmm`, local time
    of day), given the monotonic and wall time the line arrived; None when
    the two are too far apart to trust."""
    h, m, rest = stamp.split(":")
    stamp_s = int(h) * 3600 + int(m) * 60 + float(rest)
    local = time.localtime(wall)
    arrival_s = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec + wall % 1.0
    lag = (arrival_s - stamp_s) % 86400.0
    if lag > 43200.0:
        lag -= 86400.0
    if abs(lag) > STAMP_TRUST_S:
        return None
    return t - lag


def keyword_key(name):
    """How a node name appears as a key in a status line (Elixir's inspect)."""
    if re.fullmatch(r"[a-z_][A-Za-z0-9_@]*", name):
        return name
    return f'"{name}"'


# What a status line too long for one log line ends with, after its list:
# " (+9000 not shown: 0 true, 9000 false)".
LEFT_OUT_RE = re.compile(r"\] \(\+\d+ not shown: \d+ true, \d+ false\)$")


def shown(msg):
    """The message without the note of entries left out, if it has one."""
    m = LEFT_OUT_RE.search(msg)
    return msg[: m.start() + 1] if m else msg


def entries(msg):
    """The {key: value} of a status line's message."""
    msg = shown(msg)
    body = msg[msg.index("[") + 1 : -1]
    if not body:
        return {}
    out = {}
    for part in body.split(", "):
        k, _, v = part.rpartition(": ")
        out[k] = v
    return out


class Node:
    def __init__(self, name, proc, t_exec, parser=None):
        self.name = name
        self.proc = proc
        self.t_exec = t_exec
        self.parser = parser  # makes status lines from other lines (Serf), or None
        self.first_status = None
        self.history = deque(maxlen=200)  # (t, message, stamp) of status lines
        self.status_at = []  # (t, stamp or None) of every status line
        self.other = deque(maxlen=200)  # (t, message) of other lines
        self.joined = {}  # name: (t, stamp or None) of the first "node NAME joined"
        self.seq = 0
        self.buf = b""
        self.eof = None
        self.exit_time = None

    def is_status(self, msg):
        return msg.startswith(self.name + "[") and shown(msg).endswith("]")


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
            t, wall = now(), time.time()
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
                    self.feed(node, data, t, wall)

    def feed(self, node, data, t, wall):
        buf = node.buf + data
        *lines, node.buf = buf.split(b"\n")
        got = False
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            if node.parser is not None:
                msg, stamp = node.parser.feed(text), None
                if msg is None:
                    node.other.append((t, text.strip()))
                    continue
            else:
                m = LINE_RE.match(text)
                if not m:
                    node.other.append((t, text))
                    continue
                msg = m.group(2)
                if not node.is_status(msg):
                    node.other.append((t, msg))
                    j = JOINED_RE.match(msg)
                    if j and j.group(1) not in node.joined:
                        node.joined[j.group(1)] = (t, stamped_at(m.group(1), t, wall))
                        got = True
                    continue
                stamp = stamped_at(m.group(1), t, wall)
            node.history.append((t, msg, stamp))
            node.status_at.append((t, stamp))
            node.seq += 1
            if node.first_status is None:
                node.first_status = t
            got = True
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
        t, msg, _ = node.history[-1]
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


