//! A node that starts is known at once: its first pings reach every node,
//! and each logs `joined` for it then, not at its next round.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{Node, TempDir, parse_status, pulse_cmd, wait_for};

/// A pulse node whose log lines carry UTC times, so they compare with the
/// test's own clock.
fn start(dir: &TempDir, name: &str, interval: &str) -> Node {
    let mut cmd = pulse_cmd(dir);
    cmd.env("TZ", "UTC")
        .args(["--name", name, "--cookie", "c", "--interval", interval])
        .args(["--epmd", "off", "--sync-dir"])
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    Node::spawn(name, cmd)
}

/// Milliseconds since midnight UTC, now.
fn ms_of_day_now() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    (ms % 86_400_000) as i64
}

/// Milliseconds since midnight of a log line's `HH:MM:SS.mmm` stamp.
fn stamp(line: &str) -> Option<i64> {
    let t = line.get(..12)?;
    let field = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    Some(((field(0..2)? * 60 + field(3..5)?) * 60 + field(6..8)?) * 1000 + field(9..12)?)
}

/// From `from` to `to`, both times of day in ms, across midnight too.
fn since(from: i64, to: i64) -> i64 {
    let d = (to - from).rem_euclid(86_400_000);
    // A stamp just before `from` (the same millisecond, rounded) is 0.
    if d > 86_000_000 { 0 } else { d }
}

#[test]
fn a_new_node_is_known_by_twenty_others_at_once() {
    const N: usize = 20;
    let dir = TempDir::new("join");
    // A long interval: a node that waited for its next round would log the
    // join up to a second late.
    let interval = "1000";
    let names: Vec<String> = (1..=N).map(|i| format!("j{i}@127.0.0.1")).collect();
    let nodes: Vec<Node> = names.iter().map(|n| start(&dir, n, interval)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for("all twenty true", Duration::from_secs(60), &refs, || {
        nodes.iter().all(|n| n.sees_all_alive(&all))
    });
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    let new = "jnew@127.0.0.1";
    let started = ms_of_day_now();
    let joiner = start(&dir, new, interval);
    let joined = format!("node {new} joined");
    let mut with_joiner = refs.clone();
    with_joiner.push(&joiner);
    let mut everyone = all.clone();
    everyone.push(new);
    // Every node's next status line after its `joined` lists the new node.
    let listed_after_join = |n: &Node, mark: usize| {
        let out = n.output();
        let since = out.get(mark..).unwrap_or_default();
        let at = since.iter().position(|l| l.contains(&joined))?;
        since[at..]
            .iter()
            .find_map(|l| parse_status(l, &n.name))
            .map(|s| s.get(new).copied())
    };
    wait_for(
        "every node's status line after `joined`",
        Duration::from_secs(20),
        &with_joiner,
        || {
            nodes
                .iter()
                .zip(&marks)
                .all(|(n, &m)| listed_after_join(n, m).is_some())
                && joiner.sees_all_alive(&everyone)
        },
    );
    let dumps = crate::util::dump_all(&with_joiner);
    let mut latencies = Vec::new();
    for (n, &mark) in nodes.iter().zip(&marks) {
        let out = n.output();
        let lines: Vec<&String> = out[mark..].iter().filter(|l| l.contains(&joined)).collect();
        assert_eq!(lines.len(), 1, "one `joined` on {}\n{dumps}", n.name);
        latencies.push(stamp(lines[0]).map(|t| since(started, t)));
    }
    let latencies: Vec<i64> = latencies.into_iter().map(|l| l.expect("a stamp")).collect();
    let max = latencies.iter().max().copied().unwrap_or_default();
    let listed: Vec<Option<bool>> = nodes
        .iter()
        .zip(&marks)
        .map(|(n, &m)| listed_after_join(n, m).flatten())
        .collect();
    let trues = listed.iter().filter(|l| **l == Some(true)).count();
    eprintln!(
        "N = {N}: from the new node's exec to `joined` on each other node (ms): {latencies:?}; \
         max {max} ms; next status line lists it on {} of {N}, true on {trues}",
        listed.iter().filter(|l| l.is_some()).count()
    );
    assert!(listed.iter().all(Option::is_some), "{listed:?}\n{dumps}");
    // 100 ms is the target on an idle machine (process start included);
    // the bound leaves room for a loaded one and is still well under the
    // interval a round would take.
    assert!(max < 500, "joined after {max} ms: {latencies:?}\n{dumps}");
}
