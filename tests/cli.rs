//! The command line: help, version, bad input, configuration sources, the
//! default identity, what `status` says, and `run.sh`'s own answers.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use crate::util::dns_server::DnsServer;
use crate::util::{Node, TempDir, free_port, pulse_cmd, registry_names, wait_for, wait_until};

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
fn bad_input_gives_a_reason_a_pointer_to_help_and_exit_2() {
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
        (
            &["--port", "99999"],
            "--port: expected a port number from 0 to 65535",
        ),
        (&["--name", "bad"], "'bad' is not a node name"),
        (
            &["--cookie", ""],
            "cookie must be 1 to 255 printable characters",
        ),
    ] {
        let out = pulse_cmd(&dir).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        // The reason stays on the screen: no usage scrolls it away.
        let lines: Vec<&str> = err.lines().collect();
        assert!(
            matches!(&lines[..], [first, help] if first.contains(reason) && help.contains("pulse --help")),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
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
    let file_shown = file.display().to_string();
    // The registry path is a file, or under one: nothing can be registered
    // there. The error names it and what to do, on stderr.
    for sync in [file.clone(), file.join("sub")] {
        let out = run(&sync, &dir.log_file());
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("cannot write to the registry")
                && err.contains(&file_shown)
                && err.contains("not a directory; remove it or give --sync-dir"),
            "{err}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("[error]"),
            "an error on stdout"
        );
        // `status` says the same of it.
        let out = pulse_cmd(&dir)
            .args(["status", "--cookie", "c"])
            .arg("--sync-dir")
            .arg(&sync)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&file_shown) && err.contains("give --sync-dir"),
            "{err}"
        );
    }
    // The log's directory is a file.
    let out = run(&dir.sync_dir(), &file.join("cluster.log"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot create log directory")
            && err.contains(&file_shown)
            && err.contains("give --log-file"),
        "{err}"
    );
}

/// `status` in DNS mode: its records come from no file, so the heartbeat's
/// age is unknown (`-`, `null`), not the time since 1970.
#[test]
fn status_in_dns_mode_has_no_heartbeat_age() {
    let dir = TempDir::new("dns-age");
    let dns = DnsServer::start();
    dns.set("age.test", &[Ipv4Addr::new(127, 1, 20, 1)]);
    let port = free_port().to_string();
    let common = |cmd: &mut Command| {
        cmd.args([
            "--cookie",
            "c",
            "--registry",
            &format!("dns:age.test:{port}"),
        ])
        .args(["--dns-server", &dns.addr.to_string()]);
    };
    let mut cmd = pulse_cmd(&dir);
    cmd.args(["--name", "a1@127.1.20.1", "--port", &port, "--epmd", "off"])
        .args(["--log-file", "-", "--interval", "200"]);
    common(&mut cmd);
    let node = Node::spawn("a1@127.1.20.1", cmd);
    wait_for(
        "a1 to list itself",
        Duration::from_secs(9),
        &[&node],
        || node.sees_all_alive(&["a1@127.1.20.1"]),
    );
    let status = |json: bool| {
        let mut cmd = pulse_cmd(&dir);
        cmd.args(["status", "--ip", "127.1.20.9"]);
        if json {
            cmd.arg("--json");
        }
        common(&mut cmd);
        let out = cmd.output().expect("run");
        assert_eq!(out.status.code(), Some(0), "{}", node.dump());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = status(false);
    let row = text
        .lines()
        .find(|l| l.starts_with("a1@127.1.20.1"))
        .unwrap_or_else(|| panic!("no row for a1:\n{text}"));
    // NAME ADDRESS ALIVE RTT AGE
    assert_eq!(row.split_whitespace().nth(4), Some("-"), "{text}");
    let json = status(true);
    assert!(json.contains("\"heartbeat_age_ms\": null"), "{json}");
}

/// `status` with no cookie makes no `~/.erlang.cookie` (a new random one
/// matches no node), and when nodes refuse the cookie of a file, it names
/// that file.
#[test]
fn status_says_which_cookie_file_nodes_refused() {
    let dir = TempDir::new("status-cookie");
    let node = Node::start(&dir, "c1@127.0.0.1", "right", &["--epmd", "off"]);
    wait_for(
        "c1 to list itself",
        Duration::from_secs(9),
        &[&node],
        || node.sees_all_alive(&["c1@127.0.0.1"]),
    );
    let cookie_file = dir.path().join(".erlang.cookie");
    let status = || {
        pulse_cmd(&dir)
            .args(["status", "--ip", "127.0.0.1"])
            .arg("--sync-dir")
            .arg(dir.sync_dir())
            .output()
            .expect("run")
    };
    let out = status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&cookie_file.display().to_string()), "{err}");
    assert!(
        !cookie_file.exists(),
        "status made {}",
        cookie_file.display()
    );
    std::fs::write(&cookie_file, "wrong").expect("cookie file");
    let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o400);
    std::fs::set_permissions(&cookie_file, owner_only).expect("chmod");
    let out = status();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bad cookie"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains(&format!(
            "refused the cookie read from {}",
            cookie_file.display()
        )),
        "{err}"
    );
}

/// `run.sh` against a stand-in engine that runs nothing of ours (see
/// [`run_sh_on`]).
fn run_sh(dir: &TempDir, args: &[&str]) -> (Option<i32>, String, String) {
    run_sh_on(dir, args, &[])
}

#[test]
fn run_sh_answers_a_mistyped_command_itself() {
    let dir = TempDir::new("runsh-verb");
    let (code, text, calls) = run_sh(&dir, &["clustr", "3"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("run.sh: unknown command 'clustr'") && text.contains("./run.sh help"),
        "{text}"
    );
    assert!(!text.contains("Usage: pulse"), "{text}");
    assert!(!calls.contains("cargo"), "built for a typo: {calls}");
}

#[test]
fn run_sh_down_with_nothing_running_says_so_quietly() {
    let dir = TempDir::new("runsh-down");
    let (code, text, calls) = run_sh(&dir, &["down"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("not found"), "{text}");
    assert!(text.contains("nothing of pulse's is running"), "{text}");
    assert!(!calls.contains(" down"), "{calls}");
}

/// `run.sh` against a stand-in engine that `fake` describes, as
/// environment variables: `FAKE_STACK`, a stack of that name deployed;
/// `FAKE_STACK_LABEL`, its node service's `com.pulse.stack` label (`1` for
/// ours, empty for another program's); `FAKE_COMPOSE`, the compose project
/// has a running container. `cargo` "builds" a host binary that only says
/// how it was called, and `tail` says what it would follow, so nothing
/// runs for real and nothing waits.
fn run_sh_on(dir: &TempDir, args: &[&str], fake: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let bin = dir.path().join("fake-bin");
    std::fs::create_dir_all(&bin).expect("fake bin");
    let calls = dir.path().join("calls");
    let docker = r#"#!/bin/sh
echo "docker $*" >> "$CALLS"
case "$*" in
"info "*) echo 20.10.24 ;;
"compose version"*) echo "Docker Compose version v2.0.0" ;;
"compose "*" down"*) echo "Network pulse_default not found." >&2 ;;
"stack ls "*) if [ -n "$FAKE_STACK" ]; then echo "$FAKE_STACK"; fi ;;
"service inspect "*)
    if [ -z "$FAKE_STACK" ]; then echo "no such service" >&2; exit 1; fi
    echo "$FAKE_STACK $FAKE_STACK_LABEL" ;;
"ps -q --filter label=com.docker.swarm.service.name="* | "ps -q --filter label=com.docker.stack.namespace="*)
    if [ -n "$FAKE_STACK" ]; then echo task1; fi ;;
"ps -q --filter label=com.docker.compose.project="* | "ps -aq --filter label=com.docker.compose.project="*)
    if [ -n "$FAKE_COMPOSE" ]; then echo compose1; fi ;;
"inspect -f {{.Name}} "*) echo "/name-of-$4" ;;
"exec "*) echo "status from inside $2" ;;
esac
exit 0
"#;
    let cargo = r#"#!/bin/sh
echo "cargo $*" >> "$CALLS"
echo "cargo ran" >&2
mkdir -p "$CARGO_TARGET_DIR/release"
printf '#!/bin/sh\necho "host pulse $*"\n' > "$CARGO_TARGET_DIR/release/pulse"
chmod 755 "$CARGO_TARGET_DIR/release/pulse"
"#;
    let tail = "#!/bin/sh\necho \"tail $*\" >> \"$CALLS\"\n";
    for (name, text) in [("docker", docker), ("cargo", cargo), ("tail", tail)] {
        let path = bin.join(name);
        std::fs::write(&path, text).expect("fake");
        let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, exec).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let _ = std::fs::remove_file(&calls);
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/run.sh"))
        .args(args)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.path())
        .env("CALLS", &calls)
        .env("PULSE_HOST_DIR", dir.path())
        .env("CARGO_TARGET_DIR", dir.path().join("target"))
        .envs(fake.iter().copied())
        .output()
        .expect("run run.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&calls).unwrap_or_default();
    (out.status.code(), text, calls)
}

#[test]
fn run_sh_leaves_another_programs_stack_of_the_same_name_alone() {
    // A stack called "pulse" without our label, no compose cluster, nodes
    // on the host: status pings the host's nodes, the rest do nothing.
    let dir = TempDir::new("runsh-foreign");
    let foreign = [("FAKE_STACK", "pulse"), ("FAKE_STACK_LABEL", "")];
    let (code, text, calls) = run_sh_on(&dir, &["status"], &foreign);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !calls.contains("docker exec"),
        "ran status in their task: {calls}"
    );
    assert!(
        text.contains("the stack 'pulse' is not pulse's") && text.contains("leaving it alone"),
        "{text}"
    );
    let sync_dir = dir.path().join("sync_dir");
    assert!(
        text.contains(&format!(
            "pinging the nodes registered in {}",
            sync_dir.display()
        )) && text.contains(&format!(
            "host pulse status --sync-dir {}",
            sync_dir.display()
        )),
        "{text}"
    );
    let (code, text, calls) = run_sh_on(&dir, &["down"], &foreign);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("nothing of pulse's is running"), "{text}");
    assert!(
        !calls.contains("stack rm") && !calls.contains(" down"),
        "{calls}"
    );
    let (code, text, calls) = run_sh_on(&dir, &["scale", "3"], &foreign);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("nothing to scale"), "{text}");
    assert!(
        !calls.contains("service scale") && !calls.contains(" up "),
        "{calls}"
    );
    let (code, text, calls) = run_sh_on(&dir, &["logs"], &foreign);
    assert_eq!(code, Some(0), "{text}");
    assert!(!calls.contains("service logs"), "{calls}");
    assert!(calls.contains("tail -n 20 -F"), "{calls}");
    let (code, text, _) = run_sh_on(&dir, &["status", "--stack"], &foreign);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("no stack of pulse's is called 'pulse'"),
        "{text}"
    );
    // Nor is a stack of ours deployed over theirs.
    let (code, text, calls) = run_sh_on(&dir, &["stack", "3", "-d"], &foreign);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("PULSE_STACK"), "{text}");
    assert!(
        !calls.contains("stack deploy") && !calls.contains("cargo"),
        "{calls}"
    );
}

#[test]
fn run_sh_names_the_cluster_it_acts_on_and_asks_when_both_run() {
    let dir = TempDir::new("runsh-which");
    let both = [
        ("FAKE_STACK", "pulse"),
        ("FAKE_STACK_LABEL", "1"),
        ("FAKE_COMPOSE", "1"),
    ];
    for verb in ["status", "down", "logs"] {
        let (code, text, calls) = run_sh_on(&dir, &[verb], &both);
        assert_eq!(code, Some(2), "{verb}: {text}");
        assert!(
            text.contains(&format!(
                "'./run.sh {verb} --compose' or './run.sh {verb} --stack'"
            )),
            "{verb}: {text}"
        );
        assert!(
            !calls.contains("docker exec")
                && !calls.contains("stack rm")
                && !calls.contains(" down")
                && !calls.contains("logs")
                && !calls.contains("tail"),
            "{verb} acted: {calls}"
        );
    }
    let (code, text, calls) = run_sh_on(&dir, &["scale", "4"], &both);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("'./run.sh scale 4 --stack'"), "{text}");
    assert!(!calls.contains("service scale"), "{calls}");

    let (code, text, calls) = run_sh_on(&dir, &["status", "--stack"], &both);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("status of the stack 'pulse', from inside its container name-of-task1"),
        "{text}"
    );
    assert!(calls.contains("docker exec task1 /pulse status"), "{calls}");
    let (code, text, calls) = run_sh_on(&dir, &["down", "--compose"], &both);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("taking down the compose project 'pulse'"),
        "{text}"
    );
    assert!(
        calls.contains(" down --remove-orphans") && !calls.contains("stack rm"),
        "{calls}"
    );

    // Only one of ours: it is named before anything is done to it.
    let stack = [("FAKE_STACK", "pulse"), ("FAKE_STACK_LABEL", "1")];
    let (code, text, calls) = run_sh_on(&dir, &["scale", "4"], &stack);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("scaling the stack 'pulse' (service pulse_node) to 4"),
        "{text}"
    );
    assert!(
        calls.contains("service scale --detach pulse_node=4"),
        "{calls}"
    );
    let (code, text, calls) = run_sh_on(&dir, &["down", "--compose"], &stack);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        !calls.contains(" down") && !calls.contains("stack rm"),
        "{calls}"
    );
    let compose = [("FAKE_COMPOSE", "1")];
    let (code, text, calls) = run_sh_on(&dir, &["status"], &compose);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "status of the compose project 'pulse', from inside its container name-of-compose1"
        ),
        "{text}"
    );
    assert!(
        calls.contains("docker exec compose1 /pulse status"),
        "{calls}"
    );
}

#[test]
fn run_sh_watch_says_it_builds_or_uses_the_static_binary() {
    let dir = TempDir::new("runsh-build");
    // Nothing built yet: a line says so before cargo starts.
    let (code, text, calls) = run_sh_on(&dir, &["watch", "--once"], &[]);
    assert_eq!(code, Some(0), "{text}");
    let said = text
        .find("run.sh: building pulse for this host first")
        .unwrap_or_else(|| panic!("no word before the build: {text}"));
    assert!(said < text.find("cargo ran").expect("cargo ran"), "{text}");
    assert!(calls.contains("cargo build --release"), "{calls}");
    assert!(text.contains("host pulse watch --log-file"), "{text}");
    // Built since: no word, and cargo only checks.
    let (code, text, _) = run_sh_on(&dir, &["watch", "--once"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("building"), "{text}");
    // `./run.sh build` made a static binary as new as the sources: it
    // runs here, and nothing is built.
    let musl = dir.path().join("target/x86_64-unknown-linux-musl/release");
    std::fs::create_dir_all(&musl).expect("musl dir");
    let static_bin = musl.join("pulse");
    std::fs::write(&static_bin, "#!/bin/sh\necho \"static pulse $*\"\n").expect("stub");
    let exec = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&static_bin, exec).expect("chmod");
    let (code, text, calls) = run_sh_on(&dir, &["watch", "--once"], &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("static pulse watch --log-file"), "{text}");
    assert!(!calls.contains("cargo"), "built anyway: {calls}");
}
