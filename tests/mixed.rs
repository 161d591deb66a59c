//! Mixed clusters: real Elixir nodes ping pulse through EPMD, and pulse joins
//! the recipe's own Elixir nodes (tests/fixtures/recipe_node) in one registry.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::erlang::{Epmd, output_within};
use crate::util::{Node, TempDir, parse_status, require, split_log_line, wait_until};

/// `elixir -e CODE` as node `name` with `cookie`, against the test's EPMD;
/// returns what it printed (an `elixir` still running after a minute is
/// killed).
fn elixir_eval(name: &str, cookie: &str, epmd_port: u16, extra_erl: &str, code: &str) -> String {
    let mut cmd = Command::new("elixir");
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("ERL_EPMD_ADDRESS", "127.0.0.1")
        .args(["--name", name, "--cookie", cookie])
        .args([
            "--erl",
            &format!("-kernel inet_dist_use_interface {{127,0,0,1}} {extra_erl}"),
        ])
        .args(["-e", code]);
    output_within(cmd, Duration::from_secs(60))
        .trim()
        .to_string()
}

pub fn pulse_with_epmd(
    dir: &TempDir,
    name: &str,
    cookie: &str,
    epmd_port: u16,
    extra: &[&str],
) -> Node {
    let mut cmd = crate::util::pulse_cmd(dir);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["--name", name, "--cookie", cookie])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file())
        .args(extra);
    Node::spawn(name, cmd)
}

#[test]
fn elixir_node_ping_gets_pong_only_with_the_cookie_and_while_running() {
    let test = "elixir_node_ping_gets_pong_only_with_the_cookie_and_while_running";
    if !require("elixir", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("iex");
    let epmd = Epmd::start();
    let mut node = pulse_with_epmd(
        &dir,
        "p1@127.0.0.1",
        "cookie",
        epmd.1,
        &["--interval", "300"],
    );
    let registered = wait_until(Duration::from_secs(9), || {
        node.count_containing("registered p1 with EPMD") == 1
    });
    assert!(registered, "{}", node.dump());

    let ping = "IO.inspect Node.ping(:\"p1@127.0.0.1\")";
    assert_eq!(
        elixir_eval("x1@127.0.0.1", "cookie", epmd.1, "", ping),
        ":pong",
        "{}",
        node.dump()
    );
    assert_eq!(
        elixir_eval("x2@127.0.0.1", "other", epmd.1, "", ping),
        ":pang",
        "{}",
        node.dump()
    );
    assert_eq!(
        node.count_containing("rejected x2@127.0.0.1"),
        1,
        "{}",
        node.dump()
    );

    // The connection an Erlang node holds stays up across many ticks: with
    // net_ticktime 4 the Erlang side drops a link silent for 4 s, so 10 s
    // with the link still listed proves pulse answers the ticks.
    let held = "Node.ping(:\"p1@127.0.0.1\"); Process.sleep(10_000); \
                IO.inspect {Node.list(:hidden), Node.ping(:\"p1@127.0.0.1\")}";
    let out = elixir_eval(
        "x3@127.0.0.1",
        "cookie",
        epmd.1,
        "-kernel net_ticktime 4",
        held,
    );
    assert_eq!(out, "{[:\"p1@127.0.0.1\"], :pong}", "{}", node.dump());

    node.signal("TERM");
    assert_eq!(
        node.wait_exit(Duration::from_secs(2))
            .and_then(|s| s.code()),
        Some(0),
        "{}",
        node.dump()
    );
    assert_eq!(
        elixir_eval("x4@127.0.0.1", "cookie", epmd.1, "", ping),
        ":pang",
        "{}",
        node.dump()
    );
}

/// The recipe's Elixir node from the fixture, killed on drop.
pub fn start_recipe_node(dir: &TempDir, name: &str, epmd_port: u16) -> Node {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recipe_node/run.sh");
    let mut cmd = Command::new(fixture);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("SYNC_DIR", dir.sync_dir())
        .env("LOG_FILE", dir.log_file())
        .env("INTERVAL_MS", "1000")
        .env("MIX_BUILD_PATH", dir.path().join("build"))
        .args([name, "cookie"]);
    Node::spawn(name, cmd)
}

#[test]
fn pulse_and_the_recipes_elixir_nodes_form_one_cluster() {
    let test = "pulse_and_the_recipes_elixir_nodes_form_one_cluster";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("mixed");
    let epmd = Epmd::start();
    let all = [
        "e1@127.0.0.1",
        "e2@127.0.0.1",
        "p1@127.0.0.1",
        "p2@127.0.0.1",
    ];
    let e1 = start_recipe_node(&dir, all[0], epmd.1);
    let e2 = start_recipe_node(&dir, all[1], epmd.1);
    let p1 = pulse_with_epmd(&dir, all[2], "cookie", epmd.1, &[]);
    let mut p2 = pulse_with_epmd(&dir, all[3], "cookie", epmd.1, &[]);
    let dump = |nodes: &[&Node]| nodes.iter().map(|n| n.dump()).collect::<String>();

    let ok = wait_until(Duration::from_secs(40), || {
        [&e1, &e2, &p1, &p2].iter().all(|n| n.sees_all_alive(&all))
    });
    assert!(ok, "{}", dump(&[&e1, &e2, &p1, &p2]));
    // The shared log file holds lines of both kinds, each in the seed format.
    let log = std::fs::read_to_string(dir.log_file()).expect("log file");
    for name in all {
        assert!(
            log.lines()
                .any(|l| parse_status(l, name)
                    .is_some_and(|s| s.len() == 4 && s.values().all(|v| *v))),
            "no all-true line from {name} in the log file:\n{log}"
        );
    }

    // A pulse node leaves gracefully, an Elixir node dies.
    p2.signal("TERM");
    assert_eq!(
        p2.wait_exit(Duration::from_secs(2)).and_then(|s| s.code()),
        Some(0),
        "{}",
        p2.dump()
    );
    drop(e2);
    let survivors_see_it = |n: &Node| {
        n.last_status().is_some_and(|s| {
            s.get(all[0]) == Some(&true)
                && s.get(all[2]) == Some(&true)
                && !s.contains_key(all[3])
                && s.get(all[1]) != Some(&true)
        })
    };
    let ok = wait_until(Duration::from_secs(15), || {
        survivors_see_it(&e1) && survivors_see_it(&p1)
    });
    assert!(ok, "{}", dump(&[&e1, &p1]));
    assert_eq!(
        p1.count_containing("node p2@127.0.0.1 left"),
        1,
        "{}",
        p1.dump()
    );
    assert!(
        p1.count_containing("node e2@127.0.0.1 is down") == 1,
        "{}",
        p1.dump()
    );
    // After the TTL pulse expires the dead Elixir node's file, and both
    // survivors stop listing it.
    let ok = wait_until(Duration::from_secs(15), || {
        [&e1, &p1]
            .iter()
            .all(|n| n.sees_all_alive(&[all[0], all[2]]))
    });
    assert!(ok, "{}", dump(&[&e1, &p1]));
    assert_eq!(
        p1.count_containing("node e2@127.0.0.1 expired"),
        1,
        "{}",
        p1.dump()
    );
}

/// `{{Y, M, D}, {h, m, s}}`, as `inspect(:calendar.universal_time())` writes
/// it, as (date, seconds of the day).
fn parse_calendar_tuple(text: &str) -> Option<([u32; 3], u32)> {
    let inner = text.strip_prefix("{{")?.strip_suffix("}}")?;
    let (date, time) = inner.split_once("}, {")?;
    let numbers = |s: &str| -> Option<Vec<u32>> {
        s.split(", ").map(|n| n.parse().ok()).collect::<Option<_>>()
    };
    let (d, t) = (numbers(date)?, numbers(time)?);
    let (&[y, mo, da], &[h, mi, se]) = (&d[..], &t[..]) else {
        return None;
    };
    Some(([y, mo, da], h * 3600 + mi * 60 + se))
}

#[test]
fn the_recipe_node_fixture_heartbeats_and_logs_as_the_recipe_shows() {
    let test = "the_recipe_node_fixture_heartbeats_and_logs_as_the_recipe_shows";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("fixture");
    let epmd = Epmd::start();
    let all = ["e1@127.0.0.1", "e2@127.0.0.1"];
    let e1 = start_recipe_node(&dir, all[0], epmd.1);
    let e2 = start_recipe_node(&dir, all[1], epmd.1);
    let dump = || format!("{}{}", e1.dump(), e2.dump());
    let ok = wait_until(Duration::from_secs(40), || {
        e1.sees_all_alive(&all) && e2.sees_all_alive(&all)
    });
    assert!(ok, "{}", dump());

    // The heartbeat is rewritten in place, so a read may catch it empty.
    let mut seen = String::new();
    let ok = wait_until(Duration::from_secs(5), || {
        seen = std::fs::read_to_string(dir.sync_dir().join(all[0])).unwrap_or_default();
        parse_calendar_tuple(&seen).is_some()
    });
    assert!(ok, "heartbeat file of {}: {seen:?}", all[0]);
    let (date, seconds) = parse_calendar_tuple(&seen).expect("parsed above");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let drift = (now % 86_400).abs_diff(u64::from(seconds));
    assert!(
        date[0] >= 2024 && (drift <= 5 || drift >= 86_400 - 5),
        "heartbeat {seen:?} is not the universal time now"
    );
    assert_eq!(
        std::fs::read_dir(dir.sync_dir()).expect("sync dir").count(),
        2,
        "one file per node, nothing else"
    );

    // Logger writes the same line to the console and the shared file.
    let log = std::fs::read_to_string(dir.log_file()).expect("log file");
    for name in all {
        assert!(
            log.lines().any(
                |l| split_log_line(l).is_some_and(|(level, _)| level == "info")
                    && parse_status(l, name)
                        .is_some_and(|s| s.len() == 2 && s.values().all(|v| *v))
            ),
            "no all-true [info] line from {name} in the log file:\n{log}"
        );
    }
}
