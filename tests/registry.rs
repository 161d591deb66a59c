//! The registry under hostile or unlucky conditions: planted links, a
//! directory anyone may write, names claimed twice at once or held by a
//! frozen node, planned restarts, junk by the thousand, the directory
//! deleted under running nodes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::{
    Node, TempDir, parse_status, registry_names, require_root, split_log_line, wait_for,
};

/// No EPMD: the registry alone decides.
const SOLO: &[&str] = &["--interval", "200", "--epmd", "off"];

/// Warning lines, whatever the level's spelling.
fn warnings(node: &Node) -> usize {
    node.output()
        .iter()
        .filter_map(|l| split_log_line(l))
        .filter(|(level, _)| level.to_ascii_lowercase().starts_with("warn"))
        .count()
}

fn status_lines(node: &Node) -> Vec<std::collections::BTreeMap<String, bool>> {
    node.output()
        .iter()
        .filter_map(|l| parse_status(l, &node.name))
        .collect()
}

#[test]
fn a_planted_symlink_is_never_followed() {
    let dir = TempDir::new("plant");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    std::os::unix::fs::symlink(&victim, sd.join("v1@127.0.0.1")).expect("symlink");
    let node = Node::start(&dir, "v1@127.0.0.1", "c", SOLO);
    wait_for(
        "v1 to list itself",
        Duration::from_secs(9),
        &[&node],
        || node.sees_all_alive(&["v1@127.0.0.1"]),
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );
    let meta = sd.join("v1@127.0.0.1").symlink_metadata().expect("entry");
    assert!(meta.is_file(), "our entry is a file of our own now");
    // Nothing but node entries in the directory: no temporary names.
    assert_eq!(
        std::fs::read_dir(&sd).expect("list").count(),
        1,
        "{:?}",
        registry_names(&sd)
    );
}

#[test]
fn a_registry_anyone_may_write_needs_the_sticky_bit() {
    let dir = TempDir::new("sticky");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut node = Node::start(&dir, "w1@127.0.0.1", "c", SOLO);
    let status = node.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", node.dump());
    assert_eq!(
        node.count_containing("has no sticky bit"),
        1,
        "{}",
        node.dump()
    );
    std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let node = Node::start(&dir, "w1@127.0.0.1", "c", SOLO);
    wait_for("w1 to run", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&["w1@127.0.0.1"])
    });
}

#[test]
fn one_name_started_twice_at_once_runs_once_and_a_frozen_holder_keeps_it() {
    let dir = TempDir::new("twice");
    for attempt in 0..5 {
        let a = Node::start(&dir, "t1@127.0.0.1", "c", SOLO);
        let b = Node::start(&dir, "t1@127.0.0.1", "c", SOLO);
        // Exactly one of them exits at once, refused.
        let mut refused = 0;
        wait_for(
            "one of the two to be refused",
            Duration::from_secs(10),
            &[&a, &b],
            || {
                refused = [&a, &b]
                    .iter()
                    .filter(|n| n.count_containing("the name t1@127.0.0.1 is taken") == 1)
                    .count();
                refused >= 1
            },
        );
        let lasting = if a.count_containing("is taken") == 1 {
            &b
        } else {
            &a
        };
        wait_for(
            "the winner's line",
            Duration::from_secs(9),
            &[&a, &b],
            || lasting.sees_all_alive(&["t1@127.0.0.1"]),
        );
        assert_eq!(refused, 1, "attempt {attempt}:\n{}{}", a.dump(), b.dump());
        if attempt < 4 {
            continue;
        }
        // The winner frozen: its name stays taken.
        lasting.signal("STOP");
        let mut third = Node::start(&dir, "t1@127.0.0.1", "c", SOLO);
        let status = third.wait_exit(Duration::from_secs(5));
        lasting.signal("CONT");
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", third.dump());
        assert_eq!(
            third.count_containing("a running pulse node holds its registry entry"),
            1,
            "{}",
            third.dump()
        );
    }
}

#[test]
fn planned_restarts_are_neither_down_nor_false() {
    let dir = TempDir::new("restart");
    let names = ["r1@127.0.0.1", "r2@127.0.0.2"];
    // A whole interval for each ping: the handshakes after each restart
    // must not read as a node down on a loaded host.
    const CALM: &[&str] = &["--interval", "400", "--timeout", "400", "--epmd", "off"];
    let watcher = Node::start(&dir, names[0], "c", CALM);
    let mut other = Node::start(&dir, names[1], "c", CALM);
    wait_for(
        "both to list both",
        Duration::from_secs(9),
        &[&watcher, &other],
        || watcher.sees_all_alive(&names),
    );
    for _ in 0..4 {
        other.signal("TERM");
        assert_eq!(
            other
                .wait_exit(Duration::from_secs(5))
                .and_then(|s| s.code()),
            Some(0),
            "{}",
            other.dump()
        );
        other = Node::start(&dir, names[1], "c", CALM);
        let seen = status_lines(&watcher).len();
        wait_for(
            "r2 back in the watcher's lines",
            Duration::from_secs(9),
            &[&watcher, &other],
            || {
                other.sees_all_alive(&names)
                    && status_lines(&watcher).len() > seen + 2
                    && watcher.sees_all_alive(&names)
            },
        );
    }
    assert_eq!(watcher.count_containing("is down"), 0, "{}", watcher.dump());
    let falses = status_lines(&watcher)
        .iter()
        .filter(|s| s.values().any(|alive| !alive))
        .count();
    assert_eq!(falses, 0, "{}", watcher.dump());
}

#[test]
fn junk_by_the_thousand_is_summarised_and_hides_no_node() {
    let dir = TempDir::new("junk");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    for i in 0..20_000 {
        std::fs::write(sd.join(format!("junk-{i}")), "").expect("junk");
    }
    let names = ["j1@127.0.0.1", "j2@127.0.0.2"];
    let a = Node::start(&dir, names[0], "c", SOLO);
    let b = Node::start(&dir, names[1], "c", SOLO);
    wait_for(
        "both to list both",
        Duration::from_secs(20),
        &[&a, &b],
        || a.sees_all_alive(&names) && b.sees_all_alive(&names),
    );
    for node in [&a, &b] {
        let warnings = warnings(node);
        assert!(warnings <= 5, "{warnings} warnings:\n{}", node.dump());
        assert_eq!(
            node.count_containing("skipping 19997 more entries"),
            1,
            "{}",
            node.dump()
        );
    }
}

#[test]
fn a_deleted_registry_is_no_leave_and_comes_back() {
    let dir = TempDir::new("deleted");
    let sd = dir.sync_dir();
    let names = ["k1@127.0.0.1", "k2@127.0.0.2", "k3@127.0.0.3"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", SOLO))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    wait_for("all to list all", Duration::from_secs(9), &all, || {
        nodes.iter().all(|n| n.sees_all_alive(&names))
    });
    for _ in 0..3 {
        std::fs::remove_dir_all(&sd).expect("delete registry");
        wait_for("the registry back", Duration::from_secs(9), &all, || {
            registry_names(&sd) == names
        });
    }
    let seen: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    wait_for("three more rounds", Duration::from_secs(9), &all, || {
        nodes
            .iter()
            .zip(&seen)
            .all(|(n, s)| n.output().len() > s + 3)
    });
    for node in &nodes {
        assert!(node.sees_all_alive(&names), "{}", node.dump());
        for word in [" left", " expired", " joined"] {
            let events = node
                .output()
                .iter()
                .filter(|l| l.contains(word) && !l.contains(&format!("{} left", node.name)))
                .count();
            let expected = if word == " joined" { names.len() } else { 0 };
            assert_eq!(events, expected, "{word}:\n{}", node.dump());
        }
    }
}

/// A tmpfs mounted at a test's path, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -t tmpfs at {} failed", at.display());
        Tmpfs(at.to_path_buf())
    }

    fn remount(&self, mode: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {mode} of {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_registry_expires_no_one_and_says_so_once() {
    if !require_root("a_read_only_registry_expires_no_one_and_says_so_once") {
        return;
    }
    let dir = TempDir::new("readonly");
    let mount = Tmpfs::mount(&dir.sync_dir());
    let names = ["o1@127.0.0.1", "o2@127.0.0.2"];
    let a = Node::start(&dir, names[0], "c", SOLO);
    let b = Node::start(&dir, names[1], "c", SOLO);
    wait_for(
        "both to list both",
        Duration::from_secs(9),
        &[&a, &b],
        || a.sees_all_alive(&names) && b.sees_all_alive(&names),
    );
    mount.remount("ro");
    let seen: Vec<usize> = [&a, &b].iter().map(|n| status_lines(n).len()).collect();
    // 25 rounds of 200 ms: five times the TTL with every heartbeat still.
    wait_for(
        "25 rounds on a read-only registry",
        Duration::from_secs(30),
        &[&a, &b],
        || {
            [&a, &b]
                .iter()
                .zip(&seen)
                .all(|(n, s)| status_lines(n).len() > s + 25)
        },
    );
    mount.remount("rw");
    for node in [&a, &b] {
        assert_eq!(
            node.count_containing("cannot write our heartbeat"),
            1,
            "{}",
            node.dump()
        );
        assert_eq!(node.count_containing("expired"), 0, "{}", node.dump());
        assert_eq!(node.count_containing(" joined"), 2, "{}", node.dump());
        assert!(
            status_lines(node)
                .iter()
                .all(|s| s.values().all(|alive| *alive)),
            "{}",
            node.dump()
        );
    }
    wait_for(
        "heartbeats written again",
        Duration::from_secs(9),
        &[&a, &b],
        || {
            [&a, &b]
                .iter()
                .all(|n| n.count_containing("our heartbeat is written again") == 1)
        },
    );
}

#[test]
fn a_foreign_entry_caught_mid_write_stays_listed_without_events() {
    let dir = TempDir::new("midwrite");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    let entry = sd.join("f1@127.0.0.1");
    std::fs::write(&entry, "{{2026, 11, 24}, {3, 16, 5}}").expect("write");
    let node = Node::start(
        &dir,
        "m1@127.0.0.1",
        "c",
        &["--interval", "50", "--epmd", "off"],
    );
    // As the recipe's node writes: truncate, then write, then close, over and
    // over, so scans find it empty, half-written or whole.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, entry) = (stop.clone(), entry.clone());
        std::thread::Builder::new()
            .name("test-recipe-writer".into())
            .spawn(move || {
                use std::io::Write;
                let mut second = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    second = (second + 1) % 60;
                    if let Ok(mut file) = std::fs::File::create(&entry) {
                        let text = format!("{{{{2026, 11, 24}}, {{3, 16, {second}}}}}");
                        let (head, tail) = text.split_at(text.len() / 2);
                        let _ = file.write_all(head.as_bytes());
                        std::thread::yield_now();
                        let _ = file.write_all(tail.as_bytes());
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
            .expect("spawn writer")
    };
    let enough = |n: &Node| status_lines(n).len() >= 60;
    let waited = crate::util::wait_until(Duration::from_secs(20), || enough(&node));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("writer");
    assert!(waited, "{}", node.dump());
    let lines = status_lines(&node);
    assert!(
        lines.iter().all(|s| s.contains_key("f1@127.0.0.1")),
        "a line without f1:\n{}",
        node.dump()
    );
    assert_eq!(
        node.count_containing("node f1@127.0.0.1 joined"),
        1,
        "{}",
        node.dump()
    );
    for word in [
        "node f1@127.0.0.1 left",
        "node f1@127.0.0.1 expired",
        "'f1@127.0.0.1'",
    ] {
        assert_eq!(node.count_containing(word), 0, "{word}:\n{}", node.dump());
    }
}

/// Whether the tests run as root, who can act as another user.
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0")
}

/// `pulse ARGS` run as `uid` (through setpriv), in the clean environment
/// of [`crate::util::pulse_cmd`].
fn pulse_as(dir: &TempDir, uid: u32) -> Command {
    let base = crate::util::pulse_cmd(dir);
    let mut cmd = Command::new("setpriv");
    let id = uid.to_string();
    cmd.args(["--reuid", &id, "--regid", &id, "--clear-groups"])
        .arg(base.get_program())
        .env_clear();
    for (key, value) in base.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd
}

/// The quick start after the containers ran: they made the shared dirs,
/// and a node of another user (a person on the host) runs in them too.
#[test]
fn dirs_a_node_makes_are_for_every_user_as_tmp_is() {
    let test = "dirs_a_node_makes_are_for_every_user_as_tmp_is";
    let dir = TempDir::new("shared-dirs");
    let tmp = dir.path().join("tmp");
    let sd = tmp.join("sync_dir");
    let log = tmp.join("log").join("cluster.log");
    let args = |name: &str| -> Vec<String> {
        let mut args: Vec<String> = ["--name", name, "--cookie", "c"]
            .into_iter()
            .chain(SOLO.iter().copied())
            .map(String::from)
            .collect();
        args.extend(["--sync-dir".into(), sd.display().to_string()]);
        args.extend(["--log-file".into(), log.display().to_string()]);
        args
    };
    let mut cmd = crate::util::pulse_cmd(&dir);
    cmd.args(args("s1@127.0.0.1"));
    let s1 = Node::spawn("s1@127.0.0.1", cmd);
    wait_for("s1 to list itself", Duration::from_secs(9), &[&s1], || {
        s1.sees_all_alive(&["s1@127.0.0.1"])
    });
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o7777
    };
    for made in [&tmp, &sd, &tmp.join("log")] {
        assert_eq!(mode(made), 0o1777, "{}", made.display());
    }
    assert_eq!(mode(&log), 0o666);
    if !require_root(test) || !crate::util::require("setpriv", test) {
        return;
    }
    let mut cmd = pulse_as(&dir, 65534);
    cmd.args(args("s2@127.0.0.1"));
    let s2 = Node::spawn("s2@127.0.0.1", cmd);
    let both = ["s1@127.0.0.1", "s2@127.0.0.1"];
    wait_for(
        "s1 and s2 to list both",
        Duration::from_secs(9),
        &[&s1, &s2],
        || s1.sees_all_alive(&both) && s2.sees_all_alive(&both),
    );
    let log_text = std::fs::read_to_string(&log).expect("log");
    assert!(log_text.contains("] s2@127.0.0.1["), "{log_text}");
}

/// A registry dir this user may not write (the containers' dir, mode 0755,
/// for a person on the host): the error names it and the fix, on stderr.
#[test]
fn a_registry_this_user_may_not_write_is_named_with_the_fix() {
    let dir = TempDir::new("denied");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    let mut cmd = if is_root() {
        if !crate::util::require(
            "setpriv",
            "a_registry_this_user_may_not_write_is_named_with_the_fix",
        ) {
            return;
        }
        std::os::unix::fs::chown(&sd, Some(65532), Some(65532)).expect("chown");
        std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        pulse_as(&dir, 65534)
    } else {
        std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o555)).expect("chmod");
        crate::util::pulse_cmd(&dir)
    };
    let out = cmd
        .args(["--name", "d1@127.0.0.1", "--cookie", "c", "--log-file", "-"])
        .args(SOLO)
        .arg("--sync-dir")
        .arg(&sd)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for part in [
        &format!("{}: Permission denied", sd.display()),
        "belongs to uid",
        &format!("chmod 1777 {}", sd.display()),
        "give --sync-dir",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // Let the temp dir go.
    let _ = std::fs::set_permissions(&sd, std::fs::Permissions::from_mode(0o755));
}
