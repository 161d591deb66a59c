//! The wire code against real Erlang, every OTP release [`otps`] finds
//! (Debian's OTP 25 and an OTP 27 in CI): pulse pings an `erl` node and gets
//! `true`, and `false` when the cookies differ; calls, monitors and links on
//! processes pulse lacks fail at once, whichever side opened the connection;
//! short names ping both ways.

use std::time::Duration;

use crate::util::erlang::{Epmd, Erl, Otp, Refresher};
use crate::util::erlang::{erl_eval, otps, output_within};
use crate::util::{Node, TempDir, free_port, require, wait_for};

/// The pulse node `name`, started with `name_args` (interval 300 ms, each
/// ping given all of it) on the dir's registry, registered with the test's
/// own EPMD, never the machine's.
fn pulse_on(dir: &TempDir, name: &str, name_args: &[&str], epmd_port: u16) -> Node {
    let mut cmd = crate::util::pulse_cmd(dir);
    cmd.env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(name_args)
        .args(["--cookie", "c", "--interval", "300", "--timeout", "300"])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    Node::spawn(name, cmd)
}

fn pulse_sees_erl(cookie_of_erl: &str, want: bool, test: &str) {
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        pulse_sees_erl_of(&otp, cookie_of_erl, want);
    }
}

fn pulse_sees_erl_of(otp: &Otp, cookie_of_erl: &str, want: bool) {
    let dir = TempDir::new("erl");
    let epmd = Epmd::start();
    let port = free_port();
    let erl = Erl::start(otp, "x@127.0.0.1", cookie_of_erl, port, epmd.1);
    let _record = Refresher::start(&dir, "x@127.0.0.1", port);
    let node = pulse_on(&dir, "p1@127.0.0.1", &["--name", "p1@127.0.0.1"], epmd.1);
    // erl takes a second or two to come up; until then it is false.
    wait_for(
        "pulse's verdict on erl",
        Duration::from_secs(15),
        &[&node, &erl.0],
        || {
            node.last_status().is_some_and(|s| {
                s.get("x@127.0.0.1") == Some(&want) && s.get("p1@127.0.0.1") == Some(&true)
            })
        },
    );
    // And it stays that way over several rounds on the reused link.
    let lines = node.output().len();
    wait_for("three more lines", Duration::from_secs(9), &[&node], || {
        node.output().len() >= lines + 3
    });
    assert_eq!(
        node.last_status()
            .and_then(|s| s.get("x@127.0.0.1").copied()),
        Some(want),
        "{}\n{}",
        otp.label(),
        node.dump()
    );
    if !want {
        // Refused until erl listens, then refused for the cookie.
        wait_for(
            "the bad cookie named",
            Duration::from_secs(15),
            &[&node, &erl.0],
            || node.count_containing("node x@127.0.0.1 is down: bad cookie") >= 1,
        );
    }
    // No link pulse opened was closed for unanswered pings.
    assert_eq!(
        node.count_containing("closed the link"),
        0,
        "{}\n{}",
        otp.label(),
        node.dump()
    );
}

#[test]
fn pulse_pings_a_real_erlang_node() {
    pulse_sees_erl("c", true, "pulse_pings_a_real_erlang_node");
}

#[test]
fn a_real_erlang_node_with_another_cookie_is_false() {
    pulse_sees_erl(
        "other",
        false,
        "a_real_erlang_node_with_another_cookie_is_false",
    );
}

/// The start of every Erlang check: `N` is the pulse node, `P` prints one
/// `label value` line.
fn header(node: &str) -> String {
    format!("N = '{node}', P = fun(K, V) -> io:format(\"~s ~w~n\", [K, V]) end, ")
}

/// Erlang checks on names: a ping, a monitor and a `gen_server:call` on a
/// name pulse lacks (which must fail at once with `noproc`, where a hung
/// call ends in `timeout` after 10 s), a monitor on `net_kernel` (which
/// pulse has: no `DOWN`), `erpc` (`notsup`), and whether the connection is
/// still up and answering afterwards.
const NAME_CHECKS: &str = "\
    P(ping, net_adm:ping(N)), \
    M = erlang:monitor(process, {foo, N}), \
    P(monitor_name, receive {'DOWN', M, process, {foo, N}, R} -> R after 5000 -> timeout end), \
    P(call, try gen_server:call({foo, N}, hello, 10000) catch exit:{Why, _} -> Why end), \
    K = erlang:monitor(process, {net_kernel, N}), \
    P(monitor_net_kernel, receive {'DOWN', K, _, _, R2} -> R2 after 1000 -> none end), \
    P(erpc, try erpc:call(N, erlang, node, [], 5000) catch error:{erpc, E} -> E end), \
    P(still, {lists:member(N, nodes(hidden)), net_adm:ping(N)}), ";

const NAME_CHECKS_OK: &str = "ping pong\nmonitor_name noproc\ncall noproc\n\
                              monitor_net_kernel none\nerpc notsup\nstill {true,pong}\n";

/// Erlang checks on pids, over a connection pulse opened: the pid pulse
/// calls from (taken from the `is_auth` call it sends to `net_kernel`)
/// exists, any other pid of pulse's gets `noproc` for a monitor and a link,
/// and an unlink leaves the connection up.
const PID_CHECKS: &str = "\
    NK = whereis(net_kernel), \
    erlang:trace(NK, true, ['receive']), \
    From = receive {trace, NK, 'receive', {'$gen_call', {F, _}, {is_auth, _}}} \
           when node(F) =:= N -> F after 20000 -> none end, \
    erlang:trace(NK, false, ['receive']), \
    P(pulse_dialed, lists:member(N, nodes(hidden))), \
    <<131, 88, Rest/binary>> = term_to_binary(From), \
    Sz = byte_size(Rest) - 12, \
    <<Nd:Sz/binary, _:32, Ser:32, Cre:32>> = Rest, \
    Other = binary_to_term(<<131, 88, Nd/binary, 2:32, Ser:32, Cre:32>>), \
    PM1 = erlang:monitor(process, Other), \
    P(monitor_pid, receive {'DOWN', PM1, process, Other, PR1} -> PR1 after 5000 -> timeout end), \
    PM2 = erlang:monitor(process, From), \
    P(monitor_caller, receive {'DOWN', PM2, _, _, PR2} -> PR2 after 1000 -> none end), \
    process_flag(trap_exit, true), \
    link(Other), \
    P(link_pid, receive {'EXIT', Other, PR3} -> PR3 after 5000 -> timeout end), \
    link(From), \
    unlink(From), \
    P(link_caller, receive {'EXIT', From, PR4} -> PR4 after 1000 -> none end), ";

const PID_CHECKS_OK: &str = "pulse_dialed true\nmonitor_pid noproc\nmonitor_caller none\n\
                             link_pid noproc\nlink_caller none\n";

/// What an Erlang node gets from pulse over a connection the Erlang node
/// opened, with short and long tick times.
#[test]
fn calls_and_monitors_on_missing_processes_fail_at_once_when_erlang_dials() {
    let test = "calls_and_monitors_on_missing_processes_fail_at_once_when_erlang_dials";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        missing_processes_when_erlang_dials(&otp);
    }
}

fn missing_processes_when_erlang_dials(otp: &Otp) {
    let dir = TempDir::new("erl-dials");
    let epmd = Epmd::start();
    let mut cmd = crate::util::pulse_cmd(&dir);
    cmd.env("ERL_EPMD_PORT", epmd.1.to_string())
        .args([
            "--name",
            "p1@127.0.0.1",
            "--cookie",
            "c",
            "--interval",
            "300",
        ])
        .arg("--sync-dir")
        .arg(dir.sync_dir())
        .arg("--log-file")
        .arg(dir.log_file());
    let node = Node::spawn("p1@127.0.0.1", cmd);
    wait_for("pulse in EPMD", Duration::from_secs(9), &[&node], || {
        node.count_containing("registered p1 with EPMD") == 1
    });
    for ticktime in ["4", "300"] {
        let out = erl_eval(
            otp,
            "-name",
            &format!("x{ticktime}@127.0.0.1"),
            "c",
            epmd.1,
            &["-kernel", "net_ticktime", ticktime],
            &format!("{}{NAME_CHECKS} halt().", header("p1@127.0.0.1")),
            Duration::from_secs(60),
        );
        assert_eq!(
            out,
            NAME_CHECKS_OK,
            "{} net_ticktime {ticktime}\n{}",
            otp.label(),
            node.dump()
        );
    }
}

/// The same over a connection pulse opened, and the checks on pids.
#[test]
fn calls_monitors_and_links_fail_at_once_when_pulse_dials() {
    let test = "calls_monitors_and_links_fail_at_once_when_pulse_dials";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        missing_processes_when_pulse_dials(&otp);
    }
}

fn missing_processes_when_pulse_dials(otp: &Otp) {
    for ticktime in ["4", "300"] {
        let dir = TempDir::new("pulse-dials");
        let epmd = Epmd::start();
        let port = free_port();
        let _record = Refresher::start(&dir, "x@127.0.0.1", port);
        let node = pulse_on(&dir, "p1@127.0.0.1", &["--name", "p1@127.0.0.1"], epmd.1);
        let port = port.to_string();
        let out = erl_eval(
            otp,
            "-name",
            "x@127.0.0.1",
            "c",
            epmd.1,
            &[
                "-kernel",
                "net_ticktime",
                ticktime,
                "-kernel",
                "inet_dist_listen_min",
                &port,
                "-kernel",
                "inet_dist_listen_max",
                &port,
            ],
            &format!(
                "{}{PID_CHECKS}{NAME_CHECKS} halt().",
                header("p1@127.0.0.1")
            ),
            Duration::from_secs(60),
        );
        assert_eq!(
            out,
            format!("{PID_CHECKS_OK}{NAME_CHECKS_OK}"),
            "{} net_ticktime {ticktime}\n{}",
            otp.label(),
            node.dump()
        );
    }
}

/// `--sname` as `erl -sname` has it: pulse is `p1@<short host name>`,
/// listens where that name resolves, and finds a short-named Erlang node
/// from a bare registry entry by resolving its host before asking EPMD.
/// Both directions ping. Only names the hosts file maps to loopback are used.
#[test]
fn short_names_ping_both_ways_with_erl_and_elixir() {
    let test = "short_names_ping_both_ways_with_erl_and_elixir";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        short_names_ping_both_ways(&otp, test);
    }
}

fn short_names_ping_both_ways(otp: &Otp, test: &str) {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let host = raw.trim().split('.').next().unwrap_or_default().to_string();
    let loopback = std::fs::read_to_string("/etc/hosts")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut f = l.split('#').next().unwrap_or_default().split_whitespace();
            f.next().is_some_and(|ip| ip.starts_with("127."))
                && f.any(|n| n.eq_ignore_ascii_case(&host))
        });
    assert!(
        loopback,
        "{test}: /etc/hosts must map this host's name '{host}' to loopback"
    );
    let dir = TempDir::new("sname");
    let epmd = Epmd::start();
    let (p1, e1) = (format!("p1@{host}"), format!("e1@{host}"));
    let node = pulse_on(&dir, &p1, &["--sname", "p1"], epmd.1);
    wait_for("pulse in EPMD", Duration::from_secs(9), &[&node], || {
        node.count_containing("registered p1 with EPMD") == 1
    });

    // Erlang to pulse.
    let out = erl_eval(
        otp,
        "-sname",
        "e2",
        "c",
        epmd.1,
        &[],
        &format!("{}P(ping, net_adm:ping(N)), halt().", header(&p1)),
        Duration::from_secs(60),
    );
    assert_eq!(out, "ping pong\n", "{}\n{}", otp.label(), node.dump());
    // Debian's Elixir runs on the OTP on the PATH only.
    if otp.is_on_path() && require("elixir", test) {
        let mut iex = std::process::Command::new("elixir");
        iex.env("ERL_EPMD_PORT", epmd.1.to_string())
            .args(["--sname", "x3", "--cookie", "c"])
            .args(["--erl", "-kernel inet_dist_use_interface {127,0,0,1}"])
            .args(["-e", &format!("IO.inspect Node.ping(:\"{p1}\")")]);
        let out = output_within(iex, Duration::from_secs(60));
        assert_eq!(out, ":pong\n", "{}", node.dump());
    }

    // pulse to Erlang, found through the host name and EPMD.
    let _erl = Erl::start_as(otp, "-sname", "e1", "c", free_port(), epmd.1);
    let _entry = Refresher::bare(&dir, &e1);
    wait_for(
        &format!("pulse to see the short-named erl ({})", otp.label()),
        Duration::from_secs(20),
        &[&node],
        || {
            node.last_status()
                .is_some_and(|s| s.get(&e1) == Some(&true))
        },
    );
}
