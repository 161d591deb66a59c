//! pulse beside real `erl` nodes of every OTP release [`otps`] finds
//! (Debian's OTP 25 and an OTP 27 in CI): EPMD started after pulse or
//! restarted under it, and a mixed cluster of pulse and both releases in
//! one registry, each `erl` node running the recipe's loop.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::erlang::{Epmd, Otp, Refresher, StartedEpmd, erl_command, erl_eval, otps};
use crate::util::{Node, TempDir, free_port, require, wait_for};

/// A pulse node on the dir's registry, registering with the EPMD on
/// `epmd_port`, at `interval` ms.
fn pulse(dir: &TempDir, name: &str, epmd_port: u16, interval: &str) -> Node {
    let mut cmd = crate::util::pulse_cmd(dir);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["--name", name, "--cookie", "c", "--interval", interval])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    Node::spawn(name, cmd)
}

/// `erl -eval 'net_adm:ping(P1)'` of `otp`, as node `name`: what a script
/// does on a fresh host (its `erl` starts EPMD when none answers).
fn ping_from_erl(otp: &Otp, name: &str, epmd_port: u16) -> String {
    erl_eval(
        otp,
        "-name",
        name,
        "c",
        epmd_port,
        &[],
        "io:format(\"~s~n\", [net_adm:ping('p1@127.0.0.1')]), halt().",
        Duration::from_secs(60),
    )
}

/// pulse starts where no EPMD runs; an `erl` started afterwards starts
/// EPMD itself and gets `pong` from pulse, and pulse lists that node true.
#[test]
fn pulse_started_before_epmd_pings_and_is_pinged_by_erl() {
    let test = "pulse_started_before_epmd_pings_and_is_pinged_by_erl";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        let dir = TempDir::new("otp-late-epmd");
        let port = free_port();
        let _epmd = StartedEpmd(port);
        let p1 = pulse(&dir, "p1@127.0.0.1", port, "300");
        wait_for("p1 to run", Duration::from_secs(9), &[&p1], || {
            !p1.output().is_empty()
        });
        let out = ping_from_erl(&otp, "x1@127.0.0.1", port);
        assert_eq!(out, "pong\n", "{}\n{}", otp.label(), p1.dump());
        // The EPMD that erl left running now names a node pulse pings.
        let erl = crate::util::erlang::Erl::start(&otp, "x2@127.0.0.1", "c", free_port(), port);
        let _entry = Refresher::bare(&dir, "x2@127.0.0.1");
        wait_for(
            &format!("p1 to list x2 ({}) true", otp.label()),
            Duration::from_secs(20),
            &[&p1, &erl.0],
            || {
                p1.last_status()
                    .is_some_and(|s| s.get("x2@127.0.0.1") == Some(&true))
            },
        );
    }
}

/// EPMD goes away and comes back on its port: pulse registers again, and
/// `erl` of every release pings it before and after.
#[test]
fn pulse_registers_again_when_epmd_restarts_for_erl() {
    let test = "pulse_registers_again_when_epmd_restarts_for_erl";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        let dir = TempDir::new("otp-epmd-restart");
        let epmd = Epmd::start_for(&otp);
        let port = epmd.1;
        let p1 = pulse(&dir, "p1@127.0.0.1", port, "300");
        wait_for("p1 registered", Duration::from_secs(9), &[&p1], || {
            p1.count_containing("registered p1 with EPMD") == 1
        });
        assert_eq!(ping_from_erl(&otp, "x1@127.0.0.1", port), "pong\n");
        let _epmd = epmd.restart_under(&p1, "p1");
        assert_eq!(
            ping_from_erl(&otp, "x2@127.0.0.1", port),
            "pong\n",
            "{}\n{}",
            otp.label(),
            p1.dump()
        );
    }
}

/// The recipe's loop in Erlang, for an `erl` of any release: every second
/// it writes its heartbeat file into `sync_dir`, pings every entry there
/// in turn and prints `line NAME=true …`; it prints every
/// `nodedown` it sees, with the reason.
fn recipe_erl(otp: &Otp, name: &str, sync_dir: &std::path::Path, epmd_port: u16) -> Node {
    let script = format!(
        "Dir = \"{dir}\", Me = atom_to_list(node()), \
         net_kernel:monitor_nodes(true, [{{node_type, all}}, nodedown_reason]), \
         Flush = fun F() -> receive \
             {{nodedown, N, I}} -> io:format(\"nodedown ~s ~p~n\", [N, I]), F(); \
             {{nodeup, _, _}} -> F() \
             after 0 -> ok end end, \
         Loop = fun L() -> \
             ok = file:write_file(filename:join(Dir, Me), \
                                  io_lib:format(\"~p\", [calendar:universal_time()])), \
             {{ok, Names}} = file:list_dir(Dir), \
             Res = [N ++ \"=\" ++ atom_to_list(net_adm:ping(list_to_atom(N)) =:= pong) \
                    || N <- lists:sort(Names)], \
             io:format(\"line ~s~n\", [lists:join(\" \", Res)]), \
             Flush(), \
             timer:sleep(1000), \
             L() end, \
         Loop().",
        dir = sync_dir.display()
    );
    let mut cmd = erl_command(otp, "-name", name, "c", epmd_port);
    cmd.args(["-eval", &script]).stdin(Stdio::null());
    Node::spawn(&format!("{name} ({})", otp.label()), cmd)
}

/// An `erl` recipe line's entries (`line NAME=true NAME=false …`), as
/// `(name, ok)` pairs.
fn erl_line(line: &str) -> Option<Vec<(String, bool)>> {
    line.strip_prefix("line ")?
        .split(' ')
        .map(|e| {
            let (name, ok) = e.rsplit_once('=')?;
            Some((name.to_string(), ok == "true"))
        })
        .collect()
}

/// Two pulse nodes and an `erl` node of each release in one registry, each
/// pinging every entry every second, for two minutes: once all see all,
/// every line of every node is all true, no `erl` node sees a `nodedown`,
/// and pulse closes no link.
#[test]
fn pulse_and_every_otp_release_in_one_registry_for_two_minutes() {
    let test = "pulse_and_every_otp_release_in_one_registry_for_two_minutes";
    if !require("epmd", test) {
        return;
    }
    let releases = otps(test);
    if releases.is_empty() {
        return;
    }
    let dir = TempDir::new("otp-mixed");
    std::fs::create_dir_all(dir.sync_dir()).expect("sync dir");
    let epmd = Epmd::start();
    let pulses = ["p1@127.0.0.1", "p2@127.0.0.1"];
    let pulse_nodes: Vec<Node> = pulses
        .iter()
        .map(|n| pulse(&dir, n, epmd.1, "1000"))
        .collect();
    let erl_names: Vec<String> = releases
        .iter()
        .map(|o| format!("e{}@127.0.0.1", o.release))
        .collect();
    let erls: Vec<Node> = releases
        .iter()
        .zip(&erl_names)
        .map(|(o, n)| recipe_erl(o, n, &dir.sync_dir(), epmd.1))
        .collect();
    let mut all: Vec<&str> = pulses.to_vec();
    all.extend(erl_names.iter().map(String::as_str));
    let nodes: Vec<&Node> = pulse_nodes.iter().chain(&erls).collect();
    let erl_all_true = |n: &Node| {
        n.output()
            .iter()
            .rev()
            .find_map(|l| erl_line(l))
            .is_some_and(|e| {
                e.len() == all.len()
                    && e.iter()
                        .all(|(name, ok)| *ok && all.contains(&name.as_str()))
            })
    };
    wait_for(
        "every node to list every node true",
        Duration::from_secs(60),
        &nodes,
        || pulse_nodes.iter().all(|p| p.sees_all_alive(&all)) && erls.iter().all(erl_all_true),
    );
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    let until = Instant::now() + Duration::from_secs(120);
    // The two minutes pass while the lines are watched; a wrong line fails
    // at once.
    let dump = || crate::util::dump_all(&nodes);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        for (node, mark) in nodes.iter().zip(&marks) {
            for line in &node.output()[*mark..] {
                assert!(!line.starts_with("nodedown"), "{line}\n{}", dump());
                if let Some(entries) = erl_line(line) {
                    assert!(
                        entries.iter().all(|(_, ok)| *ok) && entries.len() == all.len(),
                        "{}: {line}\n{}",
                        node.name,
                        dump()
                    );
                }
            }
            if pulses.contains(&node.name.as_str()) {
                let lines: Vec<_> = node.output()[*mark..]
                    .iter()
                    .filter_map(|l| crate::util::parse_status(l, &node.name))
                    .collect();
                for status in &lines {
                    assert!(
                        status.len() == all.len() && status.values().all(|ok| *ok),
                        "{}: {status:?}\n{}",
                        node.name,
                        dump()
                    );
                }
            }
        }
    }
    for (node, mark) in nodes.iter().zip(&marks) {
        let lines = node.output().len() - mark;
        assert!(
            lines >= 100,
            "{} wrote {lines} lines in 120 s\n{}",
            node.name,
            dump()
        );
    }
    for (p, mark) in pulse_nodes.iter().zip(&marks) {
        assert_eq!(p.count_containing("closed the link"), 0, "{}", p.dump());
        assert_eq!(
            p.count_containing_since(*mark, "is down"),
            0,
            "{}",
            p.dump()
        );
    }
}
