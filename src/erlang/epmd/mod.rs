//! EPMD: the client ([`client`]), a tiny stand-in ([`responder`]), and our
//! registration kept alive on a thread of its own ([`registration`]).
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
//! no length prefix, and EPMD closes the connection after a `PORT2_RESP`.
//! Requests and replies alike are read by one function, `read_message`: the
//! bytes that have come are parsed with the wire's one byte cursor until the
//! message is whole, never assuming that one `read` returns one message.
//! Every socket operation has a deadline (`crate::sys::deadline`), and malformed
//! or truncated replies are reported as [`io::ErrorKind::InvalidData`], never
//! as a panic.

mod client;
pub(crate) mod names;
pub(crate) mod registration;
mod responder;
#[cfg(test)]
mod tests;

pub(crate) use client::Registration;
pub use client::{RegisterError, port_please, register};
pub use responder::Responder;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::cursor::Cursor;
use crate::sys::deadline::{self, Deadlined, is_timeout};

/// Default EPMD port.
pub(crate) const DEFAULT_PORT: u16 = 4369;

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

/// Connects within `timeout`; the exchange that follows has a deadline of
/// its own.
fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = deadline::connect(addr, Instant::now() + timeout)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Writes a whole message called `what` by `deadline`.
fn send(stream: &TcpStream, deadline: Instant, msg: &[u8], what: &str) -> io::Result<()> {
    Deadlined::new(stream, deadline)
        .write_all(msg)
        .map_err(|e| match e.kind() {
            _ if is_timeout(&e) => io::Error::new(
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

/// Reads one message called `what` (a request or a reply) from `stream` by
/// `deadline`. Replies carry no length, so the bytes are read as they come
/// and `parse` is tried on all read so far: `None` from it (the cursor ran
/// out) means the message is not whole yet, `Some` is the message or why it
/// is not one, decided as soon as the bytes that tell have come. Whatever
/// the peer sends after the message is dropped; EPMD sends nothing.
fn read_message<T>(
    stream: &TcpStream,
    deadline: Instant,
    what: &str,
    mut parse: impl FnMut(&mut Cursor<'_>) -> Option<io::Result<T>>,
) -> io::Result<T> {
    let mut read = Vec::new();
    let mut chunk = [0u8; 512];
    let mut stream = Deadlined::new(stream, deadline);
    loop {
        if let Some(message) = parse(&mut Cursor::new(&read)) {
            return message;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(invalid(format!(
                    "epmd: short {what} (connection closed after {} bytes)",
                    read.len()
                )));
            }
            Ok(n) => read.extend_from_slice(&chunk[..n]),
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("epmd: timed out waiting for {what}"),
                ));
            }
            Err(e) => return Err(e),
        }
    }
}
