//! Overload degrades and never lies: a registry flooded with entries named
//! like nodes keeps every status line whole and parsable, lists every
//! live member, says how many entries a line leaves out, and lets the
//! junk go by the TTL.

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
