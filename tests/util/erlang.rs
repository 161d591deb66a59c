//! Real Erlang programs for tests: `erl` nodes and EPMDs of the test's own,
//! killed on drop, and a record refresher standing in for a live node.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::{TempDir, free_port, wait_until, write_record};

/// A real `erl` node, killed on drop.
pub struct Erl(Child);

impl Erl {
    /// Starts `erl -name NAME -setcookie COOKIE` listening on `port` only,
    /// on loopback, with an EPMD of its own on `epmd_port`.
    pub fn start(name: &str, cookie: &str, port: u16, epmd_port: u16) -> Erl {
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
        Epmd::start_on(free_port())
    }

    /// An EPMD on a given port (one a test keeps, to restart EPMD on it).
    pub fn start_on(port: u16) -> Epmd {
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
pub struct Refresher(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl Refresher {
    pub fn start(dir: &TempDir, name: &'static str, port: u16) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, sd) = (stop.clone(), dir.sync_dir());
        let handle = thread::Builder::new()
            .name("test-refresher".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    write_record(&sd, name, &format!("127.0.0.1:{port}"));
                    thread::sleep(Duration::from_millis(100));
                }
            })
            .expect("spawn refresher");
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
