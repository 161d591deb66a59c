//! Socket deadlines for every protocol pulse speaks over a short exchange:
//! the Erlang handshake, EPMD and DNS.
//!
//! A deadline is an [`Instant`]. Before each connect, read or write the
//! socket's timeout is set to the time left, so a peer that trickles bytes
//! cannot stretch an exchange past it, and once it has passed nothing more
//! is tried. A timed-out read returns `WouldBlock` on Unix and `TimedOut`
//! elsewhere: [`is_timeout`] is both, and what this module returns for a
//! timeout is always [`io::ErrorKind::TimedOut`]. A refused connection stays
//! `ConnectionRefused`, so "nobody listens" is never taken for "hung".
//!
//! It imports nothing from the crate, so every layer (`erlang/` included)
//! may use it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Whether an I/O error is a timeout (`WouldBlock` is what a timed-out read
/// returns on Unix).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// The time left until `deadline`, or a `TimedOut` error once it has passed.
pub(crate) fn left(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    Ok(left)
}

/// `e`, with a timeout of either kind made `TimedOut`.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
    } else {
        e
    }
}

/// Connects to `addr` by `deadline`.
pub(crate) fn connect(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&addr, left(deadline)?).map_err(timed_out)
}

/// One datagram from a (connected) UDP socket by `deadline`; a wait cut
/// short by a signal waits again for what is left.
pub(crate) fn recv(socket: &UdpSocket, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    loop {
        socket.set_read_timeout(Some(left(deadline)?))?;
        match socket.recv(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map_err(timed_out),
        }
    }
}

/// A stream whose every read and write must finish by a deadline.
#[derive(Debug)]
pub(crate) struct Deadlined<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Deadlined<'a> {
    /// `stream`, read and written by `deadline`.
    pub(crate) fn new(stream: &'a TcpStream, deadline: Instant) -> Deadlined<'a> {
        Deadlined { stream, deadline }
    }
}

impl Read for Deadlined<'_> {
    /// One read by the deadline: the bytes read, 0 once the peer has
    /// closed. A read cut short by a signal is tried again.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            self.stream.set_read_timeout(Some(left(self.deadline)?))?;
            match self.stream.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(timed_out),
            }
        }
    }
}

impl Write for Deadlined<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            self.stream.set_write_timeout(Some(left(self.deadline)?))?;
            match self.stream.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other.map_err(timed_out),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_silent_peer_times_out_by_the_deadline_and_a_closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let soon = Instant::now() + Duration::from_millis(200);
        let stream = connect(addr, soon).expect("connect");
        let mut buf = [0u8; 4];
        let started = Instant::now();
        let e = Deadlined::new(&stream, soon)
            .read_exact(&mut buf)
            .expect_err("nothing comes");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Once the deadline has passed nothing is tried.
        let e = connect(addr, soon).expect_err("too late");
        assert!(is_timeout(&e), "{e}");
        drop(listener);
        let e = connect(addr, Instant::now() + Duration::from_secs(2)).expect_err("closed");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn udp_waits_by_the_deadline() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let e = recv(
            &socket,
            &mut [0u8; 16],
            Instant::now() + Duration::from_millis(50),
        )
        .expect_err("nothing comes");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
    }
}
