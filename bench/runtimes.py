"""How to start a node of each kind (pulse, the recipe's Elixir node; Serf
is in serf.py), and the hung peer: a listener that accepts TCP and never
answers, with a registry record kept fresh."""

import os
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

from common import COOKIE, FIXTURE, PROCS, BenchError, log, now
from dns_server import DnsServer
from garage import BUCKET, Store
from procfs import cpu_reading, status_field, trees_of


class Runtime:
    """What the phases ask of every kind of node; the defaults are pulse's."""

    label = "?"
    start_timeout = 10.0
    periodic = True  # a status line every interval (else only on a change)
    has_hung_peer = True
    removes_record_on_leave = True  # a graceful leave ends up known by every node
    leave_note = None  # why not, when it never is
    expires = True  # a killed node's entry goes away
    expire_note = None  # why not, when it never does
    leave_signal = signal.SIGTERM
    left_text = "node {name} left"  # what a leaving node logs
    asks_again = False  # a node's view can also be read another way (disagreeing)
    # How long the registry may take to show a change (a listing period;
    # 0: every round looks), added to the waits for joins and leaves.
    registry_period_s = 0.0

    def wait_s(self, what, interval_s):
        """How long to wait until every node knows of a kill -9 ("detect")
        or a graceful leave ("leave")."""
        rounds = {"detect": 10, "leave": 10 if self.removes_record_on_leave else 5}[what]
        return rounds * interval_s + (self.registry_period_s if what == "leave" else 0)

    def expire_wait_s(self, interval_s):
        """How long to wait until a killed node has expired everywhere."""
        return 30 * interval_s

    def window_s(self, opts):
        return opts.window_s

    def mark(self):
        """A reading of what the runtime counts besides its nodes (the S3
        store's requests and CPU), for figures() later; None: nothing."""
        return None

    def figures(self, mark, nodes):
        return None

    def setup(self, run_dir):
        pass

    def teardown(self):
        pass

    def parser(self, name):
        """What turns a node's stdout lines into status lines (None: the
        lines are status lines already)."""
        return None

    def settle(self, nodes, timeout):
        """For a runtime without rounds: waits until it has nothing left to
        spread once every node knows every node."""

    def disagreeing(self, nodes, pred):
        """The nodes whose view, asked another way than their status lines,
        does not satisfy pred."""
        raise NotImplementedError


class PulseRuntime(Runtime):
    label = "pulse"

    def __init__(self, binary, interval_ms):
        self.binary = binary
        self.interval_ms = interval_ms

    def name(self, i):
        return f"p{i}@127.0.0.{i + 1}"

    def spawn(self, name, sync_dir, log_file, stderr):
        argv = [
            str(self.binary), "--name", name, "--cookie", COOKIE,
            "--sync-dir", str(sync_dir), "--log-file", str(log_file),
            "--interval", str(self.interval_ms),
            # The registry finds every peer; an EPMD some other program left
            # running on this host must not refuse a name and stop a node.
            "--epmd", "off",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        return PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)

    def register_hung(self, name, port):
        return None


class PulseDnsRuntime(PulseRuntime):
    """pulse finding its peers in DNS (--registry dns:NAME) instead of the
    directory: a DNS server of the benchmark's own on 127.0.0.1 answers with
    the addresses of the nodes started so far (over TCP past 512 bytes), and
    each node answers EPMD's names request itself on its own address."""

    label = "pulse-dns"
    has_hung_peer = False  # the hung peer is a registry record; DNS has no such entry
    dns_name = "pulse.bench"

    def __init__(self, binary, interval_ms):
        super().__init__(binary, interval_ms)
        self.dns = None
        self.epmd_port = None

    def name(self, i):
        # Apart from the directory runs' 127.0.0.x, in case one lingers.
        return f"d{i}@127.0.3.{i + 1}"

    def setup(self, run_dir):
        self.dns = DnsServer(self.dns_name)
        self.epmd_port = free_port()

    def teardown(self):
        if self.dns is not None:
            self.dns.stop()
            self.dns = None

    def spawn(self, name, sync_dir, log_file, stderr):
        self.dns.add(name.split("@")[1])
        argv = [
            str(self.binary), "--name", name, "--cookie", COOKIE,
            "--registry", f"dns:{self.dns_name}", "--dns-server", self.dns.addr,
            "--epmd", "serve", "--log-file", str(log_file),
            "--interval", str(self.interval_ms),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env["ERL_EPMD_PORT"] = str(self.epmd_port)
        return PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)


class PulseS3Runtime(PulseRuntime):
    """pulse finding its peers in S3 (--registry s3://BUCKET/PREFIX): a
    Garage server of the run's own on 127.0.0.1 (bench/garage.py), started
    fresh for each run, with every request counted at a proxy in front of
    it. Each node lists and writes its object once a registry period, so a
    join or a leave is seen within a period."""

    has_hung_peer = False  # the hung peer is a record in the directory
    DEFAULT_PERIOD_MS = 10000  # pulse's default for S3

    def __init__(self, binary, interval_ms, period_ms, garage_bin, octet):
        super().__init__(binary, interval_ms)
        self.period_ms = period_ms
        self.registry_period_s = period_ms / 1000.0
        # pulse's TTL for S3: 5 intervals, at least 3 registry periods.
        self.ttl_s = max(5 * interval_ms, 3 * period_ms) / 1000.0
        self.garage_bin = garage_bin
        self.octet = octet
        self.store = None
        self.label = self.label_for(period_ms)

    @classmethod
    def label_for(cls, period_ms):
        """pulse-s3 at the default period, else pulse-s3-<period>s."""
        if period_ms == cls.DEFAULT_PERIOD_MS:
            return "pulse-s3"
        return f"pulse-s3-{period_ms / 1000:g}s"

    def name(self, i):
        # Apart from the other runs' addresses, in case one lingers.
        return f"s3n{i}@127.0.{self.octet}.{i + 1}"

    def setup(self, run_dir):
        self.store = Store(self.garage_bin, run_dir)

    def teardown(self):
        if self.store is not None:
            self.store.stop()
            self.store = None

    def expire_wait_s(self, interval_s):
        # Expiry waits out the TTL, then a listing shows the object gone.
        return self.ttl_s + 2 * self.registry_period_s + 10 * interval_s

    def window_s(self, opts):
        # A node's S3 work comes once a period: the window holds at least 3.
        return max(opts.window_s, 3 * self.registry_period_s)

    def spawn(self, name, sync_dir, log_file, stderr):
        argv = [
            str(self.binary), "--name", name, "--cookie", COOKIE,
            "--registry", f"s3://{BUCKET}/sync_dir/",
            "--registry-period", str(self.period_ms),
            "--log-file", str(log_file), "--interval", str(self.interval_ms),
            "--epmd", "off",
        ]
        # Only the run's own store and key: no AWS variable of the caller's
        # (a profile, a real endpoint) reaches a node.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "AWS_"))}
        env.update(self.store.vars())
        return PROCS.spawn(argv, stdout=subprocess.PIPE, stderr=stderr, env=env)

    def mark(self):
        pid = self.store.garage.proc.pid
        return {"t": now(), "requests": self.store.proxy.snapshot(),
                "cpu": cpu_reading(trees_of([pid]))[1][pid]}

    def figures(self, mark, nodes):
        """The store's requests since the mark (by kind, per node and per
        node per minute over `nodes` nodes) and Garage's CPU and RSS."""
        end = self.mark()
        secs = end["t"] - mark["t"]
        kinds = sorted(set(end["requests"]) | set(mark["requests"]))
        by_kind = {k: end["requests"].get(k, 0) - mark["requests"].get(k, 0) for k in kinds}
        total = sum(by_kind.values())
        pid = self.store.garage.proc.pid
        return {
            "seconds": secs,
            "nodes": nodes,
            "requests": total,
            "by_kind": by_kind,
            "per_node": total / nodes,
            "per_node_per_min": total / nodes / (secs / 60.0),
            "by_kind_per_node_per_min": {k: v / nodes / (secs / 60.0)
                                         for k, v in by_kind.items()},
            "store_cores": (end["cpu"][2] - mark["cpu"][2]) / 1e9 / secs,
            "store_rss_kib": status_field(pid, "VmRSS"),
            "proxy_errors": list(self.store.proxy.errors),
        }


class ElixirRuntime(Runtime):
    label = "elixir"
    start_timeout = 60.0
    removes_record_on_leave = False  # the recipe never removes its file
    leave_note = "never: the recipe leaves its registry file behind"
    expires = False  # ... nor anyone else's
    expire_note = "the recipe never expires a dead node's file"

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


