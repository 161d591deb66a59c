//! EPMD's names request (`NAMES_REQ`): every name an EPMD holds, with its
//! distribution port. This is how a node found only by its address (from
//! DNS) is given a name, as Erlang's own `net_adm:names/1` does.
//!
//! The reply is EPMD's port as a big-endian `u32`, then text lines
//! `name ALIVE at port PORT`, then the connection closes. The reply is
//! untrusted: it is read up to a size cap and a deadline, and lines that are
//! not of that form are skipped.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{NAMES_REQ, connect, send};
use crate::sys::deadline::{Deadlined, is_timeout};

/// Largest reply read; a line is about 40 bytes.
const MAX_REPLY: usize = 64 * 1024;
/// Longest alive name EPMD holds.
const MAX_ALIVE: usize = 255;

/// Asks the EPMD at `epmd` for its names: `(alive, port)` pairs, in its
/// order. `timeout` bounds the connect and, separately, the exchange.
pub(crate) fn names(epmd: SocketAddr, timeout: Duration) -> io::Result<Vec<(String, u16)>> {
    let stream = connect(epmd, timeout)?;
    let deadline = Instant::now() + timeout;
    // Length 1, tag 'n'.
    send(&stream, deadline, &[0, 1, NAMES_REQ], "NAMES_REQ")?;
    let reply = read_to_close(&stream, deadline)?;
    if reply.len() < 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("epmd: NAMES_RESP of {} bytes", reply.len()),
        ));
    }
    Ok(parse(&reply[4..]))
}

/// The `(alive, port)` pairs in the text of a names reply.
pub(crate) fn parse(text: &[u8]) -> Vec<(String, u16)> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
            let rest = line.strip_prefix("name ")?;
            let (alive, port) = rest.rsplit_once(" at port ")?;
            let port: u16 = port.trim().parse().ok()?;
            let plain = !alive.is_empty()
                && alive.len() <= MAX_ALIVE
                && !alive.contains(['@', ' '])
                && !alive.chars().any(char::is_control);
            (plain && port != 0).then(|| (alive.to_string(), port))
        })
        .collect()
}

/// The whole reply, up to [`MAX_REPLY`], until EPMD closes the connection.
fn read_to_close(stream: &TcpStream, deadline: Instant) -> io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let read = Deadlined::new(stream, deadline)
        .take(MAX_REPLY as u64 + 1)
        .read_to_end(&mut reply);
    match read {
        Err(e) if is_timeout(&e) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "epmd: timed out waiting for NAMES_RESP",
        )),
        Err(e) => Err(e),
        Ok(_) if reply.len() > MAX_REPLY => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "epmd: NAMES_RESP over 64 KiB",
        )),
        Ok(_) => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erlang::epmd::Responder;

    #[test]
    fn lines_of_real_epmd_and_garbage() {
        let text = b"name a1 at port 40123\nname b at port 0\nname c@h at port 5\n\
                     name \xff at port 7\nbogus\nname d at port 99999\nname e f at port 1\nname g at port 4\n";
        assert_eq!(
            parse(text),
            vec![("a1".to_string(), 40123), ("g".to_string(), 4)]
        );
    }

    #[test]
    fn asks_our_own_responder_and_sees_a_leave() {
        let responder =
            Responder::start(([127, 0, 0, 1], 0).into(), "n1", 4242).expect("responder");
        let at = responder.local_addr();
        let timeout = Duration::from_secs(2);
        assert_eq!(
            names(at, timeout).expect("names"),
            vec![("n1".to_string(), 4242)]
        );
        responder.leave();
        assert_eq!(names(at, timeout).expect("names"), vec![]);
        responder.stop();
        assert!(names(at, timeout).is_err());
    }
}
