//! The Erlang distribution wire: the handshake, the frames that follow it,
//! the messages of a ping, and EPMD.
//!
//! pulse presents itself as a hidden node that offers the capabilities
//! current OTP (26 to 28) requires, plus monitors, so every message travels
//! as a plain `'p'` frame: no atom cache, no fragments.

mod cursor;
pub(crate) mod epmd;
pub(crate) mod flags;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod link;
pub(crate) mod message;
pub(crate) mod term;

use std::io::Read;

/// A random `u32` from the kernel, for challenges, creations and cookies.
/// `/dev/urandom` exists in a scratch container too; if it cannot be read,
/// the clock and process id still give a value no peer can predict well.
pub(crate) fn random_u32() -> u32 {
    let mut buf = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok()
    {
        return u32::from_ne_bytes(buf);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// MD5 of the cookie followed by the challenge in unsigned decimal, as both
/// ends of a handshake compute it.
pub(crate) fn digest(cookie: &str, challenge: u32) -> [u8; 16] {
    let mut ctx = md5::Context::new();
    ctx.consume(cookie.as_bytes());
    ctx.consume(challenge.to_string().as_bytes());
    ctx.finalize().0
}

#[cfg(test)]
mod tests {
    #[test]
    fn digest_uses_unsigned_decimal() {
        // A challenge above 2^31 must be written unsigned.
        let d = super::digest("c", 4_229_592_237);
        assert_eq!(d, md5::compute(b"c4229592237").0);
    }
}

/// Where a ping ran out of time: the text after `timeout` in a down reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Opening the TCP connection.
    Connect,
    /// The distribution handshake.
    Handshake,
    /// Waiting for the answer to a call.
    Reply,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Reply => "reply",
        })
    }
}

/// Who this node is on the wire.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// Our full node name.
    pub name: String,
    /// Our creation: a random number that changes with every start, so a
    /// restarted node's pids differ from the old one's.
    pub creation: u32,
    /// The shared secret.
    pub cookie: String,
}

impl Identity {
    /// A fresh identity for `name`.
    pub(crate) fn new(name: &str, cookie: &str) -> Identity {
        // Zero is avoided: Erlang reads creation 0 as "unknown".
        let creation = random_u32().max(1);
        Identity {
            name: name.to_string(),
            creation,
            cookie: cookie.to_string(),
        }
    }

    /// The borrowed form the handshake takes.
    pub(crate) fn local(&self) -> handshake::Local<'_> {
        handshake::Local {
            name: &self.name,
            creation: self.creation,
            cookie: &self.cookie,
        }
    }
}
