//! The accepting side: takes distribution connections, does the acceptor's
//! handshake and enters each link in the link table, where the round pings
//! over it like any other.
//!
//! One thread accepts; each inbound connection gets one thread that does its
//! handshake, by a deadline set when it was accepted, and then reads the
//! link for its life ([`Links::serve`]). The accept thread is an
//! [`AcceptThread`]; blocking reads are stopped by shutting their sockets
//! down.
//!
//! Connections still in their handshake are limited apart from the rest
//! ([`Limits`]): when too many are open, each new connection closes the
//! oldest of them. A real handshake takes milliseconds, so connections
//! that never finish theirs, however many and under whatever names, can
//! neither fill the cap nor keep a real peer out; only links fill it.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::erlang::handshake::HandshakeError;
use crate::peers::limiter::{self, Limiter};
use crate::peers::links::{Links, READER_STACK};
use crate::sys::acceptor::AcceptThread;
use crate::sys::fds;

/// How long a connecting node may take over its handshake, from the
/// moment it is accepted (Erlang's own `net_setuptime` is 7 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(7);
/// Most inbound links at once; beyond it new connections are closed at
/// once. Lower when the descriptor limit is (`fds::link_cap`).
pub const MAX_INBOUND: usize = 2048;
/// Most inbound connections in their handshake at once, however high the
/// cap: a cluster that restarts as one still has far fewer under way.
const MAX_PENDING: usize = 256;

/// How many inbound connections the listener keeps open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Limits {
    /// Open connections, links and handshakes together: the cap.
    open: usize,
    /// Of those, still in their handshake.
    pending: usize,
}

impl Limits {
    /// A quarter of the cap may be handshakes (at least one, at most
    /// [`MAX_PENDING`]).
    fn for_cap(cap: usize) -> Limits {
        Limits {
            open: cap,
            pending: (cap / 4).clamp(1, MAX_PENDING),
        }
    }

    /// Most inbound threads: one per open connection, and the closed
    /// handshakes whose threads are still winding down.
    fn threads(&self) -> usize {
        self.open + self.pending
    }
}

/// What becomes of a new connection.
#[derive(Debug, PartialEq, Eq)]
enum Admission {
    /// There is room.
    Take,
    /// Room is made by closing the oldest connection still in its
    /// handshake.
    EvictOldestPending,
    /// Links fill the cap: the new connection is closed at once.
    Refuse,
}

/// Room for a new connection when `open` are open, `pending` of them in
/// their handshake, and `threads` inbound threads still run.
fn admission(open: usize, pending: usize, threads: usize, limits: Limits) -> Admission {
    if threads >= limits.threads() {
        Admission::Refuse
    } else if pending >= limits.pending || (open >= limits.open && pending > 0) {
        Admission::EvictOldestPending
    } else if open >= limits.open {
        Admission::Refuse
    } else {
        Admission::Take
    }
}

/// The open inbound connections, so `stop` can wake their threads and a
/// new connection can close the oldest handshake. Shared state behind a
/// lock, the named exception: the accept thread adds and evicts, each
/// connection's thread marks its handshake done and removes its entry,
/// `stop` shuts them all.
#[derive(Default)]
struct Inbound {
    /// A handle on each connection's socket, by the connection's number.
    sockets: HashMap<u64, TcpStream>,
    /// The numbers of those still in their handshake. Numbers grow, so the
    /// first is the oldest.
    pending: BTreeSet<u64>,
}

impl Inbound {
    /// Connection `id` is accepted, its handshake begins.
    fn add(&mut self, id: u64, socket: TcpStream) {
        self.sockets.insert(id, socket);
        self.pending.insert(id);
    }

    /// Connection `id` finished its handshake; false when it was evicted
    /// meanwhile.
    fn linked(&mut self, id: u64) -> bool {
        self.pending.remove(&id)
    }

    /// Connection `id` is over.
    fn remove(&mut self, id: u64) {
        self.sockets.remove(&id);
        self.pending.remove(&id);
    }

    /// Shuts the oldest connection still in its handshake down: its
    /// thread's read or write fails at once, and the thread ends.
    fn evict_oldest_pending(&mut self) {
        if let Some(id) = self.pending.pop_first() {
            if let Some(socket) = self.sockets.remove(&id) {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }

    fn shut_all(&self) {
        for socket in self.sockets.values() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

type SharedInbound = Arc<Mutex<Inbound>>;

fn lock(inbound: &Mutex<Inbound>) -> MutexGuard<'_, Inbound> {
    inbound.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running listener: stopped on drop (its accept thread's).
/// Outside the tests the thread is only held, for its drop.
pub(crate) struct Listener(#[cfg_attr(not(test), allow(dead_code))] AcceptThread);

impl Listener {
    /// Starts accepting on `socket`.
    pub(crate) fn start(socket: TcpListener, links: Arc<Links>) -> io::Result<Listener> {
        let thread = AcceptThread::spawn("pulse-listen", socket, move |socket, stop| {
            accept_loop(socket, links, stop)
        })?;
        Ok(Listener(thread))
    }

    /// Where it listens.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> std::net::SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting, closes every inbound link and joins every thread
    /// (dropping it does the same).
    #[cfg(test)]
    pub(crate) fn stop(self) {
        self.0.stop();
    }
}

fn accept_loop(socket: TcpListener, links: Arc<Links>, stop: Arc<AtomicBool>) {
    let inbound: SharedInbound = Arc::default();
    let warnings = limiter::wrong_cookies();
    let limits = Limits::for_cap(fds::link_cap(fds::limit(), MAX_INBOUND));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    let mut full_warned = false;
    let mut evictions_warned: Option<Instant> = None;
    let mut backoff = fds::AcceptBackoff::default();
    for incoming in socket.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(s) => s,
            Err(e) => {
                thread::sleep(backoff.failed("listener", &e));
                continue;
            }
        };
        backoff.succeeded();
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        reap(&mut threads);
        let admitted = {
            let mut open = lock(&inbound);
            let admitted = admission(
                open.sockets.len(),
                open.pending.len(),
                threads.len(),
                limits,
            );
            if admitted == Admission::EvictOldestPending {
                open.evict_oldest_pending();
            }
            admitted
        };
        match admitted {
            Admission::Refuse => {
                if !full_warned {
                    warn!(
                        "{} inbound links open: refusing more until some close",
                        limits.open
                    );
                    full_warned = true;
                }
                continue;
            }
            // Once a minute at most: whoever floods us must not flood the log.
            Admission::EvictOldestPending => {
                if evictions_warned.is_none_or(|at| at.elapsed() >= limiter::WINDOW) {
                    warn!(
                        "{} inbound handshakes under way: closing the oldest for each new connection",
                        limits.pending
                    );
                    evictions_warned = Some(Instant::now());
                }
            }
            Admission::Take => {}
        }
        full_warned = false;
        // Without a handle on its socket, a connection could be neither
        // evicted nor stopped.
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        next_id += 1;
        let id = next_id;
        lock(&inbound).add(id, handle);
        let (links, shared) = (links.clone(), inbound.clone());
        let spawned = thread::Builder::new()
            .name("pulse-in".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                serve(stream, id, deadline, &links, &shared, warnings);
                lock(&shared).remove(id);
            });
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                warn!("cannot start a reader thread: {e}");
                lock(&inbound).remove(id);
            }
        }
    }
    lock(&inbound).shut_all();
    for handle in threads {
        handle.join().expect("a reader thread never panics");
    }
    warnings.log_finish();
}

/// Joins the reader threads that have finished.
fn reap(threads: &mut Vec<JoinHandle<()>>) {
    let (done, running): (Vec<_>, Vec<_>) = threads.drain(..).partition(|h| h.is_finished());
    *threads = running;
    for handle in done {
        handle.join().expect("a reader thread never panics");
    }
}

/// One inbound connection, number `id`, from handshake to close.
fn serve(
    stream: TcpStream,
    id: u64,
    deadline: Instant,
    links: &Links,
    inbound: &Mutex<Inbound>,
    warnings: &Limiter,
) {
    let addr = stream.peer_addr().ok();
    match links.accept(stream, deadline) {
        Ok(link) => {
            // Evicted just as its handshake finished: its socket is shut
            // already, so the link ends at once, as one we closed.
            if !lock(inbound).linked(id) {
                link.close();
            }
            links.serve(link);
        }
        Err(HandshakeError::BadCookie(peer)) => {
            if let Some(addr) = addr {
                warnings.wrong_cookie(&peer, addr);
            }
        }
        Err(e) => debug!("inbound handshake from {addr:?} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_cap_may_be_handshakes() {
        assert_eq!(
            Limits::for_cap(2048),
            Limits {
                open: 2048,
                pending: 256
            }
        );
        assert_eq!(
            Limits::for_cap(149),
            Limits {
                open: 149,
                pending: 37
            }
        );
        assert_eq!(
            Limits::for_cap(1),
            Limits {
                open: 1,
                pending: 1
            }
        );
    }

    #[test]
    fn handshakes_make_room_and_only_links_fill_the_cap() {
        let limits = Limits {
            open: 10,
            pending: 3,
        };
        assert_eq!(admission(0, 0, 0, limits), Admission::Take);
        assert_eq!(admission(5, 2, 5, limits), Admission::Take);
        assert_eq!(admission(5, 3, 5, limits), Admission::EvictOldestPending);
        // Links and handshakes fill the cap: a handshake goes.
        assert_eq!(admission(10, 1, 10, limits), Admission::EvictOldestPending);
        // Links alone fill it: only then is a connection refused.
        assert_eq!(admission(10, 0, 10, limits), Admission::Refuse);
        // Evicted threads that have not ended yet count, up to a ceiling.
        assert_eq!(admission(5, 3, 12, limits), Admission::EvictOldestPending);
        assert_eq!(admission(5, 3, 13, limits), Admission::Refuse);
    }

    #[test]
    fn a_flood_of_handshakes_that_never_finish_leaves_room_for_a_peer() {
        let limits = Limits::for_cap(149);
        let mut open = Inbound::default();
        // Every entry a handle on one socket: only their number matters here.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        // Ten links, then a thousand connections that stay silent.
        for id in 0..1010u64 {
            let (n, p) = (open.sockets.len(), open.pending.len());
            match admission(n, p, n, limits) {
                Admission::Take => {}
                Admission::EvictOldestPending => open.evict_oldest_pending(),
                Admission::Refuse => panic!("connection {id} refused with {n} open, {p} pending"),
            }
            open.add(id, stream.try_clone().expect("clone"));
            if id < 10 {
                assert!(open.linked(id));
            }
            assert!(open.pending.len() <= limits.pending);
        }
        assert_eq!(open.sockets.len(), 10 + limits.pending);
        // The oldest handshakes went, the links stayed.
        assert!((0..10).all(|id| open.sockets.contains_key(&id)));
        assert!(!open.linked(10));
    }
}
