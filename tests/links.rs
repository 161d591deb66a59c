//! Links against real Erlang and between pulse nodes: one link per node
//! pair whoever opens it, ticks that keep a link up at any pace, a killed
//! node reported down at once, a restarted node back at once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::erlang::{Epmd, Otp, Refresher, erl_on_port, otps};
use crate::util::{Node, TempDir, free_port, parse_status, require, wait_for};

/// A pulse node registered with the test's EPMD.
fn pulse(dir: &TempDir, name: &str, epmd_port: u16, interval: &str) -> Node {
    let mut cmd = crate::util::pulse_cmd(dir);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["--name", name, "--cookie", "c", "--interval", interval])
        // Records the test keeps fresh are rewritten every 100 ms: a TTL of
        // five intervals of 10 ms would expire them.
        .args(["--ttl", if interval == "10" { "5000" } else { "30000" }])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    Node::spawn(name, cmd)
}

/// An `erl` node called `x@127.0.0.1` that prints every node going up and
/// down (`nodeup`/`nodedown` lines), pings `p1@127.0.0.1` after
/// `ping_after_ms`, watches for `hold_ms` more, then prints the hidden
/// nodes it is connected to, pings again and prints `done`.
fn watching_erl(
    otp: &Otp,
    port: u16,
    epmd_port: u16,
    ticktime: u32,
    ping_after_ms: u64,
    hold_ms: u64,
) -> Node {
    let script = format!(
        "net_kernel:monitor_nodes(true, [{{node_type, all}}, nodedown_reason]), \
         Watch = fun W(Until) -> \
             Left = max(0, Until - erlang:monotonic_time(millisecond)), \
             receive \
                 {{nodeup, N, _}} -> io:format(\"nodeup ~s~n\", [N]), W(Until); \
                 {{nodedown, N, I}} -> io:format(\"nodedown ~s ~p~n\", [N, I]), W(Until) \
             after Left -> ok end \
         end, \
         Now = fun() -> erlang:monotonic_time(millisecond) end, \
         Watch(Now() + {ping_after_ms}), \
         io:format(\"ping ~s~n\", [net_adm:ping('p1@127.0.0.1')]), \
         Watch(Now() + {hold_ms}), \
         io:format(\"hidden ~p~n\", [nodes(hidden)]), \
         io:format(\"ping ~s~n\", [net_adm:ping('p1@127.0.0.1')]), \
         io:format(\"done~n\"), \
         timer:sleep(infinity)."
    );
    let mut cmd = erl_on_port(otp, "-name", "x@127.0.0.1", "c", port, epmd_port);
    cmd.args(["-kernel", "net_ticktime", &ticktime.to_string()])
        .args(["-eval", &script])
        .stdin(Stdio::null());
    Node::spawn(&format!("x@127.0.0.1 ({})", otp.label()), cmd)
}

/// [`one_link_held_with`] against every OTP release, one after the other.
fn one_link_held(test: &str, ticktime: u32, interval: &str, erl_first: bool, hold: Duration) {
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        one_link_held_with(&otp, ticktime, interval, erl_first, hold);
    }
}

/// pulse and an `erl` node of `otp` at `ticktime` share one link for
/// `hold`, with pulse pinging every `interval` ms; `erl_first`: the Erlang
/// node opens the link (pulse learns of it only afterwards), else pulse
/// does.
fn one_link_held_with(otp: &Otp, ticktime: u32, interval: &str, erl_first: bool, hold: Duration) {
    let dir = TempDir::new("onelink");
    let epmd = Epmd::start();
    let port = free_port();
    let p1 = pulse(&dir, "p1@127.0.0.1", epmd.1, interval);
    wait_for(
        "pulse to register with EPMD",
        Duration::from_secs(10),
        &[&p1],
        || p1.count_containing("registered p1 with EPMD") == 1,
    );
    let hold_ms = hold.as_millis() as u64;
    // With pulse first, erl pings only once pulse has had time to open the
    // link (its record is written before erl starts).
    let (ping_after, record) = if erl_first {
        (0, None)
    } else {
        (3000, Some(Refresher::start(&dir, "x@127.0.0.1", port)))
    };
    let erl = watching_erl(otp, port, epmd.1, ticktime, ping_after, hold_ms);
    let nodes = [&p1, &erl];
    let x_true = |n: &Node| {
        n.last_status()
            .is_some_and(|s| s.get("x@127.0.0.1") == Some(&true))
    };
    let _record = match record {
        Some(r) => {
            wait_for("pulse to see erl", Duration::from_secs(15), &nodes, || {
                x_true(&p1)
            });
            r
        }
        None => {
            wait_for("erl's first ping", Duration::from_secs(15), &nodes, || {
                erl.count_containing("ping ") == 1
            });
            Refresher::start(&dir, "x@127.0.0.1", port)
        }
    };
    wait_for(
        "erl to finish",
        hold + Duration::from_secs(20),
        &nodes,
        || erl.count_containing("done") == 1,
    );
    let out = erl.output();
    let dump = format!("{}\n{}{}", otp.label(), p1.dump(), erl.dump());
    assert_eq!(
        out.iter().filter(|l| *l == "ping pong").count(),
        2,
        "{dump}"
    );
    assert!(out.iter().any(|l| l == "hidden ['p1@127.0.0.1']"), "{dump}");
    // One link all along: never a nodedown, at most one nodeup.
    assert_eq!(erl.count_containing("nodedown"), 0, "{dump}");
    assert!(erl.count_containing("nodeup") <= 1, "{dump}");
    // At a 10 ms interval (5 ms timeout) a busy machine makes a reply late
    // now and then; at 6 s none may be.
    if interval == "10" {
        wait_for("pulse to see erl", Duration::from_secs(5), &nodes, || {
            x_true(&p1)
        });
    } else {
        assert!(x_true(&p1), "{dump}");
        assert_eq!(p1.count_containing("node x@127.0.0.1 is down"), 0, "{dump}");
    }
    assert_eq!(p1.count_containing("closed the link"), 0, "{dump}");
}

#[test]
fn erl_opens_first_ticktime_4_pulse_every_6_s() {
    one_link_held(
        "erl_opens_first_ticktime_4_pulse_every_6_s",
        4,
        "6000",
        true,
        Duration::from_secs(20),
    );
}

#[test]
fn pulse_opens_first_ticktime_4_pulse_every_10_ms() {
    one_link_held(
        "pulse_opens_first_ticktime_4_pulse_every_10_ms",
        4,
        "10",
        false,
        Duration::from_secs(12),
    );
}

#[test]
fn pulse_opens_first_ticktime_4_pulse_every_6_s() {
    one_link_held(
        "pulse_opens_first_ticktime_4_pulse_every_6_s",
        4,
        "6000",
        false,
        Duration::from_secs(20),
    );
}

/// Past the 60 s a silent link used to be given: an Erlang node at
/// net_ticktime 300 ticks only every 75 s. Every release and both
/// directions at once, to keep the test's time near 75 s.
#[test]
fn ticktime_300_link_outlives_a_minute_both_ways() {
    let test = "ticktime_300_link_outlives_a_minute_both_ways";
    if !require("epmd", test) {
        return;
    }
    let releases = otps(test);
    std::thread::scope(|s| {
        for otp in &releases {
            s.spawn(|| one_link_held_with(otp, 300, "10", true, Duration::from_secs(75)));
            s.spawn(|| one_link_held_with(otp, 300, "6000", false, Duration::from_secs(75)));
        }
    });
}

/// Milliseconds from `since` until `node` prints a line containing
/// `needle`, polled every millisecond; `None` after `timeout`.
fn time_until(node: &Node, needle: &str, since: Instant, timeout: Duration) -> Option<u128> {
    while since.elapsed() < timeout {
        if node.count_containing(needle) > 0 {
            return Some(since.elapsed().as_millis());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn a_killed_node_is_down_at_once_on_every_survivor_and_back_at_once() {
    let dir = TempDir::new("downnow");
    let names = [
        "k1@127.0.0.1",
        "k2@127.0.0.1",
        "k3@127.0.0.1",
        "k4@127.0.0.1",
    ];
    // A long interval: a round would see the death seconds later.
    let args = ["--interval", "5000", "--epmd", "off"];
    let start = |n| Node::start(&dir, n, "c", &args);
    let survivors: Vec<Node> = names[..3].iter().map(|n| start(*n)).collect();
    let victim = start(names[3]);
    let all: Vec<&Node> = survivors.iter().chain([&victim]).collect();
    wait_for("all four true", Duration::from_secs(30), &all, || {
        all.iter().all(|n| n.sees_all_alive(&names))
    });
    // What each survivor had said before the kill: only later lines count.
    let before: Vec<usize> = survivors.iter().map(|n| n.output().len()).collect();
    // Right after a status line, so the next round is seconds away.
    let lines = survivors[0].output().len();
    wait_for("a fresh round", Duration::from_secs(10), &all, || {
        survivors[0].output().len() > lines
    });
    victim.signal("KILL");
    let killed = Instant::now();
    // Usually "connection closed", from the reader; a survivor whose round
    // was in flight at the kill may find out from that round first.
    let down = "node k4@127.0.0.1 is down";
    let mut figures = Vec::new();
    for n in &survivors {
        let ms = time_until(n, down, killed, Duration::from_secs(4));
        figures.push(ms);
    }
    eprintln!("kill -9 to `down` on each survivor (ms): {figures:?}");
    let dumps: String = all.iter().map(|n| n.dump()).collect();
    // 50 ms on an idle machine; a loose bound under test load, still well
    // below the 5 s interval.
    assert!(
        figures.iter().all(|f| f.is_some_and(|ms| ms < 1500)),
        "{figures:?}\n{dumps}"
    );
    let from_a_reader = survivors
        .iter()
        .filter(|n| n.count_containing(&format!("{down}: connection closed")) == 1)
        .count();
    assert!(from_a_reader >= 1, "{dumps}");
    // The status line follows at the round, once, with k4 false; no second
    // down line for the same outage.
    wait_for(
        "k4 false in a status line",
        Duration::from_secs(12),
        &all,
        || {
            survivors.iter().all(|n| {
                n.last_status()
                    .is_some_and(|s| s.get(names[3]) == Some(&false))
            })
        },
    );
    for (n, before) in survivors.iter().zip(&before) {
        let downs = n.output()[*before..]
            .iter()
            .filter(|l| l.contains("node k4@127.0.0.1 is down"))
            .count();
        assert_eq!(downs, 1, "{}", n.dump());
    }

    // Restarted under its name at a new port: back at the next round.
    let back = start(names[3]);
    let all: Vec<&Node> = survivors.iter().chain([&back]).collect();
    wait_for("k4 back everywhere", Duration::from_secs(15), &all, || {
        survivors.iter().all(|n| {
            n.count_containing("node k4@127.0.0.1 is back") == 1 && n.sees_all_alive(&names)
        }) && back.sees_all_alive(&names)
    });
}

#[test]
fn twenty_hung_entries_clog_nothing() {
    let dir = TempDir::new("hung20");
    // Listeners that never accept: the kernel completes the TCP handshake,
    // then nothing ever answers.
    let hung: Vec<std::net::TcpListener> = (0..20)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let entries = hung
        .iter()
        .enumerate()
        .map(|(i, l)| {
            (
                format!("hung{i}@127.0.0.1"),
                l.local_addr().expect("addr").port(),
            )
        })
        .collect();
    let _records = Refresher::many(&dir, entries);
    let args = ["--interval", "1000", "--epmd", "off"];
    let mut a = Node::start(&dir, "a1@127.0.0.1", "c", &args);
    let b = Node::start(&dir, "b1@127.0.0.1", "c", &args);
    let b_true = |a: &Node| {
        a.last_status()
            .is_some_and(|s| s.get("b1@127.0.0.1") == Some(&true))
    };
    wait_for("a1 to see b1", Duration::from_secs(15), &[&a, &b], || {
        b_true(&a)
    });
    // b1 restarts under its name at a new port: a1 sees it again within
    // about one interval (the next round), hung peers or not.
    b.signal("KILL");
    drop(b);
    wait_for("a1 to see b1 gone", Duration::from_secs(10), &[&a], || {
        !b_true(&a)
    });
    let restarted = Instant::now();
    let b = Node::start(&dir, "b1@127.0.0.1", "c", &args);
    wait_for(
        "a1 to see b1 back",
        Duration::from_secs(15),
        &[&a, &b],
        || b_true(&a),
    );
    let back_ms = restarted.elapsed().as_millis();
    // `pulse status` waits for the timeout (500 ms), not for the hung dials.
    let started = Instant::now();
    let out = crate::util::pulse_cmd(&dir)
        .args(["status", "--ip", "127.0.0.1", "--cookie", "c"])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .output()
        .expect("run status");
    let status_ms = started.elapsed().as_millis();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // SIGTERM: out in well under a second, dials or not.
    let started = Instant::now();
    a.signal("TERM");
    let code = a.wait_exit(Duration::from_secs(5)).and_then(|s| s.code());
    let term_ms = started.elapsed().as_millis();
    eprintln!(
        "with 20 hung entries: restarted node true after {back_ms} ms, \
         `pulse status` {status_ms} ms, SIGTERM to exit {term_ms} ms"
    );
    assert_eq!(code, Some(0), "{}", a.dump());
    // Loose bounds for a loaded machine; the figures above are the measure.
    assert!(
        back_ms < 4000,
        "restarted node seen after {back_ms} ms\n{}{}",
        a.dump(),
        b.dump()
    );
    assert!(status_ms < 2000, "status took {status_ms} ms");
    assert!(term_ms < 1000, "SIGTERM took {term_ms} ms\n{}", a.dump());
}

/// An `erl` node that drops its link to `p1@127.0.0.1` and pings it again
/// at once, `rounds` times, while pulse (at a 10 ms interval) dials it back
/// as soon as the link is gone: the two connect at the same moment, again
/// and again. Prints the pings that failed and the nodedowns seen.
fn racing_erl(otp: &Otp, name: &str, port: u16, epmd_port: u16, rounds: u32) -> Node {
    let script = format!(
        "P = 'p1@127.0.0.1', \
         net_kernel:monitor_nodes(true, [{{node_type, all}}]), \
         pong = net_adm:ping(P), \
         Flush = fun F(N) -> receive {{nodedown, _, _}} -> F(N + 1); \
                                     {{nodeup, _, _}} -> F(N) \
                             after 0 -> N end end, \
         Race = fun R(0, Pangs) -> Pangs; \
                    R(K, Pangs) -> \
                        erlang:disconnect_node(P), \
                        timer:sleep(K rem 7), \
                        R(K - 1, Pangs + case net_adm:ping(P) of pong -> 0; pang -> 1 end) \
                end, \
         Pangs = Race({rounds}, 0), \
         timer:sleep(2000), \
         io:format(\"pangs ~p nodedowns ~p connected ~p~n\", [Pangs, Flush(0), nodes(hidden)]), \
         timer:sleep(infinity)."
    );
    let mut cmd = erl_on_port(otp, "-name", name, "c", port, epmd_port);
    cmd.args(["-eval", &script]).stdin(Stdio::null());
    Node::spawn(&format!("{name} ({})", otp.label()), cmd)
}

/// Both sides open at once, on either side of the name order (`a0` sorts
/// before `p1`, `z0` after): every ping of the Erlang node gets `pong`, and
/// at the end one link stands, which pulse shows true.
#[test]
fn simultaneous_connects_with_erl_settle_on_one_link() {
    let test = "simultaneous_connects_with_erl_settle_on_one_link";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        simultaneous_connects_with(&otp);
    }
}

fn simultaneous_connects_with(otp: &Otp) {
    for name in ["a0@127.0.0.1", "z0@127.0.0.1"] {
        let dir = TempDir::new("simul");
        let epmd = Epmd::start();
        let port = free_port();
        let p1 = pulse(&dir, "p1@127.0.0.1", epmd.1, "10");
        wait_for("pulse in EPMD", Duration::from_secs(10), &[&p1], || {
            p1.count_containing("registered p1 with EPMD") == 1
        });
        let _records = Refresher::many(&dir, vec![(name.to_string(), port)]);
        let rounds = 30;
        let erl = racing_erl(otp, name, port, epmd.1, rounds);
        let nodes = [&p1, &erl];
        wait_for("the races to end", Duration::from_secs(40), &nodes, || {
            erl.count_containing("pangs ") == 1
        });
        let line = erl
            .output()
            .into_iter()
            .find(|l| l.starts_with("pangs "))
            .unwrap_or_default();
        eprintln!("{name} ({}) against p1: {line}", otp.label());
        let dump = format!("{}\n{}{}", otp.label(), p1.dump(), erl.dump());
        // One nodedown per dropped link and no more: no link was ever
        // replaced by a second one.
        let want = format!("pangs 0 nodedowns {rounds} connected ['p1@127.0.0.1']");
        assert_eq!(line, want, "{dump}");
        wait_for(
            "pulse to show it true",
            Duration::from_secs(5),
            &nodes,
            || p1.last_status().is_some_and(|s| s.get(name) == Some(&true)),
        );
    }
}

#[test]
fn a_frozen_node_is_false_at_the_next_round_and_back_when_it_thaws() {
    let dir = TempDir::new("frozen");
    let names = ["f1@127.0.0.1", "f2@127.0.0.1"];
    let args = ["--interval", "500", "--epmd", "off"];
    let f1 = Node::start(&dir, names[0], "c", &args);
    let f2 = Node::start(&dir, names[1], "c", &args);
    let both = [&f1, &f2];
    wait_for("both true", Duration::from_secs(15), &both, || {
        both.iter().all(|n| n.sees_all_alive(&names))
    });
    let f2_is = |want: bool| {
        move |n: &Node| {
            n.last_status()
                .is_some_and(|s| s.get(names[1]) == Some(&want))
        }
    };
    // Its socket stays open: only the round's timeout can tell.
    let mark = f1.output().len();
    f2.signal("STOP");
    let stopped = Instant::now();
    wait_for("f2 false on f1", Duration::from_secs(5), &both, || {
        f2_is(false)(&f1)
    });
    let false_ms = stopped.elapsed().as_millis();
    // One timeout is late (a slow node looks the same), the second down.
    assert_eq!(
        f1.count_containing_since(mark, "node f2@127.0.0.1 is late: timeout"),
        1,
        "{}",
        f1.dump()
    );
    wait_for("f2 down on f1", Duration::from_secs(5), &both, || {
        f1.count_containing_since(mark, "node f2@127.0.0.1 is down: timeout") == 1
    });
    // Frozen past the point where f1 drops the link and backs off its dials.
    let lines = f1.output().len();
    wait_for("a few rounds", Duration::from_secs(10), &both, || {
        f1.output().len() > lines + 6
    });
    f2.signal("CONT");
    let thawed = Instant::now();
    wait_for("f2 true again", Duration::from_secs(20), &both, || {
        f2_is(true)(&f1) && f2.sees_all_alive(&names)
    });
    eprintln!(
        "SIGSTOP to false: {false_ms} ms; SIGCONT to true again: {} ms",
        thawed.elapsed().as_millis()
    );
}

/// Established TCP connections on this host (from `/proc/net/tcp`) to
/// `listen`: the links the node listening there accepted.
fn accepted_at(listen: std::net::SocketAddrV4) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let ip = u32::from_le_bytes(listen.ip().octets());
    let local = format!("{ip:08X}:{:04X}", listen.port());
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == local && f[3] == "01"
        })
        .count()
}

#[test]
fn two_pulse_nodes_hold_one_connection_between_them() {
    let dir = TempDir::new("onepair");
    let names = ["o1@127.0.0.31", "o2@127.0.0.32"];
    let args = ["--interval", "200", "--epmd", "off"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", &args))
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for("both true", Duration::from_secs(15), &refs, || {
        nodes.iter().all(|n| n.sees_all_alive(&names))
    });
    let addr = |name: &str| -> std::net::SocketAddrV4 {
        crate::util::registered_addr(&dir.sync_dir(), name)
            .parse()
            .expect("an IPv4 address")
    };
    let (a, b) = (addr(names[0]), addr(names[1]));
    // Several rounds on, each pinging the other: still one connection,
    // whichever side opened it.
    let lines = nodes[0].output().len();
    wait_for("ten more rounds", Duration::from_secs(10), &refs, || {
        nodes[0].output().len() > lines + 10
    });
    // One between them (two links per pair would make two), and none of a
    // node to itself: as in Erlang, a node answers its own entry itself.
    let links = accepted_at(a) + accepted_at(b);
    assert_eq!(links, 1, "links accepted by o1 and o2");
    assert!(nodes.iter().all(|n| n.sees_all_alive(&names)));
}

/// An `erl` node whose `net_kernel` stops answering (suspended) while its
/// link stays up: pulse shows it false with a reason, closes the link once
/// with a line that says why, and dials again only after a backoff that
/// doubles, not every few rounds.
#[test]
fn unanswered_pings_close_the_link_once_with_a_reason_and_back_off() {
    let test = "unanswered_pings_close_the_link_once_with_a_reason_and_back_off";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        let dir = TempDir::new("unanswered");
        let epmd = Epmd::start();
        let port = free_port();
        let p1 = pulse(&dir, "p1@127.0.0.1", epmd.1, "300");
        let _record = Refresher::start(&dir, "x@127.0.0.1", port);
        let script = "pong = net_adm:ping('p1@127.0.0.1'), timer:sleep(1500), \
                      sys:suspend(net_kernel), io:format(\"suspended~n\"), \
                      timer:sleep(infinity).";
        let mut cmd = erl_on_port(&otp, "-name", "x@127.0.0.1", "c", port, epmd.1);
        cmd.args(["-eval", script]).stdin(Stdio::null());
        let erl = Node::spawn(&format!("x@127.0.0.1 ({})", otp.label()), cmd);
        let nodes = [&p1, &erl];
        wait_for(
            "erl to suspend net_kernel",
            Duration::from_secs(20),
            &nodes,
            || erl.count_containing("suspended") == 1,
        );
        wait_for("the first close", Duration::from_secs(10), &nodes, || {
            p1.count_containing("closed the link to x@127.0.0.1: 3 pings in a row unanswered") == 1
        });
        let first = Instant::now();
        wait_for(
            "x false with a reason",
            Duration::from_secs(5),
            &nodes,
            || {
                p1.last_status()
                    .is_some_and(|s| s.get("x@127.0.0.1") == Some(&false))
            },
        );
        assert!(
            p1.count_containing("node x@127.0.0.1 is down: timeout") >= 1,
            "{}",
            p1.dump()
        );
        // 10 s more: closes 1, 2 and 4 s apart at most (every 3 rounds,
        // about 1 s, without the backoff).
        while first.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let closes = p1.count_containing("closed the link to x@127.0.0.1");
        assert!(
            (1..=4).contains(&closes),
            "{} closes in 10 s ({})\n{}",
            closes,
            otp.label(),
            p1.dump()
        );
    }
}

/// A socket on `ip` that accepts every connection and never writes a
/// byte; with `port_for`, an EPMD that answers `PORT_PLEASE2_REQ` with
/// that port instead. Stopped (and its connections closed) on drop.
struct Silent {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Silent {
    fn start(ip: &str, port: u16, port_for: Option<u16>) -> Silent {
        use std::io::{Read, Write};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind((ip, port)).expect("bind a silent socket");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("test-silent".into())
            .spawn(move || {
                let mut held = Vec::new();
                while !flag.load(Ordering::SeqCst) {
                    let Ok((mut stream, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    if let Some(answer) = port_for {
                        // PORT_PLEASE2_REQ: length, 'z', the alive name.
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut len = [0u8; 2];
                        let mut req = vec![0u8; 0];
                        if stream.read_exact(&mut len).is_ok() {
                            req.resize(usize::from(u16::from_be_bytes(len)), 0);
                            let _ = stream.read_exact(&mut req);
                        }
                        let alive = req.get(1..).unwrap_or_default();
                        // PORT2_RESP: 'w', ok, port, normal node, TCP,
                        // versions 6..5, the name, no extra.
                        let mut resp = vec![b'w', 0];
                        resp.extend_from_slice(&answer.to_be_bytes());
                        resp.extend_from_slice(&[77, 0, 0, 6, 0, 5]);
                        resp.extend_from_slice(&(alive.len() as u16).to_be_bytes());
                        resp.extend_from_slice(alive);
                        resp.extend_from_slice(&[0, 0]);
                        let _ = stream.write_all(&resp);
                        continue;
                    }
                    held.push(stream);
                }
            })
            .expect("spawn a silent socket");
        Silent {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Today's UTC date and time as the recipe's Elixir nodes write them,
/// `inspect(:calendar.universal_time())`: `{{2026, 11, 24}, {3, 16, 5}}`.
fn calendar_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rest / 3600, rest / 60 % 60, rest % 60);
    format!("{{{{{year}, {month}, {day}}}, {{{h}, {m}, {s}}}}}")
}

/// The node's own time of day (ms) of each of its status lines from
/// output line `mark` on.
fn status_times(node: &Node, mark: usize) -> Vec<i64> {
    node.output()
        .get(mark..)
        .unwrap_or_default()
        .iter()
        .filter(|l| parse_status(l, &node.name).is_some())
        .filter_map(|l| {
            let t = l.get(..12)?;
            let field = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
            let (h, m, s, ms) = (field(0..2)?, field(3..5)?, field(6..8)?, field(9..12)?);
            Some(((h * 60 + m) * 60 + s) * 1000 + ms)
        })
        .collect()
}

/// Gaps between consecutive times, across midnight too.
fn gaps(times: &[i64]) -> Vec<i64> {
    times
        .windows(2)
        .map(|w| (w[1] - w[0]).rem_euclid(86_400_000))
        .collect()
}

#[test]
fn two_hung_recipe_entries_keep_the_round_at_the_interval() {
    let dir = TempDir::new("hungrecipe");
    // One entry whose EPMD names a port that accepts and never answers,
    // one whose host's EPMD accepts and never answers; both recipe-style
    // files, rewritten every interval.
    let epmd_port = free_port();
    let hung_dist = Silent::start("127.0.0.71", 0, None);
    let _epmd_a = Silent::start("127.0.0.71", epmd_port, Some(hung_dist.port));
    let _epmd_b = Silent::start("127.0.0.72", epmd_port, None);
    let hung = ["hungport@127.0.0.71", "hungepmd@127.0.0.72"];
    let names = ["g1@127.0.0.1", "g2@127.0.0.1"];
    let start = |name: &str| {
        let mut cmd = crate::util::pulse_cmd(&dir);
        cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
            .args(["--name", name, "--cookie", "c", "--interval", "500"])
            .args(["--epmd", "off", "--ttl", "30000", "--sync-dir"])
            .arg(dir.sync_dir())
            .arg("--log-file")
            .arg(dir.log_file());
        Node::spawn(name, cmd)
    };
    let nodes: Vec<Node> = names.iter().map(|n| start(n)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for("both true", Duration::from_secs(15), &refs, || {
        nodes.iter().all(|n| n.sees_all_alive(&names))
    });
    // The entries appear while the nodes run: their first dials start
    // in a round of their own. The gaps count from each node's last line
    // before them.
    let marks: Vec<usize> = nodes
        .iter()
        .map(|n| {
            let out = n.output();
            let last = out.iter().rposition(|l| parse_status(l, &n.name).is_some());
            last.unwrap_or(out.len())
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, sd) = (stop.clone(), dir.sync_dir());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for name in hung {
                    let _ = std::fs::write(sd.join(name), calendar_now());
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let lines = |n: &Node, mark| status_times(n, mark).len();
    wait_for(
        "14 rounds with the hung entries",
        Duration::from_secs(20),
        &refs,
        || nodes.iter().zip(&marks).all(|(n, &m)| lines(n, m) > 14),
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = writer.join();
    let dumps = crate::util::dump_all(&refs);
    let mut all = Vec::new();
    for (n, &mark) in nodes.iter().zip(&marks) {
        let gaps = gaps(&status_times(n, mark));
        eprintln!(
            "{}: status line gaps with two hung entries (ms): {gaps:?}",
            n.name
        );
        all.extend(gaps);
        let last = n.last_status().unwrap_or_default();
        assert!(
            hung.iter().all(|h| last.get(*h) == Some(&false))
                && names.iter().all(|p| last.get(*p) == Some(&true)),
            "{dumps}"
        );
        for h in hung {
            // False from the round that started its first dial, which
            // was still under way; then for the reason its dial failed,
            // kept while it is backed off and tried again: no more than
            // those two down lines.
            let first = format!("node {h} is down: timeout (connect)");
            assert_eq!(n.count_containing_since(mark, &first), 1, "{dumps}");
            let downs = n.count_containing_since(mark, &format!("node {h} is down"));
            assert!(downs <= 2, "{downs} down lines for {h}\n{dumps}");
        }
    }
    let (min, max) = (all.iter().min(), all.iter().max());
    eprintln!(
        "status line gaps at --interval 500 with two hung entries: min {min:?}, max {max:?} ms"
    );
    // The interval, give or take scheduling on a loaded machine; a round
    // that waited for a hung dial's timeout (250 ms) is far out.
    assert!(
        all.iter().all(|g| (350..=650).contains(g)),
        "gaps {all:?}\n{dumps}"
    );
}
