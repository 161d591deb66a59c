//! The version-6 distribution handshake (OTP 23 and later), both sides.
//!
//! The caller sets the socket's read and write timeouts first; every step
//! here is one blocking read or write, so the handshake as a whole is bounded
//! by a few timeouts.

use std::fmt;
use std::io::{self, Read, Write};

use super::frame::{read_handshake, write_handshake};
use super::{FLAGS, digest, random_u32};

/// The flags OTP 25 insists on; a peer without them is refused as OTP does.
const MANDATORY: u64 = 0x0107_0F94;
/// Shorthand flag a peer may send for the mandatory set.
const MANDATORY_25_DIGEST: u64 = 0x0400_0000;

/// The far end of a finished handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The node name the peer gave.
    pub name: String,
    /// The peer's creation, part of its pids.
    pub creation: u32,
    /// The flags both sides share.
    pub flags: u64,
}

/// Why a handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// Reading or writing the socket failed (a timeout is one of these).
    Io(io::Error),
    /// The digests did not match: the two nodes hold different cookies.
    /// Carries the other node's name.
    BadCookie(String),
    /// The node that answered has another name than the one asked for.
    NameMismatch {
        /// The name it gave.
        got: String,
    },
    /// The peer refused the connection with this status.
    Refused(String),
    /// The peer broke the protocol.
    Protocol(String),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Io(e) => write!(f, "handshake: {e}"),
            HandshakeError::BadCookie(peer) => write!(f, "bad cookie (peer {peer})"),
            HandshakeError::NameMismatch { got } => {
                write!(f, "name mismatch: it answered as {got}")
            }
            HandshakeError::Refused(status) => write!(f, "handshake refused: {status}"),
            HandshakeError::Protocol(why) => write!(f, "handshake: {why}"),
        }
    }
}

impl From<io::Error> for HandshakeError {
    fn from(e: io::Error) -> Self {
        HandshakeError::Io(e)
    }
}

fn protocol(why: &str) -> HandshakeError {
    HandshakeError::Protocol(why.to_string())
}

/// The acceptor's answer to a node that wants to connect, by the status
/// rules of OTP's `dist_util` and `net_kernel` (one link per node pair).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// No link and no attempt of ours: go on (`ok`).
    Ok,
    /// Both sides are connecting and the caller's attempt wins: go on
    /// (`ok_simultaneous`); ours is abandoned.
    Simultaneous,
    /// Both sides are connecting and ours wins: refuse (`nok`).
    Refuse,
    /// A link to the caller is already up (`alive`): the caller says
    /// whether it replaces the old one (`true`) or gives up (`false`).
    Alive,
}

/// Our identity in a handshake.
pub struct Local<'a> {
    /// Our full node name.
    pub name: &'a str,
    /// Our creation.
    pub creation: u32,
    /// The shared secret.
    pub cookie: &'a str,
}

/// Connects as the initiator to a node expected to be called `peer_name`.
///
/// A close right after our challenge reply is how Erlang answers a wrong
/// cookie, so it is reported as [`HandshakeError::BadCookie`]. When the
/// acceptor says a link is already `alive`, `still_ours` decides: `true`
/// (we hold no link to it, so the old one is stale) replaces the old link,
/// `false` gives up.
pub fn initiate<S: Read + Write>(
    stream: &mut S,
    local: &Local,
    peer_name: &str,
    still_ours: impl FnOnce() -> bool,
) -> Result<Peer, HandshakeError> {
    let mut send_name = vec![b'N'];
    send_name.extend(FLAGS.to_be_bytes());
    send_name.extend(local.creation.to_be_bytes());
    send_name.extend((local.name.len() as u16).to_be_bytes());
    send_name.extend(local.name.as_bytes());
    write_handshake(stream, &send_name)?;

    let status = read_handshake(stream)?;
    match status.strip_prefix(b"s") {
        Some(b"ok") | Some(b"ok_simultaneous") => {}
        Some(b"alive") => {
            if still_ours() {
                write_handshake(stream, b"strue")?;
            } else {
                write_handshake(stream, b"sfalse")?;
                return Err(HandshakeError::Refused("alive".into()));
            }
        }
        Some(other) => {
            return Err(HandshakeError::Refused(
                String::from_utf8_lossy(other).into_owned(),
            ));
        }
        None => return Err(protocol("expected a status message")),
    }

    let challenge = read_handshake(stream)?;
    let (flags, their_challenge, creation, name) = parse_challenge(&challenge)?;
    if name != peer_name {
        return Err(HandshakeError::NameMismatch { got: name });
    }
    let our_challenge = random_u32();
    let mut reply = vec![b'r'];
    reply.extend(our_challenge.to_be_bytes());
    reply.extend(digest(local.cookie, their_challenge));
    write_handshake(stream, &reply)?;

    let ack = match read_handshake(stream) {
        Ok(ack) => ack,
        Err(e) if is_closed(&e) => return Err(HandshakeError::BadCookie(name)),
        Err(e) => return Err(e.into()),
    };
    if ack.len() != 17 || ack[0] != b'a' {
        return Err(protocol("expected a challenge ack"));
    }
    if ack[1..] != digest(local.cookie, our_challenge) {
        return Err(HandshakeError::BadCookie(name));
    }
    Ok(Peer {
        name,
        creation,
        flags: flags & FLAGS,
    })
}

/// Answers a connecting node as the acceptor; `admit` picks the status for
/// the caller's name. On a wrong cookie the socket is left for the caller to
/// close without a word, as Erlang does.
pub fn accept<S: Read + Write>(
    stream: &mut S,
    local: &Local,
    admit: impl FnOnce(&str) -> Admit,
) -> Result<Peer, HandshakeError> {
    let send_name = read_handshake(stream)?;
    let (flags, creation, name) = parse_send_name(&send_name)?;
    if flags & MANDATORY != MANDATORY && flags & MANDATORY_25_DIGEST == 0 {
        write_handshake(stream, b"snot_allowed")?;
        return Err(HandshakeError::Refused(format!(
            "{name} lacks mandatory flags"
        )));
    }
    match admit(&name) {
        Admit::Ok => write_handshake(stream, b"sok")?,
        Admit::Simultaneous => write_handshake(stream, b"sok_simultaneous")?,
        Admit::Refuse => {
            write_handshake(stream, b"snok")?;
            return Err(HandshakeError::Refused("nok".into()));
        }
        Admit::Alive => {
            write_handshake(stream, b"salive")?;
            if read_handshake(stream)? != b"strue" {
                return Err(HandshakeError::Refused(format!(
                    "{name} keeps its other link"
                )));
            }
        }
    }

    let our_challenge = random_u32();
    let mut challenge = vec![b'N'];
    challenge.extend(FLAGS.to_be_bytes());
    challenge.extend(our_challenge.to_be_bytes());
    challenge.extend(local.creation.to_be_bytes());
    challenge.extend((local.name.len() as u16).to_be_bytes());
    challenge.extend(local.name.as_bytes());
    write_handshake(stream, &challenge)?;

    let reply = read_handshake(stream)?;
    if reply.len() != 21 || reply[0] != b'r' {
        return Err(protocol("expected a challenge reply"));
    }
    if reply[5..] != digest(local.cookie, our_challenge) {
        return Err(HandshakeError::BadCookie(name));
    }
    let their_challenge = u32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]]);
    let mut ack = vec![b'a'];
    ack.extend(digest(local.cookie, their_challenge));
    write_handshake(stream, &ack)?;
    Ok(Peer {
        name,
        creation,
        flags: flags & FLAGS,
    })
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A name field: u16 length then the bytes, which must end the message.
fn name_at(msg: &[u8], at: usize) -> Result<String, HandshakeError> {
    let len_bytes = msg
        .get(at..at + 2)
        .ok_or_else(|| protocol("truncated name"))?;
    let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let raw = msg
        .get(at + 2..)
        .filter(|r| r.len() == len)
        .ok_or_else(|| protocol("bad name length"))?;
    String::from_utf8(raw.to_vec()).map_err(|_| protocol("name is not utf-8"))
}

/// `'N' flags:u64 creation:u32 name` from an initiator.
fn parse_send_name(msg: &[u8]) -> Result<(u64, u32, String), HandshakeError> {
    if msg.len() < 15 || msg[0] != b'N' {
        return Err(protocol("expected a version-6 send_name"));
    }
    Ok((be_u64(&msg[1..9]), be_u32(&msg[9..13]), name_at(msg, 13)?))
}

/// `'N' flags:u64 challenge:u32 creation:u32 name` from an acceptor.
fn parse_challenge(msg: &[u8]) -> Result<(u64, u32, u32, String), HandshakeError> {
    if msg.len() < 19 || msg[0] != b'N' {
        return Err(protocol("expected a version-6 challenge"));
    }
    Ok((
        be_u64(&msg[1..9]),
        be_u32(&msg[9..13]),
        be_u32(&msg[13..17]),
        name_at(msg, 17)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::thread;
    use std::time::Duration;

    fn pair(
        acceptor: (&'static str, &'static str),
        initiator: (&'static str, &'static str),
        expect: &'static str,
    ) -> (Result<Peer, HandshakeError>, Result<Peer, HandshakeError>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let local = Local {
                name: acceptor.0,
                creation: 2,
                cookie: acceptor.1,
            };
            accept(&mut s, &local, |_| Admit::Ok)
        });
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let local = Local {
            name: initiator.0,
            creation: 1,
            cookie: initiator.1,
        };
        let client = initiate(&mut c, &local, expect, || true);
        drop(c);
        (client, server.join().expect("server thread"))
    }

    #[test]
    fn same_cookie_completes_both_sides() {
        let (client, server) = pair(("b@h", "c"), ("a@h", "c"), "b@h");
        let client = client.expect("initiator");
        let server = server.expect("acceptor");
        assert_eq!((client.name.as_str(), client.creation), ("b@h", 2));
        assert_eq!((server.name.as_str(), server.creation), ("a@h", 1));
    }

    #[test]
    fn different_cookies_fail_both_sides() {
        let (client, server) = pair(("b@h", "x"), ("a@h", "y"), "b@h");
        assert!(
            matches!(server, Err(HandshakeError::BadCookie(ref n)) if n == "a@h"),
            "{server:?}"
        );
        assert!(
            matches!(client, Err(HandshakeError::BadCookie(ref n)) if n == "b@h"),
            "{client:?}"
        );
    }

    #[test]
    fn wrong_name_is_reported() {
        let (client, _) = pair(("b@h", "c"), ("a@h", "c"), "other@h");
        assert!(
            matches!(client, Err(HandshakeError::NameMismatch { ref got }) if got == "b@h"),
            "{client:?}"
        );
    }

    #[test]
    fn truncated_and_garbled_messages_are_errors() {
        for bad in [
            &b""[..],
            b"N",
            b"N\0\0\0\0\0\0\0\0\0\0\0\0\0\x05ab",
            b"n1234567890123456",
        ] {
            assert!(parse_send_name(bad).is_err());
            assert!(parse_challenge(bad).is_err());
        }
    }
}
