//! One established distribution connection, and how to open one.
//!
//! A [`Link`] is shared: our pings are written on it, its reader
//! thread writes answers, each frame whole under the link's write lock. The
//! reader ([`LinkReader`]) is the one reading path of a link: its `recv`
//! answers the peer's ticks and `is_auth` calls itself, sends our own ticks,
//! and returns only the frames that may answer calls of ours, as a
//! WebSocket reader answers pings itself.
//!
//! Opening a link runs against a deadline: before each handshake read or
//! write the socket's timeout is set to the time that is left, so a peer
//! that stalls, trickles bytes or sends garbage costs at most that time.
//! Once a link is up, its read timeout is set once and never changed.

#[cfg(test)]
mod tests;

use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::frame::{FrameReader, Next, TICK};
use super::handshake::{self, Admit, HandshakeError, Peer};
use super::message;
use super::{Identity, Phase};
use crate::sys::deadline::{self, Deadlined, is_timeout};

/// How long one write may block. A healthy peer always has room in its
/// receive buffer for a ping; one that stops reading loses its link.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_millis(50);

/// How a link keeps itself alive and when it gives up on a silent peer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    /// Our tick period: after this long without a write of ours (half of
    /// it when the read times out), we send a tick, so we are never silent
    /// for two periods. A peer at `net_ticktime` T drops a link it has read
    /// nothing on for 3T/4 to T; one second keeps every T from 4 s up happy.
    pub tick_every: Duration,
    /// A link we have read nothing on for this long is closed. A live
    /// Erlang peer at `net_ticktime` T ticks at least every T/4 (its first
    /// tick may come T/2 after the last traffic), so at T = 300 s it is
    /// never silent for more than 150 s; dead peers are found sooner by the
    /// pings.
    pub silence_limit: Duration,
}

impl Pace {
    /// The pace of every real link.
    pub(crate) const DEFAULT: Pace = Pace {
        tick_every: Duration::from_secs(1),
        silence_limit: Duration::from_secs(360),
    };

    /// How long one read blocks: a whole tick period, so a busy link's
    /// reader is woken by its frames, not by its timer.
    fn read_timeout(&self) -> Duration {
        self.tick_every
    }
}

/// An established connection after a successful handshake.
#[derive(Debug)]
pub(crate) struct Link {
    /// Unique in this process, so an old link's news is never taken for a
    /// newer link's to the same node.
    pub id: u64,
    /// Who is at the other end.
    pub peer: Peer,
    /// The address it was opened to (or accepted from).
    pub addr: SocketAddr,
    /// Whether the peer opened it.
    pub inbound: bool,
    stream: TcpStream,
    /// Whole frames only: the pinger and the reader both write.
    write_lock: Mutex<()>,
    born: Instant,
    /// Milliseconds after `born` of our last write.
    last_write_ms: AtomicU64,
    /// Milliseconds after `born` of the last bytes read.
    last_read_ms: AtomicU64,
    /// Set when we close the link ourselves, so its end is not news.
    closing: AtomicBool,
    /// The reply awaited on this link, matched by the reader itself, so
    /// whoever waits for many links' replies is woken once for all of them
    /// rather than once per reply.
    awaited: Mutex<Awaited>,
}

/// See [`Link::expect`].
#[derive(Debug, Default)]
struct Awaited {
    /// The message term of the reply (see [`message::is_yes_reply`]).
    reply: Vec<u8>,
    /// The caller's mark for this wait, handed back with the reply, so a
    /// late reply to an earlier wait is told apart from the current one.
    ticket: u32,
    active: bool,
    answered: Option<Instant>,
}

impl Link {
    /// Wraps a stream whose handshake just finished.
    pub(crate) fn new(
        stream: TcpStream,
        peer: Peer,
        addr: SocketAddr,
        inbound: bool,
    ) -> io::Result<Link> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        Ok(Link {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            stream,
            peer,
            addr,
            inbound,
            write_lock: Mutex::new(()),
            born: Instant::now(),
            last_write_ms: AtomicU64::new(0),
            last_read_ms: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            awaited: Mutex::default(),
        })
    }

    fn awaited(&self) -> std::sync::MutexGuard<'_, Awaited> {
        self.awaited.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the reader watch for `reply` (the message term answering our
    /// ping), marked `ticket`; set before the ping is written.
    pub(crate) fn expect(&self, reply: &[u8], ticket: u32) {
        let mut awaited = self.awaited();
        awaited.reply.clear();
        awaited.reply.extend_from_slice(reply);
        awaited.ticket = ticket;
        awaited.active = true;
        awaited.answered = None;
    }

    /// When the expected reply came, if it did; stops watching once it has.
    pub(crate) fn answered(&self) -> Option<Instant> {
        self.awaited().answered.take()
    }

    /// Stops watching for a reply (its wait is over).
    pub(crate) fn forget_reply(&self) {
        let mut awaited = self.awaited();
        awaited.active = false;
        awaited.answered = None;
    }

    /// The ticket of the expected reply, if `frame` is that reply; it is
    /// noted as answered.
    pub(crate) fn take_reply(&self, frame: &[u8]) -> Option<u32> {
        let mut awaited = self.awaited();
        if !awaited.active || !message::is_yes_reply(frame, &awaited.reply) {
            return None;
        }
        awaited.active = false;
        awaited.answered = Some(Instant::now());
        Some(awaited.ticket)
    }

    /// Writes a whole frame within [`WRITE_TIMEOUT`]. A partial write leaves
    /// the link unusable, so on any error the link is shut down (its reader
    /// then reports it closed).
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let result = {
            let _whole = self
                .write_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (&self.stream).write_all(frame)
        };
        match result {
            Ok(()) => {
                let ms = self.born.elapsed().as_millis() as u64;
                self.last_write_ms.store(ms, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                let _ = self.stream.shutdown(Shutdown::Both);
                Err(e)
            }
        }
    }

    /// Our end's address.
    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// How long since we last wrote.
    pub(crate) fn since_write(&self) -> Duration {
        self.since(&self.last_write_ms)
    }

    /// How long since the peer last sent anything (ticks included).
    pub(crate) fn since_read(&self) -> Duration {
        self.since(&self.last_read_ms)
    }

    fn since(&self, ms: &AtomicU64) -> Duration {
        let at = Duration::from_millis(ms.load(Ordering::Relaxed));
        self.born.elapsed().saturating_sub(at)
    }

    fn mark_read(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_read_ms.store(ms, Ordering::Relaxed);
    }

    /// Closes the link on purpose: its reader stops without reporting it.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Whether we closed it ourselves.
    pub(crate) fn closed_by_us(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// The reading end, for the link's one reader thread.
    pub(crate) fn reader(&self, pace: Pace) -> io::Result<LinkReader> {
        let stream = self.stream.try_clone()?;
        stream.set_read_timeout(Some(pace.read_timeout()))?;
        Ok(LinkReader {
            stream,
            frames: FrameReader::default(),
            answer: Vec::new(),
            pace,
        })
    }
}

/// What [`LinkReader::recv`] brings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// The expected reply, with its wait's ticket; noted on the link.
    Reply(u32),
    /// Any other frame that needs no answer: maybe a reply in another form.
    Other(Vec<u8>),
}

/// The one reading path of a link.
pub(crate) struct LinkReader {
    stream: TcpStream,
    frames: FrameReader,
    /// Our answer to the peer's latest call, reused from one to the next.
    answer: Vec<u8>,
    pace: Pace,
}

impl LinkReader {
    /// The next frame that is not control traffic, blocking for as long as
    /// it takes. On the way it answers ticks and calls on `link` (whatever
    /// [`message::answer`] owes), sends a tick after [`Pace::tick_every`] of
    /// our silence, and fails after [`Pace::silence_limit`] of the peer's.
    /// The expected reply ([`Link::expect`]) is noted on the link
    /// and told apart by its bytes, before anything is decoded. A partial
    /// frame is kept across read timeouts. Any error means the link is gone.
    pub(crate) fn recv(&mut self, link: &Link) -> io::Result<Received> {
        loop {
            match self.frames.next_frame()? {
                Next::Frame(frame) => {
                    if let Some(ticket) = link.take_reply(frame) {
                        return Ok(Received::Reply(ticket));
                    }
                    if !message::answer(frame, &mut self.answer) {
                        return Ok(Received::Other(frame.to_vec()));
                    }
                    link.send(&self.answer)?;
                }
                // Answered unless we wrote a moment ago: between two pulse
                // nodes an answer to an answer would never end.
                Next::Tick => {
                    if link.since_write() >= self.pace.tick_every / 4 {
                        link.send(&TICK)?;
                    }
                }
                // Checked only before blocking, once every whole frame read
                // is handled: an answer just written is a write, so a ping
                // that ends a quiet second is not preceded by a tick.
                Next::Incomplete => {
                    if link.since_write() >= self.pace.tick_every {
                        link.send(&TICK)?;
                    }
                    self.fill(link)?;
                }
            }
        }
    }

    /// Reads more bytes; a read timeout sends a tick after half a period of
    /// our silence and fails the link after [`Pace::silence_limit`] of the
    /// peer's.
    fn fill(&mut self, link: &Link) -> io::Result<()> {
        match self.frames.fill(&mut self.stream) {
            Ok(_) => link.mark_read(),
            // A stop and continue (SIGSTOP, Ctrl-Z, a debugger) cuts a read
            // with a timeout short: the link is as good as before. Read
            // again at once, before any silence is judged: what the peer
            // sent while we were stopped is waiting.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                // Half a period early: the next timeout may be a
                // whole period away, and no gap of ours may reach
                // two periods.
                if link.since_write() >= self.pace.tick_every / 2 {
                    link.send(&TICK)?;
                }
                let silent = link.since_read();
                if silent >= self.pace.silence_limit {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("silent for {} s", silent.as_secs()),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

/// Why opening a link failed.
#[derive(Debug)]
pub(crate) enum DialError {
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
/// node there to be called `peer_name`, all by `deadline`. `still_ours`
/// answers the acceptor's `alive` (see [`handshake::initiate`]).
pub(crate) fn dial(
    addr: SocketAddr,
    me: &Identity,
    peer_name: &str,
    deadline: Instant,
    still_ours: impl FnOnce() -> bool,
) -> Result<Link, DialError> {
    let stream = deadline::connect(addr, deadline).map_err(|e| match e.kind() {
        io::ErrorKind::ConnectionRefused => DialError::Refused,
        _ if is_timeout(&e) => DialError::Timeout(Phase::Connect),
        _ => DialError::Io(e),
    })?;
    stream.set_nodelay(true).map_err(DialError::Io)?;
    let peer = handshake::initiate(
        &mut Deadlined::new(&stream, deadline),
        &me.local(),
        peer_name,
        still_ours,
    )
    .map_err(|e| match e {
        HandshakeError::Io(io) if is_timeout(&io) => DialError::Timeout(Phase::Handshake),
        other => DialError::Handshake(other),
    })?;
    Link::new(stream, peer, addr, false).map_err(DialError::Io)
}

/// Does the handshake as acceptor on a fresh inbound connection, by
/// `deadline`; `admit` picks the status for the caller's name.
pub(crate) fn accept(
    stream: TcpStream,
    me: &Identity,
    deadline: Instant,
    admit: impl FnOnce(&str) -> Admit,
) -> Result<Link, HandshakeError> {
    let addr = stream.peer_addr()?;
    stream.set_nodelay(true)?;
    let peer = handshake::accept(&mut Deadlined::new(&stream, deadline), &me.local(), admit)?;
    Ok(Link::new(stream, peer, addr, true)?)
}
