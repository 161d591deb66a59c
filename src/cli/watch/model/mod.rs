//! The cluster as the log tells it: each node's latest status line (a row
//! of the matrix), the latest events, and how old each row is.
//!
//! The log carries only times of day, on the writers' clocks. A row's age is
//! measured against the newest line in the log, whose wall-clock time is the
//! file's modification time: so the watcher's own clock and time zone never
//! matter, only that the writers share one.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use super::parse::{Kind, LogLine, What};

/// Most rows kept; lines of further nodes are ignored.
pub(super) const MAX_ROWS: usize = 1000;
/// Most bytes of names all rows may hold together (a 150-node cluster needs
/// under 1 MiB); a line that would pass it is ignored.
pub(super) const MAX_ROW_BYTES: usize = 16 << 20;
/// Most columns shown.
pub(super) const MAX_COLUMNS: usize = 1000;
/// Most nodes whose last word is kept, for "every node left".
const MAX_WORDS: usize = MAX_ROWS;
/// Events kept for the footer.
pub(super) const MAX_EVENTS: usize = 8;
/// The same event logged by several observers within this many ms is one.
const SAME_EVENT_MS: u32 = 5000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// What one node logged last.
#[derive(Clone, Debug)]
struct Row {
    time_ms: u32,
    /// Sorted by name, each name once.
    links: Vec<(String, bool)>,
    /// Bytes of the names it holds, for [`MAX_ROW_BYTES`].
    bytes: usize,
}

/// An event for the footer, with how many observers logged it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    /// Time of day of the first report, ms since midnight.
    pub time_ms: u32,
    /// The node it is about.
    pub node: String,
    /// What happened.
    pub what: What,
    /// The reason or detail.
    pub detail: String,
    /// How many lines reported it.
    pub count: u32,
    /// The nodes that logged it, in order, as far as the lines name them
    /// (at most [`MAX_SEEN_BY`]).
    pub seen_by: Vec<String>,
}

/// Observers kept per event: the footer names a few and counts the rest.
const MAX_SEEN_BY: usize = 8;

/// The state built from the log's lines, in the order they were written.
#[derive(Default)]
pub(crate) struct Cluster {
    rows: BTreeMap<String, Row>,
    /// The sum of the rows' `bytes`.
    row_bytes: usize,
    events: VecDeque<Seen>,
    /// Time of day of the last line read.
    newest_ms: Option<u32>,
    /// Whether the log's last word about each node that logged a status
    /// line or had an event was that it left (at most [`MAX_WORDS`]).
    left: BTreeMap<String, bool>,
    /// More nodes than `left` holds were named: "every node left" cannot
    /// be told any more.
    left_overflowed: bool,
    /// Time of day of the latest leave.
    last_left_ms: Option<u32>,
}

/// One cell of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    /// The row's node listed the column's node as answering.
    Up,
    /// Listed as not answering.
    Down,
    /// Not in the row's line.
    Unlisted,
}

/// One row of a frame.
#[derive(Clone, Debug)]
pub(crate) struct FrameRow {
    /// The observing node.
    pub node: String,
    /// How long ago it logged this line.
    pub age_ms: u64,
    /// Whether it is older than the staleness limit.
    pub stale: bool,
    /// One cell per column of the frame.
    pub cells: Vec<Cell>,
}

/// Everything one screen shows.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    /// Every node seen, observing or observed, sorted.
    pub columns: Vec<String>,
    /// Nodes past [`MAX_COLUMNS`], not shown.
    pub hidden_columns: usize,
    /// One row per observing node, sorted.
    pub rows: Vec<FrameRow>,
    /// The latest events, oldest first.
    pub events: Vec<Seen>,
    /// Cells `Up` in fresh rows.
    pub links_up: usize,
    /// Cells in fresh rows.
    pub links: usize,
    /// Rows past the staleness limit.
    pub stale_rows: usize,
    /// When the log's last word about every node is that it left (after
    /// `run.sh down`, say): the time of day of the last leave.
    pub all_left_ms: Option<u32>,
}

impl Frame {
    /// Whether every fresh row sees every node up, and there is a row.
    pub(crate) fn all_up(&self) -> bool {
        self.links > 0 && self.links_up == self.links && self.stale_rows == 0
    }
}

impl Cluster {
    /// Takes in one line, in log order.
    pub(crate) fn add(&mut self, line: LogLine) {
        self.newest_ms = Some(line.time_ms);
        match line.kind {
            Kind::Status { node, links } => {
                self.last_word(&node, false);
                let bytes = node.len() + links.iter().map(|(n, _)| n.len()).sum::<usize>();
                let old = self.rows.get(&node).map(|r| r.bytes);
                let fits = old.is_some() || self.rows.len() < MAX_ROWS;
                let row_bytes = self.row_bytes - old.unwrap_or(0) + bytes;
                if fits && row_bytes <= MAX_ROW_BYTES {
                    let mut links = links;
                    links.sort_unstable();
                    links.dedup_by(|a, b| a.0 == b.0);
                    let time_ms = line.time_ms;
                    self.rows.insert(
                        node,
                        Row {
                            time_ms,
                            links,
                            bytes,
                        },
                    );
                    self.row_bytes = row_bytes;
                }
            }
            Kind::Event(e) => {
                match e.what {
                    What::Left => {
                        self.last_word(&e.node, true);
                        self.last_left_ms = Some(line.time_ms);
                    }
                    // The ping that fails as a node leaves says nothing new.
                    What::Late | What::Down if self.left.get(&e.node) == Some(&true) => {}
                    _ => self.last_word(&e.node, false),
                }
                // A node that left or expired after its last line has no row.
                if matches!(e.what, What::Left | What::Expired) {
                    if let Some(row) = self.rows.remove(&e.node) {
                        self.row_bytes -= row.bytes;
                    }
                }
                let repeat = self.events.iter_mut().rev().find(|s| {
                    // The leaving node's own line adds a detail the others
                    // lack; it is still one leave.
                    s.node == e.node
                        && s.what == e.what
                        && (s.detail == e.detail || e.what == What::Left)
                        && signed_diff(line.time_ms, s.time_ms).abs() < i64::from(SAME_EVENT_MS)
                });
                match repeat {
                    Some(seen) => {
                        seen.count += 1;
                        if let Some(by) = e.seen_by {
                            if seen.seen_by.len() < MAX_SEEN_BY && !seen.seen_by.contains(&by) {
                                seen.seen_by.push(by);
                            }
                        }
                    }
                    None => {
                        if self.events.len() == MAX_EVENTS {
                            self.events.pop_front();
                        }
                        self.events.push_back(Seen {
                            time_ms: line.time_ms,
                            node: e.node,
                            what: e.what,
                            detail: e.detail,
                            count: 1,
                            seen_by: e.seen_by.into_iter().collect(),
                        });
                    }
                }
            }
        }
    }

    /// Notes the log's latest word about `node`: whether it left.
    fn last_word(&mut self, node: &str, left: bool) {
        if let Some(word) = self.left.get_mut(node) {
            *word = left;
            return;
        }
        if self.left_overflowed {
            return;
        }
        if self.left.len() == MAX_WORDS {
            // Nodes that left tell nothing against "every node left".
            self.left.retain(|_, left| !*left);
        }
        if self.left.len() < MAX_WORDS {
            self.left.insert(node.to_string(), left);
        } else {
            self.left_overflowed = true;
        }
    }

    /// The time of the last leave, when the log's last word about every
    /// node it named is that it left.
    fn all_left(&self) -> Option<u32> {
        let all = !self.left_overflowed
            && self.rows.is_empty()
            && !self.left.is_empty()
            && self.left.values().all(|left| *left);
        self.last_left_ms.filter(|_| all)
    }

    /// The frame to show, `since_newest_ms` after the newest line was
    /// written. Rows older than `stale_ms` are stale; rows older than
    /// `forget_ms` are dropped for good.
    pub(crate) fn frame(&mut self, since_newest_ms: u64, stale_ms: u64, forget_ms: u64) -> Frame {
        let newest = self.newest_ms.unwrap_or(0);
        let age = |row: &Row| signed_diff(newest, row.time_ms).max(0) as u64 + since_newest_ms;
        let mut forgotten = 0;
        self.rows.retain(|_, row| {
            let keep = age(row) <= forget_ms;
            if !keep {
                forgotten += row.bytes;
            }
            keep
        });
        self.row_bytes -= forgotten;
        let mut names: Vec<&str> = Vec::new();
        for (node, row) in &self.rows {
            names.push(node);
            names.extend(row.links.iter().map(|(n, _)| n.as_str()));
        }
        names.sort_unstable();
        names.dedup();
        let hidden_columns = names.len().saturating_sub(MAX_COLUMNS);
        let columns: Vec<String> = names
            .into_iter()
            .take(MAX_COLUMNS)
            .map(str::to_string)
            .collect();
        let mut frame = Frame {
            columns: Vec::new(),
            hidden_columns,
            rows: Vec::new(),
            events: self.events.iter().cloned().collect(),
            links_up: 0,
            links: 0,
            stale_rows: 0,
            all_left_ms: self.all_left(),
        };
        for (node, row) in &self.rows {
            let age_ms = age(row);
            let stale = age_ms > stale_ms;
            let cells: Vec<Cell> = columns
                .iter()
                .map(
                    |c| match row.links.binary_search_by(|(n, _)| n.as_str().cmp(c)) {
                        Ok(i) if row.links[i].1 => Cell::Up,
                        Ok(_) => Cell::Down,
                        Err(_) => Cell::Unlisted,
                    },
                )
                .collect();
            if stale {
                frame.stale_rows += 1;
            } else {
                frame.links += cells.len();
                frame.links_up += cells.iter().filter(|c| **c == Cell::Up).count();
            }
            frame.rows.push(FrameRow {
                node: node.clone(),
                age_ms,
                stale,
                cells,
            });
        }
        frame.columns = columns;
        frame
    }
}

/// `a - b` for two times of day, taken the short way round midnight.
fn signed_diff(a: u32, b: u32) -> i64 {
    let d = (i64::from(a) - i64::from(b)).rem_euclid(DAY_MS);
    if d > DAY_MS / 2 { d - DAY_MS } else { d }
}
