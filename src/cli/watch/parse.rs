//! Reading one line of the shared log: a status line or a membership event,
//! written by pulse (`[INFO]`, `[WARN]`, or Elixir's `[info]`, `[warning]`)
//! or by the recipe's Elixir nodes. Anyone can append to the log, so a line
//! that does not parse exactly is skipped, and names are checked before they
//! are kept.

/// Most entries one status line may list.
pub(super) const MAX_LINKS: usize = 4096;
/// Longest node name kept (Erlang's atom limit).
pub(super) const MAX_NAME: usize = 255;
/// Longest event detail kept.
const MAX_DETAIL: usize = 200;

/// One line of the log that means something to `watch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// Time of day, in milliseconds since midnight of the writer's clock.
    pub time_ms: u32,
    /// What it says.
    pub kind: Kind,
}

/// The two kinds of lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `NODE["a@h": true, b@h: false]`: what NODE saw this round.
    Status {
        /// The observing node.
        node: String,
        /// Each listed node and whether it answered, in the line's order.
        links: Vec<(String, bool)>,
    },
    /// `node X joined`, `node X is down: …`, and so on.
    Event(Event),
}

/// A membership event about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// The node the event is about.
    pub node: String,
    /// What happened.
    pub what: What,
    /// The reason or detail after the colon, if any (clipped).
    pub detail: String,
    /// The node that logged it, when the line names one.
    pub seen_by: Option<String>,
}

/// The events a node logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum What {
    /// First seen in the registry.
    Joined,
    /// Missed one ping's timeout.
    Late,
    /// Stopped answering.
    Down,
    /// Answers again.
    Back,
    /// Unregistered itself.
    Left,
    /// Its registry entry expired.
    Expired,
}

impl What {
    /// The word used in text and JSON.
    pub(crate) fn word(self) -> &'static str {
        match self {
            What::Joined => "joined",
            What::Late => "late",
            What::Down => "down",
            What::Back => "back",
            What::Left => "left",
            What::Expired => "expired",
        }
    }
}

/// Parses one line (without its newline); `None` for anything else.
pub(crate) fn parse_line(line: &str) -> Option<LogLine> {
    let (time, rest) = line.split_once(' ')?;
    let time_ms = time_of_day(time)?;
    let (level, message) = rest.strip_prefix('[')?.split_once(']')?;
    let known = ["error", "warn", "warning", "notice", "info", "debug"];
    if !known.contains(&level.to_ascii_lowercase().as_str()) {
        return None;
    }
    // Older Elixir Loggers pad the level with a second space.
    let message = message.trim_start_matches(' ');
    // An event is `node X …`, or `OBSERVER: node X …` as pulse logs it.
    let observed = message
        .split_once(": node ")
        .filter(|(by, _)| is_node_name(by))
        .map(|(by, event)| (Some(by), event));
    let kind = match observed.or_else(|| message.strip_prefix("node ").map(|e| (None, e))) {
        Some((by, event)) => {
            let mut event = parse_event(event)?;
            event.seen_by = by.map(str::to_string);
            Kind::Event(event)
        }
        None => parse_status(message)?,
    };
    Some(LogLine { time_ms, kind })
}

/// `HH:MM:SS.mmm` as milliseconds since midnight.
fn time_of_day(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 12
        && b.iter().enumerate().all(|(i, c)| match i {
            2 | 5 => *c == b':',
            8 => *c == b'.',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let (h, m, sec, ms) = (num(0..2)?, num(3..5)?, num(6..8)?, num(9..12)?);
    (h < 24 && m < 60 && sec < 61).then_some(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

fn parse_event(text: &str) -> Option<Event> {
    let (node, rest) = text.split_once(' ')?;
    if !is_node_name(node) {
        return None;
    }
    let (what, detail) = if rest == "joined" {
        (What::Joined, "")
    } else if rest == "is back" {
        (What::Back, "")
    } else if let Some(why) = rest.strip_prefix("is late: ") {
        (What::Late, why)
    } else if let Some(why) = rest.strip_prefix("is down: ") {
        (What::Down, why)
    } else if rest == "left" || rest.starts_with("left: ") {
        (What::Left, rest.strip_prefix("left: ").unwrap_or(""))
    } else if let Some(why) = rest.strip_prefix("expired: ") {
        (What::Expired, why)
    } else {
        return None;
    };
    Some(Event {
        node: node.to_string(),
        what,
        detail: detail.chars().take(MAX_DETAIL).collect(),
        seen_by: None,
    })
}

fn parse_status(message: &str) -> Option<Kind> {
    let (node, list) = message.split_once('[')?;
    let list = strip_left_out(list).strip_suffix(']')?;
    if !is_node_name(node) {
        return None;
    }
    Some(Kind::Status {
        node: node.to_string(),
        links: parse_links(list)?,
    })
}

/// The list without the note a line too long ends with
/// (` (+9000 not shown: 0 true, 9000 false)`, see `report::status_line`):
/// the entries shown are read, the rest are unknown.
fn strip_left_out(list: &str) -> &str {
    let Some((shown, note)) = list.rsplit_once("] (+") else {
        return list;
    };
    let counts = note
        .strip_suffix(" false)")
        .and_then(|n| n.split_once(" not shown: "))
        .and_then(|(all, rest)| Some((all, rest.split_once(" true, ")?)));
    let numbers = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match counts {
        Some((all, (alive, down))) if numbers(all) && numbers(alive) && numbers(down) => {
            &list[..shown.len() + 1]
        }
        _ => list,
    }
}

/// `"a@h": true, b@h: false` (keys as Elixir's `inspect` writes them).
fn parse_links(mut list: &str) -> Option<Vec<(String, bool)>> {
    let mut links = Vec::new();
    if list.is_empty() {
        return Some(links);
    }
    loop {
        let (key, rest) = match list.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = list.find(": ")?;
                (list[..end].to_string(), &list[end..])
            }
        };
        let rest = rest.strip_prefix(": ")?;
        let (alive, rest) = if let Some(r) = rest.strip_prefix("true") {
            (true, r)
        } else {
            (false, rest.strip_prefix("false")?)
        };
        if !is_node_name(&key) || links.len() == MAX_LINKS {
            return None;
        }
        links.push((key, alive));
        if rest.is_empty() {
            return Some(links);
        }
        list = rest.strip_prefix(", ")?;
    }
}

/// Reads a quoted key up to its closing quote (`\"` and `\\` unescaped);
/// returns it and what follows the quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut key = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((key, &s[i + 1..])),
            '\\' => key.push(chars.next()?.1),
            c => key.push(c),
        }
        if key.len() > MAX_NAME {
            return None;
        }
    }
    None
}

/// Good enough to show: `x@y`, short, no spaces or control characters.
fn is_node_name(s: &str) -> bool {
    s.len() <= MAX_NAME
        && s.split_once('@')
            .is_some_and(|(a, h)| !a.is_empty() && !h.is_empty())
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(line: &str) -> (String, Vec<(String, bool)>) {
        match parse_line(line).map(|l| l.kind) {
            Some(Kind::Status { node, links }) => (node, links),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn links(pairs: &[(&str, bool)]) -> Vec<(String, bool)> {
        pairs.iter().map(|(n, a)| (n.to_string(), *a)).collect()
    }

    #[test]
    fn pulse_status_lines() {
        let line =
            "05:01:12.345 [INFO] w1@127.0.0.61[\"w1@127.0.0.61\": true, \"w3@127.0.0.63\": false]";
        assert_eq!(
            status(line),
            (
                "w1@127.0.0.61".to_string(),
                links(&[("w1@127.0.0.61", true), ("w3@127.0.0.63", false)])
            )
        );
        let parsed = parse_line(line).expect("parses");
        assert_eq!(parsed.time_ms, ((5 * 60 + 1) * 60 + 12) * 1000 + 345);
        // Bare keys, the lower-case level, an empty list.
        let (_, l) = status("23:59:59.999 [info] a@h[a@h: true, n1@localhost: false]");
        assert_eq!(l, links(&[("a@h", true), ("n1@localhost", false)]));
        assert_eq!(status("00:00:00.000 [info] a@h[]").1, vec![]);
    }

    #[test]
    fn a_line_that_leaves_entries_out_is_read_for_those_it_shows() {
        let (node, l) = status(
            "00:00:00.000 [info] a@h[a@h: true, b@h: false] (+9000 not shown: 1 true, 8999 false)",
        );
        assert_eq!(node, "a@h");
        assert_eq!(l, links(&[("a@h", true), ("b@h", false)]));
        // A note that is not ours is no status line.
        assert!(!matches!(
            parse_line("00:00:00.000 [info] a@h[a@h: true] (+x not shown: 1 true, 0 false)")
                .map(|l| l.kind),
            Some(Kind::Status { .. })
        ));
    }

    #[test]
    fn elixir_lines_from_the_recipe() {
        let line = "08:27:40.557 [info]  7c57022cc5@172.19.0.6[\"2cf48db6cf@172.19.0.5\": true, \"7c57022cc5@172.19.0.6\": true, \"8caff4aac0@172.19.0.3\": true]";
        let (node, l) = status(line);
        assert_eq!(node, "7c57022cc5@172.19.0.6");
        assert_eq!(l.len(), 3);
        assert!(l.iter().all(|(_, alive)| *alive));
    }

    #[test]
    fn a_late_node_is_an_event_of_its_own() {
        let line = "05:01:13.001 [warning] p1@h: node w3@h is late: timeout (reply)";
        let Some(LogLine {
            kind: Kind::Event(e),
            ..
        }) = parse_line(line)
        else {
            panic!("not an event: {line}");
        };
        assert_eq!((e.what, e.detail.as_str()), (What::Late, "timeout (reply)"));
        assert_eq!(e.what.word(), "late");
    }

    #[test]
    fn an_event_line_may_name_its_observer() {
        let line = "05:01:13.001 [warning] p1@h: node w3@h is down: timeout (reply)";
        let Some(LogLine {
            kind: Kind::Event(e),
            ..
        }) = parse_line(line)
        else {
            panic!("not an event: {line}");
        };
        assert_eq!(
            (
                e.node.as_str(),
                e.what,
                e.detail.as_str(),
                e.seen_by.as_deref()
            ),
            ("w3@h", What::Down, "timeout (reply)", Some("p1@h"))
        );
        // A prefix that is no node name makes no event.
        assert!(!matches!(
            parse_line("05:01:13.001 [info] notanode: node w3@h joined"),
            Some(LogLine {
                kind: Kind::Event(_),
                ..
            })
        ));
    }

    #[test]
    fn events_of_both_level_spellings() {
        let cases = [
            (
                "05:01:12.345 [INFO] node w2@127.0.0.62 joined",
                What::Joined,
                "",
            ),
            (
                "05:01:13.001 [WARN] node w3@127.0.0.63 is down: connection refused",
                What::Down,
                "connection refused",
            ),
            (
                "05:01:13.001 [warning] node w3@127.0.0.63 is down: timeout (reply)",
                What::Down,
                "timeout (reply)",
            ),
            (
                "05:01:14.000 [info] node w3@127.0.0.63 is back",
                What::Back,
                "",
            ),
            (
                "05:01:15.000 [INFO] node w2@127.0.0.62 left",
                What::Left,
                "",
            ),
            (
                "05:01:15.000 [INFO] node w2@127.0.0.62 left: registry entry removed, closing links",
                What::Left,
                "registry entry removed, closing links",
            ),
            (
                "05:01:16.000 [WARN] node w3@127.0.0.63 expired: no heartbeat for 5.0 s, registry entry removed",
                What::Expired,
                "no heartbeat for 5.0 s, registry entry removed",
            ),
        ];
        for (line, what, detail) in cases {
            let Some(LogLine {
                kind: Kind::Event(e),
                ..
            }) = parse_line(line)
            else {
                panic!("{line}");
            };
            assert_eq!((e.what, e.detail.as_str()), (what, detail), "{line}");
        }
    }

    #[test]
    fn anything_else_is_skipped() {
        for line in [
            "",
            "garbage",
            "5:01:12.345 [INFO] a@h[a@h: true]",
            "25:01:12.345 [INFO] a@h[a@h: true]",
            "05:01:12.345 [LOUD] a@h[a@h: true]",
            "05:01:12.345 [INFO] a@h[a@h: maybe]",
            "05:01:12.345 [INFO] a@h[a@h: true",
            "05:01:12.345 [INFO] a@h[a@h: true,b@h: true]",
            "05:01:12.345 [INFO] a@h[\"a@h: true]",
            "05:01:12.345 [INFO] not a name[a@h: true]",
            "05:01:12.345 [INFO] a\u{1b}[31m@h[a@h: true]",
            "05:01:12.345 [INFO] a@h[\"x\u{7}@h\": true]",
            "05:01:12.345 [INFO] node a@h exploded",
            "05:01:12.345 [INFO] node noat joined",
            "05:01:12.345 [INFO] the console is not keeping up",
        ] {
            assert_eq!(parse_line(line), None, "{line:?}");
        }
        let long = format!("05:01:12.345 [INFO] {}@h[]", "a".repeat(300));
        assert_eq!(parse_line(&long), None);
    }

    #[test]
    fn quoted_keys_unescape() {
        let (_, l) = status(r#"05:01:12.345 [INFO] a@h["we\"ird@h": true, "b@h": false]"#);
        assert_eq!(l, links(&[("we\"ird@h", true), ("b@h", false)]));
    }
}
