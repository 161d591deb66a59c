//! Tests of folding log lines into the cluster's picture: rows, events, ages and bounds.

use super::super::parse::parse_line;
use super::*;

fn cluster(lines: &[&str]) -> Cluster {
    let mut c = Cluster::default();
    for l in lines {
        c.add(parse_line(l).unwrap_or_else(|| panic!("parses: {l}")));
    }
    c
}

#[test]
fn an_event_names_who_saw_it() {
    let mut c = cluster(&[
        "05:10:01.100 [warning] w1@h: node w3@h is down: connection refused",
        "05:10:01.200 [warning] w2@h: node w3@h is down: connection refused",
        "05:10:01.300 [warning] w2@h: node w3@h is down: connection refused",
        "05:10:02.000 [info] w3@h: node w3@h joined",
    ]);
    let f = c.frame(0, 3000, 60_000);
    let seen: Vec<_> = f
        .events
        .iter()
        .map(|e| (e.what, e.count, e.seen_by.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (What::Down, 3, vec!["w1@h".to_string(), "w2@h".to_string()]),
            (What::Joined, 1, vec!["w3@h".to_string()]),
        ]
    );
}

#[test]
fn three_nodes_one_killed() {
    // Copied from a real run (names shortened by the test's choice).
    let mut c = cluster(&[
        "05:10:00.100 [INFO] w1@127.0.0.61[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": true]",
        "05:10:00.200 [INFO] w2@127.0.0.62[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": true]",
        "05:10:00.300 [INFO] w3@127.0.0.63[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": true]",
        "05:10:01.100 [WARN] node w3@127.0.0.63 is down: connection refused",
        "05:10:01.100 [INFO] w1@127.0.0.61[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
        "05:10:01.200 [WARN] node w3@127.0.0.63 is down: connection refused",
        "05:10:01.200 [INFO] w2@127.0.0.62[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
    ]);
    let f = c.frame(50, 3000, 60_000);
    assert_eq!(f.columns.len(), 3);
    let cells: Vec<_> = f.rows.iter().map(|r| r.cells.clone()).collect();
    use Cell::{Down, Up};
    assert_eq!(
        cells,
        [vec![Up, Up, Down], vec![Up, Up, Down], vec![Up, Up, Up]]
    );
    let ages: Vec<u64> = f.rows.iter().map(|r| r.age_ms).collect();
    assert_eq!(ages, [150, 50, 950]);
    assert_eq!((f.links_up, f.links, f.stale_rows), (7, 9, 0));
    // One event, reported twice.
    assert_eq!(f.events.len(), 1);
    assert_eq!((f.events[0].what, f.events[0].count), (What::Down, 2));
    // Later, the dead node's row goes stale and leaves the count.
    let f = c.frame(2500, 3000, 60_000);
    assert!(f.rows[2].stale && !f.rows[0].stale);
    assert_eq!((f.links_up, f.links, f.stale_rows), (4, 6, 1));
    assert!(!f.all_up());
    // Much later it is forgotten.
    let f = c.frame(70_000, 3000, 60_000);
    assert!(f.rows.is_empty());
}

#[test]
fn a_node_that_left_loses_its_row_and_midnight_is_crossed() {
    let mut c = cluster(&[
        "23:59:59.900 [info] a@h[a@h: true, b@h: true]",
        "23:59:59.950 [info] b@h[a@h: true, b@h: true]",
        "00:00:00.050 [info] node b@h left: registry entry removed, closing links",
        "00:00:00.100 [info] node b@h left",
        "00:00:00.400 [info] a@h[a@h: true]",
    ]);
    let f = c.frame(0, 3000, 60_000);
    assert_eq!(f.columns, ["a@h"]);
    assert_eq!(f.rows.len(), 1);
    assert!(f.all_up());
    assert_eq!(f.events.len(), 1, "one leave, told twice");
    assert_eq!(f.events[0].count, 2);
    let mut c = cluster(&[
        "23:59:59.900 [info] a@h[a@h: true]",
        "00:00:00.400 [info] b@h[b@h: true]",
    ]);
    let ages: Vec<u64> = c
        .frame(0, 3000, 60_000)
        .rows
        .iter()
        .map(|r| r.age_ms)
        .collect();
    assert_eq!(ages, [500, 0]);
}

#[test]
fn a_mixed_log_from_a_real_run() {
    // pulse (`[INFO]`) and the recipe's Elixir node (`[info]`) in one
    // log; then the pulse node leaves.
    let mut c = cluster(&[
        "04:59:52.957 [INFO] px1@127.0.0.1[\"ex1@127.0.0.1\": true, \"px1@127.0.0.1\": true]",
        "04:59:53.060 [info] ex1@127.0.0.1[\"ex1@127.0.0.1\": true, \"px1@127.0.0.1\": true]",
    ]);
    let f = c.frame(0, 3000, 60_000);
    assert_eq!((f.rows.len(), f.links_up, f.links), (2, 4, 4));
    c.add(
        parse_line(
            "04:59:53.453 [INFO] node px1@127.0.0.1 left: registry entry removed, closing links",
        )
        .expect("parses"),
    );
    c.add(
        parse_line("04:59:53.556 [info] ex1@127.0.0.1[\"ex1@127.0.0.1\": true]").expect("parses"),
    );
    let f = c.frame(0, 3000, 60_000);
    assert_eq!(f.columns, ["ex1@127.0.0.1"]);
    assert!(f.all_up());
    assert_eq!(f.events[0].what, What::Left);
}

#[test]
fn a_log_whose_last_word_is_that_every_node_left_says_so() {
    // `run.sh down`: each node says it leaves, the others see it go,
    // and a ping that fails on the way out changes nothing.
    let mut c = cluster(&[
        "08:10:00.100 [info] a@h[\"a@h\": true, \"b@h\": true]",
        "08:10:00.200 [info] b@h[\"a@h\": true, \"b@h\": true]",
        "08:10:00.900 [info] node a@h left: registry entry removed, closing links",
        "08:10:00.950 [info] b@h: node a@h left",
        "08:10:01.000 [warning] b@h: node a@h is down: connection refused",
    ]);
    assert_eq!(
        c.frame(0, 3000, 60_000).all_left_ms,
        None,
        "b@h is still here"
    );
    c.add(
        parse_line("08:10:01.300 [info] node b@h left: registry entry removed, closing links")
            .expect("parses"),
    );
    let f = c.frame(0, 3000, 60_000);
    assert!(f.rows.is_empty());
    assert_eq!(f.all_left_ms, Some((8 * 3600 + 10 * 60 + 1) * 1000 + 300));
    // A node that comes back (a new cluster) ends it.
    c.add(parse_line("08:20:00.000 [info] c@h[\"c@h\": true]").expect("parses"));
    assert_eq!(c.frame(0, 3000, 60_000).all_left_ms, None);
    // A node that expired did not leave; nor did one only forgotten.
    let mut c = cluster(&[
        "08:10:00.100 [info] a@h[\"a@h\": true, \"b@h\": true]",
        "08:10:00.200 [info] b@h[\"a@h\": true, \"b@h\": true]",
        "08:10:06.000 [info] a@h: node b@h expired: no heartbeat and no answer for 5 s, registry entry removed",
        "08:10:07.000 [info] node a@h left: registry entry removed, closing links",
    ]);
    let f = c.frame(0, 3000, 60_000);
    assert!(f.rows.is_empty());
    assert_eq!(f.all_left_ms, None);
    let mut c = cluster(&["08:10:00.100 [info] a@h[\"a@h\": true]"]);
    let f = c.frame(70_000, 3000, 60_000);
    assert!(f.rows.is_empty());
    assert_eq!(f.all_left_ms, None);
    // An empty log has no last word.
    assert_eq!(Cluster::default().frame(0, 3000, 60_000).all_left_ms, None);
}

#[test]
fn last_words_are_bounded() {
    let mut c = Cluster::default();
    let status = |i: usize| LogLine {
        time_ms: 0,
        kind: Kind::Status {
            node: format!("n{i}@h"),
            links: vec![],
        },
    };
    // Nodes that left make room for new ones.
    for i in 0..MAX_WORDS + 10 {
        c.add(status(i));
        c.add(parse_line(&format!("00:00:00.000 [info] node n{i}@h left")).expect("parses"));
    }
    assert!(c.left.len() <= MAX_WORDS && !c.left_overflowed);
    assert_eq!(c.frame(0, 3000, 60_000).all_left_ms, Some(0));
    // Past the bound with every node here, no claim is ever made.
    for i in 0..MAX_WORDS + 1 {
        c.add(status(i));
    }
    assert!(c.left.len() <= MAX_WORDS && c.left_overflowed);
    for i in 0..MAX_WORDS + 1 {
        c.add(parse_line(&format!("00:00:01.000 [info] node n{i}@h left")).expect("parses"));
    }
    assert_eq!(c.frame(0, 3000, 60_000).all_left_ms, None);
}

#[test]
fn rows_are_bounded_in_number_and_bytes() {
    let mut c = Cluster::default();
    let line = |node: String, links: Vec<(String, bool)>| LogLine {
        time_ms: 0,
        kind: Kind::Status { node, links },
    };
    for i in 0..MAX_ROWS + 10 {
        c.add(line(format!("n{i}@h"), vec![]));
    }
    assert_eq!(c.rows.len(), MAX_ROWS);
    // A node already shown still gets its new line.
    c.add(line("n0@h".into(), vec![("n0@h".into(), true)]));
    assert_eq!(c.rows["n0@h"].links.len(), 1);
    let mut c = Cluster::default();
    let fat = |i: usize| {
        let links = (0..1000)
            .map(|j| (format!("{}{i}-{j}@h", "x".repeat(240)), true))
            .collect();
        line(format!("f{i}@h"), links)
    };
    for i in 0..100 {
        c.add(fat(i));
    }
    assert!(
        c.row_bytes <= MAX_ROW_BYTES && c.rows.len() < 100,
        "{}",
        c.rows.len()
    );
    let bytes: usize = c.rows.values().map(|r| r.bytes).sum();
    assert_eq!(bytes, c.row_bytes);
    // Forgetting gives the room back.
    c.frame(1_000_000, 1, 10);
    assert_eq!((c.rows.len(), c.row_bytes), (0, 0));
}

#[test]
fn unlisted_cells_and_bounded_events() {
    let mut lines = vec!["10:00:00.000 [info] a@h[a@h: true]".to_string()];
    lines.push("10:00:00.000 [info] b@h[a@h: true, b@h: false, c@h: true]".into());
    for i in 0..20 {
        lines.push(format!("10:00:{i:02}.000 [info] node n{i}@h joined"));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut c = cluster(&refs);
    let f = c.frame(0, 60_000, 60_000);
    assert_eq!(f.columns, ["a@h", "b@h", "c@h"]);
    assert_eq!(f.rows[0].cells, [Cell::Up, Cell::Unlisted, Cell::Unlisted]);
    assert_eq!(f.rows[1].cells, [Cell::Up, Cell::Down, Cell::Up]);
    assert_eq!((f.links_up, f.links), (3, 6));
    assert_eq!(f.events.len(), MAX_EVENTS);
    assert_eq!(f.events.last().map(|e| e.node.as_str()), Some("n19@h"));
}
