//! The `pulse-dns` thread: every interval it looks a name up in DNS, learns
//! the node names behind each new address, and proposes them to the round
//! over a channel. It never removes anyone: DNS answers may be partial or
//! shuffled, so only a ping decides who is alive.
//!
//! A node's name comes from the EPMD on its address (`NAMES_REQ`; pulse's
//! `--epmd serve` answers it), or, when a fixed distribution port is given,
//! from the handshake with that port. The round reports members whose ping
//! failed; their address is asked again, and an EPMD that answers without
//! the name says the node left.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use log::{debug, info, warn};

use crate::dns::{self, ResolvConf};
use crate::erlang::Identity;
use crate::erlang::epmd::names as epmd_names;
use crate::erlang::handshake::HandshakeError;
use crate::erlang::link::{self, DialError};
use crate::error::DnsError;
use crate::name::NodeName;

/// Most addresses taken from one answer: far more nodes than one node can
/// keep links to.
const MAX_ADDRESSES: usize = 1024;
/// Most addresses whose names are remembered.
const MAX_CACHED: usize = 4096;
/// Most nodes taken from one address's EPMD: a host runs a few; a reply
/// listing thousands must not flood the membership.
const MAX_NAMES_PER_ADDRESS: usize = 64;

/// A node DNS led to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its name, as its EPMD or its handshake gave it.
    pub name: NodeName,
    /// Its distribution listener.
    pub addr: SocketAddr,
}

/// What the thread tells the round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nodes behind the addresses of one answer (maybe not all of them).
    Candidates(Vec<Candidate>),
    /// This node's EPMD answers without its name: it left gracefully.
    Left(NodeName),
}

/// Where and how to look.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The name to look up.
    pub name: String,
    /// The distribution port every node listens on, when fixed: names then
    /// come from the handshake instead of EPMD.
    pub port: Option<u16>,
    /// The name servers and search domains.
    pub resolv: ResolvConf,
    /// EPMD's port on every address.
    pub epmd_port: u16,
    /// Time between lookups.
    pub interval: Duration,
    /// Deadline of one lookup, and of one question to a node.
    pub timeout: Duration,
}

/// What the round asks of the thread.
enum Request {
    /// Ask again who is at this address: this member failed a ping there.
    Check(NodeName, SocketAddr),
    /// Finish.
    Stop,
}

/// The running thread: stopped and joined when dropped.
pub(crate) struct Resolver {
    requests: Sender<Request>,
    /// Set at stop, so a long round of questions ends early.
    stopping: Arc<AtomicBool>,
    found: Receiver<Found>,
    thread: Option<JoinHandle<()>>,
}

impl Resolver {
    /// Starts the thread; the first lookup runs at once. `me` is who we are
    /// in a handshake that only asks a node's name.
    pub(crate) fn start(settings: Settings, me: Arc<Identity>) -> io::Result<Resolver> {
        let (request_tx, request_rx) = crossbeam_channel::unbounded();
        let (found_tx, found_rx) = crossbeam_channel::unbounded();
        let stopping = Arc::new(AtomicBool::new(false));
        let mut state = State {
            settings,
            me,
            named: HashMap::new(),
            checked: HashMap::new(),
            failing: false,
            stopping: stopping.clone(),
            found: found_tx,
        };
        let thread = thread::Builder::new()
            .name("pulse-dns".into())
            .spawn(move || state.run(&request_rx))?;
        Ok(Resolver {
            requests: request_tx,
            stopping,
            found: found_rx,
            thread: Some(thread),
        })
    }

    /// Everything found since the last call.
    pub(crate) fn found(&self) -> Vec<Found> {
        self.found.try_iter().collect()
    }

    /// Asks again who is at `addr`, because `name` failed a ping there.
    pub(crate) fn check(&self, name: NodeName, addr: SocketAddr) {
        let _ = self.requests.send(Request::Check(name, addr));
    }
}

/// Stops the thread (it finishes the question under way) and joins it.
impl Drop for Resolver {
    fn drop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.requests.send(Request::Stop);
        thread.join().expect("the DNS thread never panics");
    }
}

/// The thread's state.
struct State {
    settings: Settings,
    me: Arc<Identity>,
    /// The nodes behind each address, and when that was learnt.
    named: HashMap<IpAddr, (Vec<Candidate>, Instant)>,
    /// When each failing member was last checked, so a member that fails
    /// every round is asked about once an interval.
    checked: HashMap<NodeName, Instant>,
    /// Whether lookups fail: logged once, until one works again.
    failing: bool,
    stopping: Arc<AtomicBool>,
    found: Sender<Found>,
}

impl State {
    /// Lookups every interval; between them, the round's requests. A
    /// lookup that is due goes before the next request, so no stream of
    /// checks can hold lookups back.
    fn run(&mut self, requests: &Receiver<Request>) {
        let mut next = Instant::now();
        loop {
            if Instant::now() >= next {
                self.lookup();
                next = Instant::now() + self.settings.interval;
            }
            match requests.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(Request::Check(name, addr)) => self.check(name, addr),
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// One lookup, then the new or stale addresses named, for at most one
    /// interval (the rest wait for the next lookup) and never past a stop.
    fn lookup(&mut self) {
        let deadline = Instant::now() + self.settings.timeout;
        let ips = match dns::resolve(&self.settings.resolv, &self.settings.name, deadline) {
            Ok(ips) => ips,
            Err(e) => {
                if !self.failing {
                    warn!(
                        "DNS lookup of {} failed: {e} (members stay as they are)",
                        self.settings.name
                    );
                }
                self.failing = true;
                return;
            }
        };
        if std::mem::take(&mut self.failing) {
            info!("DNS lookup of {} answers again", self.settings.name);
        }
        let mut ips = ips;
        if ips.len() > MAX_ADDRESSES {
            debug!(
                "{} addresses for {}: taking {MAX_ADDRESSES}",
                ips.len(),
                self.settings.name
            );
            ips.truncate(MAX_ADDRESSES);
        }
        if self.named.len() > MAX_CACHED {
            self.named.retain(|ip, _| ips.contains(ip));
        }
        let mut candidates = Vec::new();
        let refresh = self.settings.refresh();
        let budget = Instant::now() + self.settings.interval.max(self.settings.timeout);
        for ip in ips {
            // An address is asked again now and then: another node may have
            // registered in the same EPMD since.
            let stale = self
                .named
                .get(&ip)
                .is_none_or(|(_, at)| at.elapsed() >= refresh);
            if stale && Instant::now() < budget && !self.stopping.load(Ordering::SeqCst) {
                match self.ask(ip) {
                    Ok(found) if !found.is_empty() => {
                        self.named.insert(ip, (found, Instant::now()));
                    }
                    Ok(_) => {
                        debug!("no node names at {ip} yet");
                        self.named.remove(&ip);
                    }
                    Err(e) => {
                        debug!("cannot name the node at {ip}: {e}");
                        self.named.remove(&ip);
                    }
                }
            }
            if let Some((found, _)) = self.named.get(&ip) {
                candidates.extend(found.iter().cloned());
            }
        }
        let _ = self.found.send(Found::Candidates(candidates));
    }

    /// A member failed a ping: learn afresh who is at its address.
    fn check(&mut self, name: NodeName, addr: SocketAddr) {
        let now = Instant::now();
        if self
            .checked
            .get(&name)
            .is_some_and(|at| now.duration_since(*at) < self.settings.interval)
        {
            return;
        }
        self.checked
            .retain(|_, at| now.duration_since(*at) < self.settings.ttl_hint());
        self.checked.insert(name.clone(), now);
        self.named.remove(&addr.ip());
        if self.settings.port.is_some() {
            // No EPMD to ask: only the TTL can tell a leave.
            return;
        }
        match self.ask(addr.ip()) {
            Ok(found) => {
                if !found.iter().any(|c| c.name == name) {
                    let _ = self.found.send(Found::Left(name));
                }
                if !found.is_empty() {
                    let _ = self.found.send(Found::Candidates(found.clone()));
                    self.named.insert(addr.ip(), (found, Instant::now()));
                }
            }
            Err(e) => debug!("cannot ask {} about {name}: {e}", addr.ip()),
        }
    }

    /// The nodes at `ip`, from its EPMD or from a handshake with the port.
    fn ask(&self, ip: IpAddr) -> Result<Vec<Candidate>, String> {
        names_at(
            ip,
            self.settings.port,
            self.settings.epmd_port,
            &self.me,
            self.settings.timeout,
        )
    }
}

impl Settings {
    /// How long the names learnt at an address are trusted: thirty
    /// intervals, 5 s to 60 s. Costs one small EPMD question per address
    /// per period, and the node asked a thread to answer it: at ten
    /// intervals and 50 nodes, five of each a round. A new address is asked
    /// at once and a member's failed ping has its address asked again; a
    /// new node at a known address is found within this period.
    fn refresh(&self) -> Duration {
        (self.interval * 30).clamp(Duration::from_secs(5), Duration::from_secs(60))
    }

    /// How long a check is remembered: long enough to space them out.
    fn ttl_hint(&self) -> Duration {
        self.interval * 10
    }
}

/// The nodes at `ip`: from its EPMD, or with a fixed `port` from a handshake
/// that asks for a name nobody has, so the node says its own.
pub(crate) fn names_at(
    ip: IpAddr,
    port: Option<u16>,
    epmd_port: u16,
    me: &Identity,
    timeout: Duration,
) -> Result<Vec<Candidate>, String> {
    let named = |alive: &str, port: u16| -> Option<Candidate> {
        let name = format!("{alive}@{ip}").parse().ok()?;
        Some(Candidate {
            name,
            addr: SocketAddr::new(ip, port),
        })
    };
    if let Some(port) = port {
        let addr = SocketAddr::new(ip, port);
        return match link::dial(addr, me, "", Instant::now() + timeout, || true) {
            Err(DialError::Handshake(HandshakeError::NameMismatch { got })) => {
                let name = got.parse::<NodeName>().map_err(|e| e.to_string())?;
                Ok(vec![Candidate { name, addr }])
            }
            Err(e) => Err(e.to_string()),
            Ok(_) => Err("a node answered to the empty name".into()),
        };
    }
    let at = SocketAddr::new(ip, epmd_port);
    let names = epmd_names::names(at, timeout).map_err(|e| e.to_string())?;
    Ok(names
        .iter()
        .take(MAX_NAMES_PER_ADDRESS)
        .filter_map(|(alive, port)| named(alive, *port))
        .collect())
}

/// The resolver's settings for `source`: `--dns-server`, else the name
/// servers of `/etc/resolv.conf`.
pub(crate) fn settings(
    config: &crate::config::Config,
    source: &super::DnsName,
) -> Result<Settings, DnsError> {
    let resolv = match config.dns_server {
        // Every query to it would fail: better said once, at start.
        Some(server) if !can_answer(server) => {
            return Err(DnsError::Unreachable(server));
        }
        Some(server) => ResolvConf {
            servers: vec![server],
            search: Vec::new(),
            ndots: 1,
        },
        None => {
            let text = std::fs::read_to_string("/etc/resolv.conf").map_err(DnsError::ResolvConf)?;
            let conf = ResolvConf::parse(&text);
            if conf.servers.is_empty() {
                return Err(DnsError::NoNameServer);
            }
            conf
        }
    };
    Ok(Settings {
        name: source.name.clone(),
        port: source.port,
        resolv,
        epmd_port: config.epmd_port,
        interval: config.interval,
        // A dead name server costs the DNS thread this much, never a round.
        timeout: config
            .interval
            .clamp(Duration::from_secs(1), Duration::from_secs(2)),
    })
}

/// Whether a query can be sent to `server` and answered: not port 0, not
/// an unspecified, multicast or broadcast address.
fn can_answer(server: SocketAddr) -> bool {
    let ip = server.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    server.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn a_name_server_nobody_can_ask_fails_the_set_up() {
        let mut config = Config::for_node("r1@127.0.0.1", "c").expect("config");
        let source: super::super::DnsName = "tasks.pulse".parse().expect("name");
        for bad in [
            "0.0.0.0:53",
            "127.0.0.1:0",
            "224.0.0.1:53",
            "255.255.255.255:53",
            "[::]:53",
        ] {
            config.dns_server = Some(bad.parse().expect("an address"));
            let why = settings(&config, &source).expect_err(bad);
            assert!(matches!(why, DnsError::Unreachable(_)), "{why}");
            assert!(
                why.to_string().contains(&format!("--dns-server {bad}")),
                "{why}"
            );
        }
        config.dns_server = Some("127.0.0.1:5353".parse().expect("an address"));
        let ok = settings(&config, &source).expect("a usable server");
        assert_eq!(
            ok.resolv.servers,
            config.dns_server.into_iter().collect::<Vec<_>>()
        );
    }
}
