//! Peers from DNS (`--registry dns:NAME`), against the test DNS server on
//! 127.0.0.1: nodes on 127.1.x.y find each other through A records and the
//! EPMD each one serves; partial, shuffled, failing, silent, garbled and
//! truncated answers never remove a live node.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pulse::internals::{LookupError, lookup};

use crate::util::dns_server::{DnsServer, Mode};
use crate::util::erlang::{Epmd, Erl, Otp, erl_eval, otps};
use crate::util::{
    Node, TempDir, free_port, level_of, parse_status, pulse_cmd, require, wait_until,
};

const NAME: &str = "pulse.test";

/// A cluster of DNS-mode nodes on 127.1.BLOCK.x sharing one EPMD port.
struct Cluster {
    dir: TempDir,
    dns: DnsServer,
    block: u8,
    epmd_port: u16,
    args: Vec<String>,
}

impl Cluster {
    fn new(tag: &str, block: u8, hosts: u8, args: &[&str]) -> Cluster {
        let dns = DnsServer::start();
        let ips: Vec<Ipv4Addr> = (1..=hosts)
            .map(|i| Ipv4Addr::new(127, 1, block, i))
            .collect();
        dns.set(NAME, &ips);
        Cluster {
            dir: TempDir::new(tag),
            dns,
            block,
            epmd_port: free_port(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn name(&self, i: u8) -> String {
        format!("d{i}@127.1.{}.{i}", self.block)
    }

    fn common(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "--cookie",
            "dnscookie",
            "--registry",
            &format!("dns:{NAME}"),
            "--dns-server",
            &self.dns.addr.to_string(),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        args.extend(self.args.iter().cloned());
        args
    }

    fn start(&self, i: u8) -> Node {
        let name = self.name(i);
        let mut cmd = pulse_cmd(&self.dir);
        cmd.current_dir(self.dir.path())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .args(["--name", &name, "--epmd", "serve", "--log-file", "-"])
            .args(self.common());
        Node::spawn(&name, cmd)
    }

    /// Runs `pulse status` or `pulse health` with this cluster's settings.
    fn check(&self, command: &str, ip: &str) -> (Option<i32>, String) {
        let out = pulse_cmd(&self.dir)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .arg(command)
            .args(["--ip", ip])
            .args(self.common())
            .output()
            .expect("run pulse");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }
}

fn dump(nodes: &[&Node]) -> String {
    nodes.iter().map(|n| n.dump()).collect()
}

fn all_see(nodes: &[&Node], names: &[String]) -> bool {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    nodes.iter().all(|n| n.sees_all_alive(&names))
}

/// Waits until every node has printed `more` further status lines, then
/// checks that none of the lines since `marks` is a leave, an expiry, a
/// down event or a status line short of `names`, all alive. Any "is down"
/// counts as a flap, so the clusters give each ping the whole interval
/// (`--timeout`): a slow handshake on a loaded host is no flap.
fn steady(nodes: &[&Node], names: &[String], more: usize, why: &str) {
    let marks: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
    let status_lines_since = |n: &Node, mark: usize| -> Vec<String> {
        n.output()[mark..]
            .iter()
            .filter(|l| parse_status(l, &n.name).is_some())
            .cloned()
            .collect()
    };
    let ok = wait_until(Duration::from_secs(60), || {
        nodes
            .iter()
            .zip(&marks)
            .all(|(n, m)| status_lines_since(n, *m).len() >= more)
    });
    assert!(ok, "{why}: too few rounds\n{}", dump(nodes));
    for (n, mark) in nodes.iter().zip(&marks) {
        for line in &n.output()[*mark..] {
            let bad = line.contains(" left")
                || line.contains(" expired")
                || line.contains(" is down")
                || parse_status(line, &n.name).is_some_and(|s| {
                    s.len() != names.len() || names.iter().any(|x| s.get(x) != Some(&true))
                });
            assert!(!bad, "{why}: {} printed {line:?}\n{}", n.name, dump(nodes));
        }
    }
}

/// The median time between a node's status lines since output line `mark`.
fn median_gap_ms(n: &Node, mark: usize) -> u64 {
    let ms_of_day = |line: &str| -> Option<u64> {
        let t = line.get(..12)?;
        let (h, m, s, ms) = (t.get(..2)?, t.get(3..5)?, t.get(6..8)?, t.get(9..12)?);
        let n = |v: &str| v.parse::<u64>().ok();
        Some(((n(h)? * 60 + n(m)?) * 60 + n(s)?) * 1000 + n(ms)?)
    };
    let times: Vec<u64> = n.output()[mark..]
        .iter()
        .filter(|l| parse_status(l, &n.name).is_some())
        .filter_map(|l| ms_of_day(l))
        .collect();
    let mut gaps: Vec<u64> = times
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    gaps.sort_unstable();
    gaps.get(gaps.len() / 2).copied().unwrap_or(u64::MAX)
}

#[test]
fn dns_lookup_answers_and_misbehaving_servers() {
    let dns = DnsServer::start();
    let few: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 1, 9, i)).collect();
    dns.set("few.test", &few);
    let many: Vec<Ipv4Addr> = (1..=60).map(|i| Ipv4Addr::new(127, 1, 9, i)).collect();
    dns.set("many.test", &many);
    let soon = || Instant::now() + Duration::from_secs(2);
    let ips = |v: &[Ipv4Addr]| v.iter().map(|ip| IpAddr::from(*ip)).collect::<Vec<_>>();

    assert_eq!(
        lookup(dns.addr, "few.test", soon()).expect("few"),
        ips(&few)
    );
    assert_eq!(
        lookup(dns.addr, "FEW.test.", soon()).expect("case"),
        ips(&few)
    );
    // 60 records do not fit 512 bytes: truncated over UDP, whole over TCP.
    let tcp_before = dns.tcp_queries.load(Ordering::SeqCst);
    let got = lookup(dns.addr, "many.test", soon()).expect("many");
    assert_eq!(got.len(), 60);
    assert!(dns.tcp_queries.load(Ordering::SeqCst) > tcp_before);
    assert!(matches!(
        lookup(dns.addr, "none.test", soon()),
        Err(LookupError::NotFound)
    ));

    dns.set_mode(Mode::Truncate);
    assert_eq!(
        lookup(dns.addr, "few.test", soon()).expect("tcp"),
        ips(&few)
    );
    dns.set_mode(Mode::ServFail);
    let e = lookup(dns.addr, "few.test", soon()).expect_err("servfail");
    assert!(matches!(e, LookupError::Server(_)), "{e}");
    dns.set_mode(Mode::Silent);
    let started = Instant::now();
    let deadline = started + Duration::from_millis(400);
    let e = lookup(dns.addr, "few.test", deadline).expect_err("no answer");
    assert!(matches!(e, LookupError::Timeout), "{e}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
    // Garbage with our id (its random flags may even say "truncated", sending
    // us to TCP for more garbage): an error by the deadline, never a panic.
    dns.set_mode(Mode::Garbage);
    for _ in 0..20 {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(200);
        let e = lookup(dns.addr, "few.test", deadline).expect_err("garbage");
        assert!(
            matches!(e, LookupError::Timeout | LookupError::Server(_)),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_millis(1200));
    }
    // Nobody serves there: an error, not a hang.
    let closed = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let started = Instant::now();
    assert!(lookup(closed, "few.test", soon()).is_err());
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[test]
fn dns_nodes_find_each_other_leave_and_expire() {
    let c = Cluster::new(
        "dns-basic",
        1,
        3,
        &["--interval", "300", "--timeout", "300", "--ttl", "1500"],
    );
    let names: Vec<String> = (1..=3).map(|i| c.name(i)).collect();
    let d1 = c.start(1);
    let mut d2 = c.start(2);
    let mut d3 = c.start(3);
    let ok = wait_until(Duration::from_secs(20), || {
        all_see(&[&d1, &d2, &d3], &names)
    });
    assert!(ok, "{}", dump(&[&d1, &d2, &d3]));

    // `--log-file -`: stdout only, no file called "-", no registry dir.
    let entries: Vec<_> = std::fs::read_dir(c.dir.path())
        .expect("test dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(entries.is_empty(), "files appeared: {entries:?}");

    let (code, text) = c.check("status", "127.1.1.9");
    assert_eq!(code, Some(0), "{text}");
    for n in &names {
        assert!(
            text.lines()
                .any(|l| l.starts_with(n.as_str()) && l.contains("true")),
            "{n} missing:\n{text}"
        );
    }
    let (code, text) = c.check("health", "127.1.1.2");
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = c.check("health", "127.1.1.8");
    assert_eq!(code, Some(1), "{text}");

    // A graceful leave: its EPMD answers without its name, so the others
    // log a leave, never an expiry, though DNS still lists its address.
    d2.signal("TERM");
    let status = d2.wait_exit(Duration::from_secs(5));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{}", d2.dump());
    let rest = [names[0].clone(), names[2].clone()];
    let ok = wait_until(Duration::from_secs(10), || {
        [&d1, &d3]
            .iter()
            .all(|n| n.count_containing(&format!("node {} left", names[1])) == 1)
            && all_see(&[&d1, &d3], &rest)
    });
    assert!(ok, "{}", dump(&[&d1, &d2, &d3]));
    steady(&[&d1, &d3], &rest, 8, "after the leave");

    // kill -9: false, then expired after the TTL without a successful ping.
    d3.child.kill().expect("kill");
    let _ = d3.wait_exit(Duration::from_secs(5));
    let ok = wait_until(Duration::from_secs(10), || {
        d1.count_containing(&format!("node {} expired", names[2])) == 1
            && d1.sees_all_alive(&[names[0].as_str()])
    });
    assert!(ok, "{}", dump(&[&d1, &d3]));
    assert_eq!(
        d1.count_containing(&format!("node {} left", names[2])),
        0,
        "{}",
        d1.dump()
    );
}

#[test]
fn dns_partial_and_shuffled_answers_never_flap() {
    let c = Cluster::new(
        "dns-partial",
        2,
        6,
        &["--interval", "300", "--timeout", "300", "--ttl", "1200"],
    );
    c.dns.set_mode(Mode::Partial(2));
    let names: Vec<String> = (1..=6).map(|i| c.name(i)).collect();
    let nodes: Vec<Node> = (1..=6).map(|i| c.start(i)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let ok = wait_until(Duration::from_secs(30), || all_see(&refs, &names));
    assert!(ok, "{}", dump(&refs));
    // Over more than three TTLs of 2-of-6 answers: nobody leaves or drops.
    steady(&refs, &names, 14, "partial answers");
}

#[test]
fn dns_server_failures_change_nothing() {
    let c = Cluster::new(
        "dns-fail",
        3,
        4,
        &["--interval", "500", "--timeout", "500", "--ttl", "2000"],
    );
    c.dns.set(
        "pulse.test",
        &[1, 2, 3].map(|i| Ipv4Addr::new(127, 1, 3, i)),
    );
    let names: Vec<String> = (1..=3).map(|i| c.name(i)).collect();
    let nodes: Vec<Node> = (1..=3).map(|i| c.start(i)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let ok = wait_until(Duration::from_secs(20), || all_see(&refs, &names));
    assert!(ok, "{}", dump(&refs));

    for mode in [Mode::ServFail, Mode::Silent, Mode::Garbage] {
        c.dns.set_mode(mode);
        let asked = c.dns.udp_queries.load(Ordering::SeqCst);
        let marks: Vec<usize> = refs.iter().map(|n| n.output().len()).collect();
        steady(&refs, &names, 10, &format!("{mode:?}"));
        // Every node kept asking meanwhile.
        assert!(c.dns.udp_queries.load(Ordering::SeqCst) >= asked + 6);
        // Lookups that hang until their deadline (1 s, two rounds)
        // never stretch the rounds: they run on their own thread.
        for (n, mark) in refs.iter().zip(marks) {
            let gap = median_gap_ms(n, mark);
            assert!(gap < 750, "{mode:?}: median round {gap} ms\n{}", n.dump());
        }
    }
    for n in &refs {
        // One warning for the whole outage, not one per lookup.
        assert_eq!(
            n.count_containing("DNS lookup of pulse.test failed: server error"),
            1,
            "{}",
            n.dump()
        );
        assert_eq!(
            n.count_containing("DNS lookup of pulse.test failed"),
            1,
            "{}",
            n.dump()
        );
    }

    // Answers only over TCP: a newcomer is still found by all.
    c.dns.set_mode(Mode::Truncate);
    c.dns.set(
        "pulse.test",
        &[1, 2, 3, 4].map(|i| Ipv4Addr::new(127, 1, 3, i)),
    );
    let d4 = c.start(4);
    let all: Vec<String> = (1..=4).map(|i| c.name(i)).collect();
    let mut refs = refs;
    refs.push(&d4);
    let ok = wait_until(Duration::from_secs(20), || {
        all_see(&refs, &all)
            && refs[..3]
                .iter()
                .all(|n| n.count_containing("DNS lookup of pulse.test answers again") == 1)
    });
    assert!(ok, "{}", dump(&refs));
    assert!(c.dns.tcp_queries.load(Ordering::SeqCst) > 0);
}

#[test]
fn dns_sixty_nodes_behind_one_name() {
    const N: u8 = 60;
    // Two-second rounds: sixty nodes on a shared two-core machine must not
    // miss one-second ping deadlines just because the machine is busy.
    let c = Cluster::new("dns-sixty", 4, N, &["--interval", "2000"]);
    let names: Vec<String> = (1..=N).map(|i| c.name(i)).collect();
    let started = Instant::now();
    let nodes: Vec<Node> = (1..=N).map(|i| c.start(i)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let ok = wait_until(Duration::from_secs(180), || all_see(&refs, &names));
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let lagging: Vec<&Node> = nodes.iter().filter(|n| !n.sees_all_alive(&all)).collect();
    let seen: Vec<String> = lagging
        .iter()
        .map(|n| {
            let seen = n
                .last_status()
                .map_or(0, |s| s.values().filter(|v| **v).count());
            format!("{} sees {seen}", n.name)
        })
        .collect();
    assert!(
        ok,
        "after {:?}, not every node sees all {N}: {seen:?}\n{}",
        started.elapsed(),
        lagging.iter().take(3).map(|n| n.dump()).collect::<String>()
    );
    eprintln!("60 nodes over DNS converged in {:?}", started.elapsed());
}

/// DNS gives the address, the host's real EPMD names every node there: pulse
/// nodes list a real Erlang node, and the Erlang side finds the pulse nodes
/// the same way (a lookup, `net_adm:names/1`, a ping).
#[test]
fn dns_and_real_erlang_nodes_find_each_other() {
    let test = "dns_and_real_erlang_nodes_find_each_other";
    if !require("epmd", test) {
        return;
    }
    for otp in otps(test) {
        dns_and_real_erlang_nodes_of(&otp);
    }
}

fn dns_and_real_erlang_nodes_of(otp: &Otp) {
    let dir = TempDir::new("dns-erl");
    let dns = DnsServer::start();
    dns.set(NAME, &[Ipv4Addr::LOCALHOST]);
    let epmd = Epmd::start();
    let _x = Erl::start(otp, "x@127.0.0.1", "dnscookie", free_port(), epmd.1);
    let start = |name: &str| {
        let mut cmd = pulse_cmd(&dir);
        cmd.env("ERL_EPMD_PORT", epmd.1.to_string())
            .args(["--name", name, "--cookie", "dnscookie", "--epmd", "auto"])
            .args(["--registry", &format!("dns:{NAME}"), "--log-file", "-"])
            .args(["--dns-server", &dns.addr.to_string(), "--interval", "300"]);
        Node::spawn(name, cmd)
    };
    let p1 = start("p1@127.0.0.1");
    let p2 = start("p2@127.0.0.1");
    let all = ["p1@127.0.0.1", "p2@127.0.0.1", "x@127.0.0.1"];
    let ok = wait_until(Duration::from_secs(20), || {
        p1.sees_all_alive(&all) && p2.sees_all_alive(&all)
    });
    assert!(ok, "{}\n{}", otp.label(), dump(&[&p1, &p2]));

    let find_and_ping = format!(
        "Ips = inet_res:lookup(\"{NAME}\", in, a, [{{nameservers, [{{{{127,0,0,1}}, {}}}]}}]), \
         Found = [{{N, Ip}} || Ip <- Ips, {{ok, Ns}} <- [net_adm:names(Ip)], {{N, _}} <- Ns], \
         [io:format(\"~s ~p~n\", [N, net_adm:ping(list_to_atom(N ++ \"@\" ++ inet:ntoa(Ip)))]) \
          || {{N, Ip}} <- Found, N =/= \"y\"], \
         halt().",
        dns.addr.port()
    );
    let text = erl_eval(
        otp,
        "-name",
        "y@127.0.0.1",
        "dnscookie",
        epmd.1,
        &[],
        &find_and_ping,
        Duration::from_secs(30),
    );
    for n in ["p1", "p2", "x"] {
        assert!(
            text.lines().any(|l| l == format!("{n} pong")),
            "the Erlang node ({}) did not find and ping {n}:\n{text}",
            otp.label()
        );
    }
}

/// `dns:NAME:PORT`: no EPMD anywhere; the handshake on the fixed port names
/// each node, and a node that stops expires after the TTL.
#[test]
fn dns_with_a_fixed_port_needs_no_epmd() {
    let dir = TempDir::new("dns-port");
    let dns = DnsServer::start();
    let ips: Vec<Ipv4Addr> = (1..=3).map(|i| Ipv4Addr::new(127, 1, 6, i)).collect();
    dns.set(NAME, &ips);
    let port = free_port();
    let names: Vec<String> = (1..=3).map(|i| format!("f{i}@127.1.6.{i}")).collect();
    let start = |name: &str| {
        let mut cmd = pulse_cmd(&dir);
        cmd.args(["--name", name, "--cookie", "dnscookie", "--epmd", "off"])
            .args(["--port", &port.to_string(), "--log-file", "-"])
            .args(["--registry", &format!("dns:{NAME}:{port}")])
            .args(["--dns-server", &dns.addr.to_string()])
            .args(["--interval", "300", "--timeout", "300", "--ttl", "1500"]);
        Node::spawn(name, cmd)
    };
    let mut nodes: Vec<Node> = names.iter().map(|n| start(n)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let ok = wait_until(Duration::from_secs(20), || all_see(&refs, &names));
    assert!(ok, "{}", dump(&refs));
    steady(&refs, &names, 5, "fixed port");
    // Being asked for our name by a handshake is no cause for a warning.
    for n in &refs {
        assert!(
            !n.output().iter().any(|l| level_of(l) == Some("warning")),
            "{}",
            n.dump()
        );
    }
    drop(refs);
    let mut f3 = nodes.pop().expect("three nodes");
    f3.signal("TERM");
    assert_eq!(
        f3.wait_exit(Duration::from_secs(5)).and_then(|s| s.code()),
        Some(0)
    );
    let refs: Vec<&Node> = nodes.iter().collect();
    let ok = wait_until(Duration::from_secs(10), || {
        refs.iter()
            .all(|n| n.count_containing(&format!("node {} expired", names[2])) == 1)
            && all_see(&refs, &names[..2])
    });
    assert!(ok, "{}", dump(&refs));
}
