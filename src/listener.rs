//! The answering side: accepts distribution connections and answers pings
//! and ticks on them as an Erlang node would.
//!
//! One thread accepts; each inbound link gets one reader thread for its
//! life. With N nodes that is about N threads per node, the one thread per
//! link the design allows (the pinging side of a link has no thread of its
//! own). The accept thread is an [`AcceptThread`]; blocking reads are stopped
//! by shutting their sockets down.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::acceptor::AcceptThread;
use crate::erlang::Identity;
use crate::erlang::frame::TICK;
use crate::erlang::handshake::HandshakeError;
use crate::erlang::link::{self, ReadError, Received};
use crate::erlang::message;
use crate::fds;
use crate::limiter::{self, Limiter};

/// How long a connecting node may take over its handshake (Erlang's own
/// `net_setuptime` is 7 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(7);
/// A link silent this long gets a tick from us, as Erlang's 15 s tick timer does.
const TICK_AFTER: Duration = Duration::from_secs(15);
/// A link we have heard nothing on for this long is dead (Erlang: 60 s).
const DEAD_AFTER: Duration = Duration::from_secs(60);
/// Most inbound links at once; beyond it new connections are closed at
/// once. Lower when the descriptor limit is ([`fds::link_cap`]).
pub const MAX_INBOUND: usize = 2048;
/// Stack of a reader thread: it decodes small terms (nesting is capped), so
/// a small stack keeps thousands of links cheap.
const READER_STACK: usize = 128 * 1024;

/// Sockets of the live inbound links, so `stop` can wake their readers.
/// Shared state behind a lock, the named exception: the accept thread adds,
/// each reader removes its own, `stop` shuts them all.
type OpenLinks = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running listener.
pub struct Listener(AcceptThread);

impl Listener {
    /// Starts accepting on `socket`.
    pub fn start(socket: TcpListener, me: Arc<Identity>) -> io::Result<Listener> {
        let thread = AcceptThread::spawn("pulse-listen", socket, move |socket, stop| {
            accept_loop(socket, me, stop)
        })?;
        Ok(Listener(thread))
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting, closes every inbound link and joins every thread.
    pub fn stop(self) {
        self.0.stop();
    }
}

fn accept_loop(socket: TcpListener, me: Arc<Identity>, stop: Arc<AtomicBool>) {
    let open: OpenLinks = Arc::default();
    let warnings = limiter::wrong_cookies();
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id = 0u64;
    let mut full_warned = false;
    let cap = fds::link_cap(fds::limit(), MAX_INBOUND);
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
        reap(&mut readers);
        if readers.len() >= cap {
            if !full_warned {
                warn!("{cap} inbound links open: refusing more until some close");
                full_warned = true;
            }
            continue;
        }
        full_warned = false;
        next_id += 1;
        let id = next_id;
        if let Ok(clone) = stream.try_clone() {
            if let Ok(mut map) = open.lock() {
                map.insert(id, clone);
            }
        }
        let (me, open2) = (me.clone(), open.clone());
        let spawned = thread::Builder::new()
            .name("pulse-in".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                serve(stream, &me, warnings);
                if let Ok(mut map) = open2.lock() {
                    map.remove(&id);
                }
            });
        match spawned {
            Ok(handle) => readers.push(handle),
            Err(e) => {
                warn!("cannot start a reader thread: {e}");
                if let Ok(mut map) = open.lock() {
                    map.remove(&id);
                }
            }
        }
    }
    if let Ok(map) = open.lock() {
        for stream in map.values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    for handle in readers {
        handle.join().expect("a reader thread never panics");
    }
    warnings.log_finish();
}

/// Joins the reader threads that have finished.
fn reap(readers: &mut Vec<JoinHandle<()>>) {
    let (done, running): (Vec<_>, Vec<_>) = readers.drain(..).partition(|h| h.is_finished());
    *readers = running;
    for handle in done {
        handle.join().expect("a reader thread never panics");
    }
}

/// One inbound link, from handshake to close.
fn serve(stream: TcpStream, me: &Identity, warnings: &Limiter) {
    let addr = stream.peer_addr().ok();
    let mut link = match link::accept(stream, me, Instant::now() + HANDSHAKE_TIMEOUT) {
        Ok(link) => link,
        Err(HandshakeError::BadCookie(peer)) => {
            if let Some(addr) = addr {
                warnings.wrong_cookie(&peer, addr);
            }
            return;
        }
        Err(e) => {
            debug!("inbound handshake from {addr:?} failed: {e}");
            return;
        }
    };
    loop {
        match link.recv(Instant::now() + TICK_AFTER) {
            Ok(Received::Frame(frame)) => {
                if let Some(reply) = message::answer(&frame) {
                    if link.send(&reply).is_err() {
                        return;
                    }
                }
            }
            // Answering every tick keeps the link up whatever the peer's
            // net_ticktime is.
            Ok(Received::Tick) => {
                if link.send(&TICK).is_err() {
                    return;
                }
            }
            Err(ReadError::Timeout) => {
                if link.last_read.elapsed() >= DEAD_AFTER {
                    debug!("closing the silent link from {}", link.peer.name);
                    return;
                }
                if link.last_write.elapsed() >= TICK_AFTER && link.send(&TICK).is_err() {
                    return;
                }
            }
            Err(ReadError::Broken(_)) => return,
        }
    }
}
