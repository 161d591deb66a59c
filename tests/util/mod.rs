//! Shared test helpers: temp dirs, node processes killed on drop, polling
//! with deadlines, status-line parsing, loud skips.

#![allow(dead_code)] // each test module uses a different part of this

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod erlang;

pub const BIN: &str = env!("CARGO_BIN_EXE_pulse");

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("pulse-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn sync_dir(&self) -> PathBuf {
        self.0.join("sync_dir")
    }

    pub fn log_file(&self) -> PathBuf {
        self.0.join("log").join("cluster.log")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
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
pub fn wait_for(what: &str, timeout: Duration, nodes: &[&Node], cond: impl FnMut() -> bool) {
    if wait_until(timeout, cond) {
        return;
    }
    let dumps: String = nodes.iter().map(|n| n.dump()).collect();
    panic!("timed out after {timeout:?} waiting for {what}\n{dumps}");
}

/// A base command for the pulse binary with a clean environment: no PULSE_
/// variables leak in, HOME points into the test's dir.
pub fn pulse_cmd(dir: &TempDir) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path());
    cmd
}

/// A running pulse process whose output is collected; killed on drop.
pub struct Node {
    pub name: String,
    pub child: Child,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub started: Instant,
}

impl Node {
    /// Starts `pulse --name NAME --cookie COOKIE` on the dir's registry and
    /// log, with `extra` arguments.
    pub fn start(dir: &TempDir, name: &str, cookie: &str, extra: &[&str]) -> Node {
        let mut cmd = pulse_cmd(dir);
        cmd.arg("--name").arg(name).arg("--cookie").arg(cookie);
        cmd.arg("--sync-dir").arg(dir.sync_dir());
        cmd.arg("--log-file").arg(dir.log_file());
        cmd.args(extra);
        Node::spawn(name, cmd)
    }

    pub fn spawn(name: &str, mut cmd: Command) -> Node {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pulse");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            thread::Builder::new()
                .name("test-output".into())
                .spawn(move || {
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        lines.lock().expect("lines lock").push(line);
                    }
                })
                .expect("spawn reader");
        }
        Node {
            name: name.to_string(),
            child,
            lines,
            started: Instant::now(),
        }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    pub fn dump(&self) -> String {
        format!(
            "--- output of {} ---\n{}\n",
            self.name,
            self.output().join("\n")
        )
    }

    /// The last status line this node printed, parsed.
    pub fn last_status(&self) -> Option<BTreeMap<String, bool>> {
        self.output()
            .iter()
            .rev()
            .find_map(|l| parse_status(l, &self.name))
    }

    /// Whether the last status line shows exactly these nodes, all alive.
    pub fn sees_all_alive(&self, names: &[&str]) -> bool {
        self.last_status().is_some_and(|s| {
            s.len() == names.len() && names.iter().all(|n| s.get(*n) == Some(&true))
        })
    }

    pub fn count_containing(&self, needle: &str) -> usize {
        self.output().iter().filter(|l| l.contains(needle)).count()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .map(|s| s.success());
        assert_eq!(ok.ok(), Some(true), "kill -{sig} {}", self.name);
    }

    /// Waits for the process to end, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `HH:MM:SS.mmm [info] NAME["a@h": true, b@h: false]` for node `me`.
pub fn parse_status(line: &str, me: &str) -> Option<BTreeMap<String, bool>> {
    let (_, rest) = split_log_line(line)?;
    let list = rest
        .strip_prefix(me)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
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
pub fn split_log_line(line: &str) -> Option<(&str, &str)> {
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

/// The registry's file names, sorted.
pub fn registry_names(dir: &Path) -> Vec<String> {
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
pub fn registered_addr(sync_dir: &Path, name: &str) -> String {
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
pub fn require(tool: &str, test: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    let msg = format!("SKIPPED ({tool} not installed): {test}");
    if std::env::var("PULSE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{msg} (PULSE_REQUIRE_EXTERNAL=1 forbids skips)");
    }
    eprintln!("{msg}");
    false
}

/// Whether the tests run as root (full disks need a mount). When not, the
/// test says so loudly and is skipped, unless PULSE_REQUIRE_EXTERNAL=1 (CI
/// runs as root), which makes a skip a failure.
pub fn require_root(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if root {
        return true;
    }
    let msg = format!("SKIPPED (needs root): {test}");
    if std::env::var("PULSE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
        panic!("{msg} (PULSE_REQUIRE_EXTERNAL=1 forbids skips)");
    }
    eprintln!("{msg}");
    false
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Writes a registry record for a node pulse did not start.
pub fn write_record(sync_dir: &Path, name: &str, addr: &str) {
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
