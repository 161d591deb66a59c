//! EPMD: the client ([`client`]) and a tiny stand-in ([`responder`]).
//!
//! An Erlang node finds another node's distribution port by asking the Erlang
//! Port Mapper Daemon (EPMD) on the peer's host, and makes itself findable by
//! registering its own name there and keeping that TCP connection open. This
//! module speaks that small protocol with blocking `std::net` sockets:
//!
//! * [`port_please`] asks an EPMD for a node's port (`PORT_PLEASE2_REQ`).
//! * [`register`] registers our name (`ALIVE2_REQ`) and returns a
//!   [`Registration`] that holds the connection; dropping it unregisters.
//! * [`names::names`] asks an EPMD for every name it holds (`NAMES_REQ`).
//! * [`Responder`] answers the two read-only requests for our own name, for
//!   hosts where no EPMD runs (a scratch container), so real Erlang nodes can
//!   still find us.
//!
//! Framing: every request starts with a big-endian `u16` length; replies have
//! no length prefix, so they are read field by field, and EPMD closes the
//! connection after a `PORT2_RESP`. Replies are always read by length, never
//! assuming that one `read` returns one message. Every socket operation has a
//! deadline, and malformed or truncated replies are reported as
//! [`io::ErrorKind::InvalidData`], never as a panic.

mod client;
pub mod names;
mod responder;
#[cfg(test)]
mod tests;

pub use client::{RegisterError, Registration, port_please, register};
pub use responder::Responder;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Default EPMD port.
pub const DEFAULT_PORT: u16 = 4369;

/// Longest alive name we accept, in bytes.
const MAX_ALIVE_LEN: usize = 255;

/// `PORT_PLEASE2_REQ` tag ('z').
const PORT_PLEASE2_REQ: u8 = b'z';
/// `PORT2_RESP` tag ('w').
const PORT2_RESP: u8 = b'w';
/// `ALIVE2_REQ` tag ('x').
const ALIVE2_REQ: u8 = b'x';
/// `ALIVE2_X_RESP` tag ('v'): 32-bit creation, sent when highest >= 6.
const ALIVE2_X_RESP: u8 = b'v';
/// `ALIVE2_RESP` tag ('y'): 16-bit creation, sent by older EPMDs.
const ALIVE2_RESP: u8 = b'y';
/// `NAMES_REQ` tag ('n').
const NAMES_REQ: u8 = b'n';

/// Node type 'H' (hidden). Informational only: visibility is decided in the handshake.
const NODE_TYPE_HIDDEN: u8 = 72;
/// Protocol 0: TCP/IPv4 (the only one defined).
const PROTO_TCP: u8 = 0;
/// Highest and lowest distribution version we speak (OTP 23+ handshake).
const DIST_VERSION: u16 = 6;

/// How long [`register`] keeps retrying a name EPMD still holds for a closed socket.
const DUPLICATE_RETRY_FOR: Duration = Duration::from_millis(500);
/// Pause between those retries.
const DUPLICATE_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Per-connection deadline in the [`Responder`] (reading the request and writing the reply).
const RESPONDER_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest request body the [`Responder`] reads; anything longer is dropped unread.
const RESPONDER_MAX_REQUEST: usize = 1 + MAX_ALIVE_LEN;

/// Connects with `timeout` and sets read and write timeouts before any I/O.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes a whole request, reporting a write timeout as [`io::ErrorKind::TimedOut`].
fn send(stream: &mut TcpStream, req: &[u8], what: &str) -> io::Result<()> {
    stream.write_all(req).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("epmd: timed out sending {what}"),
        ),
        _ => e,
    })
}

/// Rejects alive names EPMD cannot hold: empty, longer than 255 bytes, or containing '@'.
fn check_alive(alive: &str) -> io::Result<()> {
    let problem = if alive.is_empty() {
        "is empty"
    } else if alive.len() > MAX_ALIVE_LEN {
        "is longer than 255 bytes"
    } else if alive.contains('@') {
        "contains '@' (pass only the part before it)"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("epmd: alive name {alive:?} {problem}"),
    ))
}

/// Converts a length to the `u16` the wire carries.
fn frame_len(len: usize) -> io::Result<u16> {
    u16::try_from(len).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("epmd: request of {len} bytes does not fit a u16 length"),
        )
    })
}

/// Appends `v` big-endian.
fn push_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// An `InvalidData` error with `msg`.
fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the fields of one unprefixed message, by length, before a deadline.
struct Reply<'a> {
    /// The connection being read.
    stream: &'a mut TcpStream,
    /// When the whole message must have arrived.
    deadline: Instant,
    /// Message name for error texts, e.g. "PORT2_RESP".
    what: &'static str,
}

impl<'a> Reply<'a> {
    /// Starts reading a message called `what` from `stream`, due by `deadline`.
    fn new(stream: &'a mut TcpStream, deadline: Instant, what: &'static str) -> Reply<'a> {
        Reply {
            stream,
            deadline,
            what,
        }
    }

    /// Fills `buf` completely, however the bytes are split across reads.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_some(&mut buf[done..])? {
                0 => {
                    return Err(invalid(format!(
                        "epmd: short {} (connection closed after {done} of {} bytes of a field)",
                        self.what,
                        buf.len()
                    )));
                }
                n => done += n,
            }
        }
        Ok(())
    }

    /// One read before the deadline: the bytes read, 0 once the peer has
    /// closed. A read cut short by a signal is tried again.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(self.timed_out());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The error for a message that did not arrive in time.
    fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("epmd: timed out waiting for {}", self.what),
        )
    }

    /// Reads one byte.
    fn u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }

    /// Reads a big-endian `u16`.
    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.fill(&mut b)?;
        Ok(u16::from_be_bytes(b))
    }

    /// Reads a big-endian `u32`.
    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_be_bytes(b))
    }

    /// Reads exactly `n` bytes.
    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }
}
