//! Shared test helpers: temp dirs, node processes killed on drop, polling
//! with deadlines, status-line parsing, loud skips.

#![allow(dead_code)] // each test module uses a different part of this

pub(crate) mod dns_server;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub(crate) mod erlang;
pub(crate) mod garage;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_pulse");

/// A fresh directory, removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("pulse-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn sync_dir(&self) -> PathBuf {
        self.0.join("sync_dir")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.0.join("log").join("cluster.log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` until it holds or `timeout` passes. Prefer [`wait_for`],
/// which says what it waited for and what every node printed.
pub(crate) fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
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

/// Polls `cond` until it holds or `timeout` passes; on failure panics
/// naming `what` and dumping every node's output, so no wait fails silently.
pub(crate) fn wait_for(what: &str, timeout: Duration, nodes: &[&Node], cond: impl FnMut() -> bool) {
    if wait_until(timeout, cond) {
        return;
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}\n{}",
        dump_all(nodes)
    );
}

/// Every node's [`Node::dump`], one after the other.
pub(crate) fn dump_all(nodes: &[&Node]) -> String {
    nodes.iter().map(|n| n.dump()).collect()
}

/// A base command for the pulse binary with a clean environment: no PULSE_
/// variables leak in, HOME points into the test's dir.
pub(crate) fn pulse_cmd(dir: &TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        // An EPMD some other program left on the machine's port 4369 must
        // not join in (it would refuse one alive name on two addresses):
        // a test that wants EPMD starts its own and sets its port.
        .env("ERL_EPMD_PORT", free_port().to_string());
    cmd
}

/// The fields of a `/proc/.../stat` line from the third (the state) on:
/// the line is `PID (COMM) STATE ...`, and COMM may hold spaces and
/// parentheses.
pub(crate) fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().collect())
}

/// Each thread of process `pid`: its `/proc/PID/task/TID` directory and
/// stat line. A thread that ends meanwhile is left out; none when the
/// process is gone.
pub(crate) fn thread_stats(pid: u32) -> Vec<(PathBuf, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            Some((task.path(), stat))
        })
        .collect()
}

/// A child process of a test (pulse, erl, epmd, a recipe node) whose output
/// is collected for failure messages; killed on drop, so no test leaves a
/// process behind, whatever fails.
pub(crate) struct Node {
    pub name: String,
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub started: Instant,
    /// The registry the process was pointed at, listed in its dump.
    sync_dir: Option<PathBuf>,
    /// A stdout nobody reads yet (see [`Node::spawn_unread`]).
    unread_stdout: Option<ChildStdout>,
    /// The threads collecting its output, done at the pipes' end.
    collectors: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts `pulse --name NAME --cookie COOKIE` on the dir's registry and
    /// log, with `extra` arguments.
    pub(crate) fn start(dir: &TempDir, name: &str, cookie: &str, extra: &[&str]) -> Node {
        let mut cmd = pulse_cmd(dir);
        cmd.arg("--name").arg(name).arg("--cookie").arg(cookie);
        cmd.arg("--sync-dir").arg(dir.sync_dir());
        cmd.arg("--log-file").arg(dir.log_file());
        cmd.args(extra);
        Node::spawn(name, cmd)
    }

    /// Runs `cmd`, collecting its stdout and stderr as one list of lines.
    pub(crate) fn spawn(name: &str, cmd: Command) -> Node {
        let mut node = Node::spawn_unread(name, cmd);
        if let Some(out) = node.unread_stdout.take() {
            let collector = collect_lines(out, node.lines.clone());
            node.collectors.push(collector);
        }
        node
    }

    /// Runs `cmd` with a stdout nobody reads until [`Node::read_stdout`]
    /// (a pipe that fills up); its stderr is collected.
    pub(crate) fn spawn_unread(name: &str, mut cmd: Command) -> Node {
        let sync_dir = sync_dir_of(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collectors = child
            .stderr
            .take()
            .map(|err| collect_lines(err, lines.clone()))
            .into_iter()
            .collect();
        Node {
            name: name.to_string(),
            unread_stdout: child.stdout.take(),
            child,
            lines,
            started: Instant::now(),
            sync_dir,
            collectors,
        }
    }

    /// Starts reading a stdout left unread; its lines go to the returned
    /// list (not to [`Node::output`], which keeps stderr's).
    pub(crate) fn read_stdout(&mut self) -> Arc<Mutex<Vec<String>>> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = self.unread_stdout.take() {
            self.collectors.push(collect_lines(out, lines.clone()));
        }
        lines
    }

    pub(crate) fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// What the process printed, whether it still runs, and the registry
    /// it was pointed at: what a failed test needs to say why.
    pub(crate) fn dump(&self) -> String {
        let registry = match &self.sync_dir {
            Some(dir) => format!(
                "; registry {}: [{}]",
                dir.display(),
                registry_names(dir).join(", ")
            ),
            None => String::new(),
        };
        format!(
            "--- output of {} ({}{registry}) ---\n{}\n",
            self.name,
            self.state(),
            self.output().join("\n")
        )
    }

    /// Whether the process still runs (it has neither exited nor been
    /// reaped).
    pub(crate) fn is_running(&self) -> bool {
        self.state() == "running"
    }

    /// `running`, `exited`, or `reaped`, from /proc: no `&mut` needed, so
    /// a dump can say it. A killed process's main thread turns zombie
    /// before its other threads have ended, and its descriptors (its
    /// listening socket) stay open until the last one has: it counts as
    /// exited only once no thread runs.
    fn state(&self) -> &'static str {
        let pid = self.child.id();
        if std::fs::metadata(format!("/proc/{pid}")).is_err() {
            return "reaped";
        }
        let live = thread_stats(pid).iter().any(|(_, stat)| {
            stat_fields(stat).is_some_and(|f| f.first().is_some_and(|s| !s.starts_with(['Z', 'X'])))
        });
        if live { "running" } else { "exited" }
    }

    /// The last status line this node printed, parsed.
    pub(crate) fn last_status(&self) -> Option<BTreeMap<String, bool>> {
        self.output()
            .iter()
            .rev()
            .find_map(|l| parse_status(l, &self.name))
    }

    /// Whether the last status line shows exactly these nodes, all alive.
    pub(crate) fn sees_all_alive(&self, names: &[&str]) -> bool {
        self.last_status().is_some_and(|s| {
            s.len() == names.len() && names.iter().all(|n| s.get(*n) == Some(&true))
        })
    }

    pub(crate) fn count_containing(&self, needle: &str) -> usize {
        self.count_containing_since(0, needle)
    }

    /// The same, over the lines from `mark` on (a length of `output()`
    /// taken earlier), so what start-up said is left out.
    pub(crate) fn count_containing_since(&self, mark: usize, needle: &str) -> usize {
        let lines = self.output();
        let since = lines.get(mark..).unwrap_or_default();
        since.iter().filter(|l| l.contains(needle)).count()
    }

    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "kill -{sig} {}", self.name);
    }

    /// Waits for the process to end, up to `timeout`, and then for its
    /// last lines to be collected (a program that left a child holding
    /// its pipes is not waited for past the timeout).
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_some() {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            wait_until(left, || self.collectors.iter().all(|c| c.is_finished()));
        }
        status
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The registry a command points pulse (or a recipe node) at, if it says.
fn sync_dir_of(cmd: &Command) -> Option<PathBuf> {
    let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
    let from_flag = args
        .windows(2)
        .find(|w| w[0] == "--sync-dir")
        .map(|w| PathBuf::from(w[1]));
    from_flag.or_else(|| {
        cmd.get_envs()
            .find(|(k, _)| *k == "PULSE_SYNC_DIR" || *k == "SYNC_DIR")
            .and_then(|(_, v)| v.map(PathBuf::from))
    })
}

/// Collects the lines of `from` into `into` on a thread of its own, which
/// ends when the process closes the pipe. Never joined: [`Node::wait_exit`]
/// only waits, with a bound, for it to finish.
fn collect_lines(
    from: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    thread::Builder::new()
        .name("test-output".into())
        .spawn(move || {
            for line in BufReader::new(from).lines().map_while(Result::ok) {
                into.lock().expect("lines lock").push(line);
            }
        })
        .expect("spawn reader")
}

/// Runs `cmd` to its end or `limit`, whichever comes first (then it is
/// killed), and returns what it printed and whether it finished by itself.
/// Both pipes are read while it runs, so a talkative program never blocks.
pub(crate) fn run_within(mut cmd: Command, limit: Duration) -> (Output, bool) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let read_all = |pipe: Option<Box<dyn Read + Send>>| {
        thread::Builder::new()
            .name("test-output".into())
            .spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
            .expect("spawn reader")
    };
    let stdout = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let finished = wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !finished {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait for a killed child");
    let out = Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    (out, finished)
}

/// Parses `HH:MM:SS.mmm [info] NAME["a@h": true, b@h: false]` for node `me`.
pub(crate) fn parse_status(line: &str, me: &str) -> Option<BTreeMap<String, bool>> {
    let (_, rest) = split_log_line(line)?;
    let list = rest.strip_prefix(me)?.strip_prefix('[')?;
    // A line too long for the log ends with what it left out:
    // `] (+9000 not shown: 0 true, 9000 false)`.
    let list = match list.rsplit_once("] (+") {
        Some((shown, note)) if note.ends_with(" false)") && note.contains(" not shown: ") => shown,
        _ => list.strip_suffix(']')?,
    };
    let mut out = BTreeMap::new();
    if list.is_empty() {
        return Some(out);
    }
    for entry in list.split(", ") {
        let (key, value) = entry.rsplit_once(": ")?;
        let key = key.trim_matches('"').to_string();
        let alive = match value {
            "true" => true,
            "false" => false,
            _ => return None,
        };
        out.insert(key, alive);
    }
    Some(out)
}

/// Splits `HH:MM:SS.mmm [LEVEL] message` into (level, message).
pub(crate) fn split_log_line(line: &str) -> Option<(&str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let b = time.as_bytes();
    let time_ok = b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            8 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if !time_ok {
        return None;
    }
    let rest = rest.strip_prefix('[')?;
    let (level, message) = rest.split_once("] ")?;
    // Elixir's Logger words, which pulse writes too; upper case from older pulse.
    let known = [
        "error", "warn", "warning", "notice", "info", "debug", "trace",
    ];
    known
        .contains(&level.to_ascii_lowercase().as_str())
        .then_some((level, message))
}

/// The level of a log line in Elixir's word, however it is spelled: the
/// status and event lines say `info`/`warning`, the diagnostics on stderr
/// `INFO`/`WARN` (simplelog's words).
pub(crate) fn level_of(line: &str) -> Option<&'static str> {
    let (level, _) = split_log_line(line)?;
    Some(match level.to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" | "warning" => "warning",
        "notice" => "notice",
        "info" => "info",
        _ => "debug",
    })
}

/// The registry's file names, sorted.
pub(crate) fn registry_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    names
}

/// The address in a node's registry record.
pub(crate) fn registered_addr(sync_dir: &Path, name: &str) -> String {
    let record = std::fs::read_to_string(sync_dir.join(name)).expect("record");
    let addr = record
        .lines()
        .find_map(|l| l.strip_prefix("addr "))
        .expect("addr line");
    addr.to_string()
}

/// Whether an external tool is present. When it is not, the test says so
/// loudly and is skipped, unless PULSE_REQUIRE_EXTERNAL=1 (as in CI), which
/// makes a skip a failure.
pub(crate) fn require(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    found || skip(&format!("{tool} not installed"), test)
}

/// Whether the tests run as root (full disks need a mount). When not, the
/// test is skipped as by [`require`] (CI runs as root).
pub(crate) fn require_root(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    root || skip("needs root", test)
}

/// Says loudly that `test` is skipped and why, and returns false; panics
/// instead when PULSE_REQUIRE_EXTERNAL=1 forbids skips.
pub(crate) fn skip(why: &str, test: &str) -> bool {
    let msg = format!("SKIPPED ({why}): {test}");
    if std::env::var("PULSE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{msg} (PULSE_REQUIRE_EXTERNAL=1 forbids skips)");
    }
    eprintln!("{msg}");
    false
}

/// A TCP port on 127.0.0.1 that is free now and stays out of the way of
/// ports the kernel picks by itself.
pub(crate) fn free_port() -> u16 {
    // Below the kernel's ephemeral range: a port chosen there is never
    // handed to a later bind of port 0 (pulse's own listener, say) before
    // the test starts whatever is meant to listen on it. The counter keeps
    // the tests of this process apart; the bind checks for other processes.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral_low.saturating_sub(LOW).max(1);
    let start = std::process::id() % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(LOW + (start + n) % span).expect("port below 65536");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {LOW} and {ephemeral_low}")
}

/// Writes a registry record for a node pulse did not start.
pub(crate) fn write_record(sync_dir: &Path, name: &str, addr: &str) {
    std::fs::create_dir_all(sync_dir).expect("sync dir");
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let tmp = sync_dir.join(format!(".{name}.test.tmp"));
    std::fs::write(
        &tmp,
        format!("pulse 1\nname {name}\naddr {addr}\nheartbeat {ms}\n"),
    )
    .expect("write record");
    std::fs::rename(&tmp, sync_dir.join(name)).expect("rename record");
}
