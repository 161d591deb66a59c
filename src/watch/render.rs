//! Drawing a [`Frame`] as text for people: the matrix, the latest events, a
//! summary.
//!
//! Everything shown comes from a file anyone can append to, so control and
//! direction-override characters are escaped before they reach a terminal.

use std::fmt::Write;

use crate::decimal::Fixed;

use super::model::{Cell, Frame, FrameRow, Seen};
use super::parse::What;

/// How the text is drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Style {
    /// ANSI colours.
    pub colour: bool,
    /// The terminal's width in columns.
    pub width: usize,
}

const UP: &str = "●";
const DOWN: &str = "✗";
const UNLISTED: &str = "·";
const AGE_WIDTH: usize = 6;
/// Room for `  stale` after a row's cells.
const STALE_WIDTH: usize = 7;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// Text safe to print: control characters and direction overrides escaped.
pub(crate) fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn width_of(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `max` characters, the last one `…` when it was cut.
fn clip(s: &str, max: usize) -> String {
    if width_of(s) <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Items joined by `, ` after `lead`, in lines of at most `width` (an item
/// longer than that gets a line of its own).
fn wrapped(lead: &str, items: &[String], width: usize) -> String {
    let mut out = String::new();
    let mut line = lead.to_string();
    for (i, item) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { "," } else { "" };
        if width_of(&line) + 1 + width_of(item) + sep.len() > width && line.trim() != lead.trim() {
            out.push_str(line.trim_end());
            out.push('\n');
            line = " ".repeat(width_of(lead));
        }
        let _ = write!(line, " {item}{sep}");
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `HH:MM:SS.mmm` from milliseconds since midnight.
pub(super) fn time_of_day(ms: u32) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

fn age(ms: u64) -> String {
    if ms < 100_000 {
        format!("{}s", Fixed::seconds(u128::from(ms)))
    } else if ms < 6_000_000 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

struct Painter {
    colour: bool,
}

impl Painter {
    fn paint(&self, out: &mut String, colour: &str, text: &str) {
        if self.colour {
            let _ = write!(out, "{colour}{text}{RESET}");
        } else {
            out.push_str(text);
        }
    }

    fn cell(&self, out: &mut String, cell: Cell, stale: bool) {
        let (colour, glyph) = match cell {
            Cell::Up => (GREEN, UP),
            Cell::Down => (RED, DOWN),
            Cell::Unlisted => (DIM, UNLISTED),
        };
        // A stale row's cells are old news: dimmed.
        self.paint(out, if stale { DIM } else { colour }, glyph);
    }
}

/// The whole screen: title, matrix, events, summary; each line ends in
/// `\n`. With `max_lines` (a terminal's height, for a frame redrawn in
/// place) the matrix is cut short so the events and the summary stay in
/// view.
pub(super) fn text(frame: &Frame, title: &str, style: Style, max_lines: Option<usize>) -> String {
    let p = Painter {
        colour: style.colour,
    };
    let mut head = String::new();
    p.paint(&mut head, BOLD, &clean(title));
    let _ = writeln!(head, "   {UP} up  {DOWN} down  {UNLISTED} not listed\n");
    let matrix = matrix(frame, &p, style.width);
    let mut foot = String::new();
    if frame.hidden_columns > 0 {
        let _ = writeln!(foot, "(+{} more nodes not shown)", frame.hidden_columns);
    }
    if !frame.events.is_empty() {
        foot.push_str("\nlatest events:\n");
        for e in &frame.events {
            event_line(&mut foot, e, &p, style.width);
        }
    }
    foot.push('\n');
    summary(&mut foot, frame, &p);
    let lines = |s: &str| s.matches('\n').count();
    let mut out = head;
    match max_lines {
        // One line is left for the cursor, so the screen never scrolls.
        Some(max) if lines(&out) + lines(&matrix) + lines(&foot) >= max => {
            let room = max.saturating_sub(lines(&out) + lines(&foot) + 2);
            // What is cut should be what all is well with: rows with a link
            // down, a node not listed or a stale line come first.
            let mut troubled = frame.clone();
            troubled
                .rows
                .sort_by_key(|r| !r.stale && r.cells.iter().all(|c| *c == Cell::Up));
            let matrix = self::matrix(&troubled, &p, style.width);
            let matrix_lines: Vec<&str> = matrix.lines().collect();
            for line in &matrix_lines[..room.min(matrix_lines.len())] {
                out.push_str(line);
                out.push('\n');
            }
            let hidden = matrix_lines.len() - room.min(matrix_lines.len());
            let _ = writeln!(out, "… {hidden} more lines: a taller terminal shows them");
        }
        _ => out.push_str(&matrix),
    }
    out.push_str(&foot);
    out
}

fn matrix(frame: &Frame, p: &Painter, width: usize) -> String {
    if frame.rows.is_empty() {
        match frame.all_left_ms {
            // `HH:MM:SS`: the events below carry the milliseconds.
            Some(ms) => format!("every node left (last at {})\n", &time_of_day(ms)[..8]),
            None => "(no status lines in the log yet)\n".to_string(),
        }
    } else if let Some(matrix) = named_matrix(frame, p, width) {
        matrix
    } else {
        numbered_matrix(frame, p, width)
    }
}

fn event_line(out: &mut String, e: &Seen, p: &Painter, width: usize) {
    let colour = match e.what {
        What::Joined | What::Back => GREEN,
        What::Down => RED,
        What::Left | What::Expired => YELLOW,
    };
    let _ = write!(out, "  {}  ", time_of_day(e.time_ms));
    let text = match e.what {
        What::Joined => format!("node {} joined", e.node),
        What::Back => format!("node {} is back", e.node),
        What::Left => format!("node {} left", e.node),
        What::Down => format!("node {} is down: {}", e.node, e.detail),
        What::Expired => format!("node {} expired: {}", e.node, e.detail),
    };
    let text = match e.seen_by.as_slice() {
        [] => text,
        [one] if e.count == 1 => format!("{text}, seen by {one}"),
        [first, ..] => format!("{text}, seen by {first} and {} more", e.count - 1),
    };
    // One screen line each: the time before and the count after take 24.
    p.paint(out, colour, &clip(&clean(&text), width.saturating_sub(24)));
    if e.count > 1 {
        let _ = write!(out, " (×{})", e.count);
    }
    out.push('\n');
}

fn summary(out: &mut String, frame: &Frame, p: &Painter) {
    let nodes = frame.columns.len() + frame.hidden_columns;
    let mut line = format!(
        "{nodes} node{}, {}/{} links up",
        if nodes == 1 { "" } else { "s" },
        frame.links_up,
        frame.links
    );
    if frame.stale_rows > 0 {
        let _ = write!(
            line,
            ", {} stale row{}",
            frame.stale_rows,
            if frame.stale_rows == 1 { "" } else { "s" }
        );
    }
    p.paint(out, if frame.all_up() { GREEN } else { RED }, &line);
    out.push('\n');
}

fn row_start(out: &mut String, label: &str, label_width: usize, row: &FrameRow, p: &Painter) {
    let pad = label_width.saturating_sub(width_of(label));
    if row.stale {
        p.paint(out, YELLOW, label);
    } else {
        out.push_str(label);
    }
    let _ = write!(
        out,
        "{:pad$}  {:>AGE_WIDTH$}  ",
        "",
        age(row.age_ms),
        pad = pad
    );
}

fn row_end(out: &mut String, row: &FrameRow, p: &Painter) {
    // No trailing spaces.
    while out.ends_with(' ') {
        out.pop();
    }
    if row.stale {
        out.push_str("  ");
        p.paint(out, YELLOW, "stale");
    }
    out.push('\n');
}

/// Full names over the columns, when they fit in `width`.
fn named_matrix(frame: &Frame, p: &Painter, width: usize) -> Option<String> {
    let names: Vec<String> = frame.columns.iter().map(|c| clean(c)).collect();
    let label_width = frame.rows.iter().map(|r| width_of(&clean(&r.node))).max()?;
    let lead = label_width + 2 + AGE_WIDTH + 2;
    let total = lead + names.iter().map(|n| width_of(n) + 2).sum::<usize>() + STALE_WIDTH;
    if total > width {
        return None;
    }
    let mut out = format!("{:lead$}", "");
    for n in &names {
        let _ = write!(out, "{n}  ");
    }
    let header_end = out.trim_end().len();
    out.truncate(header_end);
    out.push('\n');
    for row in &frame.rows {
        row_start(&mut out, &clean(&row.node), label_width, row, p);
        for (n, cell) in names.iter().zip(&row.cells) {
            // The glyph under the middle of the name.
            let w = width_of(n);
            let before = (w.saturating_sub(1)) / 2;
            let _ = write!(out, "{:before$}", "");
            p.cell(&mut out, *cell, row.stale);
            let _ = write!(out, "{:after$}", "", after = w - before - 1 + 2);
        }
        row_end(&mut out, row, p);
    }
    Some(out)
}

/// Numbered columns, digits stacked over each, in bands that fit `width`;
/// rows carry their node's number, and nodes without a row are listed below.
fn numbered_matrix(frame: &Frame, p: &Painter, width: usize) -> String {
    let n = frame.columns.len();
    let digits = n.to_string().len();
    let number_of = |node: &str| frame.columns.iter().position(|c| c == node).map(|i| i + 1);
    let labels: Vec<String> = frame
        .rows
        .iter()
        .map(|r| {
            let num = number_of(&r.node).map_or(String::new(), |i| i.to_string());
            format!("{num:>digits$} {}", clean(&r.node))
        })
        .collect();
    let label_width = labels.iter().map(|l| width_of(l)).max().unwrap_or(0);
    let lead = label_width + 2 + AGE_WIDTH + 2;
    let per_band = (width.saturating_sub(lead + STALE_WIDTH) / 2).max(1);
    let mut out = String::new();
    for (band, start) in (0..n).step_by(per_band).enumerate() {
        let end = (start + per_band).min(n);
        if band > 0 {
            out.push('\n');
        }
        for d in 0..digits {
            let line: String = (start..end)
                .map(|i| format!("{:>digits$} ", i + 1).as_bytes()[d] as char)
                .flat_map(|c| [c, ' '])
                .collect();
            // A band of small numbers has no hundreds to show.
            if !line.trim().is_empty() {
                let _ = writeln!(out, "{:lead$}{}", "", line.trim_end());
            }
        }
        for (row, label) in frame.rows.iter().zip(&labels) {
            row_start(&mut out, label, label_width, row, p);
            for cell in &row.cells[start..end] {
                p.cell(&mut out, *cell, row.stale);
                out.push(' ');
            }
            row_end(&mut out, row, p);
        }
    }
    let rowless: Vec<String> = frame
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !frame.rows.iter().any(|r| &r.node == *c))
        .map(|(i, c)| format!("{} {}", i + 1, clean(c)))
        .collect();
    if !rowless.is_empty() {
        out.push_str(&wrapped("listed, no line of their own:", &rowless, width));
    }
    out
}

#[cfg(test)]
mod tests {
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
}
