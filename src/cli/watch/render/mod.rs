//! Drawing a [`Frame`] as text for people: the matrix, the latest events, a
//! summary.
//!
//! Everything shown comes from a file anyone can append to, so control and
//! direction-override characters are escaped before they reach a terminal.

#[cfg(test)]
mod tests;

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
        What::Late | What::Left | What::Expired => YELLOW,
    };
    let _ = write!(out, "  {}  ", time_of_day(e.time_ms));
    let text = match e.what {
        What::Joined => format!("node {} joined", e.node),
        What::Back => format!("node {} is back", e.node),
        What::Left => format!("node {} left", e.node),
        What::Late => format!("node {} is late: {}", e.node, e.detail),
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
