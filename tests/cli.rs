//! The command line: help, version, bad input, configuration sources, the
//! default identity.

use std::time::Duration;

use crate::util::{Node, TempDir, pulse_cmd, registry_names, wait_until};

#[test]
fn help_and_version_exit_zero() {
    let dir = TempDir::new("help");
    let out = pulse_cmd(&dir).arg("--help").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--name",
        "--sname",
        "--cookie-file",
        "--sync-dir",
        "PULSE_INTERVAL_MS",
        "Exit codes",
    ] {
        assert!(text.contains(flag), "help lacks {flag}:\n{text}");
    }
    let out = pulse_cmd(&dir).arg("--version").output().expect("run");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pulse "));
}

#[test]
fn bad_input_gives_a_reason_the_usage_and_exit_2() {
    let dir = TempDir::new("badflags");
    for (args, reason) in [
        (&["--interval", "abc"][..], "--interval: expected"),
        (&["--frobnicate"], "unknown option '--frobnicate'"),
        (
            &["--name", "no-at-sign", "--cookie", "c"],
            "not a node name",
        ),
        (
            &["--name", "a/b@127.0.0.1", "--cookie", "c"],
            "must be letters",
        ),
        (&["--timeout", "0"], "timeout: must be"),
    ] {
        let out = pulse_cmd(&dir).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(reason), "{args:?}: first line {first:?}");
    }
    // A bad environment value is reported by its variable's name.
    let out = pulse_cmd(&dir)
        .env("PULSE_PORT", "x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PULSE_PORT"));
}

#[test]
fn no_cookie_anywhere_is_a_clear_error() {
    let dir = TempDir::new("nocookie");
    let out = pulse_cmd(&dir)
        .env_remove("HOME")
        .args(["--name", "a@127.0.0.1"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cookie"));
}

#[test]
fn environment_configures_a_node_and_flags_win() {
    let dir = TempDir::new("env");
    let cookie_file = dir.path().join("cookie");
    std::fs::write(&cookie_file, "from-file\n").expect("cookie file");
    // Owner only, or it is refused as Erlang refuses it.
    let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&cookie_file, owner_only).expect("chmod");
    let mut cmd = pulse_cmd(&dir);
    cmd.env("PULSE_NAME", "envnode@127.0.0.1")
        .env("PULSE_COOKIE_FILE", &cookie_file)
        .env("PULSE_SYNC_DIR", dir.sync_dir())
        .env("PULSE_LOG_FILE", dir.log_file())
        .env("PULSE_INTERVAL_MS", "5000")
        .args(["--interval", "200"]);
    let node = Node::spawn("envnode@127.0.0.1", cmd);
    // Three status lines long before the environment's 5000 ms interval
    // could give them prove the flag's 200 ms won.
    let ok = wait_until(Duration::from_secs(9), || {
        node.output()
            .iter()
            .filter(|l| crate::util::parse_status(l, "envnode@127.0.0.1").is_some())
            .count()
            >= 3
    });
    assert!(ok, "{}", node.dump());
    assert!(node.started.elapsed() < Duration::from_millis(8000));
    assert_eq!(registry_names(&dir.sync_dir()), ["envnode@127.0.0.1"]);
    assert!(
        node.sees_all_alive(&["envnode@127.0.0.1"]),
        "{}",
        node.dump()
    );
}

#[test]
fn default_name_is_md5_hex_at_the_address() {
    let dir = TempDir::new("defname");
    let mut cmd = pulse_cmd(&dir);
    cmd.args(["--ip", "127.0.0.7", "--cookie", "c", "--interval", "200"])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    let node = Node::spawn("(default)", cmd);
    let mut name = String::new();
    let ok = wait_until(Duration::from_secs(9), || {
        if let [only] = &registry_names(&dir.sync_dir())[..] {
            name = only.clone();
            return true;
        }
        false
    });
    assert!(ok, "{}", node.dump());
    let (alive, host) = name.split_once('@').expect("name has @");
    assert_eq!(host, "127.0.0.7");
    assert_eq!(alive.len(), 10);
    assert!(
        alive.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
        "{alive}"
    );
    let ok = wait_until(Duration::from_secs(9), || {
        node.output().iter().any(|l| {
            crate::util::parse_status(l, &name).is_some_and(|s| s.get(&name) == Some(&true))
        })
    });
    assert!(ok, "{}", node.dump());
}

#[test]
fn sname_uses_the_host_name() {
    let dir = TempDir::new("sname");
    let host = hostname_of_machine();
    let mut cmd = pulse_cmd(&dir);
    cmd.args([
        "--sname",
        "short",
        "--ip",
        "127.0.0.8",
        "--cookie",
        "c",
        "--interval",
        "200",
    ])
    .arg("--sync-dir")
    .arg(dir.sync_dir())
    .arg("--log-file")
    .arg(dir.log_file());
    let name = format!("short@{host}");
    let node = Node::spawn(&name, cmd);
    let ok = wait_until(Duration::from_secs(9), || node.sees_all_alive(&[&name]));
    assert!(ok, "{}", node.dump());
}

fn hostname_of_machine() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    raw.trim().split('.').next().unwrap_or_default().to_string()
}

#[test]
fn an_unusable_registry_or_log_is_a_clear_error() {
    let dir = TempDir::new("unusable");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").expect("file");
    let run = |sync: &std::path::Path, log: &std::path::Path| {
        pulse_cmd(&dir)
            .args(["--name", "u1@127.0.0.1", "--cookie", "c", "--epmd", "off"])
            .arg("--sync-dir")
            .arg(sync)
            .arg("--log-file")
            .arg(log)
            .output()
            .expect("run")
    };
    // The registry path is a file: nothing can be registered there.
    let out = run(&file.join("sub"), &dir.log_file());
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cannot write to the registry"), "{text}");
    // The log's directory is a file.
    let out = run(&dir.sync_dir(), &file.join("cluster.log"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot create log directory"));
}
