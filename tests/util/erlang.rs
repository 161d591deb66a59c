//! Real Erlang programs for tests: `erl` nodes and EPMDs of the test's own,
//! killed on drop (each a [`Node`]), and a record refresher standing in for
//! a live node.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::{Node, TempDir, free_port, run_within, wait_for, write_record};

/// A real `erl` node, killed on drop; `.0` has its output for dumps.
pub struct Erl(pub Node);

impl Erl {
    /// Starts `erl -name NAME -setcookie COOKIE` listening on `port` only,
    /// on loopback, with an EPMD of its own on `epmd_port`.
    pub fn start(name: &str, cookie: &str, port: u16, epmd_port: u16) -> Erl {
        Erl::start_as("-name", name, cookie, port, epmd_port)
    }

    /// As [`Erl::start`] with `name_flag` `-name` or `-sname`.
    pub fn start_as(name_flag: &str, name: &str, cookie: &str, port: u16, epmd_port: u16) -> Erl {
        let mut cmd = erl_command(name_flag, name, cookie, epmd_port);
        cmd.args(["-kernel", "inet_dist_listen_min", &port.to_string()])
            .args(["-kernel", "inet_dist_listen_max", &port.to_string()]);
        Erl(Node::spawn(&format!("erl {name}"), cmd))
    }
}

/// An EPMD of the test's own on loopback, killed on drop; `.1` is its port.
pub struct Epmd(pub Node, pub u16);

impl Epmd {
    pub fn start() -> Epmd {
        Epmd::start_on(free_port())
    }

    /// An EPMD on a given port (one a test keeps, to restart EPMD on it).
    pub fn start_on(port: u16) -> Epmd {
        let mut cmd = Command::new("epmd");
        cmd.args(["-address", "127.0.0.1", "-port", &port.to_string()]);
        let epmd = Node::spawn(&format!("epmd on port {port}"), cmd);
        // Ready once it accepts connections; nodes started earlier would
        // find no EPMD.
        wait_for("epmd to listen", Duration::from_secs(10), &[&epmd], || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Epmd(epmd, port)
    }
}

/// Keeps a registry record fresh until dropped.
pub struct Refresher(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl Refresher {
    pub fn start(dir: &TempDir, name: &str, port: u16) -> Refresher {
        Refresher::many(dir, vec![(name.to_string(), port)])
    }

    /// Keeps a record fresh for each name, pointing at its port on
    /// 127.0.0.1.
    pub fn many(dir: &TempDir, entries: Vec<(String, u16)>) -> Refresher {
        let sd = dir.sync_dir();
        Refresher::run(move || {
            for (name, port) in &entries {
                write_record(&sd, name, &format!("127.0.0.1:{port}"));
            }
        })
    }

    /// Keeps a bare entry (a file holding only a timestamp, as the recipe's
    /// Elixir nodes write) fresh: its port must be asked of EPMD.
    pub fn bare(dir: &TempDir, name: &str) -> Refresher {
        let sd = dir.sync_dir();
        let name = name.to_string();
        Refresher::run(move || {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            let _ = std::fs::create_dir_all(&sd);
            let _ = std::fs::write(sd.join(&name), ms.to_string());
        })
    }

    fn run(write: impl Fn() + Send + 'static) -> Refresher {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("test-refresher".into())
            .spawn(move || {
                while !flag.load(Ordering::SeqCst) {
                    write();
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

/// `erl -noshell NAME_FLAG NAME -setcookie COOKIE`, distribution on loopback
/// only, against the EPMD on `epmd_port`, untouched by the caller's
/// `ERL_*FLAGS`.
fn erl_command(name_flag: &str, name: &str, cookie: &str, epmd_port: u16) -> Command {
    let mut cmd = Command::new("erl");
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .env_remove("ERL_FLAGS")
        .env_remove("ERL_AFLAGS")
        .env_remove("ERL_ZFLAGS")
        // A crashing test node writes no erl_crash.dump into the tree.
        .env("ERL_CRASH_DUMP_SECONDS", "0")
        .args(["-noshell", name_flag, name, "-setcookie", cookie])
        .args(["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]);
    cmd
}

/// Runs `erl -noshell NAME_FLAG NAME -setcookie COOKIE ARGS -eval CODE`
/// against the EPMD on `epmd_port`, listening on loopback only, and returns
/// what it printed. `CODE` must end with `halt()`; an `erl` still running
/// after `limit` is killed and what it printed so far is returned.
pub fn erl_eval(
    name_flag: &str,
    name: &str,
    cookie: &str,
    epmd_port: u16,
    args: &[&str],
    code: &str,
    limit: Duration,
) -> String {
    let mut cmd = erl_command(name_flag, name, cookie, epmd_port);
    cmd.args(args).args(["-eval", code]);
    output_within(cmd, limit)
}

/// Runs `cmd` and returns what it printed on stdout; a process still
/// running after `limit` is killed and what it printed so far is returned.
pub fn output_within(cmd: Command, limit: Duration) -> String {
    let (out, _finished) = run_within(cmd, limit);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
