//! Faults around a node: a console nobody reads, a full or rotated log
//! disk, storms of rejected handshakes, too few file descriptors.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::forged::wrong_cookie_handshake;
use crate::util::{
    BIN, Node, TempDir, parse_status, pulse_cmd, registered_addr, require_root, split_log_line,
    stat_fields, wait_for, wait_until, write_record,
};

/// A node name of 238 bytes: status lines listing a few fill a pipe fast.
fn long_name(i: usize) -> String {
    format!("{}{i:02}@127.0.0.1", "l".repeat(226))
}

/// Records of nodes that refuse every connection, with long names. The
/// nodes reading them are given a long TTL, so they stay listed.
fn write_long_records(dir: &TempDir, n: usize) {
    for i in 0..n {
        write_record(&dir.sync_dir(), &long_name(i), "127.0.0.1:1");
    }
}

/// The arguments of a node on the dir's registry and log.
fn node_args(dir: &TempDir, name: &str, interval: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--name",
        name,
        "--cookie",
        "c",
        "--interval",
        interval,
        "--ttl",
        "600000",
        "--epmd",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push("--sync-dir".into());
    args.push(dir.sync_dir().to_string_lossy().into_owned());
    args.push("--log-file".into());
    args.push(dir.log_file().to_string_lossy().into_owned());
    args
}

/// A node with a long TTL on the dir's registry and log.
fn spawn_node(dir: &TempDir, name: &str, interval: &str) -> Node {
    let mut cmd = pulse_cmd(dir);
    cmd.args(node_args(dir, name, interval));
    Node::spawn(name, cmd)
}

/// The log file's lines.
fn file_lines(dir: &TempDir) -> Vec<String> {
    fs::read_to_string(dir.log_file())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn status_lines_in_file(dir: &TempDir, name: &str) -> usize {
    file_lines(dir)
        .iter()
        .filter(|l| parse_status(l, name).is_some())
        .count()
}

/// A node's heartbeat: its record file's modification time (the record is
/// written once and then touched).
fn heartbeat(dir: &TempDir, name: &str) -> Option<std::time::SystemTime> {
    fs::metadata(dir.sync_dir().join(name))
        .and_then(|m| m.modified())
        .ok()
}

/// What a node with an unread stdout said on stderr, and the log file.
fn dump_with_log(node: &Node, dir: &TempDir) -> String {
    format!(
        "{}--- log file ---\n{}\n",
        node.dump(),
        file_lines(dir).join("\n")
    )
}

/// Starts `s1` with an unread stdout and waits until far more than a pipe
/// (64 KiB) and the console's queue (256 lines, here of 5 KiB) hold has
/// gone to the log.
fn start_with_full_stdout(dir: &TempDir, peer: &Node) -> Node {
    write_long_records(dir, 20);
    let mut cmd = pulse_cmd(dir);
    cmd.args(node_args(dir, "s1@127.0.0.1", "10"));
    let node = Node::spawn_unread("s1@127.0.0.1", cmd);
    wait_for("s1 to log 2 MiB", Duration::from_secs(30), &[peer], || {
        fs::metadata(dir.log_file()).is_ok_and(|m| m.len() > 2 * 1024 * 1024)
    });
    node
}

#[test]
fn a_console_nobody_reads_delays_no_heartbeat_ping_or_leave() {
    let dir = TempDir::new("stuck-console");
    let peer = spawn_node(&dir, "s2@127.0.0.1", "100");
    let mut node = start_with_full_stdout(&dir, &peer);
    let (beat, lines) = (
        heartbeat(&dir, "s1@127.0.0.1"),
        status_lines_in_file(&dir, "s1@127.0.0.1"),
    );
    let going_on = wait_until(Duration::from_secs(10), || {
        heartbeat(&dir, "s1@127.0.0.1") != beat
            && status_lines_in_file(&dir, "s1@127.0.0.1") >= lines + 20
    });
    assert!(
        going_on,
        "s1 stalled on its stdout\n{}",
        dump_with_log(&node, &dir)
    );
    wait_for(
        "s2 to see s1 alive",
        Duration::from_secs(10),
        &[&peer],
        || {
            peer.last_status()
                .is_some_and(|s| s.get("s1@127.0.0.1") == Some(&true))
        },
    );
    // SIGTERM is obeyed at once, not once stdout drains: the record goes,
    // the leave is logged, the exit code is 0.
    let ok = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(node.child.id().to_string())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill");
    let exited = wait_until(Duration::from_secs(5), || {
        matches!(node.child.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "s1 ignored SIGTERM\n{}", dump_with_log(&node, &dir));
    let code = node.child.wait().expect("wait").code();
    assert_eq!(code, Some(0), "{}", dump_with_log(&node, &dir));
    assert!(!dir.sync_dir().join("s1@127.0.0.1").exists());
    assert!(
        file_lines(&dir)
            .iter()
            .any(|l| l.contains("[info] node s1@127.0.0.1 left")),
        "{}",
        dump_with_log(&node, &dir)
    );
}

#[test]
fn a_console_that_reads_again_hears_what_it_missed() {
    let dir = TempDir::new("console-back");
    let peer = spawn_node(&dir, "s2@127.0.0.1", "100");
    let mut node = start_with_full_stdout(&dir, &peer);
    let stdout = node.read_stdout();
    let note = "the console was blocked: ";
    let heard = wait_until(Duration::from_secs(15), || {
        stdout
            .lock()
            .expect("lock")
            .iter()
            .any(|l| l.contains(note))
    });
    assert!(heard, "{}", dump_with_log(&node, &dir));
    let lines = stdout.lock().expect("lock").clone();
    let missed: u64 = lines
        .iter()
        .find_map(|l| l.split(note).nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(missed > 0, "{lines:?}");
    // What did reach the console are whole lines.
    assert!(
        lines.iter().all(|l| split_log_line(l).is_some()),
        "{lines:?}"
    );
}

/// Whether the process is stopped (state `T` in /proc).
fn is_stopped(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| stat_fields(&s)?.first().map(|state| state.starts_with('T')))
        .unwrap_or(false)
}

/// Status lines a node has printed so far.
fn status_count(node: &Node) -> usize {
    node.output()
        .iter()
        .filter(|l| parse_status(l, &node.name).is_some())
        .count()
}

#[test]
fn a_node_stopped_and_continued_keeps_its_links() {
    // A stop (SIGSTOP, Ctrl-Z, a debugger attaching) cuts every read that
    // has a timeout short with EINTR; that is no reason to drop a link.
    let dir = TempDir::new("stop-cont");
    let names = ["c1@127.0.0.1", "c2@127.0.0.1"];
    let (c1, c2) = (
        spawn_node(&dir, names[0], "200"),
        spawn_node(&dir, names[1], "200"),
    );
    wait_for(
        "both to see both",
        Duration::from_secs(10),
        &[&c1, &c2],
        || c1.sees_all_alive(&names) && c2.sees_all_alive(&names),
    );
    c1.signal("STOP");
    let pid = c1.child.id();
    assert!(
        wait_until(Duration::from_secs(5), || is_stopped(pid)),
        "c1 never stopped"
    );
    c1.signal("CONT");
    let (from1, from2) = (status_count(&c1), status_count(&c2));
    wait_for(
        "five more rounds on both",
        Duration::from_secs(10),
        &[&c1, &c2],
        || status_count(&c1) >= from1 + 5 && status_count(&c2) >= from2 + 5,
    );
    for node in [&c1, &c2] {
        let cut = node
            .output()
            .into_iter()
            .filter(|l| l.contains("link lost") || l.contains("connection closed"))
            .collect::<Vec<_>>();
        assert!(cut.is_empty(), "{cut:?}\n{}{}", c1.dump(), c2.dump());
    }
}

#[test]
fn a_log_fifo_nobody_reads_delays_no_heartbeat_and_no_leave() {
    // The round thread writes the log: a FIFO (or a pipe) whose reader
    // stalls must cost log lines, never a heartbeat, a round or a stop.
    let dir = TempDir::new("log-fifo");
    fs::create_dir_all(dir.log_file().parent().expect("log dir")).expect("log dir");
    let made = Command::new("mkfifo")
        .arg(dir.log_file())
        .status()
        .is_ok_and(|s| s.success());
    assert!(made, "mkfifo");
    // Held open and never read: the pipe fills after 64 KiB.
    let _reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(dir.log_file())
        .expect("open the FIFO for reading");
    write_long_records(&dir, 20);
    let mut node = spawn_node(&dir, "f1@127.0.0.1", "10");
    wait_for(
        "the FIFO to refuse lines",
        Duration::from_secs(20),
        &[&node],
        || node.count_containing("cannot write to the log file") > 0,
    );
    let (beat, rounds) = (heartbeat(&dir, "f1@127.0.0.1"), status_count(&node));
    wait_for(
        "20 more rounds and a heartbeat",
        Duration::from_secs(10),
        &[&node],
        || status_count(&node) >= rounds + 20 && heartbeat(&dir, "f1@127.0.0.1") != beat,
    );
    node.signal("TERM");
    let status = node.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", node.dump());
}

#[test]
fn a_rotated_or_deleted_log_file_is_created_again() {
    let dir = TempDir::new("rotate");
    let node = Node::start(
        &dir,
        "r1@127.0.0.1",
        "c",
        &["--interval", "50", "--epmd", "off"],
    );
    let log = dir.log_file();
    let has_status = |path: &Path| {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .any(|l| parse_status(l, "r1@127.0.0.1").is_some())
    };
    wait_for(
        "a status line in the log",
        Duration::from_secs(9),
        &[&node],
        || has_status(&log),
    );
    let rotated = log.with_extension("log.1");
    fs::rename(&log, &rotated).expect("rotate");
    wait_for(
        "the log created again after a rename",
        Duration::from_secs(9),
        &[&node],
        || has_status(&log),
    );
    let kept = fs::read_to_string(&rotated).expect("rotated");
    assert!(kept.lines().all(|l| split_log_line(l).is_some()), "{kept}");
    fs::remove_file(&log).expect("delete");
    wait_for(
        "the log created again after a delete",
        Duration::from_secs(9),
        &[&node],
        || has_status(&log),
    );
}

/// A tmpfs of `size` mounted at `at`, unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mount -t tmpfs at {} failed (root, but no CAP_SYS_ADMIN?)",
            at.display()
        );
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `path` with a file there, then frees
/// `room` bytes of it.
fn fill_leaving(path: &Path, room: u64) {
    let mut f = fs::File::create(path).expect("filler");
    let chunk = [0x2eu8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let len = f.metadata().expect("len").len();
    f.set_len(len.saturating_sub(room)).expect("free room");
}

#[test]
fn a_full_log_disk_tears_no_line_and_says_so_once() {
    if !require_root("a_full_log_disk_tears_no_line_and_says_so_once") {
        return;
    }
    let dir = TempDir::new("full-disk");
    let log_dir = dir.log_file().parent().expect("log dir").to_path_buf();
    let _mount = Mount::tmpfs(&log_dir, "64k");
    let filler = log_dir.join("filler");
    fill_leaving(&filler, 12 * 1024);
    write_long_records(&dir, 2);
    let node = spawn_node(&dir, "d1@127.0.0.1", "20");
    let said = "pulse: cannot write to the log file";
    wait_for(
        "the full disk reported",
        Duration::from_secs(15),
        &[&node],
        || node.count_containing(said) > 0,
    );
    let lines = node.output().len();
    wait_for(
        "30 more lines on stdout",
        Duration::from_secs(15),
        &[&node],
        || node.output().len() > lines + 30,
    );
    assert_eq!(node.count_containing(said), 1, "{}", node.dump());
    let whole = |what: &str| {
        let text = fs::read_to_string(dir.log_file()).expect("log");
        assert!(text.ends_with('\n'), "{what}: torn last line\n{text}");
        for line in text.lines() {
            assert!(
                split_log_line(line).is_some(),
                "{what}: torn line {line:?}\n{text}"
            );
        }
    };
    whole("disk full");
    fs::remove_file(&filler).expect("make room");
    wait_for(
        "the log to take lines again",
        Duration::from_secs(15),
        &[&node],
        || {
            fs::read_to_string(dir.log_file())
                .unwrap_or_default()
                .contains("the log file takes lines again: ")
                && node.count_containing("pulse: the log file takes lines again: ") == 1
        },
    );
    let before = status_lines_in_file(&dir, "d1@127.0.0.1");
    wait_for(
        "new status lines in the file",
        Duration::from_secs(9),
        &[&node],
        || status_lines_in_file(&dir, "d1@127.0.0.1") > before + 3,
    );
    whole("room again");
    drop(node);
}

#[test]
fn a_storm_of_rejected_handshakes_gives_a_few_warnings_and_a_sum() {
    let dir = TempDir::new("storm");
    let node = Node::start(
        &dir,
        "w1@127.0.0.1",
        "c",
        &["--interval", "100", "--epmd", "off"],
    );
    wait_for("w1 alive", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&["w1@127.0.0.1"])
    });
    let addr: SocketAddr = registered_addr(&dir.sync_dir(), "w1@127.0.0.1")
        .parse()
        .expect("addr");
    const TRIES: usize = 400;
    for i in 0..TRIES {
        // A new name each time: names cost the client nothing.
        let name = format!("storm{i}@127.0.0.1");
        wrong_cookie_handshake(addr, name.as_bytes()).expect("handshake");
    }
    let warned = node.count_containing(": wrong cookie");
    assert!(
        (1..=10).contains(&warned),
        "{warned} warnings\n{}",
        node.dump()
    );
    let lines = node.output().len();
    wait_for("w1 to go on", Duration::from_secs(9), &[&node], || {
        node.output().len() > lines + 3 && node.sees_all_alive(&["w1@127.0.0.1"])
    });
    // At the end, the sum of what was not warned about.
    node.signal("TERM");
    let sum = format!(
        "{} more rejected handshakes in the last minute",
        TRIES - warned
    );
    wait_for("the summary line", Duration::from_secs(9), &[&node], || {
        node.count_containing(&sum) == 1
    });
}

/// `pulse ARGS` run under `ulimit LIMIT` (e.g. `-n 160`: soft and hard).
pub(crate) fn under_ulimit(dir: &TempDir, limit: &str, args: &[String]) -> Command {
    let mut sh = Command::new("sh");
    sh.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .arg("-c")
        .arg(format!("ulimit {limit} && exec \"$@\""))
        .arg("sh")
        .arg(BIN)
        .args(args);
    sh
}

/// Soft and hard "Max open files" of a process.
fn open_files_limits(pid: u32) -> Option<(String, String)> {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
    let dir = TempDir::new("nofile");
    let args = node_args(&dir, "n1@127.0.0.1", "100");
    let node = Node::spawn("n1@127.0.0.1", under_ulimit(&dir, "-S -n 200", &args));
    wait_for("n1 alive", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&["n1@127.0.0.1"])
    });
    let (soft, hard) = open_files_limits(node.child.id()).expect("limits");
    assert_eq!(soft, hard, "{}", node.dump());
}

#[test]
fn too_few_descriptors_hide_no_live_node_and_cause_no_warning_storm() {
    let dir = TempDir::new("fd-flood");
    let peer = spawn_node(&dir, "e2@127.0.0.1", "100");
    let args = node_args(&dir, "e1@127.0.0.1", "100");
    // 160 descriptors, soft and hard: room for 32 inbound links.
    let node = Node::spawn("e1@127.0.0.1", under_ulimit(&dir, "-n 160", &args));
    let both = ["e1@127.0.0.1", "e2@127.0.0.1"];
    wait_for(
        "e1 to see both",
        Duration::from_secs(9),
        &[&node, &peer],
        || node.sees_all_alive(&both),
    );
    assert_eq!(
        node.count_containing("at most 32 inbound links"),
        1,
        "{}",
        node.dump()
    );
    let addr: SocketAddr = registered_addr(&dir.sync_dir(), "e1@127.0.0.1")
        .parse()
        .expect("addr");
    // 200 connections that say nothing, all held open.
    let held: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())
        .collect();
    assert!(held.len() > 100, "only {} connections", held.len());
    let lines = node.output().len();
    wait_for(
        "ten more status lines of e1",
        Duration::from_secs(9),
        &[&node],
        || {
            node.output()[lines.min(node.output().len())..]
                .iter()
                .filter(|l| parse_status(l, "e1@127.0.0.1").is_some())
                .count()
                >= 10
        },
    );
    let after: Vec<_> = node.output()[lines..]
        .iter()
        .filter_map(|l| parse_status(l, "e1@127.0.0.1"))
        .collect();
    // Every line still lists both (a registry it cannot read would empty
    // it); a ping lost to a busy machine may show false, so liveness is
    // judged on the latest line.
    for status in &after {
        assert!(
            both.iter().all(|n| status.contains_key(*n)) && status.len() == 2,
            "a live node went missing: {status:?}\n{}",
            node.dump()
        );
    }
    wait_for(
        "e1 to see both alive",
        Duration::from_secs(9),
        &[&node, &peer],
        || node.sees_all_alive(&both),
    );
    let storm =
        node.count_containing("accept failed") + node.count_containing("out of file descriptors");
    assert!(storm <= 1, "{}", node.dump());
    drop(held);
}

#[test]
fn a_cookie_file_others_may_read_is_refused_as_erlang_refuses_it() {
    let dir = TempDir::new("loose-cookie");
    let cookie = dir.path().join(".erlang.cookie");
    fs::write(&cookie, "secret").expect("cookie");
    let run = || {
        pulse_cmd(&dir)
            .args([
                "--name",
                "c1@127.0.0.1",
                "--epmd",
                "off",
                "--interval",
                "100",
            ])
            .arg("--sync-dir")
            .arg(dir.sync_dir())
            .arg("--log-file")
            .arg(dir.log_file())
            .output()
            .expect("run")
    };
    for mode in [0o644, 0o440] {
        let loose = std::os::unix::fs::PermissionsExt::from_mode(mode);
        fs::set_permissions(&cookie, loose).expect("chmod");
        let out = run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "mode {mode:o}: {stderr}");
        assert!(
            stderr.contains("must be accessible by owner only"),
            "mode {mode:o}: {stderr}"
        );
        assert!(
            !dir.sync_dir().exists(),
            "a node started with mode {mode:o}"
        );
    }
}
