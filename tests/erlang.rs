//! The wire code against real Erlang (Debian's `erlang-base`): pulse pings
//! an `erl` node and gets `true`, and `false` when the cookies differ.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::util::{Node, TempDir, free_port, require, wait_until, write_record};

/// A real `erl` node, killed on drop.
struct Erl(Child);

impl Erl {
    /// Starts `erl -name NAME -setcookie COOKIE` listening on `port` only,
    /// on loopback, with an EPMD of its own on `epmd_port`.
    fn start(name: &str, cookie: &str, port: u16, epmd_port: u16) -> Erl {
        let child = Command::new("erl")
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env_remove("ERL_FLAGS")
            .env_remove("ERL_AFLAGS")
            .env_remove("ERL_ZFLAGS")
            .args(["-noshell", "-name", name, "-setcookie", cookie])
            .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"])
            .args(["-kernel", "inet_dist_listen_min", &port.to_string()])
            .args(["-kernel", "inet_dist_listen_max", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start erl");
        Erl(child)
    }
}

impl Drop for Erl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An EPMD of the test's own on loopback, killed on drop; `.1` is its port.
pub struct Epmd(Child, pub u16);

impl Epmd {
    pub fn start() -> Epmd {
        let port = free_port();
        let child = Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start epmd");
        // Ready once it accepts connections; nodes started earlier would
        // find no EPMD.
        let ready = wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "epmd did not start on port {port}");
        Epmd(child, port)
    }
}

impl Drop for Epmd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Keeps a registry record fresh until dropped.
struct Refresher(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl Refresher {
    fn start(dir: &TempDir, name: &'static str, port: u16) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, sd) = (stop.clone(), dir.sync_dir());
        let handle = thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                write_record(&sd, name, &format!("127.0.0.1:{port}"));
                thread::sleep(Duration::from_millis(100));
            }
        });
        Refresher(stop, Some(handle))
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

fn pulse_sees_erl(cookie_of_erl: &str, want: bool, test: &str) {
    if !require("erl", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("erl");
    let epmd = Epmd::start();
    let port = free_port();
    let _erl = Erl::start("x@127.0.0.1", cookie_of_erl, port, epmd.1);
    let _record = Refresher::start(&dir, "x@127.0.0.1", port);
    let node = Node::start(&dir, "p1@127.0.0.1", "c", &["--interval", "300"]);
    // erl takes a second or two to come up; until then it is false.
    let ok = wait_until(Duration::from_secs(15), || {
        node.last_status().is_some_and(|s| {
            s.get("x@127.0.0.1") == Some(&want) && s.get("p1@127.0.0.1") == Some(&true)
        })
    });
    assert!(ok, "{}", node.dump());
    // And it stays that way over several rounds on the reused link.
    let lines = node.output().len();
    assert!(wait_until(Duration::from_secs(9), || node.output().len() >= lines + 3));
    assert_eq!(
        node.last_status()
            .and_then(|s| s.get("x@127.0.0.1").copied()),
        Some(want),
        "{}",
        node.dump()
    );
    if !want {
        assert!(
            node.count_containing("node x@127.0.0.1 is down: bad cookie") >= 1,
            "{}",
            node.dump()
        );
    }
}

#[test]
fn pulse_pings_a_real_erlang_node() {
    pulse_sees_erl("c", true, "pulse_pings_a_real_erlang_node");
}

#[test]
fn a_real_erlang_node_with_another_cookie_is_false() {
    pulse_sees_erl(
        "other",
        false,
        "a_real_erlang_node_with_another_cookie_is_false",
    );
}
