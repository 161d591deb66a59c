//! Tests of drawing frames: layouts by width and height, colour, escaping.

use super::super::model::Cluster;
use super::super::parse::parse_line;
use super::*;

fn frame(lines: &[&str], since_ms: u64) -> Frame {
    let mut c = Cluster::default();
    for l in lines {
        c.add(parse_line(l).unwrap_or_else(|| panic!("parses: {l}")));
    }
    c.frame(since_ms, 3000, 60_000)
}

const KILLED: [&str; 5] = [
    "05:10:00.300 [INFO] w3@127.0.0.63[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": true]",
    "05:10:01.100 [WARN] node w3@127.0.0.63 is down: connection refused",
    "05:10:01.100 [INFO] w1@127.0.0.61[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
    "05:10:01.200 [WARN] node w3@127.0.0.63 is down: connection refused",
    "05:10:01.200 [INFO] w2@127.0.0.62[\"w1@127.0.0.61\": true, \"w2@127.0.0.62\": true, \"w3@127.0.0.63\": false]",
];

fn glyphs(line: &str) -> String {
    line.chars()
        .filter(|c| [UP, DOWN, UNLISTED].iter().any(|g| g.starts_with(*c)))
        .collect()
}

#[test]
fn named_matrix_of_three_nodes() {
    let f = frame(&KILLED, 2500);
    let style = Style {
        colour: false,
        width: 120,
    };
    let t = text(&f, "pulse watch", style, None);
    assert!(!t.contains('\x1b'), "{t}");
    let row = |name: &str| {
        t.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{t}"))
    };
    assert_eq!(glyphs(row("w1@")), "●●✗");
    assert_eq!(glyphs(row("w2@")), "●●✗");
    assert_eq!(glyphs(row("w3@")), "●●●");
    assert!(row("w3@").ends_with("stale"), "{t}");
    assert!(row("w1@").contains("2.6s"), "{t}");
    assert!(t.contains("node w3@127.0.0.63 is down: connection refused (×2)"));
    assert!(t.ends_with("3 nodes, 4/6 links up, 1 stale row\n"), "{t}");
    // Each glyph sits under its column's name.
    let header = t.lines().nth(2).expect("header");
    let col = header.find("w3@127.0.0.63").expect("column") + 6;
    let cell: String = row("w1@").chars().skip(col).take(1).collect();
    assert_eq!(cell, DOWN, "{t}");
}

#[test]
fn after_every_node_left_the_frame_says_so() {
    let style = Style {
        colour: false,
        width: 120,
    };
    let f = frame(
        &[
            "08:10:00.100 [info] a@h[\"a@h\": true, \"b@h\": true]",
            "08:10:00.200 [info] b@h[\"a@h\": true, \"b@h\": true]",
            "08:10:00.900 [info] node a@h left: registry entry removed, closing links",
            "08:10:00.950 [info] b@h: node a@h left",
            "08:10:01.300 [info] node b@h left: registry entry removed, closing links",
        ],
        0,
    );
    let t = text(&f, "pulse watch", style, None);
    assert!(t.contains("\nevery node left (last at 08:10:01)\n"), "{t}");
    assert!(!t.contains("no status lines"), "{t}");
    let t = text(&frame(&[], 0), "pulse watch", style, None);
    assert!(t.contains("(no status lines in the log yet)"), "{t}");
}

#[test]
fn colour_only_when_asked() {
    let f = frame(&KILLED, 0);
    let t = text(
        &f,
        "pulse watch",
        Style {
            colour: true,
            width: 120,
        },
        None,
    );
    assert!(t.contains(&format!("{GREEN}{UP}{RESET}")), "{t}");
    assert!(t.contains(&format!("{RED}{DOWN}{RESET}")), "{t}");
}

#[test]
fn narrow_terminals_get_numbered_columns_in_bands() {
    let mut lines = Vec::new();
    for i in 1..=11 {
        let all: Vec<String> = (1..=12)
            .map(|j| format!("\"n{j:02}@172.19.0.{j}\": {}", j != 12))
            .collect();
        lines.push(format!(
            "08:35:06.6{i:02} [info]  n{i:02}@172.19.0.{i}[{}]",
            all.join(", ")
        ));
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let f = frame(&refs, 0);
    let t = text(
        &f,
        "w",
        Style {
            colour: false,
            width: 40,
        },
        None,
    );
    assert!(
        t.lines()
            .all(|l| width_of(l) <= 40 || l.starts_with("listed")),
        "{t}"
    );
    let narrow = Style {
        colour: false,
        width: 40,
    };
    let stale = text(&frame(&refs, 5000), "w", narrow, None);
    assert!(stale.contains("  stale\n"), "{stale}");
    assert!(
        stale
            .lines()
            .all(|l| width_of(l) <= 40 || l.starts_with("listed")),
        "{stale}"
    );
    // Tens digits over ones digits, and the row numbers.
    assert!(t.contains("                  1 1"), "{t}");
    assert!(t.contains(" 1 n01@172.19.0.1"), "{t}");
    assert!(
        t.contains("listed, no line of their own: 12 n12@172.19.0.12\n"),
        "{t}"
    );
    let row_glyphs: String = t
        .lines()
        .filter(|l| l.contains("n05@"))
        .map(glyphs)
        .collect();
    assert_eq!(row_glyphs, format!("{}{DOWN}", UP.repeat(11)), "{t}");
    assert!(t.ends_with("12 nodes, 121/132 links up\n"), "{t}");
}

#[test]
fn hostile_names_are_escaped() {
    assert_eq!(clean("a\u{1b}[2Jb\u{202e}c"), "a\\u{1b}[2Jb\\u{202e}c");
    let f = frame(
        &["05:10:00.300 [INFO] node x@h is down: \u{1b}]0;owned\u{7} reason"],
        0,
    );
    let t = text(
        &f,
        "t",
        Style {
            colour: false,
            width: 80,
        },
        None,
    );
    assert!(!t.contains('\x1b') && !t.contains('\x07'), "{t:?}");
}

#[test]
fn a_tall_frame_keeps_its_events_and_summary_in_view() {
    let mut lines = Vec::new();
    for i in 1..=30 {
        lines.push(format!("10:00:00.000 [info] n{i:02}@h[n{i:02}@h: true]"));
    }
    lines.push("10:00:00.100 [info] node n30@h is down: timeout (reply)".into());
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let style = Style {
        colour: false,
        width: 80,
    };
    let t = text(&frame(&refs, 0), "w", style, Some(20));
    assert_eq!(t.lines().count(), 19, "{t}");
    assert!(
        t.contains("more lines: a taller terminal shows them"),
        "{t}"
    );
    assert!(t.contains("node n30@h is down: timeout (reply)"), "{t}");
    assert!(t.ends_with("30 nodes, 30/900 links up\n"), "{t}");
    // A frame that fits is left whole.
    let whole = text(&frame(&refs, 0), "w", style, None);
    assert_eq!(text(&frame(&refs, 0), "w", style, Some(100)), whole);
}

#[test]
fn a_cut_matrix_shows_the_rows_in_trouble_first() {
    let all: Vec<String> = (1..=30).map(|j| format!("n{j:02}@h")).collect();
    let lines: Vec<String> = all
        .iter()
        .map(|n| {
            let links: Vec<String> = all
                .iter()
                .map(|m| format!("{m}: {}", !(n == "n25@h" && m == "n03@h")))
                .collect();
            format!("10:00:00.000 [info] {n}[{}]", links.join(", "))
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let style = Style {
        colour: false,
        width: 200,
    };
    let row_of = |t: &str, name: &str| t.lines().position(|l| l.contains(&format!(" {name} ")));
    let cut = text(&frame(&refs, 0), "w", style, Some(12));
    let (n25, n01) = (row_of(&cut, "n25@h"), row_of(&cut, "n01@h"));
    assert!(n25.is_some() && n01.is_some() && n25 < n01, "{cut}");
    assert!(row_of(&cut, "n24@h").is_none(), "{cut}");
    // Uncut, the rows keep their names' order.
    let whole = text(&frame(&refs, 0), "w", style, None);
    assert!(row_of(&whole, "n01@h") < row_of(&whole, "n25@h"), "{whole}");
}

#[test]
fn long_text_is_clipped_or_wrapped_to_the_width() {
    assert_eq!(clip("abcdef", 4), "abc…");
    assert_eq!(clip("abc", 4), "abc");
    let items: Vec<String> = (1..=6).map(|i| format!("{i} n{i}@h")).collect();
    assert_eq!(
        wrapped("listed:", &items, 31),
        "listed: 1 n1@h, 2 n2@h, 3 n3@h,\n        4 n4@h, 5 n5@h, 6 n6@h\n"
    );
    let long = vec!["x".repeat(40)];
    assert_eq!(
        wrapped("listed:", &long, 30),
        format!("listed: {}\n", long[0])
    );
    let f = frame(
        &[&format!(
            "05:10:00.300 [WARN] node x@h is down: {}",
            "why ".repeat(50)
        )],
        0,
    );
    let style = Style {
        colour: false,
        width: 60,
    };
    let t = text(&f, "t", style, None);
    let event = t
        .lines()
        .find(|l| l.contains("x@h is down"))
        .expect("event");
    assert_eq!(width_of(event), 16 + 36, "{t}");
    assert!(event.ends_with('…'), "{t}");
}
