"""Serf (HashiCorp's gossip membership agent, Debian's `serf` package) as a
runtime of the benchmark: N agents on loopback, each on its own address,
run with Serf's defaults (the `lan` profile).

What an agent knows is read from its own log, as pulse's status lines are
read: at `-log-level info` the agent logs `serf: EventMemberJoin: NAME`,
`EventMemberFailed`, `EventMemberLeave` (and `EventMemberReap`) at the moment
it changes that member's status in its member list, the list `serf members`
prints. SerfView turns each such line into a status line in pulse's shape
(`s1[s1: true, s2: false]`: alive is true, failed is false, left or reaped
is no entry), timestamped on arrival by the same reader thread, so every
wait of the benchmark reads Serf exactly as it reads pulse.

Each time the benchmark finds a condition met, it asks every agent for its
member list once over Serf's RPC (a handshake, then `members`, msgpack over
TCP on 127.0.0.1) and checks that the list agrees with the log: the log
gives the moment, the RPC confirms the view.
"""

import re
import signal
import socket
import struct
import subprocess
import time

from common import PROCS, BenchError, now
from lines import keyword_key
from runtimes import Runtime, free_port

GOSSIP_PORT = 7946  # Serf's default; each agent has its own address


# --------------------------------------------------------------------------
# Msgpack: the few types Serf's RPC sends and the maps of strings and small
# integers it is sent.


class Short(Exception):
    """The buffer ends inside a msgpack object: read more."""


def pack(v):
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int) and 0 <= v < 1 << 32:
        return bytes([v]) if v < 128 else b"\xce" + struct.pack(">I", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xda" + struct.pack(">H", len(b)) + b
    if isinstance(v, dict) and len(v) < 16:
        return bytes([0x80 | len(v)]) + b"".join(pack(k) + pack(x) for k, x in v.items())
    raise ValueError(f"cannot pack {v!r}")


# Fixed-width scalars: first byte -> struct format.
SCALARS = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
           0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}
# Lengths of str, bin, array and map: first byte -> struct format.
LENGTHS = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I",
           0xDC: ">H", 0xDD: ">I", 0xDE: ">H", 0xDF: ">I"}


def unpack(buf, i=0):
    """(value, index after it) of the msgpack object at buf[i]; Short when
    it is not all there."""

    def take(n):
        if i + n > len(buf):
            raise Short()
        return buf[i : i + n]

    b = take(1)[0]
    i += 1
    if b < 0x80:
        return b, i
    if b >= 0xE0:
        return b - 0x100, i
    if b in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[b], i
    if b in SCALARS:
        fmt = SCALARS[b]
        v, = struct.unpack(fmt, take(struct.calcsize(fmt)))
        return v, i + struct.calcsize(fmt)
    if 0xA0 <= b <= 0xBF:
        kind, n = "str", b & 0x1F
    elif 0x90 <= b <= 0x9F:
        kind, n = "array", b & 0x0F
    elif 0x80 <= b <= 0x8F:
        kind, n = "map", b & 0x0F
    elif b in LENGTHS:
        fmt = LENGTHS[b]
        n, = struct.unpack(fmt, take(struct.calcsize(fmt)))
        i += struct.calcsize(fmt)
        kind = "str" if b in (0xD9, 0xDA, 0xDB) else "bin" if b <= 0xC6 else \
            "array" if b in (0xDC, 0xDD) else "map"
    else:
        raise ValueError(f"msgpack type 0x{b:02x} not supported")
    if kind in ("str", "bin"):
        raw = take(n)
        return (raw.decode("utf-8", "replace") if kind == "str" else bytes(raw)), i + n
    out = [] if kind == "array" else {}
    for _ in range(n):
        if kind == "array":
            v, i = unpack(buf, i)
            out.append(v)
        else:
            k, i = unpack(buf, i)
            out[k], i = unpack(buf, i)
    return out, i


def rpc(addr, command, timeout=5.0):
    """The body of one agent's answer to an RPC command without arguments
    (members, stats), after the handshake."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.settimeout(timeout)
        buf = b""

        def read():
            nonlocal buf
            while True:
                try:
                    v, used = unpack(buf)
                    buf = buf[used:]
                    return v
                except Short:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise BenchError(f"serf RPC {addr[0]}:{addr[1]} closed the connection")
                    buf += chunk

        def call(command, seq, body=None, reply=False):
            s.sendall(pack({"Command": command, "Seq": seq}) +
                      (pack(body) if body is not None else b""))
            head = read()
            if head.get("Error"):
                raise BenchError(f"serf RPC {command}: {head['Error']}")
            return read() if reply else None

        try:
            call("handshake", 0, {"Version": 1})
            return call(command, 1, reply=True)
        except (OSError, ValueError) as e:
            raise BenchError(f"serf RPC {command} {addr[0]}:{addr[1]}: {e}")


def members_rpc(addr):
    """{name: status} of one agent's member list."""
    return {m["Name"]: m["Status"] for m in rpc(addr, "members")["Members"]}


def queued_rpc(addr):
    """The messages one agent still has to gossip: its intent, event and
    query queues."""
    st = rpc(addr, "stats")["serf"]
    return sum(int(st[q]) for q in ("intent_queue", "event_queue", "query_queue"))


# --------------------------------------------------------------------------
# An agent's view as a status line.

EVENT_RE = re.compile(r"\[INFO\] serf: EventMember(Join|Failed|Leave|Reap): (\S+)")

SHOWN = {"alive": "true", "failed": "false"}  # left: no entry; leaving: as is


def view_line(name, members):
    """A status line in pulse's shape from {member: status as shown}."""
    body = ", ".join(f"{keyword_key(n)}: {v}" for n, v in sorted(members.items()))
    return f"{name}[{body}]"


class SerfView:
    """One agent's member list, followed through its log lines."""

    def __init__(self, name):
        self.name = name
        self.members = {}

    def feed(self, text):
        """The new status line when `text` changed a member's status, else None."""
        m = EVENT_RE.search(text)
        if not m:
            return None
        kind, who = m.groups()
        if kind == "Join":
            self.members[who] = "true"
        elif kind == "Failed":
            self.members[who] = "false"
        else:
            self.members.pop(who, None)
        return view_line(self.name, self.members)


# --------------------------------------------------------------------------


class SerfRuntime(Runtime):
    label = "serf"
    start_timeout = 20.0
    periodic = False  # a line per change, none in between
    has_hung_peer = False  # its peers come from gossip, not a registry
    expires = False
    expire_note = ("Serf keeps a failed member, status failed, until its reconnect timeout "
                   "(24 h by default) reaps it")
    # Serf's graceful leave: SIGINT leaves, SIGTERM only shuts down unless
    # leave_on_terminate is set.
    leave_signal = signal.SIGINT
    left_text = "requesting graceful leave from Serf"
    asks_again = True  # over its RPC

    def __init__(self, binary):
        self.binary = binary
        self.rpc = {}  # name -> (host, port)

    @staticmethod
    def version(binary):
        """`serf version`, and the Debian package's version when there is one
        (Debian's build reports the version of its source tree's code)."""
        r = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
        out = (r.stdout.strip().splitlines() or ["?"])[0]
        try:
            deb = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "serf"],
                                 capture_output=True, text=True, timeout=10)
        except OSError:
            return out
        return f"{out}, Debian package {deb.stdout}" if deb.returncode == 0 else out

    def name(self, i):
        return f"s{i}"

    @staticmethod
    def gossip_addr(i):
        return f"127.0.4.{i + 1}:{GOSSIP_PORT}"

    def wait_s(self, what, interval_s):
        # Serf's timers are its own, not the interval: a kill -9 is known
        # after the suspicion timeout (4 to 24 probe intervals of 1 s, fewer
        # as other agents confirm the suspicion).
        return {"detect": 90.0, "leave": 30.0}[what]

    def spawn(self, name, sync_dir, log_file, stderr):
        i = int(name[1:])
        addr = self.gossip_addr(i)
        port = free_port()
        self.rpc[name] = ("127.0.0.1", port)
        argv = [str(self.binary), "agent", "-node", name, "-bind", addr, "-advertise", addr,
                "-rpc-addr", f"127.0.0.1:{port}", "-profile", "lan", "-log-level", "info"]
        if i > 1:
            argv += ["-join", self.gossip_addr(1)]
        return PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=stderr)

    def parser(self, name):
        return SerfView(name)

    def settle(self, nodes, timeout):
        """Until no agent has a message left to gossip (the joins' intents)."""
        deadline = now() + timeout
        while True:
            left = [n.name for n in nodes if queued_rpc(self.rpc[n.name])]
            if not left:
                return
            if now() > deadline:
                raise BenchError(f"{len(left)} agents still had messages queued after "
                                 f"{timeout:.0f} s (e.g. {left[0]})")
            time.sleep(0.1)  # polling the condition above

    def disagreeing(self, nodes, pred):
        """The agents whose member list, read over RPC, does not satisfy
        pred, each with the list as a status line."""
        out = []
        for n in nodes:
            got = members_rpc(self.rpc[n.name])
            shown = {m: SHOWN.get(st, st) for m, st in got.items() if st != "left"}
            line = view_line(n.name, shown)
            if not pred.fn(line):
                out.append((n.name, line))
        return out
