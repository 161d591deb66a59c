"""A real S3 server for the S3-mode rows: Garage on 127.0.0.1, one per run,
made as tests/util/garage.rs makes it (a single node, replication factor 1,
SQLite metadata; layout, bucket and key made with Garage's own CLI), and a
counting proxy in front of it, so every request a node sends is counted.

The proxy is a byte-for-byte TCP relay: SigV4 signs the Host header the
node sent, which reaches Garage unchanged. Only the node-to-store direction
is parsed, for the request lines (method and target) and bodies (by
Content-Length); Garage as installed by scripts/install-deps.sh is built
without its Prometheus metrics, so the count is taken here."""

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from common import PROCS, BenchError, log

REGION = "garage"  # the region Garage's S3 API signs for (its s3_region)
BUCKET = "pulse-bench"


def find():
    """The garage program: $PULSE_GARAGE/bin/garage, else install-deps'
    /opt/garage/bin/garage, else garage on PATH; None when none runs."""
    root = Path(os.environ.get("PULSE_GARAGE") or "/opt/garage")
    for cand in (root / "bin" / "garage", shutil.which("garage")):
        if cand and Path(cand).is_file():
            try:
                r = subprocess.run([str(cand), "--version"], capture_output=True, text=True,
                                   timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if r.returncode == 0:
                return Path(cand)
    return None


def version(binary):
    r = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    return (r.stdout.strip().splitlines() or ["garage ?"])[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env():
    # Garage reads these over its config file; the run's config must win.
    return {k: v for k, v in os.environ.items() if not k.startswith(("GARAGE_", "PULSE_"))}


class Garage:
    """A Garage server with bucket BUCKET and a key allowed on it."""

    def __init__(self, binary, run_dir):
        self.bin = binary
        self.dir = run_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        s3, rpc, admin = free_port(), free_port(), free_port()
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.s3_addr = ("127.0.0.1", s3)
        self.config = self.dir / "garage.toml"
        self.config.write_text(
            f'metadata_dir = "{self.dir}/meta"\n'
            f'data_dir = "{self.dir}/data"\n'
            'db_engine = "sqlite"\n'
            "replication_factor = 1\n"
            f'rpc_bind_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_public_addr = "127.0.0.1:{rpc}"\n'
            f'rpc_secret = "{secrets.token_hex(32)}"\n'
            "\n[s3_api]\n"
            f's3_region = "{REGION}"\n'
            f'api_bind_addr = "127.0.0.1:{s3}"\n'
            "\n[admin]\n"
            f'api_bind_addr = "127.0.0.1:{admin}"\n'
        )
        self.out = open(self.dir / "garage.out", "wb")
        env = clean_env()
        env["RUST_LOG"] = "garage=warn"
        self.proc = PROCS.spawn([str(binary), "-c", str(self.config), "server"],
                                stdout=self.out, stderr=subprocess.STDOUT, env=env)
        self.key = None

    def cli(self, deadline, *args):
        """`garage -c CONFIG ARGS...` until it succeeds (the server takes a
        moment to start, the layout to apply) or the deadline; its stdout."""
        while True:
            try:
                r = subprocess.run([str(self.bin), "-c", str(self.config), *args],
                                   capture_output=True, text=True, timeout=20,
                                   stdin=subprocess.DEVNULL, env=clean_env())
                if r.returncode == 0:
                    return r.stdout
                last = (r.stdout + r.stderr).strip()
            except subprocess.TimeoutExpired:
                last = "timed out"
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError(f"garage {' '.join(args)} failed: {last[-400:]}; "
                                 f"server: {self.tail()}")
            time.sleep(0.2)

    def setup(self):
        """Layout, bucket and key, as Garage's quick start makes them."""
        deadline = time.monotonic() + 60
        self.cli(deadline, "status")
        node_id = self.cli(deadline, "node", "id", "-q").strip().split("@")[0]
        if not node_id:
            raise BenchError("garage node id printed nothing")
        self.cli(deadline, "layout", "assign", "-z", "dc1", "-c", "1G", node_id)
        self.cli(deadline, "layout", "apply", "--version", "1")
        self.cli(deadline, "bucket", "create", BUCKET)
        made = self.cli(deadline, "key", "create", "pulse-bench")

        def field(label):
            for line in made.splitlines():
                if line.strip().startswith(label):
                    return line.split()[-1]
            raise BenchError(f"no {label!r} in garage key create's output: {made[-400:]}")

        self.key = (field("Key ID:"), field("Secret key:"))
        self.cli(deadline, "bucket", "allow", "--read", "--write", "--owner", BUCKET,
                 "--key", self.key[0])

    def tail(self):
        try:
            return (self.dir / "garage.out").read_text(errors="replace")[-400:]
        except OSError:
            return ""

    def stop(self):
        PROCS.kill_group(self.proc)
        self.proc.wait()
        self.out.close()


class CountingProxy:
    """Listens on 127.0.0.1, relays every connection to the store, and
    counts the requests that go through by kind (PUT, LIST, GET, DELETE,
    HEAD, other)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.stopping = False
        self.thread = threading.Thread(target=self.accept, name="s3-proxy", daemon=True)
        self.thread.start()

    def snapshot(self):
        with self.lock:
            return dict(self.counts)

    def count(self, kind):
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError as e:
                self.errors.append(f"cannot reach the store: {e}")
                conn.close()
                continue
            for s in (conn, up):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.connection, args=(conn, up), daemon=True,
                             name="s3-proxy").start()

    def connection(self, client, up):
        """One node's connection: replies relayed on a thread of their own,
        requests counted on this one; both sockets closed when both end."""
        down = threading.Thread(target=self.relay, args=(up, client), daemon=True,
                                name="s3-proxy-down")
        down.start()
        self.requests(client, up)
        down.join()
        client.close()
        up.close()

    def relay(self, src, dst):
        """Copies replies back unread."""
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        shut(dst)

    def requests(self, src, dst):
        """Copies requests on, counting each by its request line and
        skipping its body by Content-Length."""
        buf, body_left = b"", 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                buf += data
                while True:
                    if body_left:
                        skip = min(body_left, len(buf))
                        buf, body_left = buf[skip:], body_left - skip
                        if body_left:
                            break
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buf = buf[:end].decode("latin-1"), buf[end + 4 :]
                    body_left = self.parse(head)
        except OSError:
            pass
        shut(dst)

    def parse(self, head):
        """Counts one request; returns its body's length."""
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            self.errors.append(f"not a request line: {lines[0][:100]!r}")
            self.count("other")
            return 0
        method, target = parts[0], parts[1]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "transfer-encoding":
                self.errors.append(f"a chunked request ({method}): its body is not skipped")
        self.count(kind_of(method, target))
        return length

    def stop(self):
        self.stopping = True
        self.thread.join()
        self.sock.close()


def kind_of(method, target):
    """PUT, GET, DELETE and HEAD of an object; LIST (a GET of the bucket,
    path-style `/BUCKET?list-type=2...`); anything else is `other`."""
    path = unquote(target.split("?", 1)[0])
    has_key = "/" in path.strip("/")
    if method == "GET" and not has_key:
        return "LIST"
    if has_key and method in ("PUT", "GET", "DELETE", "HEAD"):
        return method
    return "other"


def shut(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Store:
    """Garage with its bucket and key, behind the counting proxy; what the
    S3-mode runtime starts before a run and stops after it."""

    def __init__(self, binary, run_dir):
        t0 = time.monotonic()
        self.garage = Garage(binary, run_dir)
        try:
            self.garage.setup()
            self.proxy = CountingProxy(self.garage.s3_addr)
        except BaseException:
            self.garage.stop()
            raise
        log(f"garage ready in {time.monotonic() - t0:.1f} s on {self.garage.endpoint}, "
            f"counted at {self.proxy.endpoint}")

    def vars(self):
        """The AWS variables for the nodes: the proxy's address, the key."""
        return {
            "AWS_ACCESS_KEY_ID": self.garage.key[0],
            "AWS_SECRET_ACCESS_KEY": self.garage.key[1],
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_S3": self.proxy.endpoint,
        }

    def stop(self):
        self.proxy.stop()
        self.garage.stop()
