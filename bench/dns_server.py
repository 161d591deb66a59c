"""A DNS server on 127.0.0.1 (UDP and TCP, one port) for the DNS-mode row:
one name whose A records are the addresses of the nodes started so far.
Answers over 512 bytes are truncated over UDP, as real servers do, so
larger clusters go through TCP as they would in production."""

import socket
import struct
import threading

UDP_LIMIT = 512


class DnsServer:
    def __init__(self, name):
        self.name = name.lower().rstrip(".")
        self.addrs = []
        self.lock = threading.Lock()
        self.stopping = False
        for _ in range(50):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            break
        else:
            raise OSError("no port free for both UDP and TCP")
        tcp.listen(64)
        udp.settimeout(0.2)
        tcp.settimeout(0.2)
        self.udp, self.tcp, self.port = udp, tcp, port
        self.threads = [
            threading.Thread(target=self.serve_udp, name="bench-dns-udp", daemon=True),
            threading.Thread(target=self.serve_tcp, name="bench-dns-tcp", daemon=True),
        ]
        for t in self.threads:
            t.start()

    @property
    def addr(self):
        return f"127.0.0.1:{self.port}"

    def add(self, ip):
        with self.lock:
            if ip not in self.addrs:
                self.addrs.append(ip)

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join()
        self.udp.close()
        self.tcp.close()

    def serve_udp(self):
        while not self.stopping:
            try:
                query, peer = self.udp.recvfrom(1500)
            except OSError:
                continue
            reply = self.reply(query, udp=True)
            if reply:
                self.udp.sendto(reply, peer)

    def serve_tcp(self):
        while not self.stopping:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    (length,) = struct.unpack(">H", head)
                    reply = self.reply(conn.recv(length, socket.MSG_WAITALL), udp=False)
                    if reply:
                        conn.sendall(struct.pack(">H", len(reply)) + reply)
                except (OSError, struct.error):
                    pass

    def reply(self, query, udp):
        """The reply to one query; None for anything that is not one."""
        if len(query) < 17:
            return None
        qid, flags = struct.unpack(">HH", query[:4])
        labels, pos = [], 12
        while pos < len(query) and query[pos] != 0:
            n = query[pos]
            labels.append(query[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        if pos + 5 > len(query):
            return None
        qtype = struct.unpack(">H", query[pos + 1 : pos + 3])[0]
        question = query[12 : pos + 5]
        known = ".".join(labels).lower() == self.name
        with self.lock:
            addrs = list(self.addrs) if known and qtype == 1 else []
        rcode = 0 if known else 3
        answers = b"".join(
            b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 5, 4) + socket.inet_aton(ip) for ip in addrs
        )
        # QR, the query's RD, RA, the response code.
        out_flags = 0x8080 | (flags & 0x0100) | rcode
        header = struct.pack(">HHHHHH", qid, out_flags, 1, len(addrs), 0, 0)
        reply = header + question + answers
        if udp and len(reply) > UDP_LIMIT:
            header = struct.pack(">HHHHHH", qid, out_flags | 0x0200, 1, 0, 0, 0)
            reply = header + question
        return reply
