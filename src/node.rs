//! A running node: starts its threads, wires their channels, stops them.
//!
//! ```text
//! pulse-listen ── pulse-in (one per inbound link): handshake, then read it
//! pulse-round  ── every interval: heartbeat, scan, expire, ping all over the link table,
//!                  then events and the status line to the log
//!                  (pulse-dial: one per missing link; pulse-link: reads a link we opened)
//! ```

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use log::{info, warn};

use crate::config::{Config, EpmdMode};
use crate::decimal::Fixed;
use crate::discovery::resolver::{self, Resolver};
use crate::discovery::{self, DnsPeers};
use crate::erlang::{Identity, epmd};
use crate::links::Links;
use crate::listener::Listener;
use crate::membership::{Event, Membership, Reason};
use crate::name::NodeName;
use crate::probe::{self, Prober};
use crate::registration::{EPMD_TIMEOUT, Registrar};
use crate::registry::own::{ClaimError, Holder, OwnEntry};
use crate::registry::{Record, Registry};
use crate::report::Reporter;
use crate::rounds::{Members, Rounds};

/// Why a node could not start.
#[derive(Debug)]
pub enum Error {
    /// The distribution port could not be bound.
    Bind(SocketAddr, io::Error),
    /// A live node holds our name (why we think so).
    Taken(NodeName, String),
    /// Our entry could not be written.
    Registry(io::Error),
    /// A thread could not be started.
    Thread(io::Error),
    /// EPMD already knows our name, or cannot be served.
    Epmd(String),
    /// No name server to ask.
    Dns(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Taken(name, why) => write!(f, "the name {name} is taken: {why}"),
            Error::Registry(e) => write!(f, "cannot write to the registry: {e}"),
            Error::Thread(e) => write!(f, "cannot start a thread: {e}"),
            Error::Epmd(why) => write!(f, "epmd: {why}"),
            Error::Dns(why) => write!(f, "dns: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// How many membership events wait for an embedder that is not reading
/// them; past that, new ones are dropped for it (the log keeps them all).
const EVENTS_KEPT: usize = 1024;

/// One member as the latest round saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its node name.
    pub name: NodeName,
    /// Whether it answered the latest round's ping.
    pub alive: bool,
}

/// A running node.
pub struct Node {
    addr: SocketAddr,
    events: Receiver<Event>,
    members: Members,
    stop: Sender<()>,
    round: JoinHandle<()>,
    listener: Listener,
    /// Held for the node's life: stopping it takes our name out of EPMD.
    epmd: Option<EpmdPresence>,
    /// In DNS mode, how long our EPMD answers without our name after the
    /// links close, so peers whose pings fail learn that we left.
    linger: Option<Duration>,
}

/// How this node is known to EPMD.
enum EpmdPresence {
    /// Registered with the host's EPMD, and again whenever it comes back.
    Registered(Registrar),
    /// Answering EPMD requests ourselves.
    Serving(epmd::Responder),
}

impl Node {
    /// Starts a node: listens, claims its name in the registry, registers
    /// with EPMD and starts the rounds. The first round runs at once.
    pub fn start(config: &Config) -> Result<Node, Error> {
        let me = Arc::new(Identity::new(config.name.as_str(), &config.cookie));
        let bind = SocketAddr::new(config.ip, config.port);
        let socket = TcpListener::bind(bind).map_err(|e| Error::Bind(bind, e))?;
        let addr = socket.local_addr().map_err(|e| Error::Bind(bind, e))?;

        let (links, link_events) = Links::new(me.clone());
        let listener = Listener::start(socket, links.clone()).map_err(Error::Thread)?;
        // Known to the registry and EPMD only once the listener answers, so
        // a node that finds us can connect at once. The registry first: its
        // judge asks EPMD whether a foreign node holds the name, which must
        // not find our own registration.
        // In DNS mode there is no entry to claim: DNS and EPMD make us known.
        let own = match &config.dns {
            Some(_) => Ok(None),
            None => OwnEntry::claim(
                &config.sync_dir,
                &Record::new(config.name.clone(), addr, SystemTime::now()),
                |holder| still_held(holder, config, &me),
            )
            .map(Some)
            .map_err(|e| match e {
                ClaimError::Taken(why) => Error::Taken(config.name.clone(), why),
                ClaimError::Io(e) => Error::Registry(e),
            }),
        };
        let own = match own {
            Ok(own) => own,
            Err(e) => {
                listener.stop();
                return Err(e);
            }
        };
        let epmd_presence = match join_epmd(config, addr.port()) {
            Ok(presence) => presence,
            Err(e) => {
                if let Some(own) = own {
                    let _ = own.remove();
                }
                listener.stop();
                return Err(e);
            }
        };
        let dns = match dns_peers(config, addr, &me) {
            Ok(dns) => dns,
            Err(e) => {
                listener.stop();
                return Err(e);
            }
        };
        let (events_tx, events) = crossbeam_channel::bounded(EVENTS_KEPT);
        let members = Members::default();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        // A round's line keeps pace with the interval: a member's first
        // dial holds it a tenth of the interval at most (in the node's first
        // round, up to the timeout).
        let prober = Prober::new(links, link_events, config.epmd_port)
            .stop_on(stop_rx.clone())
            .hold_dials_for(config.interval / 10);
        let rounds = Rounds {
            membership: Membership::new(config.name.clone(), config.interval, config.ttl),
            config: config.clone(),
            registry: Registry::new(&config.sync_dir),
            own,
            dns,
            prober,
            reporter: Reporter::new(config.name.as_str(), events_tx),
            heartbeat_failing: false,
            listing_failing: false,
            members: members.clone(),
        };
        let round = thread::Builder::new()
            .name("pulse-round".into())
            .spawn(move || rounds.run(stop_rx))
            .map_err(Error::Thread)?;
        info!(
            "node {} listening on {addr}, registry {}",
            config.name,
            discovery::source(config)
        );
        Ok(Node {
            addr,
            events,
            members,
            stop: stop_tx,
            round,
            listener,
            epmd: epmd_presence,
            linger: config
                .dns
                .as_ref()
                .map(|_| config.interval * 2 + config.timeout),
        })
    }

    /// Where the node listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Membership events (joined, down, back, left, expired) as they are
    /// logged. Every clone of the receiver takes from the same queue.
    pub fn events(&self) -> Receiver<Event> {
        self.events.clone()
    }

    /// Every member the latest round pinged (this node included), with
    /// whether it answered, and those that joined since (not alive before
    /// a round pings them); empty before the first round.
    pub fn members(&self) -> Vec<Member> {
        self.members.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Leaves gracefully: finishes the round under way, removes our record,
    /// closes every link and joins every thread.
    pub fn shutdown(self) {
        // Dropped, not sent to: the round thread sees it both between rounds
        // and while it waits for replies.
        drop(self.stop);
        self.round.join().expect("the round thread never panics");
        // The record is gone before the listener stops answering, so peers
        // see a leave, not a failure.
        match (self.epmd, self.linger) {
            (Some(EpmdPresence::Serving(responder)), Some(linger)) => {
                // Our EPMD stays, without our name, for peers to ask.
                responder.leave();
                self.listener.stop();
                // Deliberately bounded: a second signal exits at once.
                thread::sleep(linger);
                responder.stop();
            }
            (epmd, _) => {
                match epmd {
                    Some(EpmdPresence::Serving(responder)) => responder.stop(),
                    Some(EpmdPresence::Registered(registrar)) => registrar.stop(),
                    None => {}
                }
                self.listener.stop();
            }
        }
    }
}

/// In DNS mode, the thread that looks peers up, and the members it found.
fn dns_peers(
    config: &Config,
    addr: SocketAddr,
    me: &Arc<Identity>,
) -> Result<Option<DnsPeers>, Error> {
    let Some(source) = &config.dns else {
        return Ok(None);
    };
    if source.port.is_none() && config.epmd == EpmdMode::Off {
        warn!(
            "{source} with --epmd off: peers name nodes through EPMD, so they cannot find this one"
        );
    }
    let settings = resolver::settings(config, source).map_err(Error::Dns)?;
    let resolver = Resolver::start(settings, me.clone()).map_err(Error::Thread)?;
    let own = Record::new(config.name.clone(), addr, SystemTime::now());
    Ok(Some(DnsPeers::new(resolver, own)))
}

/// Registers with EPMD (now and whenever it comes back), or starts
/// answering for it, as configured.
fn join_epmd(config: &Config, port: u16) -> Result<Option<EpmdPresence>, Error> {
    let at = SocketAddr::new(config.ip, config.epmd_port);
    let alive = config.name.alive();
    match config.epmd {
        EpmdMode::Off => Ok(None),
        EpmdMode::Serve => {
            let responder = epmd::Responder::start(at, alive, port)
                .map_err(|e| Error::Epmd(format!("cannot serve on {at}: {e}")))?;
            info!("answering EPMD requests for {alive} on {at}");
            Ok(Some(EpmdPresence::Serving(responder)))
        }
        EpmdMode::Auto => {
            match Registrar::start(at, alive, port, config.interval, meanwhile(config)) {
                Ok(registrar) => Ok(Some(EpmdPresence::Registered(registrar))),
                Err(e @ epmd::RegisterError::NameTaken(_)) => Err(Error::Epmd(e.to_string())),
                Err(epmd::RegisterError::Io(e)) => Err(Error::Thread(e)),
            }
        }
    }
}

/// How peers reach this node while EPMD does not name it, if they can.
fn meanwhile(config: &Config) -> Option<&'static str> {
    match &config.dns {
        None => Some("pulse nodes reach it through its registry entry"),
        Some(source) if source.port.is_some() => Some("pulse nodes reach it on its fixed port"),
        // Peers ask each address's EPMD for the names there.
        Some(_) => None,
    }
}

/// Why an existing entry under our name is still held, or `None` when it is
/// stale. A pulse node holds its entry's lock for its life (frozen or not);
/// one that answers at its recorded address is alive even without the lock
/// (a wrong cookie still proves it is there). A foreign node is alive while
/// its file is fresh, or while EPMD on its host knows the name.
fn still_held(holder: &Holder, config: &Config, me: &Identity) -> Option<String> {
    if holder.locked {
        return Some("a running pulse node holds its registry entry".into());
    }
    if let Some(record) = &holder.record {
        let addr = record.addr?;
        let deadline = Instant::now() + config.timeout;
        return match probe::open(me, config.epmd_port, &record.target(), deadline) {
            Ok(_) | Err(Reason::BadCookie) => {
                Some(format!("a live node answers under it at {addr}"))
            }
            Err(_) => None,
        };
    }
    let age = SystemTime::now()
        .duration_since(holder.modified)
        .unwrap_or(Duration::ZERO);
    if age < config.ttl {
        return Some(format!(
            "its registry entry was written {} s ago by a node that is not pulse",
            Fixed::seconds(age.as_millis())
        ));
    }
    let host: IpAddr = match config.name.host() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        host => host.parse().ok()?,
    };
    let at = SocketAddr::new(host, config.epmd_port);
    match epmd::port_please(at, config.name.alive(), EPMD_TIMEOUT) {
        Ok(Some(port)) => Some(format!("EPMD at {at} knows it (port {port})")),
        _ => None,
    }
}
