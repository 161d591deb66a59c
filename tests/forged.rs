//! Forged log lines: names and reasons from peers and the registry reach
//! the log escaped, never as a line of their own or as terminal codes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use crate::util::{Node, TempDir, level_of, parse_status, registered_addr, wait_for};

/// A status line as an attacker would forge it, after a newline.
pub(crate) const FORGED: &str =
    "\n12:00:00.000 [info] forged@127.0.0.1[\"forged@127.0.0.1\": true]";
/// Escape codes that clear a terminal and retitle it.
pub(crate) const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}";

/// Writes one handshake message: a 2-byte length, then the bytes.
pub(crate) fn send_msg(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
    s.write_all(&len.to_be_bytes())?;
    s.write_all(msg)
}

/// Reads one handshake message: a 2-byte length, then the bytes.
pub(crate) fn read_msg(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

/// The `send_name` of a version-6 initiator offering the flags OTP 25 needs.
pub(crate) fn send_name(name: &[u8]) -> Vec<u8> {
    let mut msg = vec![b'N'];
    msg.extend(0x0107_0F94u64.to_be_bytes());
    msg.extend(1u32.to_be_bytes());
    msg.extend(u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
    msg.extend(name);
    msg
}

/// Plays a client that knows no cookie: sends `name`, answers the challenge
/// with a made-up digest, and waits for the node to close the connection.
pub(crate) fn wrong_cookie_handshake(to: SocketAddr, name: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    send_msg(&mut s, &send_name(name))?;
    let _status = read_msg(&mut s)?;
    let _challenge = read_msg(&mut s)?;
    let mut reply = vec![b'r', 0, 0, 0, 1];
    reply.extend([0x55; 16]);
    send_msg(&mut s, &reply)?;
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    Ok(())
}

/// Every line of the node's output and of the log file.
fn all_lines(node: &Node, dir: &TempDir) -> Vec<String> {
    let mut lines = node.output();
    let file = std::fs::read_to_string(dir.log_file()).unwrap_or_default();
    lines.extend(file.lines().map(str::to_string));
    lines
}

/// No line is a forged one, none carries an escape byte, and the forged
/// text shows up escaped at least once in both the output and the file.
fn assert_nothing_forged(node: &Node, dir: &TempDir, escaped: &str) {
    let lines = all_lines(node, dir);
    let dump = || format!("{}\n--- log file ---\n{}", node.dump(), lines.join("\n"));
    for line in &lines {
        assert!(
            parse_status(line, "forged@127.0.0.1").is_none(),
            "a forged status line got through:\n{}",
            dump()
        );
        assert!(
            !line.contains('\u{1b}'),
            "an escape code got through:\n{}",
            dump()
        );
        assert!(!line.contains('\u{7}'), "a bell got through:\n{}", dump());
    }
    let file = std::fs::read_to_string(dir.log_file()).unwrap_or_default();
    assert!(
        file.contains(escaped),
        "not in the log file: {escaped}\n{}",
        dump()
    );
    assert!(
        node.output().iter().any(|l| l.contains(escaped)),
        "not on stdout: {escaped}\n{}",
        dump()
    );
}

#[test]
fn a_handshake_name_cannot_forge_a_log_line() {
    let dir = TempDir::new("forged-handshake");
    let node = Node::start(
        &dir,
        "f1@127.0.0.1",
        "c",
        &["--interval", "200", "--epmd", "off"],
    );
    wait_for(
        "f1's first status line",
        Duration::from_secs(9),
        &[&node],
        || node.sees_all_alive(&["f1@127.0.0.1"]),
    );
    let addr: SocketAddr = registered_addr(&dir.sync_dir(), "f1@127.0.0.1")
        .parse()
        .expect("addr");
    let name = format!("evil@127.0.0.1{FORGED}{ESCAPES}");
    wrong_cookie_handshake(addr, name.as_bytes()).expect("handshake");
    let escaped = "evil@127.0.0.1\\n12:00:00.000 [info] forged@127.0.0.1[\"forged@127.0.0.1\": true]\\e[2J\\e]0;owned\\u{7}";
    wait_for(
        "the escaped rejection",
        Duration::from_secs(9),
        &[&node],
        || node.count_containing(escaped) > 0,
    );
    assert_nothing_forged(&node, &dir, escaped);
    let warning = node
        .output()
        .into_iter()
        .find(|l| l.contains(escaped))
        .expect("warning");
    assert_eq!(level_of(&warning), Some("warning"), "{warning}");
    assert!(warning.contains("wrong cookie"), "{warning}");
}

/// Answers a dialing node's handshake with the challenge of `name`.
fn impostor(listener: TcpListener, name: String) {
    for stream in listener.incoming().flatten().take(50) {
        let name = name.clone();
        thread::spawn(move || {
            let mut s = stream;
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if read_msg(&mut s).is_err() || send_msg(&mut s, b"sok").is_err() {
                return;
            }
            let mut challenge = vec![b'N'];
            challenge.extend(0x0107_0F94u64.to_be_bytes());
            challenge.extend(7u32.to_be_bytes());
            challenge.extend(1u32.to_be_bytes());
            challenge.extend(u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
            challenge.extend(name.as_bytes());
            let _ = send_msg(&mut s, &challenge);
            let _ = read_msg(&mut s);
        });
    }
}

#[test]
fn a_registry_entry_cannot_forge_a_log_line() {
    let dir = TempDir::new("forged-registry");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answered = format!("other@127.0.0.1{FORGED}{ESCAPES}");
    thread::Builder::new()
        .name("test-impostor".into())
        .spawn(move || impostor(listener, answered))
        .expect("impostor");
    // A valid entry whose node answers under a hostile name, and a file
    // whose very name carries the forged line.
    crate::util::write_record(
        &dir.sync_dir(),
        "evil@127.0.0.1",
        &format!("127.0.0.1:{port}"),
    );
    std::fs::write(dir.sync_dir().join(format!("junk{FORGED}{ESCAPES}")), "x").expect("write");
    let node = Node::start(
        &dir,
        "f2@127.0.0.1",
        "c",
        &["--interval", "200", "--epmd", "off"],
    );
    let mismatch = "(it answered as other@127.0.0.1\\n12:00:00.000 [info] forged@127.0.0.1";
    wait_for(
        "the escaped name mismatch",
        Duration::from_secs(9),
        &[&node],
        || {
            node.count_containing(mismatch) > 0
                && node.count_containing("registry: skipping 'junk") > 0
        },
    );
    assert_nothing_forged(&node, &dir, mismatch);
    assert_nothing_forged(&node, &dir, "[\\\"forged@127.0.0.1\\\": true]\\u{1b}[2J");
}
