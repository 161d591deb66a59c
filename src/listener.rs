//! The accepting side: takes distribution connections, does the acceptor's
//! handshake and enters each link in the link table, where the round pings
//! over it like any other.
//!
//! One thread accepts; each inbound connection gets one thread that does its
//! handshake and then reads the link for its life ([`Links::serve`]). The
//! accept thread is an [`AcceptThread`]; blocking reads are stopped by
//! shutting their sockets down.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::acceptor::AcceptThread;
use crate::erlang::handshake::HandshakeError;
use crate::fds;
use crate::limiter::{self, Limiter};
use crate::links::{Links, READER_STACK};

/// How long a connecting node may take over its handshake (Erlang's own
/// `net_setuptime` is 7 s).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(7);
/// Most inbound links at once; beyond it new connections are closed at
/// once. Lower when the descriptor limit is ([`fds::link_cap`]).
pub const MAX_INBOUND: usize = 2048;

/// Sockets of the live inbound links, so `stop` can wake their readers.
/// Shared state behind a lock, the named exception: the accept thread adds,
/// each reader removes its own, `stop` shuts them all.
type OpenLinks = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// A running listener.
pub struct Listener(AcceptThread);

impl Listener {
    /// Starts accepting on `socket`.
    pub fn start(socket: TcpListener, links: Arc<Links>) -> io::Result<Listener> {
        let thread = AcceptThread::spawn("pulse-listen", socket, move |socket, stop| {
            accept_loop(socket, links, stop)
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

fn accept_loop(socket: TcpListener, links: Arc<Links>, stop: Arc<AtomicBool>) {
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
        let (links, open2) = (links.clone(), open.clone());
        let spawned = thread::Builder::new()
            .name("pulse-in".into())
            .stack_size(READER_STACK)
            .spawn(move || {
                serve(stream, &links, warnings);
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
fn serve(stream: TcpStream, links: &Links, warnings: &Limiter) {
    let addr = stream.peer_addr().ok();
    match links.accept(stream, Instant::now() + HANDSHAKE_TIMEOUT) {
        Ok(link) => links.serve(link),
        Err(HandshakeError::BadCookie(peer)) => {
            if let Some(addr) = addr {
                warnings.wrong_cookie(&peer, addr);
            }
        }
        Err(e) => debug!("inbound handshake from {addr:?} failed: {e}"),
    }
}
