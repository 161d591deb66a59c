//! Half-open handshakes: connections that stop partway through the
//! handshake, however many and under whatever names, are closed by the
//! handshake's limit, cost the node nothing once closed, and never keep a
//! real peer from linking, even when there are more of them than the node
//! takes inbound links.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::faults::under_ulimit;
use crate::forged::{read_msg, send_msg, send_name};
use crate::util::{
    Node, TempDir, registered_addr, thread_stats, wait_for, wait_until, write_record,
};

/// The node's handshake limit (docs/ARCHITECTURE.md), and how much later
/// than that a connection may still be closed.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(7);
const SLACK: Duration = Duration::from_secs(1);
/// Half-open connections per test: more than the attacked node's inbound
/// cap.
const CONNECTIONS: usize = 500;
/// The attacked node's descriptor limit, soft and hard: room for 149
/// inbound links ((512 - 64) / 3, see `fds::link_cap`).
const NOFILE: &str = "-n 512";
const INBOUND_CAP: usize = 149;
/// The restarting peer's pace: it must link within one interval plus the
/// timeout, and a few seconds to start a process on a loaded machine. The
/// node's record in its registry is never touched, so it gets a long TTL.
const PEER_ARGS: [&str; 8] = [
    "--interval",
    "500",
    "--timeout",
    "500",
    "--ttl",
    "600000",
    "--epmd",
    "off",
];
const PEER_LINKS_WITHIN: Duration = Duration::from_millis(500 + 500 + 2500);

const NODE: &str = "ho1@127.0.0.1";
const PEER: &str = "ho2@127.0.0.1";

/// The last step a half-open connection takes before it falls silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SilentAfter {
    /// It sends its name and reads nothing.
    SendName,
    /// It reads the status.
    Status,
    /// It reads the status and, after an `ok`, the challenge.
    Challenge,
}

const STEPS: [SilentAfter; 3] = [
    SilentAfter::SendName,
    SilentAfter::Status,
    SilentAfter::Challenge,
];

/// One half-open connection, as the attacker sees it.
struct HalfOpen {
    stream: TcpStream,
    step: SilentAfter,
    opened: Instant,
    /// What the node answered, as far as it was read.
    heard: String,
    /// When the node closed it, as far as we saw.
    closed: Option<Instant>,
}

impl HalfOpen {
    /// Connects to `addr` as `name` and goes on to `step`.
    fn open(addr: SocketAddr, name: &str, step: SilentAfter) -> HalfOpen {
        let opened = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let mut conn = HalfOpen {
            stream,
            step,
            opened,
            heard: String::new(),
            closed: None,
        };
        if let Err(e) = conn.handshake_until_silent(name) {
            if is_timeout(&e) {
                conn.heard.push_str(" (then nothing for 2 s)");
            } else {
                conn.closed = Some(Instant::now());
                conn.heard.push_str(&format!(" (then {e})"));
            }
        }
        conn
    }

    fn handshake_until_silent(&mut self, name: &str) -> io::Result<()> {
        let s = &mut self.stream;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        send_msg(s, &send_name(name.as_bytes()))?;
        if self.step == SilentAfter::SendName {
            return Ok(());
        }
        let status = read_msg(s)?;
        self.heard = String::from_utf8_lossy(&status).into_owned();
        if self.step == SilentAfter::Challenge && status.starts_with(b"sok") {
            read_msg(s)?;
            self.heard.push_str(" + challenge");
        }
        Ok(())
    }

    /// How long it was open, or has been so far.
    fn lifetime(&self) -> Duration {
        self.closed.unwrap_or_else(Instant::now) - self.opened
    }

    /// Notes the node's close, reading (and dropping) whatever it sent.
    fn poll(&mut self, now: Instant, buf: &mut [u8]) {
        while self.closed.is_none() {
            match self.stream.read(buf) {
                Ok(0) => self.closed = Some(now),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => self.closed = Some(now),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The node's open descriptors and threads.
fn usage(pid: u32) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (fds, thread_stats(pid).len())
}

/// The most a node used while the connections were watched.
#[derive(Default)]
struct Peak {
    fds: usize,
    threads: usize,
}

/// Watches `conns` until the node has closed each or `until`; meanwhile
/// notes the node's peak usage.
fn watch(mut conns: Vec<HalfOpen>, pid: u32, until: Instant) -> (Vec<HalfOpen>, Peak) {
    for c in &conns {
        c.stream.set_nonblocking(true).expect("nonblocking");
    }
    let mut buf = [0u8; 512];
    let mut peak = Peak::default();
    loop {
        let now = Instant::now();
        for c in &mut conns {
            c.poll(now, &mut buf);
        }
        let (fds, threads) = usage(pid);
        peak.fds = peak.fds.max(fds);
        peak.threads = peak.threads.max(threads);
        if conns.iter().all(|c| c.closed.is_some()) || now >= until {
            return (conns, peak);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// A line per step: how many connections, how many the node closed
/// within a second (refused or evicted), the longest any lived, and the
/// first few different things they heard.
fn summary(conns: &[HalfOpen]) -> String {
    STEPS
        .iter()
        .map(|step| {
            let of_step: Vec<&HalfOpen> = conns.iter().filter(|c| c.step == *step).collect();
            let longest = of_step
                .iter()
                .map(|c| c.lifetime())
                .max()
                .unwrap_or_default();
            let mut heard: Vec<&str> = of_step.iter().map(|c| c.heard.as_str()).collect();
            heard.sort_unstable();
            heard.dedup();
            heard.truncate(4);
            let soon = of_step
                .iter()
                .filter(|c| c.lifetime() < Duration::from_secs(1))
                .count();
            format!(
                "silent after {step:?}: {} connections, {soon} closed within 1 s, \
                 longest open {longest:.2?}, heard {heard:?}\n",
                of_step.len()
            )
        })
        .collect()
}

/// Opens connections `range` to `addr` under `name_of(i)`, each silent
/// after a step of its own.
fn open_many(
    addr: SocketAddr,
    range: std::ops::Range<usize>,
    name_of: &dyn Fn(usize) -> String,
) -> Vec<HalfOpen> {
    range
        .map(|i| HalfOpen::open(addr, &name_of(i), STEPS[i % STEPS.len()]))
        .collect()
}

/// The node under attack, on a registry of its own that does not list the
/// peer (so only the peer's connections can link the two), and the peer,
/// linked, on one that lists only the node. Records the test writes in the
/// node's registry are never touched, so the node gets a long TTL too.
fn node_and_linked_peer(node_dir: &TempDir, peer_dir: &TempDir) -> (Node, Node, SocketAddr) {
    let args: Vec<String> = [
        "--name",
        NODE,
        "--cookie",
        "c",
        "--interval",
        "500",
        "--ttl",
        "600000",
        "--epmd",
        "off",
        "--sync-dir",
        &node_dir.sync_dir().to_string_lossy(),
        "--log-file",
        &node_dir.log_file().to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let node = Node::spawn(NODE, under_ulimit(node_dir, NOFILE, &args));
    wait_for(
        "the node's first round",
        Duration::from_secs(9),
        &[&node],
        || {
            node.last_status()
                .is_some_and(|s| s.get(NODE) == Some(&true))
        },
    );
    let addr = registered_addr(&node_dir.sync_dir(), NODE);
    write_record(&peer_dir.sync_dir(), NODE, &addr);
    let peer = Node::start(peer_dir, PEER, "c", &PEER_ARGS);
    wait_for(
        "the peer to link",
        Duration::from_secs(9),
        &[&node, &peer],
        || peer.sees_all_alive(&[NODE, PEER]),
    );
    (node, peer, addr.parse().expect("node address"))
}

/// 500 half-open connections under `name_of(i)`, a third silent after each
/// step; the peer restarts halfway through opening them. Every connection
/// is closed within the handshake limit plus a second, the peer links
/// again within an interval plus its timeout, and afterwards the node is
/// back to the descriptors and threads it had before.
fn half_open_flood(tag: &str, name_of: &dyn Fn(usize) -> String) {
    // 500 sockets here, whatever the soft limit the tests started with.
    pulse::internals::raise_limit().expect("raise the descriptor limit");
    let (node_dir, peer_dir) = (TempDir::new(tag), TempDir::new(&format!("{tag}-peer")));
    let (node, peer, addr) = node_and_linked_peer(&node_dir, &peer_dir);
    let pid = node.child.id();
    // Settled: the peer's link has its reader, nothing else is under way.
    let mut before = usage(pid);
    wait_until(Duration::from_secs(1), || {
        let now = usage(pid);
        let settled = now == before;
        before = now;
        settled
    });

    let mut conns = open_many(addr, 0..CONNECTIONS / 2, name_of);
    peer.signal("KILL");
    drop(peer);
    conns.extend(open_many(addr, CONNECTIONS / 2..CONNECTIONS, name_of));
    let last_opened = conns.iter().map(|c| c.opened).max().expect("connections");
    let until = last_opened + HANDSHAKE_LIMIT + SLACK + Duration::from_millis(500);
    let watcher = thread::Builder::new()
        .name("test-halfopen-watch".into())
        .spawn(move || watch(conns, pid, until))
        .expect("spawn the watcher");

    let restarted = Instant::now();
    let peer = Node::start(&peer_dir, PEER, "c", &PEER_ARGS);
    // Judged with the rest, once the connections are all seen to.
    let relinked = wait_until(PEER_LINKS_WITHIN, || peer.sees_all_alive(&[NODE, PEER]))
        .then(|| restarted.elapsed());

    let (conns, peak) = watcher.join().expect("the watcher never panics");
    let report = format!(
        "{tag}: peer linked {relinked:.2?} after its restart (None: not within \
         {PEER_LINKS_WITHIN:?}); node peak {} fds, {} threads (before: {} fds, {} threads)\n{}",
        peak.fds,
        peak.threads,
        before.0,
        before.1,
        summary(&conns)
    );
    eprintln!("{report}");
    let late: Vec<String> = conns
        .iter()
        .filter(|c| c.lifetime() > HANDSHAKE_LIMIT + SLACK)
        .take(5)
        .map(|c| {
            format!(
                "{:?} heard {:?}: open {:.2?}",
                c.step,
                c.heard,
                c.lifetime()
            )
        })
        .collect();
    assert!(
        late.is_empty(),
        "open past the handshake limit plus a second: {late:#?}\n{report}{}",
        node.dump()
    );
    assert!(
        relinked.is_some(),
        "the restarted peer did not link in time\n{report}{}{}",
        node.dump(),
        peer.dump()
    );
    assert!(
        peak.threads <= before.1 + INBOUND_CAP,
        "more threads than the inbound cap\n{report}{}",
        node.dump()
    );
    wait_for(
        "the node's descriptors and threads back to where they were",
        Duration::from_secs(3),
        &[&node, &peer],
        || {
            let now = usage(pid);
            now.0 <= before.0 && now.1 <= before.1
        },
    );
}

#[test]
fn half_open_handshakes_under_the_peers_own_name_close_in_time_and_keep_no_peer_out() {
    // One name for all: the restarting peer's own, so each is an impostor
    // holding a handshake under the name the peer needs.
    half_open_flood("halfopen-one", &|_| PEER.to_string());
}

#[test]
fn half_open_handshakes_under_500_names_close_in_time_and_keep_no_peer_out() {
    half_open_flood("halfopen-many", &|i| format!("half{i}@127.0.0.1"));
}

/// How long until the node closes `s`, reading what it sends meanwhile;
/// `None` when it is still open after `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    while let Some(left) = limit.checked_sub(start.elapsed()).filter(|l| !l.is_zero()) {
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return None,
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// Connects as `name` offering `flags`, and returns the status the node
/// answers.
fn status_for(addr: SocketAddr, name: &str, flags: u64) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("read timeout");
    let mut msg = send_name(name.as_bytes());
    // 'N', then the flags.
    msg[1..9].copy_from_slice(&flags.to_be_bytes());
    send_msg(&mut s, &msg).expect("send_name");
    let status = read_msg(&mut s).expect("status");
    (s, status)
}

#[test]
fn every_refusal_is_followed_by_a_close_as_otp_does() {
    const FLAGS: u64 = 0x0107_0F94;
    // A member the node dials in vain: a listener that never accepts, under
    // a name that sorts before the node's, so its own connection to us is
    // told `nok` while our dial is under way.
    const DIALED: &str = "a0@127.0.0.1";
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let (node_dir, peer_dir) = (TempDir::new("refusals"), TempDir::new("refusals-peer"));
    let hung_addr = hung.local_addr().expect("addr").to_string();
    write_record(&node_dir.sync_dir(), DIALED, &hung_addr);
    let (node, peer, addr) = node_and_linked_peer(&node_dir, &peer_dir);
    let closed = |what: &str, s: &mut TcpStream| {
        let after = closed_within(s, SLACK);
        assert!(
            after.is_some(),
            "still open a second after {what}\n{}",
            node.dump()
        );
    };

    let (mut s, status) = status_for(addr, "nomaps@127.0.0.1", 0);
    assert_eq!(status, b"snot_allowed", "{}", node.dump());
    closed("not_allowed", &mut s);

    let (mut s, status) = status_for(addr, PEER, FLAGS);
    assert_eq!(status, b"salive", "{}", node.dump());
    send_msg(&mut s, b"sfalse").expect("sfalse");
    closed("alive answered false", &mut s);

    // Our dial to DIALED lasts a second at least, then backs off: asked
    // again and again, the node says `nok` while one is under way.
    let mut refused = None;
    wait_for("a nok", Duration::from_secs(9), &[&node, &peer], || {
        let (s, status) = status_for(addr, DIALED, FLAGS);
        refused = (status == b"snok").then_some(s);
        refused.is_some()
    });
    let mut s = refused.expect("a refused connection");
    closed("nok", &mut s);
    drop(hung);
}
