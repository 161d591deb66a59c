//! The version-6 distribution handshake (OTP 23 and later), both sides.
//!
//! The stream given is bounded by the caller: `link` wraps the socket so that
//! every read and write gets the time left until the caller's deadline, so
//! the handshake as a whole ends by that deadline.
//!
//! Both sides check the other's flags as OTP does: a peer that lacks a flag
//! pulse requires ([`flags::REQUIRED`]) is refused (`not_allowed` when it
//! connected to us, an abort when we connected to it).

use std::fmt;
use std::io::{self, Read, Write};

use super::cursor::Cursor;
use super::flags;
use super::frame::{read_handshake, write_handshake};
use super::{digest, random_u32};

/// The far end of a finished handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The node name the peer gave.
    pub name: String,
    /// The peer's creation, part of its pids.
    pub creation: u32,
    /// The flags both sides share.
    pub flags: u64,
}

/// Why a handshake failed.
#[derive(Debug)]
pub(crate) enum HandshakeError {
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
    /// The peer lacks capabilities pulse needs.
    MissingFlags {
        /// The name it gave.
        peer: String,
        /// The missing flags' names.
        missing: String,
    },
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
            HandshakeError::MissingFlags { peer, missing } => {
                write!(f, "handshake: {peer} lacks mandatory flags {missing}")
            }
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
pub(crate) enum Admit {
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
pub(crate) struct Local<'a> {
    /// Our full node name.
    pub name: &'a str,
    /// Our creation.
    pub creation: u32,
    /// The shared secret.
    pub cookie: &'a str,
}

/// The initiator's first message (`N`, version 6): the capability flags
/// offered, our creation and our name.
pub(crate) fn send_name(offered: u64, creation: u32, name: &str) -> Vec<u8> {
    let mut message = vec![b'N'];
    message.extend(offered.to_be_bytes());
    message.extend(creation.to_be_bytes());
    message.extend((name.len() as u16).to_be_bytes());
    message.extend(name.as_bytes());
    message
}

/// Connects as the initiator to a node expected to be called `peer_name`.
///
/// A close right after our challenge reply is how Erlang answers a wrong
/// cookie, so it is reported as [`HandshakeError::BadCookie`]. When the
/// acceptor says a link is already `alive`, `still_ours` decides: `true`
/// (we hold no link to it, so the old one is stale) replaces the old link,
/// `false` gives up.
pub(crate) fn initiate<S: Read + Write>(
    stream: &mut S,
    local: &Local,
    peer_name: &str,
    still_ours: impl FnOnce() -> bool,
) -> Result<Peer, HandshakeError> {
    write_handshake(
        stream,
        &send_name(flags::OFFERED, local.creation, local.name),
    )?;

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
    let (their_flags, their_challenge, creation, name) = parse_challenge(&challenge)?;
    if name != peer_name {
        return Err(HandshakeError::NameMismatch { got: name });
    }
    check_flags(&name, their_flags)?;
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
    let mut c = Cursor::new(&ack);
    let their_digest = c
        .expect(b"a")
        .and_then(|()| c.take(16))
        .filter(|_| c.at_end())
        .ok_or_else(|| protocol("expected a challenge ack"))?;
    if their_digest != digest(local.cookie, our_challenge) {
        return Err(HandshakeError::BadCookie(name));
    }
    Ok(Peer {
        name,
        creation,
        flags: flags::expand(their_flags) & flags::OFFERED,
    })
}

/// Answers a connecting node as the acceptor; `admit` picks the status for
/// the caller's name. On a wrong cookie the socket is left for the caller to
/// close without a word, as Erlang does.
pub(crate) fn accept<S: Read + Write>(
    stream: &mut S,
    local: &Local,
    admit: impl FnOnce(&str) -> Admit,
) -> Result<Peer, HandshakeError> {
    let send_name = read_handshake(stream)?;
    let (their_flags, creation, name) = parse_send_name(&send_name)?;
    if let Err(e) = check_flags(&name, their_flags) {
        write_handshake(stream, b"snot_allowed")?;
        return Err(e);
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
    challenge.extend(flags::OFFERED.to_be_bytes());
    challenge.extend(our_challenge.to_be_bytes());
    challenge.extend(local.creation.to_be_bytes());
    challenge.extend((local.name.len() as u16).to_be_bytes());
    challenge.extend(local.name.as_bytes());
    write_handshake(stream, &challenge)?;

    let reply = read_handshake(stream)?;
    let mut c = Cursor::new(&reply);
    let (their_challenge, their_digest) = c
        .expect(b"r")
        .and_then(|()| Some((c.u32()?, c.take(16)?)))
        .filter(|_| c.at_end())
        .ok_or_else(|| protocol("expected a challenge reply"))?;
    if their_digest != digest(local.cookie, our_challenge) {
        return Err(HandshakeError::BadCookie(name));
    }
    let mut ack = vec![b'a'];
    ack.extend(digest(local.cookie, their_challenge));
    write_handshake(stream, &ack)?;
    Ok(Peer {
        name,
        creation,
        flags: flags::expand(their_flags) & flags::OFFERED,
    })
}

/// Refuses a peer that lacks a flag pulse requires.
fn check_flags(name: &str, their_flags: u64) -> Result<(), HandshakeError> {
    let missing = flags::missing(flags::REQUIRED, their_flags);
    if missing.is_empty() {
        return Ok(());
    }
    Err(HandshakeError::MissingFlags {
        peer: name.to_string(),
        missing: missing.join(", "),
    })
}

fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A name field: u16 length then the bytes, which must end the message.
fn name_at(c: &mut Cursor) -> Result<String, HandshakeError> {
    let len = c.u16().ok_or_else(|| protocol("truncated name"))?;
    if c.left() != usize::from(len) {
        return Err(protocol("bad name length"));
    }
    String::from_utf8(c.rest().to_vec()).map_err(|_| protocol("name is not utf-8"))
}

/// `'N' flags:u64 creation:u32 name` from an initiator.
fn parse_send_name(msg: &[u8]) -> Result<(u64, u32, String), HandshakeError> {
    let mut c = Cursor::new(msg);
    let bad = || protocol("expected a version-6 send_name");
    c.expect(b"N").ok_or_else(bad)?;
    let their_flags = c.u64().ok_or_else(bad)?;
    let creation = c.u32().ok_or_else(bad)?;
    Ok((their_flags, creation, name_at(&mut c)?))
}

/// `'N' flags:u64 challenge:u32 creation:u32 name` from an acceptor.
fn parse_challenge(msg: &[u8]) -> Result<(u64, u32, u32, String), HandshakeError> {
    let mut c = Cursor::new(msg);
    let bad = || protocol("expected a version-6 challenge");
    c.expect(b"N").ok_or_else(bad)?;
    let their_flags = c.u64().ok_or_else(bad)?;
    let challenge = c.u32().ok_or_else(bad)?;
    let creation = c.u32().ok_or_else(bad)?;
    Ok((their_flags, challenge, creation, name_at(&mut c)?))
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

    /// What an acceptor says to a raw send_name offering `offer`.
    fn accept_offer(offer: u64) -> (Vec<u8>, Result<Peer, HandshakeError>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let local = Local {
                name: "b@h",
                creation: 2,
                cookie: "c",
            };
            accept(&mut s, &local, |_| Admit::Ok)
        });
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write_handshake(&mut c, &send_name(offer, 1, "a@h")).expect("send_name");
        let status = read_handshake(&mut c).expect("status");
        drop(c);
        (status, server.join().expect("server thread"))
    }

    #[test]
    fn a_peer_without_required_flags_is_refused_as_otp_does() {
        let (status, result) = accept_offer(flags::MANDATORY & !flags::MAP_TAG);
        assert_eq!(status, b"snot_allowed");
        assert!(
            matches!(result, Err(HandshakeError::MissingFlags { ref missing, .. })
                if missing == "MAP_TAG"),
            "{result:?}"
        );
        // OTP 25's set, as older pulse builds offer it, is enough; so is the
        // OTP 25 shorthand.
        for offer in [flags::MANDATORY_25, flags::MANDATORY_25_DIGEST] {
            let (status, result) = accept_offer(offer);
            assert_eq!(status, b"sok", "{offer:#x}");
            assert!(matches!(result, Err(HandshakeError::Io(_))), "{result:?}");
        }
    }

    #[test]
    fn both_sides_offer_todays_mandatory_flags_and_keep_the_shared_ones() {
        let (client, server) = pair(("b@h", "c"), ("a@h", "c"), "b@h");
        for peer in [client.expect("initiator"), server.expect("acceptor")] {
            assert_eq!(peer.flags, flags::OFFERED);
            assert!(flags::missing(flags::MANDATORY, peer.flags).is_empty());
        }
        let mut wire = Vec::new();
        let local = Local {
            name: "a@h",
            creation: 1,
            cookie: "c",
        };
        let _ = initiate(&mut Recorder(&mut wire), &local, "b@h", || true);
        // Length, 'N', then the flags pulse offers.
        assert_eq!(wire[3..11], flags::OFFERED.to_be_bytes());
        assert_eq!(wire[2], b'N');
    }

    /// Records what is written and reads nothing.
    struct Recorder<'a>(&'a mut Vec<u8>);

    impl Read for Recorder<'_> {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Ok(0)
        }
    }

    impl Write for Recorder<'_> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.extend(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
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
