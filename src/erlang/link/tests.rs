//! Tests of a link: its reader answering ticks and calls, and its writes.

use super::*;
use crate::erlang::frame::frame;
use crate::erlang::message::{is_auth_call, is_auth_reply, our_pid, our_ref};
use std::io::Read;
use std::net::TcpListener;

/// A link on loopback without a handshake, and the raw socket at its
/// other end.
fn pair() -> (Link, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ours = TcpStream::connect(addr).expect("connect");
    let (theirs, _) = listener.accept().expect("accept");
    theirs
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer = Peer {
        name: "peer@127.0.0.1".into(),
        creation: 1,
        flags: 0,
    };
    (Link::new(ours, peer, addr, false).expect("link"), theirs)
}

/// The next frame the raw end reads, ticks as empty bodies.
fn read_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("body");
    body
}

const FAST: Pace = Pace {
    tick_every: Duration::from_millis(40),
    silence_limit: Duration::from_secs(10),
};

#[test]
fn recv_answers_calls_itself_and_returns_only_the_rest() {
    let (link, mut theirs) = pair();
    let mut reader = link.reader(FAST).expect("reader");
    let caller = our_pid("peer@127.0.0.1", 1);
    let call = is_auth_call(&caller, &our_ref("peer@127.0.0.1", 1, 9), "me@h");
    let other = frame(b"p\x83\x6a\x83\x6a");
    theirs.write_all(&frame(&[0u8; 0])).expect("tick");
    theirs.write_all(&call).expect("call");
    theirs.write_all(&other).expect("other");
    assert_eq!(
        reader.recv(&link).expect("frame"),
        Received::Other(other[4..].to_vec())
    );
    // The call was answered on the link, ticks aside.
    let crate::erlang::message::Incoming::IsAuth { from, tag } =
        crate::erlang::message::parse(&call[4..])
    else {
        panic!("not a call");
    };
    let answer = loop {
        let body = read_frame(&mut theirs);
        if !body.is_empty() {
            break body;
        }
    };
    assert_eq!(answer, is_auth_reply(&from, &tag)[4..]);
}

#[test]
fn recv_keeps_a_partial_frame_across_read_timeouts_and_ticks_meanwhile() {
    let (link, mut theirs) = pair();
    let link = std::sync::Arc::new(link);
    let reader_link = link.clone();
    let reader = std::thread::spawn(move || {
        let mut reader = reader_link.reader(FAST).expect("reader");
        reader.recv(&reader_link)
    });
    let whole = frame(b"hello, in two parts");
    theirs.write_all(&whole[..7]).expect("first part");
    // Our ticks prove read timeouts passed with half a frame held.
    for _ in 0..3 {
        assert!(read_frame(&mut theirs).is_empty(), "a tick");
    }
    theirs.write_all(&whole[7..]).expect("second part");
    let got = reader.join().expect("reader thread").expect("frame");
    assert_eq!(got, Received::Other(whole[4..].to_vec()));
}

#[test]
fn a_silent_peer_loses_the_link_after_the_silence_limit() {
    let (link, _theirs) = pair();
    let pace = Pace {
        tick_every: Duration::from_millis(40),
        silence_limit: Duration::from_millis(200),
    };
    let mut reader = link.reader(pace).expect("reader");
    let start = Instant::now();
    let err = reader.recv(&link).expect_err("silence");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn a_closed_peer_ends_recv_and_our_close_is_ours() {
    let (link, theirs) = pair();
    let mut reader = link.reader(FAST).expect("reader");
    drop(theirs);
    let err = reader.recv(&link).expect_err("closed");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(!link.closed_by_us());
    link.close();
    assert!(link.closed_by_us());
}
