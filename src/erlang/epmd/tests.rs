//! Tests of the EPMD client and responder against fake peers (the tests
//! against a real `epmd` and `erl` are in tests/epmd.rs).

use super::responder::{Answers, MAX_CLIENTS};
use super::*;
use std::net::Ipv4Addr;
use std::net::TcpListener;
use std::thread::{self, JoinHandle};

/// Generous per-request timeout; the responder may be busy with a silent client for 1 s.
const T: Duration = Duration::from_secs(5);

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

fn lo(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
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
