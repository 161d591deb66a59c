//! A running node: starts its threads, wires their channels, stops them.
//!
//! ```text
//! pulse-listen ── pulse-in (one per inbound link): handshake, then read it
//! pulse-round  ── every interval: heartbeat, candidates, expire, ping all over the
//!                  link table, then events and the status line to the log
//!                  (pulse-dial: one per missing link; pulse-link: reads a link we opened)
//! ```
//!
//! Every part stops when dropped: the listener, the EPMD registrar or
//! responder, the peer source (our registry entry, the DNS thread), the
//! round thread. [`Node::start`] starts them in order and returns early on
//! the first failure, so whatever was started is dropped, and stops, with
//! no rollback written by hand.

pub(crate) mod report;
pub(crate) mod rounds;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use log::info;

use crate::config::{Config, EpmdMode};
use crate::discovery;
use crate::erlang::epmd::registration::Registrar;
use crate::erlang::{Identity, epmd};
use crate::error::{EpmdError, Error};
use crate::membership::{Event, Membership};
use crate::node::report::Reporter;
use crate::node::rounds::{Member, Members, Rounds};
use crate::peers::links::Links;
use crate::peers::listener::Listener;
use crate::peers::probe::Prober;
use crate::sources;

/// How many membership events wait for an embedder that is not reading
/// them; past that, new ones are dropped for it (the log keeps them all).
const EVENTS_KEPT: usize = 1024;

/// A running node. Dropping it stops it as [`Node::shutdown`] does, but
/// without the DNS mode's linger.
pub struct Node {
    addr: SocketAddr,
    events: Receiver<Event>,
    members: Members,
    // Dropped in this order: the rounds first (our entry goes, the links
    // close), then EPMD, then the listener.
    round: RoundThread,
    /// Held for the node's life: stopping it takes our name out of EPMD.
    epmd: Option<EpmdPresence>,
    listener: Listener,
    /// In DNS mode, how long our EPMD answers without our name after the
    /// links close, so peers whose pings fail learn that we left.
    linger: Option<Duration>,
}

/// How this node is known to EPMD; each stops when dropped.
enum EpmdPresence {
    /// Registered with the host's EPMD, and again whenever it comes back.
    #[allow(dead_code, reason = "held for its Drop, which unregisters")]
    Registered(Registrar),
    /// Answering EPMD requests ourselves.
    Serving(epmd::Responder),
}

/// The round thread: told to stop (its stop channel's sender dropped) and
/// joined when dropped. It leaves (our entry, the links) on its way out.
struct RoundThread {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl RoundThread {
    fn spawn(
        rounds: Rounds,
        stop: Sender<()>,
        stopped: Receiver<()>,
    ) -> Result<RoundThread, Error> {
        let handle = thread::Builder::new()
            .name("pulse-round".into())
            .spawn(move || rounds.run(stopped))
            .map_err(Error::Thread)?;
        Ok(RoundThread {
            stop: Some(stop),
            handle: Some(handle),
        })
    }
}

impl Drop for RoundThread {
    fn drop(&mut self) {
        // Dropped, not sent to: the round thread sees it both between
        // rounds and while it waits for replies.
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            handle.join().expect("the round thread never panics");
        }
    }
}

impl Node {
    /// Starts a node: listens, claims its name where peers look, registers
    /// with EPMD and starts the rounds. The first round runs at once. On
    /// an error, nothing of it is left running.
    pub fn start(config: &Config) -> Result<Node, Error> {
        let me = Arc::new(Identity::new(config.name.as_str(), &config.cookie));
        let bind = SocketAddr::new(config.ip, config.port);
        let socket = TcpListener::bind(bind).map_err(|e| Error::Bind(bind, e))?;
        let addr = socket.local_addr().map_err(|e| Error::Bind(bind, e))?;

        let (links, link_events) = Links::new(me.clone());
        let listener = Listener::start(socket, links.clone()).map_err(Error::Thread)?;
        // Known to the source and EPMD only once the listener answers, so
        // a node that finds us can connect at once; the source says where
        // EPMD's turn comes.
        let (source, epmd) = sources::start(config, addr, &me, || join_epmd(config, addr.port()))?;
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
            source,
            prober,
            reporter: Reporter::new(config.name.as_str(), events_tx),
            members: members.clone(),
        };
        let round = RoundThread::spawn(rounds, stop_tx, stop_rx)?;
        info!(
            "node {} listening on {addr}, registry {}",
            config.name,
            discovery::source(config)
        );
        Ok(Node {
            addr,
            events,
            members,
            round,
            epmd,
            listener,
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
        let Node {
            round,
            epmd,
            listener,
            linger,
            ..
        } = self;
        // The record is gone and the links closed before the listener stops
        // answering, so peers see a leave, not a failure.
        drop(round);
        if let (Some(EpmdPresence::Serving(responder)), Some(linger)) = (&epmd, linger) {
            // Our EPMD stays, without our name, for peers to ask.
            responder.leave();
            drop(listener);
            // Deliberately bounded: a second signal exits at once.
            thread::sleep(linger);
            return;
        }
        // EPMD goes first, then the listener.
        drop(epmd);
        drop(listener);
    }
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
                .map_err(|e| Error::Epmd(EpmdError::Serve(at, e)))?;
            info!("answering EPMD requests for {alive} on {at}");
            Ok(Some(EpmdPresence::Serving(responder)))
        }
        EpmdMode::Auto => {
            match Registrar::start(at, alive, port, config.interval, meanwhile(config)) {
                Ok(registrar) => Ok(Some(EpmdPresence::Registered(registrar))),
                Err(epmd::RegisterError::NameTaken(why)) => {
                    Err(Error::Epmd(EpmdError::NameTaken(why)))
                }
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
