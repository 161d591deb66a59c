//! A running node: starts its threads, wires their channels, stops them.
//!
//! ```text
//! pulse-listen ── pulse-in (one per inbound link): handshake, then read it
//! pulse-round  ── every interval: heartbeat, scan, expire, ping all over the link table
//!      │           (pulse-dial: one per missing link; pulse-link: reads a link we opened)
//!      │ Report
//!      ▼
//! pulse-report ── events and the status line to the log
//! ```

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::info;

use crate::config::{Config, EpmdMode};
use crate::erlang::{Identity, epmd};
use crate::links::Links;
use crate::listener::Listener;
use crate::membership::{Membership, Reason};
use crate::name::NodeName;
use crate::probe::{self, Prober, Target};
use crate::registry::Registry;
use crate::report::Reporter;
use crate::rounds::{Rounds, own_record};

/// How long to wait for EPMD at start.
const EPMD_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a node could not start.
#[derive(Debug)]
pub enum Error {
    /// The distribution port could not be bound.
    Bind(SocketAddr, io::Error),
    /// A live node already answers under our name.
    Duplicate(NodeName, SocketAddr),
    /// Our record could not be written.
    Registry(io::Error),
    /// A thread could not be started.
    Thread(io::Error),
    /// EPMD already knows our name, or cannot be served.
    Epmd(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            Error::Duplicate(name, addr) => {
                write!(
                    f,
                    "the name {name} is taken: a live node answers under it at {addr}"
                )
            }
            Error::Registry(e) => write!(f, "cannot write to the registry: {e}"),
            Error::Thread(e) => write!(f, "cannot start a thread: {e}"),
            Error::Epmd(why) => write!(f, "epmd: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A running node.
pub struct Node {
    addr: SocketAddr,
    stop: Sender<()>,
    round: JoinHandle<()>,
    listener: Listener,
    reporter: Reporter,
    /// Held for the node's life: dropping it takes our name out of EPMD.
    epmd: Option<EpmdPresence>,
}

/// How this node is known to EPMD.
enum EpmdPresence {
    /// Registered with the host's EPMD.
    Registered(epmd::Registration),
    /// Answering EPMD requests ourselves.
    Serving(epmd::Responder),
}

impl Node {
    /// Starts a node: listens, checks that its name is free, registers and
    /// starts the rounds. The first round runs at once.
    pub fn start(config: &Config) -> Result<Node, Error> {
        let me = Arc::new(Identity::new(config.name.as_str(), &config.cookie));
        let bind = SocketAddr::new(config.ip, config.port);
        let socket = TcpListener::bind(bind).map_err(|e| Error::Bind(bind, e))?;
        let addr = socket.local_addr().map_err(|e| Error::Bind(bind, e))?;
        let registry = Registry::new(&config.sync_dir);
        check_name_is_free(&registry, config, &me)?;

        let (links, link_events) = Links::new(me.clone());
        let listener = Listener::start(socket, links.clone()).map_err(Error::Thread)?;
        // Known to EPMD and the registry only once the listener answers, so
        // a node that finds us can connect at once.
        let epmd_presence = join_epmd(config, addr.port())?;
        let reporter = Reporter::start().map_err(Error::Thread)?;
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(1);
        let prober = Prober::new(links, link_events, config.epmd_port).stop_on(stop_rx.clone());
        // Written here, not only by the first round, so a registry we cannot
        // write to stops the start with a clear error.
        registry
            .write(&own_record(config, addr))
            .map_err(Error::Registry)?;
        let rounds = Rounds {
            membership: Membership::new(config.name.clone(), config.interval, config.ttl),
            config: config.clone(),
            addr,
            registry,
            prober,
            reports: reporter.sender(),
            heartbeat_failing: false,
        };
        let round = thread::Builder::new()
            .name("pulse-round".into())
            .spawn(move || rounds.run(stop_rx))
            .map_err(Error::Thread)?;
        info!(
            "node {} listening on {addr}, registry {}",
            config.name,
            config.sync_dir.display()
        );
        Ok(Node {
            addr,
            stop: stop_tx,
            round,
            listener,
            reporter,
            epmd: epmd_presence,
        })
    }

    /// Where the node listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        match self.epmd {
            Some(EpmdPresence::Serving(responder)) => responder.stop(),
            Some(EpmdPresence::Registered(registration)) => drop(registration),
            None => {}
        }
        self.listener.stop();
        self.reporter.stop();
    }
}

/// Registers with EPMD, or starts answering for it, as configured.
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
        EpmdMode::Auto => match epmd::register(at, alive, port, EPMD_TIMEOUT) {
            Ok(registration) => {
                info!("registered {alive} with EPMD at {at}");
                Ok(Some(EpmdPresence::Registered(registration)))
            }
            Err(e @ epmd::RegisterError::NameTaken(_)) => Err(Error::Epmd(e.to_string())),
            Err(e) => {
                info!(
                    "no EPMD at {at} ({e}): Erlang nodes reach this node only through the registry"
                );
                Ok(None)
            }
        },
    }
}

/// Refuses to start under a name a live node answers to. "Live" means the
/// node at the registered address completes the handshake's challenge with
/// that name: a wrong cookie still proves it is there.
fn check_name_is_free(registry: &Registry, config: &Config, me: &Identity) -> Result<(), Error> {
    let Some(addr) = registry.read(&config.name).and_then(|r| r.addr) else {
        return Ok(());
    };
    let target = Target {
        name: config.name.clone(),
        addr: Some(addr),
    };
    match probe::open(
        me,
        crate::erlang::epmd::DEFAULT_PORT,
        &target,
        Instant::now() + config.timeout,
    ) {
        Ok(_) | Err(Reason::BadCookie) => Err(Error::Duplicate(config.name.clone(), addr)),
        Err(_) => Ok(()),
    }
}
