//! A tiny EPMD stand-in for hosts where no EPMD runs.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Instant;

use super::*;
use crate::sys::acceptor::AcceptThread;
use crate::sys::fds::AcceptBackoff;

/// Most connections served at once.
pub(super) const MAX_CLIENTS: usize = 32;
/// Stack of a request thread: it reads a few hundred bytes.
const CLIENT_STACK: usize = 64 * 1024;

/// A minimal EPMD stand-in that only knows our own name.
///
/// Answers `PORT_PLEASE2_REQ` for our alive name with our port (and "not
/// found" for any other), answers `NAMES_REQ`, and closes anything else. The
/// thread "pulse-epmd" accepts; each connection is served on a thread of its
/// own ("pulse-epmd-req") within a short deadline and a length cap, so a
/// client that says nothing delays nobody else. At most `MAX_CLIENTS` are
/// served at once; one more closes the connection open longest.
#[derive(Debug)]
pub struct Responder {
    thread: AcceptThread,
    answers: Arc<Answers>,
}

impl Responder {
    /// Binds `bind` and starts answering for `alive` at distribution `port`.
    pub fn start(bind: SocketAddr, alive: &str, port: u16) -> io::Result<Responder> {
        check_alive(alive)?;
        let listener = TcpListener::bind(bind)?;
        let answers = Arc::new(Answers::new(alive, port, listener.local_addr()?.port()));
        let shared = answers.clone();
        let thread = AcceptThread::spawn("pulse-epmd", listener, move |listener, closing| {
            serve(&listener, &closing, &shared)
        })?;
        Ok(Responder { thread, answers })
    }

    /// The address the responder listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.thread.local_addr()
    }

    /// From now on answers without our name, so a peer that asks sees that
    /// this node left rather than failed.
    pub fn leave(&self) {
        self.answers.leaving.store(true, Ordering::SeqCst);
    }

    /// Stops the thread and joins it (dropping it does the same).
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// The replies the responder can give, prepared once.
#[derive(Debug)]
pub(super) struct Answers {
    /// Our alive name, as bytes to compare against requests.
    alive: Vec<u8>,
    /// Full `PORT2_RESP` for our name.
    pub(super) port2_ok: Vec<u8>,
    /// Full `NAMES_REQ` reply.
    names: Vec<u8>,
    /// The `NAMES_REQ` reply without our name.
    no_names: Vec<u8>,
    /// Set once the node leaves: it then answers as an EPMD without our name.
    leaving: AtomicBool,
}

impl Answers {
    /// Builds the replies for `alive` at `port`, with the responder's own `epmd_port`.
    pub(super) fn new(alive: &str, port: u16, epmd_port: u16) -> Answers {
        // check_alive has bounded the length to 255, so the u16 fits.
        let nlen = u16::try_from(alive.len()).unwrap_or(u16::MAX);
        let mut port2_ok = vec![PORT2_RESP, 0];
        push_u16(&mut port2_ok, port);
        port2_ok.push(NODE_TYPE_HIDDEN);
        port2_ok.push(PROTO_TCP);
        push_u16(&mut port2_ok, DIST_VERSION);
        push_u16(&mut port2_ok, DIST_VERSION);
        push_u16(&mut port2_ok, nlen);
        port2_ok.extend_from_slice(alive.as_bytes());
        push_u16(&mut port2_ok, 0);

        let no_names = u32::from(epmd_port).to_be_bytes().to_vec();
        let mut names = no_names.clone();
        names.extend_from_slice(format!("name {alive} at port {port}\n").as_bytes());

        Answers {
            alive: alive.as_bytes().to_vec(),
            port2_ok,
            names,
            no_names,
            leaving: AtomicBool::new(false),
        }
    }
}

/// The responder thread: accept, hand each connection to a thread of its
/// own, until `closing` is set; then shut every open connection and join.
fn serve(listener: &TcpListener, closing: &AtomicBool, answers: &Arc<Answers>) {
    let mut clients: Vec<(JoinHandle<()>, TcpStream)> = Vec::new();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = listener.accept();
        if closing.load(Ordering::SeqCst) {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                thread::sleep(backoff.failed("epmd responder", &e));
                continue;
            }
        };
        backoff.succeeded();
        reap(&mut clients);
        if clients.len() >= MAX_CLIENTS {
            // A real client asks at once and is gone within a millisecond,
            // so the connection open longest is the likeliest to be silent:
            // it makes room, and a flood of silent ones cannot lock out
            // lookups.
            let (handle, oldest) = clients.remove(0);
            let _ = oldest.shutdown(Shutdown::Both);
            handle.join().expect("a request thread never panics");
            log::debug!("epmd responder: {MAX_CLIENTS} requests open, closed the oldest");
        }
        let Ok(handle_to_shut) = stream.try_clone() else {
            continue;
        };
        let answers = answers.clone();
        let spawned = thread::Builder::new()
            .name("pulse-epmd-req".into())
            .stack_size(CLIENT_STACK)
            .spawn(move || {
                if let Err(e) = answer(&stream, &answers) {
                    log::debug!("epmd responder: request from {peer}: {e}");
                }
                // The clone kept for `stop` holds the socket open: close it
                // now, since clients read the reply until the close.
                let _ = stream.shutdown(Shutdown::Both);
            });
        match spawned {
            Ok(handle) => clients.push((handle, handle_to_shut)),
            Err(e) => log::debug!("epmd responder: cannot start a request thread: {e}"),
        }
    }
    for (handle, stream) in clients {
        let _ = stream.shutdown(Shutdown::Both);
        handle.join().expect("a request thread never panics");
    }
}

/// Joins the request threads that have finished.
fn reap(clients: &mut Vec<(JoinHandle<()>, TcpStream)>) {
    let (done, running): (Vec<_>, Vec<_>) = clients.drain(..).partition(|(h, _)| h.is_finished());
    *clients = running;
    for (handle, _) in done {
        handle.join().expect("a request thread never panics");
    }
}

/// Reads one request from `stream` and writes the matching reply, if any.
fn answer(stream: &TcpStream, answers: &Answers) -> io::Result<()> {
    let deadline = Instant::now() + RESPONDER_IO_TIMEOUT;
    let body = read_message(stream, deadline, "request", |r| {
        let len = usize::from(r.u16()?);
        if len == 0 || len > RESPONDER_MAX_REQUEST {
            return Some(Err(invalid(format!(
                "epmd responder: request length {len}"
            ))));
        }
        Some(Ok(r.take(len)?.to_vec()))
    })?;
    let left = answers.leaving.load(Ordering::SeqCst);
    let reply: &[u8] = match body.split_first() {
        Some((&PORT_PLEASE2_REQ, name)) if name == answers.alive.as_slice() && !left => {
            &answers.port2_ok
        }
        Some((&PORT_PLEASE2_REQ, _)) => &[PORT2_RESP, 1],
        Some((&NAMES_REQ, [])) if left => &answers.no_names,
        Some((&NAMES_REQ, [])) => &answers.names,
        Some((tag, _)) => {
            return Err(invalid(format!(
                "epmd responder: unsupported request tag {tag:#04x}"
            )));
        }
        None => return Ok(()),
    };
    send(stream, deadline, reply, "reply")
}
