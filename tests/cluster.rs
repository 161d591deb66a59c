//! Nodes together: the classic start, leaving, dying, expiring, duplicate
//! names, the shared log file and `pulse status`.

use std::time::{Duration, Instant};

use crate::util::{
    Node, TempDir, parse_status, pulse_cmd, registered_addr, registry_names, split_log_line,
    wait_for, wait_until,
};

/// `HH:MM:SS.mmm [info] <line>` exactly.
fn is_log_line_of(line: &str, want: &str) -> bool {
    split_log_line(line) == Some(("info", want))
}

#[test]
fn two_nodes_list_each_other_within_two_intervals() {
    let dir = TempDir::new("classic");
    let a1 = Node::start(&dir, "a1@127.0.0.1", "cookie", &["--interval", "500"]);
    let a2 = Node::start(&dir, "a2@127.0.0.1", "cookie", &["--interval", "500"]);
    let both = "[\"a1@127.0.0.1\": true, \"a2@127.0.0.1\": true]";
    let start = Instant::now();
    let ok = wait_until(Duration::from_secs(15), || {
        [&a1, &a2].iter().all(|n| {
            let want = format!("{}{both}", n.name);
            n.output().iter().any(|l| is_log_line_of(l, &want))
        })
    });
    assert!(ok, "{}{}", a1.dump(), a2.dump());
    // Two intervals, plus process start-up on a busy machine.
    assert!(
        start.elapsed() < Duration::from_millis(2 * 500 + 2500),
        "took {:?}",
        start.elapsed()
    );
    let log = std::fs::read_to_string(dir.log_file()).expect("log file");
    for n in ["a1@127.0.0.1", "a2@127.0.0.1"] {
        let want = format!("{n}{both}");
        assert!(
            log.lines().any(|l| is_log_line_of(l, &want)),
            "log file lacks {want}:\n{log}"
        );
    }
}

#[test]
fn graceful_leave_kill_and_expiry() {
    let dir = TempDir::new("leave");
    let args = ["--interval", "300", "--ttl", "1500"];
    let names = ["b1@127.0.0.1", "b2@127.0.0.1", "b3@127.0.0.1"];
    let b1 = Node::start(&dir, names[0], "c", &args);
    let mut b2 = Node::start(&dir, names[1], "c", &args);
    let b3 = Node::start(&dir, names[2], "c", &args);
    let ok = wait_until(Duration::from_secs(15), || {
        [&b1, &b2, &b3].iter().all(|n| n.sees_all_alive(&names))
    });
    assert!(ok, "{}{}{}", b1.dump(), b2.dump(), b3.dump());

    // SIGTERM: unregister, say so, exit 0 within a second.
    b2.signal("TERM");
    let status = b2.wait_exit(Duration::from_secs(1));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", b2.dump());
    assert!(
        b2.output()
            .iter()
            .any(|l| l.ends_with("node b2@127.0.0.1 left: registry entry removed, closing links")),
        "{}",
        b2.dump()
    );
    assert!(!registry_names(&dir.sync_dir()).contains(&names[1].to_string()));
    let ok = wait_until(Duration::from_secs(9), || {
        [&b1, &b3].iter().all(|n| {
            n.count_containing("node b2@127.0.0.1 left") == 1
                && n.sees_all_alive(&[names[0], names[2]])
        })
    });
    assert!(ok, "{}{}", b1.dump(), b3.dump());

    // kill -9: false at the next round, then expired after the TTL.
    let killed_at = Instant::now();
    let mark = b1.output().len();
    drop(b3);
    let ok = wait_until(Duration::from_secs(6), || {
        b1.last_status()
            .is_some_and(|s| s.get(names[2]) == Some(&false))
    });
    assert!(ok, "{}", b1.dump());
    assert!(
        b1.count_containing_since(mark, "node b3@127.0.0.1 is down") == 1,
        "{}",
        b1.dump()
    );
    let ok = wait_until(Duration::from_secs(15), || {
        b1.count_containing("node b3@127.0.0.1 expired") == 1
            && b1.sees_all_alive(&[names[0]])
            && registry_names(&dir.sync_dir()) == [names[0]]
    });
    assert!(ok, "{}", b1.dump());
    // The TTL counts from the last heartbeat and answer b1 saw, which may
    // be up to one interval before the kill.
    assert!(
        killed_at.elapsed() >= Duration::from_millis(1500 - 300),
        "expired before the TTL"
    );
}

#[test]
fn a_duplicate_name_is_refused_and_the_first_node_is_untouched() {
    let dir = TempDir::new("dup");
    let first = Node::start(&dir, "d1@127.0.0.1", "c", &["--interval", "300"]);
    assert!(
        wait_until(Duration::from_secs(9), || first
            .sees_all_alive(&["d1@127.0.0.1"])),
        "{}",
        first.dump()
    );
    let addr = registered_addr(&dir.sync_dir(), "d1@127.0.0.1");

    // Same name, even with another cookie: refused.
    for cookie in ["c", "other"] {
        let mut second = Node::start(&dir, "d1@127.0.0.1", cookie, &["--interval", "300"]);
        let status = second.wait_exit(Duration::from_secs(3));
        assert_eq!(status.and_then(|s| s.code()), Some(1), "{}", second.dump());
        assert!(
            second.count_containing("the name d1@127.0.0.1 is taken") == 1,
            "{}",
            second.dump()
        );
    }
    let lines_before = first.output().len();
    wait_for("d1 to go on", Duration::from_secs(6), &[&first], || {
        first.output().len() > lines_before + 1
    });
    assert!(first.sees_all_alive(&["d1@127.0.0.1"]), "{}", first.dump());
    assert_eq!(
        registered_addr(&dir.sync_dir(), "d1@127.0.0.1"),
        addr,
        "the record now points elsewhere"
    );
}

#[test]
fn a_stale_record_under_our_name_is_taken_over() {
    let dir = TempDir::new("stale");
    // Nothing listens at this address any more.
    crate::util::write_record(
        &dir.sync_dir(),
        "s1@127.0.0.1",
        &format!("127.0.0.1:{}", crate::util::free_port()),
    );
    let node = Node::start(&dir, "s1@127.0.0.1", "c", &["--interval", "300"]);
    assert!(
        wait_until(Duration::from_secs(9), || node
            .sees_all_alive(&["s1@127.0.0.1"])),
        "{}",
        node.dump()
    );
}

#[test]
fn ten_nodes_share_one_log_file_without_torn_lines() {
    let dir = TempDir::new("shared");
    let names: Vec<String> = (1..=10)
        .map(|i| format!("l{i}@127.0.0.{}", i + 10))
        .collect();
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", &["--interval", "200"]))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let ok = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| n.sees_all_alive(&refs))
    });
    assert!(ok, "{}", nodes.iter().map(Node::dump).collect::<String>());
    // Let them share the file for ten seconds (a duration under test, not a
    // condition to wait for).
    std::thread::sleep(Duration::from_secs(10));
    for n in &nodes {
        n.signal("TERM");
    }
    // Read once every line is written: a read during an append may see
    // part of it, torn or not.
    for n in &mut nodes {
        let exit = n.wait_exit(Duration::from_secs(5));
        assert!(exit.is_some(), "{}", n.dump());
    }
    let log = std::fs::read_to_string(dir.log_file()).expect("log file");
    let mut status_lines = 0;
    for line in log.lines() {
        let (_, message) =
            split_log_line(line).unwrap_or_else(|| panic!("torn or garbled line: {line:?}"));
        if let Some(name) = names.iter().find(|n| message.starts_with(&format!("{n}["))) {
            assert!(
                parse_status(line, name).is_some(),
                "bad status line: {line:?}"
            );
            status_lines += 1;
        }
    }
    // Ten nodes, five lines a second each, for over ten seconds.
    assert!(status_lines >= 10 * 45, "only {status_lines} status lines");
}

#[test]
fn status_command_reports_and_sets_the_exit_code() {
    let dir = TempDir::new("status");
    let a = Node::start(&dir, "st1@127.0.0.1", "c", &["--interval", "300"]);
    let b = Node::start(&dir, "st2@127.0.0.1", "c", &["--interval", "300"]);
    let names = ["st1@127.0.0.1", "st2@127.0.0.1"];
    wait_for(
        "both to see both",
        Duration::from_secs(12),
        &[&a, &b],
        || a.sees_all_alive(&names) && b.sees_all_alive(&names),
    );
    let status = |cookie: &str| {
        pulse_cmd(&dir)
            .args(["status", "--ip", "127.0.0.1", "--cookie", cookie])
            .arg("--sync-dir")
            .arg(dir.sync_dir())
            .output()
            .expect("run status")
    };
    let out = status("c");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .next()
            .is_some_and(|h| h.starts_with("NAME") && h.contains("RTT") && h.contains("AGE"))
    );
    for n in names {
        let row = text
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("no row for {n}:\n{text}"));
        assert!(row.contains(" true "), "{row}");
        assert!(row.contains("ms"), "{row}");
    }
    // The wrong cookie: every node is down, exit 1.
    let out = status("wrong");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("bad cookie"));
    // One node killed: exit 1 while its record is there.
    drop(b);
    let out = status("c");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("st2@127.0.0.1") && l.contains(" false ")),
        "{text}"
    );
}
