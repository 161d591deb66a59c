//! Untrusted input: garbage in the registry, peers that hang or send
//! garbage, the wrong cookie. A node never crashes and never lets a round
//! run past its timeout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::util::erlang::Refresher;
use crate::util::{
    Node, TempDir, registered_addr, registry_names, split_log_line, wait_for, wait_until,
    write_record,
};

fn status_lines(node: &Node) -> usize {
    node.output()
        .iter()
        .filter(|l| crate::util::parse_status(l, &node.name).is_some())
        .count()
}

#[test]
fn registry_garbage_is_skipped_with_one_warning_each() {
    let dir = TempDir::new("garbage");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    std::fs::write(sd.join("README"), "not a node").expect("write");
    std::fs::write(sd.join("big@127.0.0.1"), vec![b'7'; 100_000]).expect("write");
    std::fs::write(sd.join("bin@127.0.0.1"), [0xff, 0x00, 0xfe]).expect("write");
    std::fs::write(sd.join("garbled@127.0.0.1"), "pulse 1\nname x\n").expect("write");
    std::fs::create_dir(sd.join("dir@127.0.0.1")).expect("dir");
    std::os::unix::fs::symlink("/dev/zero", sd.join("link@127.0.0.1")).expect("symlink");
    let fifo_ok = std::process::Command::new("mkfifo")
        .arg(sd.join("fifo@127.0.0.1"))
        .status();
    assert!(fifo_ok.is_ok_and(|s| s.success()), "mkfifo");

    let node = Node::start(&dir, "g1@127.0.0.1", "c", &["--interval", "200"]);
    // Any text under a node's name is a node's entry (a foreign one): never
    // answering and never changing, those two expire after the TTL.
    let ok = wait_until(Duration::from_secs(15), || {
        status_lines(&node) >= 5 && node.sees_all_alive(&["g1@127.0.0.1"])
    });
    assert!(ok, "{}", node.dump());
    for foreign in ["bin@127.0.0.1", "garbled@127.0.0.1"] {
        let expired = format!("node {foreign} expired: no heartbeat and no answer");
        assert_eq!(node.count_containing(&expired), 1, "{}", node.dump());
        assert_eq!(node.count_containing(&format!("'{foreign}'")), 0);
    }
    for bad in [
        "'README': not a node name",
        "'big@127.0.0.1': record of 100000 bytes",
        "'dir@127.0.0.1': not a regular file (a directory)",
        "'link@127.0.0.1': not a regular file (a symlink)",
        "'fifo@127.0.0.1': not a regular file (a FIFO)",
    ] {
        assert_eq!(
            node.count_containing(bad),
            1,
            "warnings for {bad}:\n{}",
            node.dump()
        );
    }

    // The registry deleted under a running node comes back.
    std::fs::remove_dir_all(&sd).expect("delete registry");
    let ok = wait_until(Duration::from_secs(9), || {
        registry_names(&sd) == ["g1@127.0.0.1"]
    });
    assert!(ok, "{}", node.dump());
    let before = status_lines(&node);
    assert!(
        wait_until(Duration::from_secs(9), || status_lines(&node) > before + 2),
        "{}",
        node.dump()
    );
    assert!(node.sees_all_alive(&["g1@127.0.0.1"]), "{}", node.dump());
}

/// A TCP server in the test whose connections all get `behave`.
struct BadPeer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl BadPeer {
    fn start(behave: fn(TcpStream)) -> BadPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Detached: drop wakes the accept and ends the loop; each
        // connection's thread ends with its bounded behaviour.
        thread::Builder::new()
            .name("test-bad-peer".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = thread::Builder::new()
                        .name("test-bad-peer-conn".into())
                        .spawn(move || behave(stream));
                }
            })
            .expect("spawn bad peer");
        BadPeer { port, stop }
    }
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Accepts and never answers (holds the socket for a while).
fn hang(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut sink = [0u8; 1024];
    let mut s = &stream;
    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
}

/// Answers every read with garbage.
fn garbage(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    let mut s = &stream;
    let mut buf = [0u8; 1024];
    let mut x = 0x9e37_79b9u32;
    while matches!(s.read(&mut buf), Ok(n) if n > 0) {
        let junk: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if s.write_all(&junk).is_err() {
            return;
        }
    }
}

/// Claims a frame of 4 GiB and then trickles a byte.
fn huge_length(stream: TcpStream) {
    let mut s = &stream;
    let _ = s.write_all(&[0xff, 0xff, b's', b'o', b'k']);
    let _ = s.write_all(&[0xff; 64]);
    hang(stream);
}

#[test]
fn hung_and_garbage_peers_never_delay_a_round() {
    let dir = TempDir::new("hung");
    let peers = [
        BadPeer::start(hang),
        BadPeer::start(garbage),
        BadPeer::start(huge_length),
    ];
    let names = ["hang@127.0.0.1", "junk@127.0.0.1", "huge@127.0.0.1"];
    // Keep the fake records fresh so they never expire.
    let refreshers: Vec<Refresher> = names
        .iter()
        .zip(&peers)
        .map(|(name, peer)| Refresher::start(&dir, name, peer.port))
        .collect();
    let node = Node::start(
        &dir,
        "h1@127.0.0.1",
        "c",
        &["--interval", "400", "--timeout", "200"],
    );
    let ok = wait_until(Duration::from_secs(10), || status_lines(&node) >= 12);
    drop(refreshers);
    assert!(ok, "{}", node.dump());

    let status = node.last_status().expect("a status line");
    assert_eq!(status.get("h1@127.0.0.1"), Some(&true), "{}", node.dump());
    for n in names {
        assert_eq!(status.get(n), Some(&false), "{n}: {}", node.dump());
    }
    // A round never runs past its 200 ms timeout, however many peers
    // misbehave, so no gap between status lines exceeds interval + timeout
    // (plus slack for a loaded host's scheduling); a round held up by a
    // hung peer would take seconds.
    let times: Vec<u64> = node
        .output()
        .iter()
        .filter(|l| crate::util::parse_status(l, "h1@127.0.0.1").is_some())
        .filter_map(|l| millis_of_day(l))
        .collect();
    let gaps: Vec<u64> = times
        .windows(2)
        .skip(1)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    let max = gaps.iter().copied().max().unwrap_or(0);
    assert!(
        max < 400 + 200 + 400,
        "a round ran late: gaps {gaps:?}\n{}",
        node.dump()
    );
    // Still alive and well after all that.
    assert!(node.is_running(), "{}", node.dump());
    let before = status_lines(&node);
    wait_for(
        "a status line after",
        Duration::from_secs(6),
        &[&node],
        || status_lines(&node) > before,
    );
}

fn millis_of_day(line: &str) -> Option<u64> {
    split_log_line(line)?;
    let t = &line[..12];
    let num = |r: std::ops::Range<usize>| t[r].parse::<u64>().ok();
    Some(((num(0..2)? * 60 + num(3..5)?) * 60 + num(6..8)?) * 1000 + num(9..12)?)
}

#[test]
fn garbage_sent_to_the_listener_does_not_hurt_the_node() {
    let dir = TempDir::new("sockjunk");
    let node = Node::start(&dir, "j1@127.0.0.1", "c", &["--interval", "200"]);
    wait_for("j1 alive", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&["j1@127.0.0.1"])
    });
    let addr = registered_addr(&dir.sync_dir(), "j1@127.0.0.1");
    for junk in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        &[0xff; 3000],
        &[0, 1],
        &[0, 20, b'N', 0, 0],
    ] {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.write_all(junk);
        }
    }
    let before = status_lines(&node);
    assert!(
        wait_until(Duration::from_secs(9), || status_lines(&node) > before + 2),
        "{}",
        node.dump()
    );
    assert!(node.sees_all_alive(&["j1@127.0.0.1"]), "{}", node.dump());
}

#[test]
fn a_wrong_cookie_is_false_and_warned_about_sparingly() {
    let dir = TempDir::new("cookie");
    // Each round redials (no link is kept), so each handshake gets the
    // whole interval: a slow one on a loaded host would be a timeout, and
    // the next round's bad cookie a second "is down" line.
    let flags = &["--interval", "300", "--timeout", "300"];
    // Cookies no log line could contain by chance.
    let a = Node::start(&dir, "k1@127.0.0.1", "cookie-of-k1-q7x", flags);
    let b = Node::start(&dir, "k2@127.0.0.1", "cookie-of-k2-z9w", flags);
    let ok = wait_until(Duration::from_secs(15), || {
        [&a, &b].iter().all(|n| status_lines(n) >= 8)
    });
    assert!(ok, "{}{}", a.dump(), b.dump());
    let sa = a.last_status().expect("status");
    assert_eq!(
        (sa.get("k1@127.0.0.1"), sa.get("k2@127.0.0.1")),
        (Some(&true), Some(&false)),
        "{}",
        a.dump()
    );
    assert_eq!(
        a.count_containing("node k2@127.0.0.1 is down: bad cookie"),
        1,
        "{}",
        a.dump()
    );
    // The listening side warns once, not once per round. Which side
    // listens depends on the dials' timing: when both dial at once, the
    // higher name keeps its own attempt (`nok` to the other), and it may
    // stay so round after round.
    let (warned_a, warned_b) = (
        a.count_containing("rejected k2@127.0.0.1"),
        b.count_containing("rejected k1@127.0.0.1"),
    );
    assert!(
        warned_a <= 1 && warned_b <= 1 && warned_a + warned_b >= 1,
        "rejections warned: k1 {warned_a}, k2 {warned_b}\n{}{}",
        a.dump(),
        b.dump()
    );
    assert!(
        b.output().iter().all(|l| !l.contains("cookie-of-k1-q7x")),
        "the cookie crossed the wire:\n{}",
        b.dump()
    );
}

#[test]
fn a_record_pointing_at_another_node_is_a_name_mismatch() {
    let dir = TempDir::new("mismatch");
    let flags = &["--interval", "200", "--timeout", "200"];
    let node = Node::start(&dir, "m1@127.0.0.1", "c", flags);
    wait_for("m1 alive", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&["m1@127.0.0.1"])
    });
    let addr = registered_addr(&dir.sync_dir(), "m1@127.0.0.1");
    let reason = "node ghost@127.0.0.1 is down: name mismatch (it answered as m1@127.0.0.1)";
    // An impostor entry: another name, m1's address. Kept fresh.
    let ok = wait_until(Duration::from_secs(9), || {
        write_record(&dir.sync_dir(), "ghost@127.0.0.1", &addr);
        node.count_containing(reason) >= 1
            && node
                .last_status()
                .is_some_and(|s| s.get("ghost@127.0.0.1") == Some(&false))
    });
    assert!(ok, "{}", node.dump());
    // Said once, not once per round.
    let seen = status_lines(&node);
    let ok = wait_until(Duration::from_secs(9), || {
        write_record(&dir.sync_dir(), "ghost@127.0.0.1", &addr);
        status_lines(&node) >= seen + 3
    });
    assert!(ok, "{}", node.dump());
    assert_eq!(node.count_containing(reason), 1, "{}", node.dump());
}
