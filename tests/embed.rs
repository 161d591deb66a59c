//! The library as an embedder uses it: nodes started from code in this
//! process, their events and members read through the `Node` handle, and a
//! start that fails halfway leaving nothing running.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use pulse::EpmdMode;
use pulse::internals::{port_please, register};
use pulse::{Config, Event, Node};

use crate::util::erlang::Epmd;
use crate::util::{TempDir, free_port, registry_names, require, wait_until};

fn config(dir: &TempDir, name: &str) -> Config {
    let mut config = Config::for_node(name, "embed-cookie").expect("a valid config");
    config.sync_dir = dir.sync_dir();
    config.interval = Duration::from_millis(200);
    config.timeout = Duration::from_millis(150);
    config.ttl = Duration::from_secs(2);
    config.epmd = EpmdMode::Off;
    config
}

#[test]
fn an_embedder_starts_nodes_reads_events_and_members_and_stops_them() {
    let dir = TempDir::new("embed");
    let a = Node::start(&config(&dir, "m1@127.0.0.1")).expect("start m1");
    let b = Node::start(&config(&dir, "m2@127.0.0.1")).expect("start m2");
    let events = a.events();

    let both_alive = wait_until(Duration::from_secs(10), || {
        let members = a.members();
        members.len() == 2 && members.iter().all(|m| m.alive)
    });
    assert!(both_alive, "m1's members: {:?}", a.members());
    let names: Vec<String> = a.members().iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names, ["m1@127.0.0.1", "m2@127.0.0.1"]);

    b.shutdown();
    let mut seen = Vec::new();
    let left = loop {
        match events.recv_timeout(Duration::from_secs(10)) {
            Ok(Event::Left(name)) => break name,
            Ok(other) => seen.push(other),
            Err(e) => panic!("no leave event ({e}); events so far: {seen:?}"),
        }
    };
    assert_eq!(left.to_string(), "m2@127.0.0.1");
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::Joined(n) if n.to_string() == "m2@127.0.0.1")),
        "no join of m2 before its leave: {seen:?}"
    );
    let gone = wait_until(Duration::from_secs(5), || {
        a.members()
            .iter()
            .all(|m| m.name.to_string() != "m2@127.0.0.1")
    });
    assert!(gone, "m2 still listed after its leave: {:?}", a.members());
    a.shutdown();
}

#[test]
fn a_config_from_code_is_the_commands_default() {
    let config = Config::for_node("k1@127.0.0.1", "c").expect("a valid config");
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.timeout, Duration::from_millis(500));
    assert_eq!(config.sync_dir, std::path::PathBuf::from("/tmp/sync_dir/"));
    assert_eq!(config.ip.to_string(), "127.0.0.1");
    let bad = Config::for_node("no-at-sign", "c").expect_err("a bad name");
    assert!(matches!(bad, pulse::ConfigError::Name(..)), "{bad}");
    assert!(bad.to_string().contains("no-at-sign"), "{bad}");
}

/// Names of this process's threads that belong to a node (`pulse-*`).
fn node_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|comm| comm.trim_end().to_string())
        .filter(|comm| comm.starts_with("pulse-"))
        .collect()
}

/// Starts a node that must fail, and checks that it left no thread behind
/// and no name in the EPMD at `epmd` (none listening there counts).
fn fails_and_leaves_nothing(config: &Config, epmd: SocketAddr, what: &str) -> pulse::Error {
    let Err(e) = Node::start(config) else {
        panic!("{what}: the node started");
    };
    let mut left = node_threads();
    let none = wait_until(Duration::from_millis(500), || {
        left = node_threads();
        left.is_empty()
    });
    assert!(none, "{what} ({e}): threads left running: {left:?}");
    let listed = port_please(epmd, config.name.alive(), Duration::from_secs(2));
    assert!(
        !matches!(listed, Ok(Some(_))),
        "{what} ({e}): EPMD at {epmd} still lists {}: {listed:?}",
        config.name
    );
    e
}

/// The test proper, run alone in a process of its own by
/// [`a_start_that_fails_late_leaves_no_thread_and_no_name`]: the other
/// tests' nodes run threads of the same names in this one.
#[test]
#[ignore = "run alone in a process of its own by a_start_that_fails_late_leaves_no_thread_and_no_name"]
fn a_start_that_fails_late_alone() {
    let test = "a_start_that_fails_late_alone";
    if !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("late-failure");
    let epmd = Epmd::start();
    let at = SocketAddr::from(([127, 0, 0, 1], epmd.1));

    // DNS mode: EPMD knows us (registered, or served by us) before the DNS
    // thread's set-up finds that its name server cannot be asked.
    let serve_at = free_port();
    for (mode, port, epmd_at) in [
        (EpmdMode::Auto, epmd.1, at),
        (
            EpmdMode::Serve,
            serve_at,
            SocketAddr::from(([127, 0, 0, 1], serve_at)),
        ),
    ] {
        let mut config = config(&dir, "late1@127.0.0.1");
        config.epmd = mode;
        config.epmd_port = port;
        config.dns = Some("tasks.pulse".parse().expect("a DNS name"));
        config.dns_server = Some(SocketAddr::from(([0, 0, 0, 0], 53)));
        let e = fails_and_leaves_nothing(&config, epmd_at, &format!("dns, --epmd {mode:?}"));
        assert!(matches!(e, pulse::Error::Dns(_)), "{e}");
        assert!(e.to_string().contains("--dns-server 0.0.0.0:53"), "{e}");
    }

    // Directory mode: the entry is claimed before EPMD refuses the name
    // (an Erlang node holds it there); the entry goes again.
    let held = register(at, "late2", 40999, Duration::from_secs(2)).expect("register late2");
    let mut config = config(&dir, "late2@127.0.0.1");
    config.epmd = EpmdMode::Auto;
    config.epmd_port = epmd.1;
    let e = Node::start(&config).err().expect("the name is EPMD's");
    assert!(matches!(e, pulse::Error::Epmd(_)), "{e}");
    drop(held);
    let mut left = node_threads();
    let none = wait_until(Duration::from_millis(500), || {
        left = node_threads();
        left.is_empty()
    });
    assert!(none, "dir ({e}): threads left running: {left:?}");
    assert_eq!(
        registry_names(&dir.sync_dir()),
        Vec::<String>::new(),
        "dir ({e}): our entry is still there"
    );
}

#[test]
fn a_start_that_fails_late_leaves_no_thread_and_no_name() {
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            "embed::a_start_that_fails_late_alone",
            "--exact",
            "--ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .output()
        .expect("run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the test did not run:\n{text}");
}
