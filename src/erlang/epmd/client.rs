//! The EPMD client: port lookups and our own registration.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Asks the EPMD at `epmd` for the distribution port of `alive` (the part of a node name before '@').
///
/// Ok(None) when EPMD answers that the name is not registered. `timeout` bounds
/// the connect and, separately, the whole request/reply exchange.
pub fn port_please(epmd: SocketAddr, alive: &str, timeout: Duration) -> io::Result<Option<u16>> {
    check_alive(alive)?;
    let stream = connect(epmd, timeout)?;
    let deadline = Instant::now() + timeout;

    let mut req = Vec::with_capacity(3 + alive.len());
    push_u16(&mut req, frame_len(1 + alive.len())?);
    req.push(PORT_PLEASE2_REQ);
    req.extend_from_slice(alive.as_bytes());
    send(&stream, deadline, &req, "PORT_PLEASE2_REQ")?;

    read_message(&stream, deadline, "PORT2_RESP", |r| {
        let tag = r.u8()?;
        if tag != PORT2_RESP {
            return Some(Err(invalid(format!(
                "epmd: expected PORT2_RESP ('w'), got tag {tag:#04x}"
            ))));
        }
        if r.u8()? != 0 {
            return Some(Ok(None));
        }
        let port = r.u16()?;
        let _node_type = r.u8()?;
        let _proto = r.u8()?;
        let highest = r.u16()?;
        let lowest = r.u16()?;
        let nlen = usize::from(r.u16()?);
        let name = r.take(nlen)?;
        let elen = usize::from(r.u16()?);
        let _extra = r.take(elen)?;
        Some(port2_resp(alive, port, highest, lowest, name))
    })
}

/// The port a whole `PORT2_RESP` gives, if its fields make sense.
fn port2_resp(
    alive: &str,
    port: u16,
    highest: u16,
    lowest: u16,
    name: &[u8],
) -> io::Result<Option<u16>> {
    if port == 0 {
        return Err(invalid("epmd: PORT2_RESP with port 0".to_string()));
    }
    if lowest > highest {
        return Err(invalid(format!(
            "epmd: PORT2_RESP with lowest version {lowest} above highest {highest}"
        )));
    }
    if name != alive.as_bytes() {
        log::debug!(
            "epmd: asked for {alive:?}, PORT2_RESP names {:?}",
            String::from_utf8_lossy(name)
        );
    }
    Ok(Some(port))
}

/// A held registration: EPMD keeps the name while this lives; dropping it closes the socket (unregisters).
#[derive(Debug)]
pub struct Registration {
    /// The open connection to EPMD; closing it unregisters the name.
    stream: TcpStream,
    /// The creation EPMD assigned to this incarnation of the node.
    pub creation: u32,
}

/// Why [`register`] failed.
#[derive(Debug)]
pub enum RegisterError {
    /// EPMD kept refusing the name: another node holds it.
    NameTaken(String),
    /// No EPMD answered, or it broke the protocol or timed out.
    Io(io::Error),
}

impl std::fmt::Display for RegisterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegisterError::NameTaken(why) => f.write_str(why),
            RegisterError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for RegisterError {
    fn from(e: io::Error) -> Self {
        RegisterError::Io(e)
    }
}

/// Registers `alive` with distribution `port` as a hidden-style node (type 'H', versions 6..=6).
///
/// Handles both `ALIVE2_X_RESP` (32-bit creation) and `ALIVE2_RESP` (16-bit
/// creation). EPMD frees a closed registration late, so a refusal is retried
/// for about 500 ms before failing with [`RegisterError::NameTaken`].
pub fn register(
    epmd: SocketAddr,
    alive: &str,
    port: u16,
    timeout: Duration,
) -> Result<Registration, RegisterError> {
    check_alive(alive)?;
    let retry_until = Instant::now() + DUPLICATE_RETRY_FOR;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match register_once(epmd, alive, port, timeout)? {
            Some(registration) => return Ok(registration),
            None if Instant::now() < retry_until => {
                log::debug!("epmd: {alive:?} refused (attempt {attempts}), retrying");
                thread::sleep(DUPLICATE_RETRY_PAUSE);
            }
            None => {
                return Err(RegisterError::NameTaken(format!(
                    "epmd: name {alive:?} is already registered at {epmd} \
                     (refused {attempts} times over {} ms)",
                    DUPLICATE_RETRY_FOR.as_millis()
                )));
            }
        }
    }
}

/// One `ALIVE2_REQ` exchange; `Ok(None)` when EPMD refuses the name.
fn register_once(
    epmd: SocketAddr,
    alive: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<Option<Registration>> {
    let stream = connect(epmd, timeout)?;
    let deadline = Instant::now() + timeout;

    let body_len = 13 + alive.len();
    let mut req = Vec::with_capacity(2 + body_len);
    push_u16(&mut req, frame_len(body_len)?);
    req.push(ALIVE2_REQ);
    push_u16(&mut req, port);
    req.push(NODE_TYPE_HIDDEN);
    req.push(PROTO_TCP);
    push_u16(&mut req, DIST_VERSION);
    push_u16(&mut req, DIST_VERSION);
    push_u16(&mut req, frame_len(alive.len())?);
    req.extend_from_slice(alive.as_bytes());
    push_u16(&mut req, 0); // no extra
    send(&stream, deadline, &req, "ALIVE2_REQ")?;

    let (result, creation) = read_message(&stream, deadline, "ALIVE2 reply", |r| {
        Some(Ok(match r.u8()? {
            ALIVE2_X_RESP => (r.u8()?, r.u32()?),
            ALIVE2_RESP => (r.u8()?, u32::from(r.u16()?)),
            tag => {
                return Some(Err(invalid(format!(
                    "epmd: expected ALIVE2_X_RESP ('v') or ALIVE2_RESP ('y'), got tag {tag:#04x}"
                ))));
            }
        }))
    })?;
    if result != 0 {
        return Ok(None);
    }
    Ok(Some(Registration { stream, creation }))
}

impl Registration {
    /// Whether EPMD still holds the connection. EPMD never writes on it, so
    /// a readable socket means it was closed (EPMD stopped or restarted) and
    /// the name is no longer registered.
    pub fn is_open(&self) -> bool {
        let mut byte = [0u8; 1];
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let open = matches!(
            self.stream.peek(&mut byte),
            Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
        );
        let _ = self.stream.set_nonblocking(false);
        open
    }
}
