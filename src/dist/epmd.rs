//! EPMD client and a tiny EPMD responder.
//!
//! An Erlang node finds another node's distribution port by asking the Erlang
//! Port Mapper Daemon (EPMD) on the peer's host, and makes itself findable by
//! registering its own name there and keeping that TCP connection open. This
//! module speaks that small protocol with blocking `std::net` sockets:
//!
//! * [`port_please`] asks an EPMD for a node's port (`PORT_PLEASE2_REQ`).
//! * [`register`] registers our name (`ALIVE2_REQ`) and returns a
//!   [`Registration`] that holds the connection; dropping it unregisters.
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

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::acceptor::AcceptThread;

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

/// Asks the EPMD at `epmd` for the distribution port of `alive` (the part of a node name before '@').
///
/// Ok(None) when EPMD answers that the name is not registered. `timeout` bounds
/// the connect and, separately, the whole request/reply exchange.
pub fn port_please(epmd: SocketAddr, alive: &str, timeout: Duration) -> io::Result<Option<u16>> {
    check_alive(alive)?;
    let mut stream = connect(epmd, timeout)?;
    let deadline = Instant::now() + timeout;

    let mut req = Vec::with_capacity(3 + alive.len());
    push_u16(&mut req, frame_len(1 + alive.len())?);
    req.push(PORT_PLEASE2_REQ);
    req.extend_from_slice(alive.as_bytes());
    send(&mut stream, &req, "PORT_PLEASE2_REQ")?;

    let mut r = Reply::new(&mut stream, deadline, "PORT2_RESP");
    let tag = r.u8()?;
    if tag != PORT2_RESP {
        return Err(invalid(format!(
            "epmd: expected PORT2_RESP ('w'), got tag {tag:#04x}"
        )));
    }
    if r.u8()? != 0 {
        return Ok(None);
    }
    let port = r.u16()?;
    let _node_type = r.u8()?;
    let _proto = r.u8()?;
    let highest = r.u16()?;
    let lowest = r.u16()?;
    let nlen = usize::from(r.u16()?);
    let name = r.bytes(nlen)?;
    let elen = usize::from(r.u16()?);
    let _extra = r.bytes(elen)?;

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
            String::from_utf8_lossy(&name)
        );
    }
    Ok(Some(port))
}

/// A held registration: EPMD keeps the name while this lives; dropping it closes the socket (unregisters).
#[derive(Debug)]
pub struct Registration {
    /// The open connection to EPMD; closing it unregisters the name.
    _stream: TcpStream,
    /// The creation EPMD assigned to this incarnation of the node.
    pub creation: u32,
}

/// Registers `alive` with distribution `port` as a hidden-style node (type 'H', versions 6..=6).
///
/// Handles both `ALIVE2_X_RESP` (32-bit creation) and `ALIVE2_RESP` (16-bit
/// creation). EPMD frees a closed registration late, so a refusal is retried
/// for about 500 ms before failing with [`io::ErrorKind::AlreadyExists`].
pub fn register(
    epmd: SocketAddr,
    alive: &str,
    port: u16,
    timeout: Duration,
) -> io::Result<Registration> {
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
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "epmd: name {alive:?} is already registered at {epmd} \
                         (refused {attempts} times over {} ms)",
                        DUPLICATE_RETRY_FOR.as_millis()
                    ),
                ));
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
    let mut stream = connect(epmd, timeout)?;
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
    send(&mut stream, &req, "ALIVE2_REQ")?;

    let mut r = Reply::new(&mut stream, deadline, "ALIVE2 reply");
    let (result, creation) = match r.u8()? {
        ALIVE2_X_RESP => (r.u8()?, r.u32()?),
        ALIVE2_RESP => (r.u8()?, u32::from(r.u16()?)),
        tag => {
            return Err(invalid(format!(
                "epmd: expected ALIVE2_X_RESP ('v') or ALIVE2_RESP ('y'), got tag {tag:#04x}"
            )));
        }
    };
    if result != 0 {
        return Ok(None);
    }
    Ok(Some(Registration {
        _stream: stream,
        creation,
    }))
}

/// A minimal EPMD stand-in that only knows our own name.
///
/// Answers `PORT_PLEASE2_REQ` for our alive name with our port (and "not
/// found" for any other), answers `NAMES_REQ`, and closes anything else. One
/// thread named "pulse-epmd" serves one connection at a time, each bounded by
/// a short deadline and a length cap.
#[derive(Debug)]
pub struct Responder {
    thread: AcceptThread,
    /// Set once the node leaves: it then answers as an EPMD without our name.
    leaving: Arc<AtomicBool>,
}

impl Responder {
    /// Binds `bind` and starts answering for `alive` at distribution `port`.
    pub fn start(bind: SocketAddr, alive: &str, port: u16) -> io::Result<Responder> {
        check_alive(alive)?;
        let listener = TcpListener::bind(bind)?;
        let answers = Answers::new(alive, port, listener.local_addr()?.port());
        let leaving = Arc::new(AtomicBool::new(false));
        let left = leaving.clone();
        let thread = AcceptThread::spawn("pulse-epmd", listener, move |listener, closing| {
            serve(&listener, &closing, &answers, &left)
        })?;
        Ok(Responder { thread, leaving })
    }

    /// The address the responder listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.thread.local_addr()
    }

    /// From now on answers without our name, so a peer that asks sees that
    /// this node left rather than failed.
    pub fn leave(&self) {
        self.leaving.store(true, Ordering::SeqCst);
    }

    /// Stops the thread and joins it (dropping it does the same).
    pub fn stop(self) {
        self.thread.stop();
    }
}

/// The replies the responder can give, prepared once.
struct Answers {
    /// Our alive name, as bytes to compare against requests.
    alive: Vec<u8>,
    /// Full `PORT2_RESP` for our name.
    port2_ok: Vec<u8>,
    /// Full `NAMES_REQ` reply.
    names: Vec<u8>,
    /// The `NAMES_REQ` reply without our name.
    no_names: Vec<u8>,
}

impl Answers {
    /// Builds the replies for `alive` at `port`, with the responder's own `epmd_port`.
    fn new(alive: &str, port: u16, epmd_port: u16) -> Answers {
        // check_alive has bounded the length to 255, so the u16 fits.
        let nlen = u16::try_from(alive.len()).unwrap_or(u16::MAX);
        let mut port2_ok = vec![PORT2_RESP, 0];
        push_u16(&mut port2_ok, port);
        port2_ok.push(NODE_TYPE_HIDDEN);
        port2_ok.push(PROTO_TCP);
        push_u16(&mut port2_ok, DIST_VERSION);
        push_u16(&mut port2_ok, DIST_VERSION);
        push_u16(&mut port2_ok, nlen);
        port2_ok.extend_from_slice(alive.as_bytes());
        push_u16(&mut port2_ok, 0);

        let no_names = u32::from(epmd_port).to_be_bytes().to_vec();
        let mut names = no_names.clone();
        names.extend_from_slice(format!("name {alive} at port {port}\n").as_bytes());

        Answers {
            alive: alive.as_bytes().to_vec(),
            port2_ok,
            names,
            no_names,
        }
    }
}

/// The responder thread: accept, answer one request, close; until `closing` is set.
fn serve(listener: &TcpListener, closing: &AtomicBool, answers: &Answers, leaving: &AtomicBool) {
    loop {
        let accepted = listener.accept();
        if closing.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((mut stream, peer)) => {
                let left = leaving.load(Ordering::SeqCst);
                if let Err(e) = answer(&mut stream, answers, left) {
                    log::debug!("epmd responder: request from {peer}: {e}");
                }
            }
            Err(e) => {
                log::warn!("epmd responder: accept failed: {e}");
                // Avoid spinning if the error persists (e.g. out of descriptors).
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Reads one request from `stream` and writes the matching reply, if any.
fn answer(stream: &mut TcpStream, answers: &Answers, left: bool) -> io::Result<()> {
    stream.set_read_timeout(Some(RESPONDER_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(RESPONDER_IO_TIMEOUT))?;
    let deadline = Instant::now() + RESPONDER_IO_TIMEOUT;

    let mut r = Reply::new(stream, deadline, "request");
    let len = usize::from(r.u16()?);
    if len == 0 || len > RESPONDER_MAX_REQUEST {
        return Err(invalid(format!("epmd responder: request length {len}")));
    }
    let body = r.bytes(len)?;
    match body.split_first() {
        Some((&PORT_PLEASE2_REQ, name)) if name == answers.alive.as_slice() && !left => {
            stream.write_all(&answers.port2_ok)
        }
        Some((&PORT_PLEASE2_REQ, _)) => stream.write_all(&[PORT2_RESP, 1]),
        Some((&NAMES_REQ, [])) if left => stream.write_all(&answers.no_names),
        Some((&NAMES_REQ, [])) => stream.write_all(&answers.names),
        Some((tag, _)) => Err(invalid(format!(
            "epmd responder: unsupported request tag {tag:#04x}"
        ))),
        None => Ok(()),
    }
}

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
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(invalid(format!(
                        "epmd: short {} (connection closed after {done} of {} bytes of a field)",
                        self.what,
                        buf.len()
                    )));
                }
                Ok(n) => done += n,
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
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::process::{Child, Command, Output, Stdio};
    use std::thread::JoinHandle;

    /// Generous per-request timeout; the responder may be busy with a silent client for 1 s.
    const T: Duration = Duration::from_secs(5);

    /// True if `tool` can be run; otherwise prints a loud SKIPPED line (or panics
    /// when `PULSE_REQUIRE_EXTERNAL=1`) and returns false.
    fn tool_available(tool: &str, test: &str) -> bool {
        let found = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
            .unwrap_or(false);
        if found {
            return true;
        }
        let msg = format!("SKIPPED ({tool} not installed): {test}");
        if std::env::var("PULSE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        // Straight to the process's stderr, past libtest's output capture, so
        // the skip is visible even when the test "passes".
        let _ = writeln!(io::stderr(), "{msg}");
        false
    }

    /// Polls `cond` until it holds or `within` has passed; returns whether it held.
    fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// A loopback port that was free a moment ago.
    fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        l.local_addr().expect("local_addr").port()
    }

    fn lo(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    /// A child process killed (and reaped) on drop.
    struct Guard(Child);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A real `epmd` on a fresh loopback port, killed on drop.
    struct Epmd {
        _child: Guard,
        addr: SocketAddr,
    }

    /// Starts `epmd -address 127.0.0.1 -port <free>` and waits until it answers.
    fn start_epmd() -> Epmd {
        for _ in 0..5 {
            let port = free_port();
            let mut child = Guard(
                Command::new("epmd")
                    .args(["-address", "127.0.0.1", "-port", &port.to_string()])
                    .env_remove("ERL_EPMD_PORT")
                    .env_remove("ERL_EPMD_ADDRESS")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn epmd"),
            );
            let addr = lo(port);
            let up = wait_until(Duration::from_secs(5), || {
                matches!(child.0.try_wait(), Ok(Some(_)))
                    || matches!(port_please(addr, "pulse_probe", T), Ok(None))
            });
            // The port may have been taken between free_port() and epmd's bind: retry.
            if up && matches!(child.0.try_wait(), Ok(None)) {
                return Epmd {
                    _child: child,
                    addr,
                };
            }
        }
        panic!("epmd did not start on a free loopback port in 5 tries");
    }

    /// `erl` with a clean environment pointing at the EPMD on `epmd_port`.
    fn erl(epmd_port: u16) -> Command {
        let mut cmd = Command::new("erl");
        cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env_remove("ERL_FLAGS")
            .env_remove("ERL_AFLAGS")
            .env_remove("ERL_ZFLAGS")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` to completion, killing it if it outlives `within`.
    fn run_with_deadline(mut cmd: Command, within: Duration) -> Output {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut guard = Guard(child);
        let exited = wait_until(within, || matches!(guard.0.try_wait(), Ok(Some(_))));
        assert!(exited, "{cmd:?} still running after {within:?}");
        let mut out = Output {
            status: guard.0.wait().expect("wait"),
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        if let Some(mut s) = guard.0.stdout.take() {
            s.read_to_end(&mut out.stdout).expect("read stdout");
        }
        if let Some(mut s) = guard.0.stderr.take() {
            s.read_to_end(&mut out.stderr).expect("read stderr");
        }
        out
    }

    /// A one-shot fake EPMD: accepts one connection, reads the request, then
    /// writes `reply` in `chunk`-byte pieces with short pauses and closes.
    fn fake_epmd(reply: Vec<u8>, chunk: usize) -> (SocketAddr, JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("local_addr");
        let h = thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            s.set_read_timeout(Some(T)).expect("timeout");
            let mut len = [0u8; 2];
            s.read_exact(&mut len).expect("read len");
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut body).expect("read body");
            for piece in reply.chunks(chunk.max(1)) {
                s.write_all(piece).expect("write");
                s.flush().expect("flush");
                thread::sleep(Duration::from_millis(5));
            }
        });
        (addr, h)
    }

    /// A PORT2_RESP for `name` at `port`.
    fn port2_ok(port: u16, name: &str) -> Vec<u8> {
        Answers::new(name, port, 0).port2_ok
    }

    fn kind<T: std::fmt::Debug>(r: io::Result<T>) -> (io::ErrorKind, String) {
        let e = r.expect_err("expected an error");
        (e.kind(), e.to_string())
    }

    // ---- 1, 2: the client against a real epmd ----

    #[test]
    fn register_then_port_please_then_unregister_on_drop() {
        if !tool_available("epmd", "register_then_port_please_then_unregister_on_drop") {
            return;
        }
        let epmd = start_epmd();
        let reg = register(epmd.addr, "pulse_t1", 40123, T).expect("register");
        assert_ne!(reg.creation, 0, "epmd hands out non-zero creations");
        assert_eq!(
            port_please(epmd.addr, "pulse_t1", T).expect("pp"),
            Some(40123)
        );
        assert_eq!(port_please(epmd.addr, "pulse_other", T).expect("pp"), None);

        drop(reg);
        let gone = wait_until(Duration::from_secs(5), || {
            matches!(port_please(epmd.addr, "pulse_t1", T), Ok(None))
        });
        assert!(
            gone,
            "name still registered 5 s after dropping the Registration"
        );
    }

    #[test]
    fn duplicate_registration_is_already_exists_and_reregister_after_drop_works() {
        if !tool_available(
            "epmd",
            "duplicate_registration_is_already_exists_and_reregister_after_drop_works",
        ) {
            return;
        }
        let epmd = start_epmd();
        let first = register(epmd.addr, "pulse_t2", 40200, T).expect("first register");
        let started = Instant::now();
        let (k, msg) = kind(register(epmd.addr, "pulse_t2", 40201, T));
        assert_eq!(k, io::ErrorKind::AlreadyExists, "{msg}");
        assert!(msg.contains("pulse_t2"), "{msg}");
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "duplicate was not retried: failed after {:?}",
            started.elapsed()
        );
        // The held registration is untouched by the failed attempts.
        assert_eq!(
            port_please(epmd.addr, "pulse_t2", T).expect("pp"),
            Some(40200)
        );

        // Dropping and re-registering at once must succeed (EPMD frees late; we retry).
        let c1 = first.creation;
        drop(first);
        let second = register(epmd.addr, "pulse_t2", 40202, T).expect("re-register");
        assert_ne!(
            second.creation, c1,
            "a new registration gets a new creation"
        );
        assert_eq!(
            port_please(epmd.addr, "pulse_t2", T).expect("pp"),
            Some(40202)
        );
    }

    // ---- client parsing against fake servers ----

    #[test]
    fn port2_resp_split_into_single_bytes_is_read_by_length() {
        let (addr, h) = fake_epmd(port2_ok(41000, "pulse_split"), 1);
        assert_eq!(
            port_please(addr, "pulse_split", T).expect("pp"),
            Some(41000)
        );
        h.join().expect("fake epmd");
    }

    #[test]
    fn truncated_or_wrong_replies_are_invalid_data() {
        let mut short = port2_ok(41001, "pulse_short");
        short.truncate(short.len() - 3);
        for (reply, want) in [
            (short, "short PORT2_RESP"),
            (vec![PORT2_RESP], "short PORT2_RESP"),
            (vec![], "short PORT2_RESP"),
            (vec![b'y', 0, 0, 1], "expected PORT2_RESP"),
        ] {
            let (addr, h) = fake_epmd(reply, 4);
            let (k, msg) = kind(port_please(addr, "pulse_short", T));
            assert_eq!(k, io::ErrorKind::InvalidData, "{msg}");
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
            h.join().expect("fake epmd");
        }
        let (addr, h) = fake_epmd(vec![b'?', 0, 0, 0, 0, 1], 6);
        let (k, msg) = kind(register(addr, "pulse_reg", 1, T));
        assert_eq!(k, io::ErrorKind::InvalidData, "{msg}");
        h.join().expect("fake epmd");
        let (addr, h) = fake_epmd(vec![ALIVE2_X_RESP, 0, 0], 6);
        let (k, msg) = kind(register(addr, "pulse_reg", 1, T));
        assert_eq!(k, io::ErrorKind::InvalidData, "{msg}");
        assert!(msg.contains("short ALIVE2"), "{msg}");
        h.join().expect("fake epmd");
    }

    #[test]
    fn alive2_resp_with_16_bit_creation_and_x_resp_with_32_bit() {
        let (addr, h) = fake_epmd(vec![ALIVE2_RESP, 0, 0x01, 0x02], 1);
        let reg = register(addr, "pulse_y", 1, T).expect("register");
        assert_eq!(reg.creation, 0x0102);
        h.join().expect("fake epmd");
        let (addr, h) = fake_epmd(vec![ALIVE2_X_RESP, 0, 0xAB, 0xCD, 0xEF, 0x01], 2);
        let reg = register(addr, "pulse_v", 1, T).expect("register");
        assert_eq!(reg.creation, 0xABCD_EF01);
        h.join().expect("fake epmd");
    }

    #[test]
    fn silent_epmd_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("local_addr");
        let started = Instant::now();
        let (k, msg) = kind(port_please(
            addr,
            "pulse_silent",
            Duration::from_millis(300),
        ));
        assert_eq!(k, io::ErrorKind::TimedOut, "{msg}");
        assert!(msg.contains("PORT2_RESP"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn bad_alive_names_are_rejected_before_any_io() {
        let nowhere = lo(1);
        for bad in ["", "a@b", &"x".repeat(256)] {
            let (k, msg) = kind(port_please(nowhere, bad, T));
            assert_eq!(k, io::ErrorKind::InvalidInput, "{bad:?}: {msg}");
            let (k, _) = kind(register(nowhere, bad, 1, T));
            assert_eq!(k, io::ErrorKind::InvalidInput);
            assert!(Responder::start(lo(0), bad, 1).is_err());
        }
        assert!(check_alive(&"x".repeat(255)).is_ok());
    }

    // ---- 3: the responder ----

    /// Sends raw `bytes` to `addr` and returns whatever comes back before close.
    fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut s = connect(addr, T).expect("connect");
        // The responder may close before reading everything (e.g. oversized length).
        let _ = s.write_all(bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    #[test]
    fn responder_answers_and_survives_bad_clients() {
        let r = Responder::start(lo(0), "pulse_t3", 42424).expect("start");
        let addr = r.local_addr();
        assert_eq!(port_please(addr, "pulse_t3", T).expect("pp"), Some(42424));
        assert_eq!(port_please(addr, "pulse_nope", T).expect("pp"), None);

        // Garbage, an oversized length, a zero length, a truncated body, an
        // unknown tag: each is closed without a reply, and the next good
        // request is still answered.
        let mut bad: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.0\r\n\r\n".to_vec(),
            vec![0xFF, 0xFF, b'z'],
            vec![0, 0],
            vec![0, 10, b'z', b'p'],
            vec![0, 2, b'q', b'x'],
        ];
        bad.push([vec![0x10, 0x00], vec![b'z'; 0x1000]].concat());
        for b in &bad {
            assert_eq!(raw_exchange(addr, b), Vec::<u8>::new(), "reply to {b:?}");
            assert_eq!(port_please(addr, "pulse_t3", T).expect("pp"), Some(42424));
        }

        // A silent client holds the (single) thread for at most ~1 s.
        let silent = connect(addr, T).expect("connect");
        let started = Instant::now();
        assert_eq!(port_please(addr, "pulse_t3", T).expect("pp"), Some(42424));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(silent);

        // NAMES_REQ: the responder's port, then one line for our name.
        let names = raw_exchange(addr, &[0, 1, NAMES_REQ]);
        let mut want = u32::from(addr.port()).to_be_bytes().to_vec();
        want.extend_from_slice(b"name pulse_t3 at port 42424\n");
        assert_eq!(names, want);

        // stop() joins, and the port stops answering.
        let started = Instant::now();
        r.stop();
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(port_please(addr, "pulse_t3", Duration::from_millis(500)).is_err());
    }

    #[test]
    fn responder_stops_on_drop() {
        let r = Responder::start(lo(0), "pulse_d", 1).expect("start");
        let addr = r.local_addr();
        assert_eq!(port_please(addr, "pulse_d", T).expect("pp"), Some(1));
        drop(r);
        assert!(port_please(addr, "pulse_d", Duration::from_millis(500)).is_err());
    }

    // ---- 4: real Erlang agrees ----

    #[test]
    fn real_erl_reads_the_responder() {
        if !tool_available("erl", "real_erl_reads_the_responder") {
            return;
        }
        let r = Responder::start(lo(0), "pulse_t4", 43210).expect("start");
        let mut cmd = erl(r.local_addr().port());
        cmd.args([
            "-noshell",
            "-eval",
            r#"io:format("~p~n~p~n~p~n", [erl_epmd:port_please("pulse_t4", {127,0,0,1}), erl_epmd:port_please("pulse_other", {127,0,0,1}), erl_epmd:names({127,0,0,1})]), halt()."#,
        ]);
        let out = run_with_deadline(cmd, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "erl failed\n{stdout}\n{stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            ["{port,43210,6}", "noport", r#"{ok,[{"pulse_t4",43210}]}"#],
            "stderr: {stderr}"
        );
    }

    #[test]
    fn real_erl_sees_our_registration() {
        if !tool_available("epmd", "real_erl_sees_our_registration")
            || !tool_available("erl", "real_erl_sees_our_registration")
        {
            return;
        }
        let epmd = start_epmd();
        let _reg = register(epmd.addr, "pulse_t4r", 43211, T).expect("register");
        let mut cmd = erl(epmd.addr.port());
        cmd.args([
            "-noshell",
            "-eval",
            r#"io:format("~p~n", [erl_epmd:port_please("pulse_t4r", {127,0,0,1})]), halt()."#,
        ]);
        let out = run_with_deadline(cmd, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            "{port,43211,6}",
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn our_port_please_finds_a_real_erl_node() {
        if !tool_available("epmd", "our_port_please_finds_a_real_erl_node")
            || !tool_available("erl", "our_port_please_finds_a_real_erl_node")
        {
            return;
        }
        let epmd = start_epmd();
        let dist = free_port().to_string();
        let mut cmd = erl(epmd.addr.port());
        cmd.args([
            "-noshell",
            "-start_epmd",
            "false",
            "-setcookie",
            "pulse_test_cookie",
            "-kernel",
            "inet_dist_use_interface",
            "{127,0,0,1}",
            "-kernel",
            "inet_dist_listen_min",
            &dist,
            "-kernel",
            "inet_dist_listen_max",
            &dist,
            "-name",
            "pulse_t4e@127.0.0.1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let node = Guard(cmd.spawn().expect("spawn erl"));
        let want: u16 = dist.parse().expect("port");
        let mut last = None;
        let found = wait_until(Duration::from_secs(20), || {
            last = Some(port_please(epmd.addr, "pulse_t4e", T).map_err(|e| e.to_string()));
            last == Some(Ok(Some(want)))
        });
        assert!(
            found,
            "erl never registered at port {want}; last answer {last:?}"
        );

        drop(node);
        let gone = wait_until(Duration::from_secs(10), || {
            matches!(port_please(epmd.addr, "pulse_t4e", T), Ok(None))
        });
        assert!(gone, "killed erl still registered");
    }
}
