//! The S3 registry across hosts that share nothing: three hosts, each a
//! network namespace with addresses of its own, and Garage in a fourth, all
//! on one bridge that lives in a fifth, so the machine's own network is
//! never touched. Two pulse nodes per host find each other through S3 only
//! (no shared directory, no EPMD: each answers for itself), see every node
//! true, see the nodes of a host that is cut off go false, and true again
//! once it is back.

use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::util::garage::Garage;
use crate::util::{BIN, Node, TempDir, dump_all, require, require_root, run_within, wait_for};

/// The subnet of the test's hosts. It exists only inside the test's
/// namespaces (none has a route out, and the machine's own namespace is
/// not on the bridge), so it cannot clash with any network of the machine.
const SUBNET: &str = "10.213.7";

/// Garage's address: the fourth "host".
const STORE: u8 = 100;

/// Every namespace this test makes is named `pulse-s3h-PID-N-ROLE`.
const PREFIX: &str = "pulse-s3h-";

const COOKIE: &str = "hostscookie";

/// The registry, as every node is given it: one bucket, nothing shared.
const REGISTRY: &str = "s3://pulse/sync_dir/";

/// Generous for a loaded two-core machine: a wait returns as soon as its
/// condition holds.
const CONVERGE: Duration = Duration::from_secs(60);

/// Runs `ip ARGS…`, panicking with what it said when it fails.
fn ip(args: &[&str]) {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let (out, finished) = run_within(cmd, Duration::from_secs(10));
    assert!(
        finished && out.status.success(),
        "ip {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `ip ARGS…` prints (for failure messages: it never panics).
fn ip_says(args: &[&str]) -> String {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let (out, _) = run_within(cmd, Duration::from_secs(10));
    format!(
        "$ ip {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The test's network: a bridge in a namespace of its own, and hosts
/// plugged into it by veth pairs. Every namespace is deleted on drop (the
/// veths and the bridge go with them), so a test that panics leaves none
/// behind. Declared before the processes that run in it, so they are
/// killed first.
struct Lan {
    prefix: String,
    /// The namespace holding the bridge `br0` and each host's cable end.
    bridge: String,
    /// Every namespace made, the bridge's first.
    made: Vec<String>,
}

impl Lan {
    fn new() -> Lan {
        static N: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let prefix = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut lan = Lan {
            bridge: format!("{prefix}br"),
            prefix,
            made: Vec::new(),
        };
        let bridge = lan.bridge.clone();
        lan.namespace(&bridge);
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        lan
    }

    /// A namespace called `name`, loopback up, deleted on drop.
    fn namespace(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.made.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// A host `role` with `addrs` on its `eth0`, cabled to the bridge,
    /// where the cable's end is called `role`; the host's namespace.
    fn host(&mut self, role: &str, addrs: &[u8]) -> String {
        let ns = format!("{}{role}", self.prefix);
        self.namespace(&ns);
        let br = self.bridge.as_str();
        ip(&[
            "-n", br, "link", "add", role, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["-n", br, "link", "set", role, "master", "br0"]);
        ip(&["-n", br, "link", "set", role, "up"]);
        for a in addrs {
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{SUBNET}.{a}/24"),
                "dev",
                "eth0",
            ]);
        }
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ns
    }

    /// Unplugs host `role`'s cable at the bridge: nothing reaches it, and
    /// it reaches nothing, not even the store.
    fn cut(&self, role: &str) {
        ip(&["-n", &self.bridge, "link", "set", role, "down"]);
    }

    /// Plugs it back in.
    fn heal(&self, role: &str) {
        ip(&["-n", &self.bridge, "link", "set", role, "up"]);
    }

    /// The bridge's ports and their state, for failure messages.
    fn dump(&self) -> String {
        ip_says(&["-n", &self.bridge, "-br", "link"])
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Deletes the namespaces of an earlier run of this test whose process is
/// gone (killed before its drops ran); never another live run's.
fn remove_stale() {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "list"]);
    let (out, _) = run_within(cmd, Duration::from_secs(10));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && std::fs::metadata(format!("/proc/{pid}")).is_err()
        {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A pulse node run in host namespace `ns` as `ip netns exec NS pulse`,
/// with `home` (the host's own dir) as HOME and the store's AWS variables.
/// No EPMD runs on these hosts, so the node answers EPMD's port (the
/// standard one: the namespace is the test's own) on its own address; two
/// nodes on one host therefore take two addresses. The TTL is long, so a
/// cut shows as down and back, not as an expiry.
fn pulse(ns: &str, home: &TempDir, name: &str, garage: &Garage) -> Node {
    let mut cmd = Command::new("ip");
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ERL_EPMD_PORT", "4369")
        .envs(garage.vars())
        .args(["netns", "exec", ns, BIN])
        .args(["--name", name, "--cookie", COOKIE, "--log-file", "-"])
        .args(["--registry", REGISTRY, "--epmd", "serve"])
        .args(["--interval", "500", "--registry-period", "1000"])
        .args(["--ttl", "60000"]);
    Node::spawn(name, cmd)
}

/// Whether `node`'s last line lists exactly `alive` as true and `dead` as
/// false.
fn sees(node: &Node, alive: &[String], dead: &[String]) -> bool {
    node.last_status().is_some_and(|s| {
        s.len() == alive.len() + dead.len()
            && alive.iter().all(|n| s.get(n) == Some(&true))
            && dead.iter().all(|n| s.get(n) == Some(&false))
    })
}

#[test]
fn nodes_on_hosts_that_share_nothing_meet_through_s3() {
    const TEST: &str = "s3_hosts::nodes_on_hosts_that_share_nothing_meet_through_s3";
    if !require_root(TEST) || !require("ip", TEST) {
        return;
    }
    let mut lan = Lan::new();
    let store_ns = lan.host("s3", &[STORE]);
    // Host i has addresses .1i and .2i, one per node.
    let hosts: Vec<String> = (1..=3u8)
        .map(|i| lan.host(&format!("h{i}"), &[10 + i, 20 + i]))
        .collect();
    let store_ip: IpAddr = format!("{SUBNET}.{STORE}").parse().expect("store address");
    let Some(garage) = Garage::start_in(TEST, "pulse", &store_ns, store_ip) else {
        return;
    };
    assert!(
        garage.endpoint.contains(&format!("{SUBNET}.{STORE}:")),
        "{}",
        garage.endpoint
    );
    // Each host its own HOME: nothing on disk is shared.
    let homes: Vec<TempDir> = (1..=3).map(|i| TempDir::new(&format!("h{i}"))).collect();
    let name = |host: u8, node: u8| format!("h{host}{node}@{SUBNET}.{}", node * 10 + host);
    let names: Vec<String> = (1..=3u8)
        .flat_map(|h| (1..=2u8).map(move |n| (h, n)))
        .map(|(h, n)| name(h, n))
        .collect();
    let t0 = Instant::now();
    let nodes: Vec<Node> = (1..=3u8)
        .flat_map(|h| (1..=2u8).map(move |n| (h, n)))
        .map(|(h, n)| {
            let i = usize::from(h - 1);
            pulse(&hosts[i], &homes[i], &name(h, n), &garage)
        })
        .collect();
    let all: Vec<&Node> = nodes.iter().chain([&garage.server]).collect();
    let dump = |what: &str| format!("{what}\n{}\n{}", lan.dump(), dump_all(&all));

    wait_for(
        "every node on every host to list all six true",
        CONVERGE,
        &all,
        || nodes.iter().all(|n| sees(n, &names, &[])),
    );
    eprintln!("six nodes on three hosts converged in {:?}", t0.elapsed());

    // `pulse status` on the first host reads the same bucket and pings
    // every node across the bridge.
    let mut status = Command::new("ip");
    status
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", homes[0].path())
        .envs(garage.vars())
        .args(["netns", "exec", &hosts[0], BIN, "status"])
        .args(["--cookie", COOKIE, "--registry", REGISTRY]);
    let (out, finished) = run_within(status, Duration::from_secs(30));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        finished && out.status.success(),
        "{out:?}{}",
        dump("pulse status")
    );
    for n in &names {
        assert!(table.contains(n.as_str()), "{n} not in\n{table}");
    }

    // Host 3 is cut off: its nodes go false on every other host's line,
    // which keeps the rest true, and on its own lines the other hosts go
    // false while its two nodes still reach each other.
    let (cut, rest): (Vec<String>, Vec<String>) =
        names.iter().cloned().partition(|n| n.starts_with("h3"));
    let others: Vec<&Node> = nodes.iter().filter(|n| !cut.contains(&n.name)).collect();
    let marks: Vec<usize> = others.iter().map(|n| n.output().len()).collect();
    // Whether every other host's node said `node C EVENT` for each of
    // host 3's nodes since the cut.
    let all_said = |event: &str| {
        others.iter().zip(&marks).all(|(n, m)| {
            cut.iter()
                .all(|c| n.count_containing_since(*m, &format!("node {c} {event}")) > 0)
        })
    };
    let t1 = Instant::now();
    lan.cut("h3");
    wait_for(
        "host 3's nodes to be false on every other host's line",
        Duration::from_secs(20),
        &all,
        || others.iter().all(|n| sees(n, &rest, &cut)),
    );
    eprintln!("host 3 seen cut off in {:?}", t1.elapsed());
    wait_for(
        "host 3's nodes to see the other hosts false and each other true",
        Duration::from_secs(20),
        &all,
        || {
            nodes
                .iter()
                .filter(|n| cut.contains(&n.name))
                .all(|n| sees(n, &cut, &rest))
        },
    );
    // Not one missed ping but an outage: down, on every other host.
    wait_for(
        "every other host's node to say host 3's nodes are down",
        Duration::from_secs(20),
        &all,
        || all_said("is down") && others.iter().all(|n| sees(n, &rest, &cut)),
    );
    eprintln!("host 3 said down in {:?}", t1.elapsed());

    let t2 = Instant::now();
    lan.heal("h3");
    wait_for(
        "every line to list all six true again",
        CONVERGE,
        &all,
        || nodes.iter().all(|n| sees(n, &names, &[])),
    );
    eprintln!("host 3 back on every line in {:?}", t2.elapsed());

    // Down and back, never gone: on the other hosts each of host 3's
    // nodes is back, and nobody left or expired.
    assert!(all_said("is back"), "{}", dump("not every node said back"));
    for n in &nodes {
        for x in &names {
            for event in [format!("node {x} left"), format!("node {x} expired")] {
                assert_eq!(
                    n.count_containing(&event),
                    0,
                    "{} said `{event}`{}",
                    n.name,
                    dump("")
                );
            }
        }
    }
    eprintln!("whole test took {:?}", t0.elapsed());
}
