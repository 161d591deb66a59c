//! Mixed clusters: real Elixir nodes ping pulse through EPMD, and pulse joins
//! the recipe's own Elixir nodes (tests/fixtures/recipe_node) in one registry.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::util::erlang::{Epmd, StartedEpmd, output_within};
use crate::util::{
    Node, TempDir, free_port, parse_status, require, split_log_line, wait_for, wait_until,
};

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

pub(crate) fn pulse_with_epmd(
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
pub(crate) fn start_recipe_node(dir: &TempDir, name: &str, epmd_port: u16) -> Node {
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
    // The shared log file holds lines of both kinds, each in the seed
    // format (Logger writes its file a moment after its console).
    let all_true_in_log = |name: &str| {
        std::fs::read_to_string(dir.log_file()).is_ok_and(|log| {
            log.lines().any(|l| {
                parse_status(l, name).is_some_and(|s| s.len() == 4 && s.values().all(|v| *v))
            })
        })
    };
    let ok = wait_until(Duration::from_secs(10), || {
        all.iter().all(|n| all_true_in_log(n))
    });
    let log = std::fs::read_to_string(dir.log_file()).unwrap_or_default();
    assert!(
        ok,
        "not every node has an all-true line in the log file:\n{log}"
    );

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
    // Once, or again when the reason changes kind (reset while it dies,
    // then no longer in EPMD).
    assert!(
        p1.count_containing("node e2@127.0.0.1 is down") >= 1,
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

/// A recipe node's status lines, parsed.
fn status_lines(node: &Node) -> Vec<std::collections::BTreeMap<String, bool>> {
    node.output()
        .iter()
        .filter_map(|l| parse_status(l, &node.name))
        .collect()
}

/// Whether every name a node ever listed is one of `names`: no temporary
/// file or other stray entry ever showed as a node.
fn listed_only(node: &Node, names: &[&str]) -> bool {
    status_lines(node)
        .iter()
        .all(|s| s.keys().all(|k| names.contains(&k.as_str())))
}

#[test]
fn pulse_started_before_epmd_registers_once_an_elixir_node_starts_it() {
    let test = "pulse_started_before_epmd_registers_once_an_elixir_node_starts_it";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("late-epmd");
    let port = free_port();
    let _epmd = StartedEpmd(port);
    let names = ["e1@127.0.0.1", "p1@127.0.0.1"];
    let p1 = pulse_with_epmd(&dir, names[1], "cookie", port, &["--interval", "300"]);
    wait_for("p1 to find no EPMD", Duration::from_secs(9), &[&p1], || {
        p1.count_containing("Erlang nodes cannot find this node until it registers") == 1
    });
    // The recipe's node starts EPMD itself, as on a fresh host.
    let e1 = start_recipe_node(&dir, names[0], port);
    wait_for(
        "two lines from e1",
        Duration::from_secs(60),
        &[&e1, &p1],
        || status_lines(&e1).len() >= 2,
    );
    let second = &status_lines(&e1)[1];
    assert_eq!(
        second.get(names[1]),
        Some(&true),
        "{}{}",
        e1.dump(),
        p1.dump()
    );
    assert_eq!(
        p1.count_containing("registered p1 with EPMD"),
        1,
        "{}",
        p1.dump()
    );
    wait_for(
        "p1 to list both",
        Duration::from_secs(9),
        &[&e1, &p1],
        || p1.sees_all_alive(&names),
    );
    assert!(listed_only(&e1, &names), "{}", e1.dump());
}

#[test]
fn pulse_registers_again_when_epmd_restarts() {
    let test = "pulse_registers_again_when_epmd_restarts";
    if !require("elixir", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("epmd-restart");
    let epmd = Epmd::start();
    let port = epmd.1;
    let p1 = pulse_with_epmd(&dir, "p1@127.0.0.1", "cookie", port, &["--interval", "300"]);
    wait_for("p1 registered", Duration::from_secs(9), &[&p1], || {
        p1.count_containing("registered p1 with EPMD") == 1
    });
    let ping = "IO.inspect Node.ping(:\"p1@127.0.0.1\")";
    assert_eq!(
        elixir_eval("x1@127.0.0.1", "cookie", port, "", ping),
        ":pong"
    );
    let _epmd = epmd.restart_under(&p1, "p1");
    assert_eq!(
        elixir_eval("x2@127.0.0.1", "cookie", port, "", ping),
        ":pong"
    );
    // Each change said once: the failed attempts in between said nothing.
    assert_eq!(p1.count_containing("no EPMD at"), 0, "{}", p1.dump());
    assert_eq!(
        p1.count_containing("closed our registration"),
        1,
        "{}",
        p1.dump()
    );
}

#[test]
fn recipe_nodes_killed_restarted_or_frozen_keep_every_live_entry() {
    let test = "recipe_nodes_killed_restarted_or_frozen_keep_every_live_entry";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("frozen");
    let sd = dir.sync_dir();
    let epmd = Epmd::start();
    let names = [
        "e1@127.0.0.1",
        "e2@127.0.0.1",
        "e3@127.0.0.1",
        "p1@127.0.0.1",
        "p2@127.0.0.1",
    ];
    let mut e1 = start_recipe_node(&dir, names[0], epmd.1);
    let e2 = start_recipe_node(&dir, names[1], epmd.1);
    let e3 = start_recipe_node(&dir, names[2], epmd.1);
    let p1 = pulse_with_epmd(&dir, names[3], "cookie", epmd.1, &[]);
    let p2 = pulse_with_epmd(&dir, names[4], "cookie", epmd.1, &[]);
    let everyone_sees_all = |nodes: &[&Node]| nodes.iter().all(|n| n.sees_all_alive(&names));
    wait_for(
        "all to list all",
        Duration::from_secs(60),
        &[&e1, &e2, &e3, &p1, &p2],
        || everyone_sees_all(&[&e1, &e2, &e3, &p1, &p2]),
    );

    // Killed and started again under its name.
    e1.signal("KILL");
    e1.wait_exit(Duration::from_secs(5));
    let e1 = start_recipe_node(&dir, names[0], epmd.1);
    wait_for(
        "all to list all again",
        Duration::from_secs(60),
        &[&e1, &e2, &e3, &p1, &p2],
        || everyone_sees_all(&[&e1, &e2, &e3, &p1, &p2]),
    );

    // Frozen for 10 s: the others' rounds stall on it, their heartbeats
    // stand still, yet they answer, so no live node's file is removed.
    e2.signal("STOP");
    let frozen_until = std::time::Instant::now() + Duration::from_secs(10);
    let live = [names[0], names[2], names[3], names[4]];
    while std::time::Instant::now() < frozen_until {
        let present = crate::util::registry_names(&sd);
        let missing: Vec<&&str> = live
            .iter()
            .filter(|n| !present.iter().any(|p| p == *n))
            .collect();
        if !missing.is_empty() {
            e2.signal("CONT");
            panic!(
                "live entries {missing:?} removed:\n{}{}{}{}",
                e1.dump(),
                e3.dump(),
                p1.dump(),
                p2.dump()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    e2.signal("CONT");
    for node in [&p1, &p2] {
        for name in live {
            assert_eq!(
                node.count_containing(&format!("node {name} expired")),
                0,
                "{}",
                node.dump()
            );
        }
    }
    wait_for(
        "all to list all after the thaw",
        Duration::from_secs(60),
        &[&e1, &e2, &e3, &p1, &p2],
        || everyone_sees_all(&[&e1, &e2, &e3, &p1, &p2]),
    );
    for node in [&e1, &e2, &e3] {
        assert!(listed_only(node, &names), "{}", node.dump());
    }
}

#[test]
fn five_recipe_and_six_pulse_nodes_for_three_minutes() {
    let test = "five_recipe_and_six_pulse_nodes_for_three_minutes";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("eleven");
    let epmd = Epmd::start();
    let names: Vec<String> = (1..=5)
        .map(|i| format!("e{i}@127.0.0.1"))
        .chain((1..=6).map(|i| format!("p{i}@127.0.0.1")))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let recipe: Vec<Node> = names[..5]
        .iter()
        .map(|n| start_recipe_node(&dir, n, epmd.1))
        .collect();
    let pulse: Vec<Node> = names[5..]
        .iter()
        .map(|n| pulse_with_epmd(&dir, n, "cookie", epmd.1, &[]))
        .collect();
    let all: Vec<&Node> = recipe.iter().chain(&pulse).collect();
    wait_for(
        "all 11 to list all 11",
        Duration::from_secs(120),
        &all,
        || all.iter().all(|n| n.sees_all_alive(&names)),
    );
    let from: Vec<usize> = pulse.iter().map(|n| status_lines(n).len()).collect();
    let end = std::time::Instant::now() + Duration::from_secs(180);
    while std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_secs(1));
        for node in &recipe {
            assert!(listed_only(node, &names), "{}", node.dump());
        }
    }
    for (node, from) in pulse.iter().zip(from) {
        let lines = status_lines(node);
        assert!(lines.len() >= from + 170, "{}", node.dump());
        for line in &lines[from..] {
            assert!(
                line.len() == 11 && line.values().all(|alive| *alive),
                "a line without all 11 true: {line:?}\n{}",
                node.dump()
            );
        }
    }
}

#[test]
fn a_live_recipe_nodes_name_is_taken_even_without_epmd_registration() {
    let test = "a_live_recipe_nodes_name_is_taken_even_without_epmd_registration";
    if !require("elixir", test) || !require("mix", test) || !require("epmd", test) {
        return;
    }
    let dir = TempDir::new("taken");
    let epmd = Epmd::start();
    let name = "e1@127.0.0.1";
    let e1 = start_recipe_node(&dir, name, epmd.1);
    wait_for("e1's first line", Duration::from_secs(60), &[&e1], || {
        !status_lines(&e1).is_empty()
    });
    let entry = dir.sync_dir().join(name);
    let age = || {
        std::fs::metadata(&entry)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
    };
    let off = ["--epmd", "off", "--ttl", "2000"];
    // Fresh file: taken. Frozen, its file goes stale, but EPMD still knows it.
    for (frozen, why) in [(false, "written"), (true, "EPMD at 127.0.0.1")] {
        if frozen {
            e1.signal("STOP");
            wait_for(
                "e1's entry to go stale",
                Duration::from_secs(10),
                &[&e1],
                || age().is_some_and(|a| a > Duration::from_secs(3)),
            );
        }
        let mut impostor = pulse_with_epmd(&dir, name, "cookie", epmd.1, &off);
        let status = impostor.wait_exit(Duration::from_secs(10));
        if frozen {
            e1.signal("CONT");
        }
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(1),
            "{}",
            impostor.dump()
        );
        assert_eq!(
            impostor.count_containing(&format!("the name {name} is taken")),
            1,
            "{}",
            impostor.dump()
        );
        assert_eq!(impostor.count_containing(why), 1, "{}", impostor.dump());
        // The recipe node's file is untouched: still its text, not a record.
        // The recipe writes it in place (truncate, then write), so a read
        // can catch it empty: wait for a read that finds text.
        let mut text = String::new();
        wait_for(
            "e1's entry to hold text",
            Duration::from_secs(5),
            &[&e1],
            || {
                text = std::fs::read_to_string(&entry).unwrap_or_default();
                !text.is_empty()
            },
        );
        assert!(text.starts_with("{{"), "{text:?}");
    }
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

    // Logger writes the same line to the console and the shared file; the
    // file's copy may come a little later than the console's.
    let mut log = String::new();
    let all_true_in_log = |log: &str, name: &str| {
        log.lines().any(|l| {
            split_log_line(l).is_some_and(|(level, _)| level == "info")
                && parse_status(l, name).is_some_and(|s| s.len() == 2 && s.values().all(|v| *v))
        })
    };
    let ok = wait_until(Duration::from_secs(10), || {
        log = std::fs::read_to_string(dir.log_file()).unwrap_or_default();
        all.iter().all(|name| all_true_in_log(&log, name))
    });
    assert!(
        ok,
        "no all-true [info] line from each of {all:?} in the log file:\n{log}"
    );
}
