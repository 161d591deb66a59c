//! A small DNS server for tests, on 127.0.0.1 (UDP and TCP on one port):
//! A records for names it is given, and the ways real servers misbehave,
//! switched at run time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use simple_dns::rdata::{A, RData};
use simple_dns::{CLASS, Packet, PacketFlag, QTYPE, RCODE, ResourceRecord, TYPE};

/// Most bytes a UDP answer may have without EDNS.
const UDP_LIMIT: usize = 512;

/// How the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The records, truncated over UDP only when over 512 bytes.
    Normal,
    /// At most this many records per answer, a different random subset and
    /// order each time.
    Partial(usize),
    /// SERVFAIL to everything.
    ServFail,
    /// No answer at all.
    Silent,
    /// Random bytes, then a reply with the wrong id, then nothing useful.
    Garbage,
    /// Every UDP answer truncated (TC, no records): only TCP gives them.
    Truncate,
}

struct Shared {
    records: BTreeMap<String, Vec<Ipv4Addr>>,
    mode: Mode,
    seed: u64,
}

/// A running server; stopped on drop.
pub(crate) struct DnsServer {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    pub udp_queries: Arc<AtomicUsize>,
    pub tcp_queries: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    pub(crate) fn start() -> DnsServer {
        // UDP and TCP on the same port: try until both binds succeed.
        let (udp, tcp) = (0..50)
            .find_map(|_| {
                let udp = UdpSocket::bind("127.0.0.1:0").ok()?;
                let port = udp.local_addr().ok()?.port();
                let tcp = TcpListener::bind(("127.0.0.1", port)).ok()?;
                Some((udp, tcp))
            })
            .expect("a port free for UDP and TCP");
        let addr = udp.local_addr().expect("addr");
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            | 1;
        let shared = Arc::new(Mutex::new(Shared {
            records: BTreeMap::new(),
            mode: Mode::Normal,
            seed,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (udp_queries, tcp_queries) = (Arc::default(), Arc::default());
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let mut threads = Vec::new();
        {
            let (shared, stop, count) = (shared.clone(), stop.clone(), Arc::clone(&udp_queries));
            threads.push(
                thread::Builder::new()
                    .name("test-dns-udp".into())
                    .spawn(move || serve_udp(&udp, &shared, &stop, &count))
                    .expect("spawn"),
            );
        }
        {
            let (shared, stop, count) = (shared.clone(), stop.clone(), Arc::clone(&tcp_queries));
            threads.push(
                thread::Builder::new()
                    .name("test-dns-tcp".into())
                    .spawn(move || serve_tcp(&tcp, &shared, &stop, &count))
                    .expect("spawn"),
            );
        }
        DnsServer {
            addr,
            shared,
            stop,
            udp_queries,
            tcp_queries,
            threads,
        }
    }

    /// Sets the A records of `name`.
    pub(crate) fn set(&self, name: &str, ips: &[Ipv4Addr]) {
        let mut s = self.shared.lock().expect("lock");
        s.records.insert(name.to_ascii_lowercase(), ips.to_vec());
    }

    pub(crate) fn set_mode(&self, mode: Mode) {
        self.shared.lock().expect("lock").mode = mode;
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_udp(socket: &UdpSocket, shared: &Mutex<Shared>, stop: &AtomicBool, count: &AtomicUsize) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        count.fetch_add(1, Ordering::SeqCst);
        for reply in replies(&buf[..n], shared, true) {
            let _ = socket.send_to(&reply, from);
        }
    }
}

fn serve_tcp(
    listener: &TcpListener,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
    count: &AtomicUsize,
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok((mut stream, _)) = listener.accept() else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        count.fetch_add(1, Ordering::SeqCst);
        let _ = answer_tcp(&mut stream, shared);
    }
}

fn answer_tcp(stream: &mut TcpStream, shared: &Mutex<Shared>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut query)?;
    for reply in replies(&query, shared, false) {
        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&reply);
        stream.write_all(&framed)?;
    }
    Ok(())
}

/// The datagrams to send for one query.
fn replies(query: &[u8], shared: &Mutex<Shared>, udp: bool) -> Vec<Vec<u8>> {
    let Ok(packet) = Packet::parse(query) else {
        return Vec::new();
    };
    let Some(question) = packet.questions.first().cloned() else {
        return Vec::new();
    };
    let mut s = shared.lock().expect("lock");
    let mode = s.mode;
    let mut reply = Packet::new_reply(packet.id());
    reply.set_flags(PacketFlag::RECURSION_AVAILABLE);
    // Copied from the query, as servers do (Erlang's resolver checks it).
    if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(question.clone());
    match mode {
        Mode::Silent => return Vec::new(),
        Mode::ServFail => {
            *reply.rcode_mut() = RCODE::ServerFailure;
            return vec![reply.build_bytes_vec().expect("build")];
        }
        Mode::Garbage => {
            let mut junk: Vec<u8> = (0..64).map(|_| next(&mut s.seed) as u8).collect();
            // Same id as the query, so it gets past the cheapest check.
            junk[..2].copy_from_slice(&query[..2]);
            junk[2] |= 0x80;
            let mut wrong_id = reply.clone();
            wrong_id.set_id(packet.id().wrapping_add(7));
            return vec![
                junk,
                vec![0xff; 3],
                wrong_id.build_bytes_vec().expect("build"),
            ];
        }
        _ => {}
    }
    let name = question.qname.to_string().to_ascii_lowercase();
    let Some(ips) = s.records.get(&name).cloned() else {
        *reply.rcode_mut() = RCODE::NameError;
        return vec![reply.build_bytes_vec().expect("build")];
    };
    if question.qtype != QTYPE::TYPE(TYPE::A) {
        // Known name, no AAAA records.
        return vec![reply.build_bytes_vec().expect("build")];
    }
    let mut ips = ips;
    if let Mode::Partial(k) = mode {
        // Fisher-Yates with the server's own generator.
        for i in (1..ips.len()).rev() {
            let j = (next(&mut s.seed) % (i as u64 + 1)) as usize;
            ips.swap(i, j);
        }
        ips.truncate(k);
    }
    let header_only = reply.build_bytes_vec().expect("build");
    for ip in &ips {
        reply.answers.push(ResourceRecord::new(
            question.qname.clone(),
            CLASS::IN,
            5,
            RData::A(A::from(*ip)),
        ));
    }
    let full = reply.build_bytes_vec().expect("build");
    if udp && (mode == Mode::Truncate || full.len() > UDP_LIMIT) {
        let mut cut = header_only;
        cut[2] |= 0x02; // TC
        return vec![cut];
    }
    vec![full]
}

/// xorshift64: enough randomness to shuffle answers.
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}
