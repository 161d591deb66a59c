//! A tiny EPMD stand-in for hosts where no EPMD runs.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::acceptor::AcceptThread;

/// A minimal EPMD stand-in that only knows our own name.
///
/// Answers `PORT_PLEASE2_REQ` for our alive name with our port (and "not
/// found" for any other), answers `NAMES_REQ`, and closes anything else. One
/// thread named "pulse-epmd" serves one connection at a time, each bounded by
/// a short deadline and a length cap.
#[derive(Debug)]
pub struct Responder(AcceptThread);

impl Responder {
    /// Binds `bind` and starts answering for `alive` at distribution `port`.
    pub fn start(bind: SocketAddr, alive: &str, port: u16) -> io::Result<Responder> {
        check_alive(alive)?;
        let listener = TcpListener::bind(bind)?;
        let answers = Answers::new(alive, port, listener.local_addr()?.port());
        let thread = AcceptThread::spawn("pulse-epmd", listener, move |listener, closing| {
            serve(&listener, &closing, &answers)
        })?;
        Ok(Responder(thread))
    }

    /// The address the responder listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops the thread and joins it (dropping it does the same).
    pub fn stop(self) {
        self.0.stop();
    }
}

/// The replies the responder can give, prepared once.
pub(super) struct Answers {
    /// Our alive name, as bytes to compare against requests.
    alive: Vec<u8>,
    /// Full `PORT2_RESP` for our name.
    pub(super) port2_ok: Vec<u8>,
    /// Full `NAMES_REQ` reply.
    names: Vec<u8>,
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

        let mut names = u32::from(epmd_port).to_be_bytes().to_vec();
        names.extend_from_slice(format!("name {alive} at port {port}\n").as_bytes());

        Answers {
            alive: alive.as_bytes().to_vec(),
            port2_ok,
            names,
        }
    }
}

/// The responder thread: accept, answer one request, close; until `closing` is set.
fn serve(listener: &TcpListener, closing: &AtomicBool, answers: &Answers) {
    loop {
        let accepted = listener.accept();
        if closing.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((mut stream, peer)) => {
                if let Err(e) = answer(&mut stream, answers) {
                    log::debug!("epmd responder: request from {peer}: {e}");
                }
            }
            Err(e) => {
                log::warn!("epmd responder: accept failed: {e}");
                // Avoid spinning if the error persists (e.g. out of descriptors).
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one request from `stream` and writes the matching reply, if any.
fn answer(stream: &mut TcpStream, answers: &Answers) -> io::Result<()> {
    stream.set_read_timeout(Some(RESPONDER_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(RESPONDER_IO_TIMEOUT))?;
    let deadline = Instant::now() + RESPONDER_IO_TIMEOUT;

    let mut r = Reply::new(stream, deadline, "request");
    let len = usize::from(r.u16()?);
    if len == 0 || len > RESPONDER_MAX_REQUEST {
        return Err(invalid(format!("epmd responder: request length {len}")));
    }
    let body = r.bytes(len)?;
    match body.split_first() {
        Some((&PORT_PLEASE2_REQ, name)) if name == answers.alive.as_slice() => {
            stream.write_all(&answers.port2_ok)
        }
        Some((&PORT_PLEASE2_REQ, _)) => stream.write_all(&[PORT2_RESP, 1]),
        Some((&NAMES_REQ, [])) => stream.write_all(&answers.names),
        Some((tag, _)) => Err(invalid(format!(
            "epmd responder: unsupported request tag {tag:#04x}"
        ))),
        None => Ok(()),
    }
}
