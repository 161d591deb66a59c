//! One established distribution connection, and how to open one.
//!
//! Every operation runs against a deadline: before each read or write the
//! socket's timeout is set to the time that is left, so a peer that stalls,
//! trickles bytes or sends garbage costs at most the time it was given.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::frame::{FrameReader, Next};
use super::handshake::{self, HandshakeError, Peer};
use super::{Identity, Phase};

/// How long one write may block. A healthy peer always has room in its
/// receive buffer for a ping; one that stops reading loses its link.
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(50);

/// How far a read may overshoot its deadline before the socket timeout is
/// set again; saves a system call per read in the common case.
const SLACK: Duration = Duration::from_millis(5);

/// An established connection after a successful handshake.
pub struct Link {
    /// The socket.
    pub stream: TcpStream,
    /// Who is at the other end.
    pub peer: Peer,
    /// The address it was opened to (or accepted from).
    pub addr: SocketAddr,
    /// When we last wrote to it.
    pub last_write: Instant,
    /// When we last read from it (ticks included).
    pub last_read: Instant,
    /// The peer makes calls of its own on this link (an Erlang node reuses
    /// the link we opened), so it must be read between rounds too.
    pub peer_calls: bool,
    /// Pings in a row this link has left unanswered (kept by the prober).
    pub missed_replies: u32,
    reader: FrameReader,
    read_timeout: Option<Duration>,
}

/// What a read brought.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A message frame.
    Frame(Vec<u8>),
    /// A tick: the peer is alive and expects to hear from us too.
    Tick,
}

/// Why a read gave no frame.
#[derive(Debug)]
pub enum ReadError {
    /// The deadline passed first.
    Timeout,
    /// The link is broken and must be dropped.
    Broken(io::Error),
}

/// Whether an I/O error is a timeout (`WouldBlock` is what a timed-out read
/// returns on Unix).
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Link {
    /// Wraps a stream whose handshake just finished.
    pub fn new(stream: TcpStream, peer: Peer, addr: SocketAddr) -> io::Result<Link> {
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let now = Instant::now();
        Ok(Link {
            stream,
            peer,
            addr,
            last_write: now,
            last_read: now,
            peer_calls: false,
            missed_replies: 0,
            reader: FrameReader::default(),
            read_timeout: None,
        })
    }

    /// Writes a whole frame within [`WRITE_TIMEOUT`]. A partial write leaves
    /// the link unusable, so any error means drop it.
    pub fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.stream.write_all(frame)?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next frame or tick, waiting until `deadline` at most. Once the
    /// deadline has passed it still takes whatever has already arrived.
    pub fn recv(&mut self, deadline: Instant) -> Result<Received, ReadError> {
        loop {
            match self.reader.next_frame() {
                Ok(Next::Frame(f)) => return Ok(Received::Frame(f)),
                Ok(Next::Tick) => return Ok(Received::Tick),
                Ok(Next::Incomplete) => {}
                Err(e) => return Err(ReadError::Broken(e)),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = if remaining.is_zero() {
                self.fill_nonblocking()
            } else {
                if self.read_timeout.is_none_or(|t| t > remaining + SLACK) {
                    self.stream
                        .set_read_timeout(Some(remaining))
                        .map_err(ReadError::Broken)?;
                    self.read_timeout = Some(remaining);
                }
                self.reader.fill(&mut self.stream)
            };
            match result {
                Ok(_) => self.last_read = Instant::now(),
                // A timeout set for an earlier, longer wait may fire early:
                // only the deadline decides.
                Err(e) if is_timeout(&e) => {
                    if remaining.is_zero() || Instant::now() >= deadline {
                        return Err(ReadError::Timeout);
                    }
                    self.read_timeout = None;
                }
                Err(e) => return Err(ReadError::Broken(e)),
            }
        }
    }

    fn fill_nonblocking(&mut self) -> io::Result<usize> {
        self.stream.set_nonblocking(true)?;
        let result = self.reader.fill(&mut self.stream);
        self.stream.set_nonblocking(false)?;
        result
    }
}

/// A stream whose every read and write must finish by a deadline.
struct Deadlined<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Deadlined<'_> {
    fn remaining(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left)
    }
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.remaining()?))?;
        let mut s = self.stream;
        s.read(buf)
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.remaining()?))?;
        let mut s = self.stream;
        s.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why opening a link failed.
#[derive(Debug)]
pub enum DialError {
    /// Nothing listens there.
    Refused,
    /// The deadline passed; the phase says where.
    Timeout(Phase),
    /// The handshake failed.
    Handshake(HandshakeError),
    /// Another socket error.
    Io(io::Error),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Refused => write!(f, "connection refused"),
            DialError::Timeout(phase) => write!(f, "timeout ({phase})"),
            DialError::Handshake(e) => write!(f, "{e}"),
            DialError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Connects to `addr` and does the handshake as initiator, expecting the
/// node there to be called `peer_name`, all by `deadline`.
pub fn dial(
    addr: SocketAddr,
    me: &Identity,
    peer_name: &str,
    deadline: Instant,
) -> Result<Link, DialError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(DialError::Timeout(Phase::Connect));
    }
    let stream = TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => DialError::Refused,
        _ if is_timeout(&e) => DialError::Timeout(Phase::Connect),
        _ => DialError::Io(e),
    })?;
    stream.set_nodelay(true).map_err(DialError::Io)?;
    let peer = handshake::initiate(
        &mut Deadlined {
            stream: &stream,
            deadline,
        },
        &me.local(),
        peer_name,
    )
    .map_err(|e| match e {
        HandshakeError::Io(io) if is_timeout(&io) => DialError::Timeout(Phase::Handshake),
        other => DialError::Handshake(other),
    })?;
    Link::new(stream, peer, addr).map_err(DialError::Io)
}

/// Does the handshake as acceptor on a fresh inbound connection, by
/// `deadline`.
pub fn accept(stream: TcpStream, me: &Identity, deadline: Instant) -> Result<Link, HandshakeError> {
    let addr = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let peer = handshake::accept(
        &mut Deadlined {
            stream: &stream,
            deadline,
        },
        &me.local(),
    )?;
    Ok(Link::new(stream, peer, addr)?)
}
