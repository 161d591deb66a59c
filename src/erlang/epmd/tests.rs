//! Tests of the EPMD client and responder.

use super::responder::{Answers, MAX_CLIENTS};
use super::*;
use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::thread::{self, JoinHandle};

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

/// The I/O error kind of a failed registration.
fn reg_kind(r: Result<Registration, RegisterError>) -> (io::ErrorKind, String) {
    match r.expect_err("expected an error") {
        RegisterError::Io(e) => (e.kind(), e.to_string()),
        other => panic!("expected an I/O error, got {other}"),
    }
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
fn duplicate_registration_is_name_taken_and_reregister_after_drop_works() {
    if !tool_available(
        "epmd",
        "duplicate_registration_is_name_taken_and_reregister_after_drop_works",
    ) {
        return;
    }
    let epmd = start_epmd();
    let first = register(epmd.addr, "pulse_t2", 40200, T).expect("first register");
    let started = Instant::now();
    let taken = register(epmd.addr, "pulse_t2", 40201, T);
    assert!(
        matches!(taken, Err(RegisterError::NameTaken(ref msg)) if msg.contains("pulse_t2")),
        "{taken:?}"
    );
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
    let (k, msg) = reg_kind(register(addr, "pulse_reg", 1, T));
    assert_eq!(k, io::ErrorKind::InvalidData, "{msg}");
    h.join().expect("fake epmd");
    let (addr, h) = fake_epmd(vec![ALIVE2_X_RESP, 0, 0], 6);
    let (k, msg) = reg_kind(register(addr, "pulse_reg", 1, T));
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
        let (k, _) = reg_kind(register(nowhere, bad, 1, T));
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

    // A silent client delays nobody.
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
fn silent_clients_delay_no_lookup_and_are_bounded() {
    let r = Responder::start(lo(0), "pulse_t5", 4242).expect("start");
    let addr = r.local_addr();
    // Twenty clients that connect and say nothing, as in a slow scan.
    let silent: Vec<_> = (0..20)
        .map(|_| connect(addr, T).expect("connect"))
        .collect();
    let started = Instant::now();
    assert_eq!(port_please(addr, "pulse_t5", T).expect("pp"), Some(4242));
    // Well under one client's 1 s deadline, let alone twenty of them.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    // Past MAX_CLIENTS silent ones, each new connection closes the oldest,
    // so a lookup is still answered at once.
    let more: Vec<_> = (0..MAX_CLIENTS + 5)
        .map(|_| connect(addr, T).expect("connect"))
        .collect();
    let started = Instant::now();
    assert_eq!(port_please(addr, "pulse_t5", T).expect("pp"), Some(4242));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut oldest = silent[0].try_clone().expect("clone");
    oldest
        .set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    assert!(
        matches!(oldest.read(&mut buf), Ok(0)),
        "the oldest was not closed"
    );
    drop((silent, more));
    // Their deadlines pass, and lookups are answered again.
    assert!(wait_until(Duration::from_secs(5), || {
        port_please(addr, "pulse_t5", T).ok() == Some(Some(4242))
    }));
    let started = Instant::now();
    r.stop();
    assert!(started.elapsed() < Duration::from_secs(3));
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
