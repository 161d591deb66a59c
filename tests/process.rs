//! The process around a node: `pulse health` as a container's health check
//! runs it, leaving on a signal (and a second signal while leaving), and
//! what a failed wait says.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use crate::util::{
    Node, TempDir, pulse_cmd, registry_names, stat_fields, thread_stats, wait_for, write_record,
};

/// `pulse health ARGS --cookie COOKIE` on the dir's registry.
fn health(dir: &TempDir, cookie: &str, args: &[&str]) -> Output {
    pulse_cmd(dir)
        .arg("health")
        .args(args)
        .args(["--cookie", cookie, "--epmd", "off", "--sync-dir"])
        .arg(dir.sync_dir())
        .output()
        .expect("run pulse health")
}

/// Exit code and stderr of a finished command, for assertions.
fn code_and_stderr(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn health_is_0_for_a_live_node_by_name_or_address_and_1_otherwise() {
    let dir = TempDir::new("health");
    let name = "hc1@127.0.0.61";
    let node = Node::start(
        &dir,
        name,
        "c",
        &["--interval", "300", "--epmd", "off", "--ip", "127.0.0.61"],
    );
    wait_for("hc1 alive", Duration::from_secs(9), &[&node], || {
        node.sees_all_alive(&[name])
    });
    let check = |cookie: &str, args: &[&str], want: (Option<i32>, &str)| {
        let (code, err) = code_and_stderr(&health(&dir, cookie, args));
        assert!(
            code == want.0 && err.contains(want.1),
            "health {args:?} with cookie {cookie}: exit {code:?}, stderr {err:?}; \
             wanted exit {:?} and {:?}\n{}",
            want.0,
            want.1,
            node.dump()
        );
        if want.0 == Some(0) {
            assert_eq!(err, "", "a healthy node's check prints nothing");
        }
    };
    // Found by --name, and by this host's address (--ip) alone.
    check("c", &["--name", name], (Some(0), ""));
    check("c", &["--ip", "127.0.0.61"], (Some(0), ""));
    // As the image's HEALTHCHECK runs it: no flags, all from the
    // environment (there the address is the container's own).
    let bare = pulse_cmd(&dir)
        .arg("health")
        .env("PULSE_IP", "127.0.0.61")
        .env("PULSE_COOKIE", "c")
        .env("PULSE_EPMD", "off")
        .env("PULSE_SYNC_DIR", dir.sync_dir())
        .output()
        .expect("run pulse health");
    assert_eq!(
        code_and_stderr(&bare),
        (Some(0), String::new()),
        "{}",
        node.dump()
    );
    // The wrong cookie: the node answers, but not as one of ours.
    check(
        "other",
        &["--name", name],
        (Some(1), "hc1@127.0.0.61 is down: bad cookie"),
    );
    // Nothing registered for this host, or the name.
    check(
        "c",
        &["--ip", "127.0.0.62"],
        (Some(1), "no registered node for this host (127.0.0.62)"),
    );
    check(
        "c",
        &["--name", "hc9@127.0.0.61"],
        (Some(1), "no registered node"),
    );
    // Two records on one address: the address alone cannot tell.
    write_record(&dir.sync_dir(), "hc2@127.0.0.61", "127.0.0.61:1");
    check(
        "c",
        &["--ip", "127.0.0.61"],
        (Some(1), "2 registered nodes on 127.0.0.61: give --name"),
    );
    check("c", &["--name", name], (Some(0), ""));
    // Killed without a word, its record left behind: not alive.
    node.signal("KILL");
    wait_for("hc1 to die", Duration::from_secs(5), &[&node], || {
        !node.is_running()
    });
    check(
        "c",
        &["--name", name],
        (Some(1), "hc1@127.0.0.61 is down: connection refused"),
    );
}

/// A pulse node on the dir's registry and log whose stdout nobody reads,
/// listing 20 entries with long names every 10 ms: its console pipe is
/// full within a second, and a leave then gives the console its 1 s grace.
fn node_with_a_blocked_console(dir: &TempDir, name: &str) -> Node {
    for i in 0..20 {
        let long = format!("{}{i:02}@127.0.0.1", "l".repeat(226));
        write_record(&dir.sync_dir(), &long, "127.0.0.1:1");
    }
    let mut cmd = pulse_cmd(dir);
    cmd.args(["--name", name, "--cookie", "c", "--epmd", "off"])
        .args(["--interval", "10", "--ttl", "600000", "--sync-dir"])
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    let node = Node::spawn_unread(name, cmd);
    // Far more than a pipe holds (64 KiB) has gone to the log.
    wait_for("512 KiB of log", Duration::from_secs(30), &[&node], || {
        std::fs::metadata(dir.log_file()).is_ok_and(|m| m.len() > 512 * 1024)
    });
    node
}

fn log_has(dir: &TempDir, needle: &str) -> bool {
    std::fs::read_to_string(dir.log_file()).is_ok_and(|log| log.contains(needle))
}

/// A leave is quick, except that it gives a console that reads slowly up
/// to 1 s to take the last lines. A second signal in that second ends the
/// node at once with 130: the first one's leave is in the log, so the
/// second comes after it, not merged with it.
#[test]
fn a_second_signal_while_leaving_exits_130_at_once() {
    for (first, second) in [("INT", "INT"), ("TERM", "TERM"), ("TERM", "INT")] {
        let dir = TempDir::new("second-signal");
        let name = "q1@127.0.0.1";
        let mut node = node_with_a_blocked_console(&dir, name);
        node.signal(first);
        wait_for(
            &format!("the leave after SIG{first}"),
            Duration::from_secs(5),
            &[&node],
            || log_has(&dir, "node q1@127.0.0.1 left"),
        );
        node.signal(second);
        let code = node
            .wait_exit(Duration::from_secs(5))
            .and_then(|s| s.code());
        assert_eq!(code, Some(130), "SIG{first}, SIG{second}\n{}", node.dump());
        assert!(
            !registry_names(&dir.sync_dir()).contains(&name.to_string()),
            "the leave removed no record\n{}",
            node.dump()
        );
    }
}

/// One signal while a peer that accepts and never answers holds a round
/// with a 15 s timeout: the node leaves at once all the same, exit 0.
#[test]
fn one_signal_leaves_at_once_whatever_a_hung_peer_holds() {
    let dir = TempDir::new("one-signal");
    let hung = TcpListener::bind("127.0.0.1:0").expect("bind");
    hung.set_nonblocking(true).expect("nonblocking");
    let addr = hung.local_addr().expect("addr");
    write_record(&dir.sync_dir(), "hung@127.0.0.1", &addr.to_string());
    let name = "q2@127.0.0.1";
    let mut node = Node::start(
        &dir,
        name,
        "c",
        &["--interval", "15000", "--timeout", "15000", "--epmd", "off"],
    );
    let mut held = Vec::new();
    wait_for(
        "the first round to dial the hung peer",
        Duration::from_secs(10),
        &[&node],
        || {
            held.extend(hung.accept().ok());
            !held.is_empty()
        },
    );
    node.signal("TERM");
    // Far less than the 15 s the round could wait.
    let code = node
        .wait_exit(Duration::from_secs(5))
        .and_then(|s| s.code());
    assert_eq!(code, Some(0), "{}", node.dump());
    assert_eq!(
        node.count_containing("node q2@127.0.0.1 left"),
        1,
        "{}",
        node.dump()
    );
    assert!(
        !registry_names(&dir.sync_dir()).contains(&name.to_string()),
        "{}",
        node.dump()
    );
    drop(held);
}

/// The helpers' own promise: a wait that fails says what it waited for,
/// whether each process still runs, everything each one printed, and the
/// registry each was pointed at.
#[test]
fn a_failed_wait_names_what_it_waited_for_and_dumps_every_node() {
    let dir = TempDir::new("dumps");
    write_record(&dir.sync_dir(), "r1@127.0.0.1", "127.0.0.1:1");
    let started = |word: &str| {
        let mut cmd = Command::new("sh");
        // Prints on both streams, then lives until killed on drop; the
        // arguments after the script only name the registry.
        cmd.arg("-c")
            .arg(format!(
                "echo {word}; echo {word}-on-stderr >&2; exec sleep 600"
            ))
            .arg("sh")
            .arg("--sync-dir")
            .arg(dir.sync_dir());
        Node::spawn(word, cmd)
    };
    let (a, b) = (started("alpha"), started("beta"));
    wait_for("both to print", Duration::from_secs(10), &[&a, &b], || {
        a.output().len() == 2 && b.output().len() == 2
    });
    b.signal("KILL");
    wait_for("beta to die", Duration::from_secs(5), &[&b], || {
        !b.is_running()
    });
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "a thing that never happens",
            Duration::from_millis(50),
            &[&a, &b],
            || false,
        )
    }));
    let message = failed
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .expect("a failed wait panics with a message");
    for part in [
        "timed out after 50ms waiting for a thing that never happens",
        &format!(
            "--- output of alpha (running; registry {}: [r1@127.0.0.1]) ---\n",
            dir.sync_dir().display()
        ),
        "\nalpha\n",
        "\nalpha-on-stderr\n",
        "--- output of beta (exited; registry ",
        "\nbeta\n",
        "\nbeta-on-stderr\n",
    ] {
        assert!(message.contains(part), "lacks {part:?}:\n{message}");
    }
}

/// The scheduling policy (`/proc` stat field 41) of every thread of `pid`,
/// by thread name.
fn thread_policies(pid: u32) -> Vec<(String, String)> {
    thread_stats(pid)
        .iter()
        .map(|(task, stat)| {
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            let fields = stat_fields(stat).unwrap_or_default();
            let policy = fields.get(41 - 3).copied().unwrap_or("?");
            (comm.trim().to_string(), policy.to_string())
        })
        .collect()
}

/// Every thread of a running node, links' readers included, runs under
/// SCHED_BATCH (policy 3): woken threads do not preempt their wakers.
#[test]
fn every_thread_of_a_node_runs_under_sched_batch() {
    let dir = TempDir::new("sched");
    let names = ["sb1@127.0.0.63", "sb2@127.0.0.64"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|name| Node::start(&dir, name, "c", &["--interval", "200", "--epmd", "off"]))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for(
        "both nodes to see both",
        Duration::from_secs(9),
        &refs,
        || nodes.iter().all(|n| n.sees_all_alive(&names)),
    );
    for node in &nodes {
        let policies = thread_policies(node.child.id());
        assert!(
            policies
                .iter()
                .any(|(comm, _)| comm.starts_with("pulse-in") || comm.starts_with("pulse-link")),
            "{}: no link reader among {policies:?}",
            node.name
        );
        assert!(
            policies.iter().all(|(_, policy)| policy == "3"),
            "{}: threads not under SCHED_BATCH (3): {policies:?}",
            node.name
        );
    }
}
