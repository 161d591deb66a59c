//! Real Erlang programs for tests: the OTP releases to run against (each an
//! [`Otp`]), `erl` nodes and EPMDs of the test's own, killed on drop (each a
//! [`Node`]), and a record refresher standing in for a live node.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use super::{Node, TempDir, free_port, run_within, skip, wait_for, write_record};

/// One installed Erlang/OTP release: its `bin` directory (`None`: the `erl`
/// on PATH) and its major release, as `erl` itself reports it.
#[derive(Clone, Debug)]
pub(crate) struct Otp {
    bin: Option<PathBuf>,
    pub release: u32,
}

impl Otp {
    /// A command running this release's program `name` (`erl`, `epmd`),
    /// with its `bin` first on PATH so that what `erl` starts (EPMD, the
    /// emulator) is of the same release.
    pub(crate) fn command(&self, name: &str) -> Command {
        match &self.bin {
            None => Command::new(name),
            Some(bin) => {
                let mut cmd = Command::new(bin.join(name));
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut dirs = vec![bin.clone()];
                dirs.extend(std::env::split_paths(&path));
                if let Ok(joined) = std::env::join_paths(dirs) {
                    cmd.env("PATH", joined);
                }
                cmd
            }
        }
    }

    /// Whether this is the `erl` on PATH.
    pub(crate) fn is_on_path(&self) -> bool {
        self.bin.is_none()
    }

    /// A label for messages: `OTP 25`.
    pub(crate) fn label(&self) -> String {
        format!("OTP {}", self.release)
    }

    /// The release of the `erl` in `bin` (or on PATH), if one runs.
    fn find(bin: Option<PathBuf>) -> Option<Otp> {
        let probe = Otp { bin, release: 0 };
        let mut cmd = probe.command("erl");
        cmd.args(["-noshell", "-eval"])
            .arg("io:format(\"~s\", [erlang:system_info(otp_release)]), halt().")
            .env_remove("ERL_FLAGS")
            .env_remove("ERL_AFLAGS")
            .env_remove("ERL_ZFLAGS");
        let (out, finished) = run_within(cmd, Duration::from_secs(30));
        let release = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        (finished && out.status.success()).then_some(Otp { release, ..probe })
    }
}

/// The OTP releases every Erlang test runs against: the `erl` on PATH
/// (Debian's OTP 25 in CI) and an OTP 27, from `PULSE_OTP27` (an
/// installation directory, as `scripts/install-deps.sh` makes) or the PATH.
/// A release that is missing is skipped loudly (a failure under
/// `PULSE_REQUIRE_EXTERNAL=1`), so `test` runs against those found.
pub(crate) fn otps(test: &str) -> Vec<Otp> {
    let (path, otp27) = installed();
    let mut found = Vec::new();
    match path {
        Some(otp) => found.push(otp.clone()),
        None => {
            skip("erl not installed: apt-get install erlang-base", test);
        }
    }
    match otp27 {
        Some(otp) => found.push(otp.clone()),
        None if path.as_ref().is_some_and(|o| o.release == 27) => {}
        None => {
            skip(
                "no OTP 27: set PULSE_OTP27 to an OTP 27 installation directory \
                 (scripts/install-deps.sh builds one when ../shared/otp is beside the clone)",
                test,
            );
        }
    }
    found
}

/// The `erl` on PATH, the release the Elixir tests run on (Debian's Elixir
/// runs on Debian's OTP only); `None` (skipped loudly) when there is none.
pub(crate) fn path_otp(test: &str) -> Option<Otp> {
    let found = installed().0.clone();
    if found.is_none() {
        skip("erl not installed: apt-get install erlang-base", test);
    }
    found
}

/// The `erl` on PATH and the OTP 27 of `PULSE_OTP27`, looked up once.
fn installed() -> &'static (Option<Otp>, Option<Otp>) {
    static FOUND: OnceLock<(Option<Otp>, Option<Otp>)> = OnceLock::new();
    FOUND.get_or_init(|| {
        let path = Otp::find(None);
        let otp27 = std::env::var_os("PULSE_OTP27")
            .and_then(|dir| Otp::find(Some(PathBuf::from(dir).join("bin"))))
            .filter(|o| o.release == 27);
        (path, otp27)
    })
}

/// A real `erl` node, killed on drop; `.0` has its output for dumps.
pub(crate) struct Erl(pub Node);

impl Erl {
    /// Starts `erl -name NAME -setcookie COOKIE` of release `otp`, listening
    /// on `port` only, on loopback, with the EPMD on `epmd_port`.
    pub(crate) fn start(otp: &Otp, name: &str, cookie: &str, port: u16, epmd_port: u16) -> Erl {
        Erl::start_as(otp, "-name", name, cookie, port, epmd_port)
    }

    /// As [`Erl::start`] with `name_flag` `-name` or `-sname`.
    pub(crate) fn start_as(
        otp: &Otp,
        name_flag: &str,
        name: &str,
        cookie: &str,
        port: u16,
        epmd_port: u16,
    ) -> Erl {
        let cmd = erl_on_port(otp, name_flag, name, cookie, port, epmd_port);
        Erl(Node::spawn(&format!("erl {name} ({})", otp.label()), cmd))
    }
}

/// An EPMD of the test's own on loopback, killed on drop; `.1` is its port.
pub(crate) struct Epmd(pub Node, pub u16);

impl Epmd {
    pub(crate) fn start() -> Epmd {
        Epmd::start_on(free_port())
    }

    /// An EPMD on a given port (one a test keeps, to restart EPMD on it).
    pub(crate) fn start_on(port: u16) -> Epmd {
        Epmd::start_of(Command::new("epmd"), port)
    }

    /// Stops this EPMD under `node`, registered in it as `alive`; waits
    /// until the node sees it go, starts a new one on the same port and
    /// waits until the node registered again. The new EPMD is returned.
    pub(crate) fn restart_under(self, node: &Node, alive: &str) -> Epmd {
        let port = self.1;
        let registered = format!("registered {alive} with EPMD");
        drop(self);
        wait_for(
            "the node to see EPMD go",
            Duration::from_secs(9),
            &[node],
            || node.count_containing("closed our registration") == 1,
        );
        let epmd = Epmd::start_on(port);
        wait_for(
            "the node registered again",
            Duration::from_secs(9),
            &[node],
            || node.count_containing(&registered) == 2,
        );
        epmd
    }

    /// The EPMD of release `otp`, on a free port.
    pub(crate) fn start_for(otp: &Otp) -> Epmd {
        Epmd::start_of(otp.command("epmd"), free_port())
    }

    fn start_of(mut cmd: Command, port: u16) -> Epmd {
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

/// Stops, on drop, the EPMD that an `erl` or `elixir` started by itself on
/// the test's port (as on a fresh host), once the nodes are gone.
pub(crate) struct StartedEpmd(pub u16);

impl Drop for StartedEpmd {
    fn drop(&mut self) {
        let _ = Command::new("epmd")
            .args(["-port", &self.0.to_string(), "-kill"])
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Keeps a registry record fresh until dropped.
pub(crate) struct Refresher(Arc<AtomicBool>, Option<thread::JoinHandle<()>>);

impl Refresher {
    pub(crate) fn start(dir: &TempDir, name: &str, port: u16) -> Refresher {
        Refresher::many(dir, vec![(name.to_string(), port)])
    }

    /// Keeps a record fresh for each name, pointing at its port on
    /// 127.0.0.1.
    pub(crate) fn many(dir: &TempDir, entries: Vec<(String, u16)>) -> Refresher {
        let sd = dir.sync_dir();
        Refresher::run(move || {
            for (name, port) in &entries {
                write_record(&sd, name, &format!("127.0.0.1:{port}"));
            }
        })
    }

    /// Keeps a bare entry (a file holding only a timestamp, as the recipe's
    /// Elixir nodes write) fresh: its port must be asked of EPMD.
    pub(crate) fn bare(dir: &TempDir, name: &str) -> Refresher {
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
pub(crate) fn erl_command(
    otp: &Otp,
    name_flag: &str,
    name: &str,
    cookie: &str,
    epmd_port: u16,
) -> Command {
    let mut cmd = otp.command("erl");
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

/// [`erl_command`] listening for distribution on `port` only.
pub(crate) fn erl_on_port(
    otp: &Otp,
    name_flag: &str,
    name: &str,
    cookie: &str,
    port: u16,
    epmd_port: u16,
) -> Command {
    let mut cmd = erl_command(otp, name_flag, name, cookie, epmd_port);
    cmd.args(["-kernel", "inet_dist_listen_min", &port.to_string()])
        .args(["-kernel", "inet_dist_listen_max", &port.to_string()]);
    cmd
}

/// Runs `erl -noshell NAME_FLAG NAME -setcookie COOKIE ARGS -eval CODE`
/// against the EPMD on `epmd_port`, listening on loopback only, and returns
/// what it printed. `CODE` must end with `halt()`; an `erl` still running
/// after `limit` is killed and what it printed so far is returned.
#[allow(clippy::too_many_arguments)] // each names one thing of the erl run; a struct would only rename them
pub(crate) fn erl_eval(
    otp: &Otp,
    name_flag: &str,
    name: &str,
    cookie: &str,
    epmd_port: u16,
    args: &[&str],
    code: &str,
    limit: Duration,
) -> String {
    let mut cmd = erl_command(otp, name_flag, name, cookie, epmd_port);
    cmd.args(args).args(["-eval", code]);
    output_within(cmd, limit)
}

/// Runs `cmd` and returns what it printed on stdout; a process still
/// running after `limit` is killed and what it printed so far is returned.
pub(crate) fn output_within(cmd: Command, limit: Duration) -> String {
    let (out, _finished) = run_within(cmd, limit);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
