//! Overload degrades and never lies: a registry flooded with entries named
//! like nodes keeps every status line whole and parsable, lists every
//! live member, says how many entries a line leaves out, and lets the
//! junk go by the TTL; on a machine a CPU hog saturates, a live node is
//! never reported down, a killed one never shown true again once false,
//! and a new one is listed by all.

use std::time::Duration;

use crate::util::{Node, TempDir, parse_status, registry_names, wait_for};

/// 10,000 recipe-style entries (named like nodes, a calendar tuple inside)
/// of nodes that never answer: their hosts' EPMD port refuses.
#[test]
fn a_flooded_registry_keeps_lines_whole_and_the_junk_goes_by_the_ttl() {
    let dir = TempDir::new("flooded");
    let sd = dir.sync_dir();
    std::fs::create_dir_all(&sd).expect("sync dir");
    const JUNK: usize = 10_000;
    for i in 0..JUNK {
        let name = format!("j{i:05}@127.0.{}.{}", 100 + i / 250, 1 + i % 250);
        std::fs::write(sd.join(name), "{{2026, 12, 7}, {4, 30, 1}}").expect("junk entry");
    }
    let names = ["o1@127.0.0.1", "o2@127.0.0.2"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", &["--interval", "1000", "--epmd", "off"]))
        .collect();
    let all: Vec<&Node> = nodes.iter().collect();
    // Each lists the other, although the full list would not fit a line.
    wait_for(
        "both to list both true",
        Duration::from_secs(30),
        &all,
        || {
            nodes.iter().all(|n| {
                n.last_status()
                    .is_some_and(|s| names.iter().all(|m| s.get(*m) == Some(&true)))
            })
        },
    );
    // The junk never answered and never changed: the TTL (5 intervals)
    // removes it, while the nodes stay.
    wait_for("the junk to expire", Duration::from_secs(60), &all, || {
        registry_names(&sd) == names
    });
    wait_for("a line with no junk", Duration::from_secs(10), &all, || {
        nodes
            .iter()
            .all(|n| n.last_status().is_some_and(|s| s.len() == 2))
    });
    for node in &nodes {
        let lines: Vec<String> = node
            .output()
            .iter()
            .filter(|l| l.contains(&format!("[info] {}[", node.name)))
            .cloned()
            .collect();
        let unparsable: Vec<&String> = lines
            .iter()
            .filter(|l| parse_status(l, &node.name).is_none())
            .collect();
        assert!(
            unparsable.is_empty(),
            "{} of {} status lines unparsable, the first: {:.300}",
            unparsable.len(),
            lines.len(),
            unparsable[0]
        );
        // A line that left entries out says how many, and they add up.
        let cut: Vec<&String> = lines.iter().filter(|l| l.contains("not shown")).collect();
        assert!(
            !cut.is_empty(),
            "no line left anything out:\n{}",
            node.dump()
        );
        for line in cut {
            let shown = parse_status(line, &node.name).map_or(0, |s| s.len());
            let note = line.rsplit_once("] (+").map_or("", |(_, n)| n);
            let left_out: usize = note
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            assert!(
                shown + left_out <= JUNK + names.len() && left_out > 0,
                "{shown} shown, note {note:?}"
            );
        }
    }
}

/// Processes that keep every core busy while they live.
struct CpuHog(Vec<std::process::Child>);

impl CpuHog {
    fn start(count: usize) -> CpuHog {
        let spin = || {
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("start a busy loop")
        };
        CpuHog((0..count).map(|_| spin()).collect())
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Many nodes on a machine a CPU hog saturates: a live node may be late,
/// never reported down; a node killed is shown false and never true
/// again; a node started meanwhile is listed by every node.
#[test]
fn a_saturated_machine_makes_lines_late_never_wrong() {
    const N: usize = 32;
    let dir = TempDir::new("saturated");
    let names: Vec<String> = (1..=N).map(|i| format!("s{i}@127.0.3.{i}")).collect();
    let args = ["--interval", "1000", "--epmd", "off"];
    let mut nodes: Vec<Node> = names
        .iter()
        .map(|n| Node::start(&dir, n, "c", &args))
        .collect();
    let everyone =
        |nodes: &[Node]| -> Vec<String> { nodes.iter().map(|n| n.name.clone()).collect() };
    {
        let all: Vec<&Node> = nodes.iter().collect();
        let want = everyone(&nodes);
        wait_for("all to list all", Duration::from_secs(60), &all, || {
            nodes.iter().all(|n| {
                n.last_status()
                    .is_some_and(|s| want.iter().all(|m| s.get(m) == Some(&true)))
            })
        });
    }
    // From here on the machine is saturated.
    let marks: std::collections::HashMap<String, usize> = nodes
        .iter()
        .map(|n| (n.name.clone(), n.output().len()))
        .collect();
    let _hog = CpuHog::start(4);
    // A node started under load is listed by every node.
    let late_comer = "s99@127.0.3.99";
    nodes.push(Node::start(&dir, late_comer, "c", &args));
    {
        let all: Vec<&Node> = nodes.iter().collect();
        wait_for(
            "the new node listed true by all",
            Duration::from_secs(60),
            &all,
            || {
                nodes.iter().all(|n| {
                    n.last_status()
                        .is_some_and(|s| s.get(late_comer) == Some(&true))
                })
            },
        );
    }
    // A node killed is false on every line from then on, once false.
    let victim = nodes.remove(0);
    let victim_name = victim.name.clone();
    drop(victim); // kill -9
    {
        let all: Vec<&Node> = nodes.iter().collect();
        wait_for(
            "the killed node false on every node",
            Duration::from_secs(30),
            &all,
            || {
                nodes.iter().all(|n| {
                    n.last_status()
                        .is_some_and(|s| s.get(&victim_name) != Some(&true))
                })
            },
        );
        let seen: Vec<usize> = nodes.iter().map(|n| n.output().len()).collect();
        wait_for(
            "three more lines each",
            Duration::from_secs(30),
            &all,
            || {
                nodes
                    .iter()
                    .zip(&seen)
                    .all(|(n, s)| n.output().len() > s + 3)
            },
        );
    }
    let mut late = 0;
    for node in &nodes {
        let lines = node.output();
        let mark = marks.get(&node.name).copied().unwrap_or(0);
        let since = lines.get(mark..).unwrap_or_default();
        late += since.iter().filter(|l| l.contains(" is late: ")).count();
        // Late is honest under load; down is only for the killed node.
        let wrong: Vec<&String> = since
            .iter()
            .filter(|l| l.contains(" is down") && !l.contains(&format!("node {victim_name} ")))
            .collect();
        assert!(
            wrong.is_empty(),
            "a live node reported down: {wrong:?}\n{}",
            node.dump()
        );
        let verdicts: Vec<bool> = since
            .iter()
            .filter_map(|l| parse_status(l, &node.name))
            .filter_map(|s| s.get(&victim_name).copied())
            .collect();
        let first_false = verdicts.iter().position(|alive| !alive);
        assert!(
            first_false.is_some_and(|i| verdicts[i..].iter().all(|alive| !alive)),
            "{victim_name} true again after false: {verdicts:?}\n{}",
            node.dump()
        );
    }
    eprintln!("under the hog: {late} late lines, no live node down");
}
