//! The status line, the membership events and the round's warnings, as
//! the round thread logs them.

use std::fmt::Write;

use crossbeam_channel::Sender;
use log::{info, warn};

use crate::logging::MAX_MESSAGE;
use crate::membership::{Event, Outcome};
use crate::name::NodeName;

/// What one round has to say.
pub(crate) struct Report {
    /// Changes since the last round.
    pub events: Vec<Event>,
    /// The status line; empty for events that cannot wait for the round.
    pub line: String,
    /// Problems of the round: skipped registry entries, a heartbeat that
    /// could not be written, an expired entry that could not be removed.
    pub warnings: Vec<String>,
}

/// Longest status line we write: what one log line holds
/// ([`MAX_MESSAGE`]), less room for our name and the note of what was left
/// out, so a line never gets cut mid-entry.
const MAX_STATUS: usize = MAX_MESSAGE - 1024;

/// The recipe's status line: our name, then each member and whether it
/// answered, sorted by name, written as Elixir inspects a keyword list:
/// `a1@127.0.0.1["a1@127.0.0.1": true, "a2@127.0.0.1": false]`.
///
/// A list too long for one line (thousands of entries, a flooded
/// registry) keeps every member that answered first, then as many others
/// as fit, and says what it left out after the list:
/// `a1@h["a1@h": true, …] (+9000 not shown: 0 true, 9000 false)`.
pub(crate) fn status_line(me: &NodeName, results: &[(NodeName, Outcome)]) -> String {
    let mut sorted: Vec<_> = results.iter().collect();
    // A round's results come sorted already: then this costs one pass.
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    // Each entry is its name, two quotes, `: false` and `, `.
    let entry_len = |name: &NodeName| name.as_str().len() + 11;
    let total: usize = results.iter().map(|(name, _)| entry_len(name)).sum();
    let mut left_out = (0, 0);
    if total > MAX_STATUS {
        // Answering members first, then the rest, each by name.
        let mut by_worth = sorted.clone();
        by_worth.sort_by(|a, b| (!a.1.is_alive(), &a.0).cmp(&(!b.1.is_alive(), &b.0)));
        let mut room = MAX_STATUS;
        let mut kept = Vec::with_capacity(by_worth.len());
        for entry in by_worth {
            if entry_len(&entry.0) <= room {
                room -= entry_len(&entry.0);
                kept.push(entry);
            } else if entry.1.is_alive() {
                left_out.0 += 1;
            } else {
                left_out.1 += 1;
            }
        }
        kept.sort_by(|a, b| a.0.cmp(&b.0));
        sorted = kept;
    }
    let mut line = String::with_capacity(me.as_str().len() + 64 + total.min(MAX_STATUS));
    line.push_str(me.as_str());
    line.push('[');
    for (n, (name, outcome)) in sorted.into_iter().enumerate() {
        if n > 0 {
            line.push_str(", ");
        }
        push_keyword_key(&mut line, name.as_str());
        line.push_str(if outcome.is_alive() {
            ": true"
        } else {
            ": false"
        });
    }
    line.push(']');
    if left_out != (0, 0) {
        let (alive, down) = left_out;
        let _ = write!(
            line,
            " (+{} not shown: {alive} true, {down} false)",
            alive + down
        );
    }
    line
}

/// Appends an atom as a keyword-list key in Elixir's `inspect`: bare when
/// it is a plain identifier, quoted otherwise (any name with a dot or a
/// dash).
fn push_keyword_key(line: &mut String, atom: &str) {
    let mut bytes = atom.bytes();
    let plain = bytes
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'@');
    if plain {
        line.push_str(atom);
    } else {
        line.push('"');
        line.push_str(atom);
        line.push('"');
    }
}

/// Where a round's news goes: the log, and the embedder's events channel.
pub(crate) struct Reporter {
    /// This node's name: each event line says who saw it.
    me: String,
    events: Sender<Event>,
}

impl Reporter {
    /// Every event logged also goes to `events`, without waiting: when
    /// nobody reads it and it is full, an event is dropped there, never in
    /// the log.
    pub(crate) fn new(me: &str, events: Sender<Event>) -> Reporter {
        Reporter {
            me: me.to_string(),
            events,
        }
    }

    /// Logs a round's warnings, its events and its status line, in that
    /// order. The log file gets each line with one non-blocking `write`
    /// and the console only gets it queued ([`crate::logging`]), so neither
    /// a stalled log reader nor a console nobody reads holds a round.
    pub(crate) fn report(&self, report: Report) {
        for warning in &report.warnings {
            warn!("{warning}");
        }
        for event in report.events {
            // `ME: node X …`: in a log many nodes share, an event is one
            // node's view, not the cluster's.
            let me = &self.me;
            match event {
                Event::Late(..) | Event::Down(..) | Event::Expired(..) | Event::Gone(..) => {
                    warn!("{me}: {event}")
                }
                _ => info!("{me}: {event}"),
            }
            let _ = self.events.try_send(event);
        }
        if !report.line.is_empty() {
            info!("{}", report.line);
        }
        // A minute of rejected handshakes that ended quietly is summed up
        // here rather than at the next rejection, which may never come.
        crate::peers::limiter::wrong_cookies().log_due();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Reason;
    use std::time::Duration;

    #[test]
    fn line_is_sorted_and_quoted_like_elixir() {
        let n = |s: &str| s.parse::<NodeName>().expect("name");
        let results = vec![
            (n("b2@127.0.0.1"), Outcome::Down(Reason::Refused)),
            (n("a1@127.0.0.1"), Outcome::Alive(Duration::from_millis(1))),
            (n("n1@localhost"), Outcome::Alive(Duration::from_millis(1))),
        ];
        assert_eq!(
            status_line(&n("a1@127.0.0.1"), &results),
            "a1@127.0.0.1[\"a1@127.0.0.1\": true, \"b2@127.0.0.1\": false, n1@localhost: true]"
        );
        assert_eq!(status_line(&n("a@h"), &[]), "a@h[]");
    }

    #[test]
    fn a_line_too_long_keeps_whole_entries_and_every_answering_member() {
        let n = |s: String| s.parse::<NodeName>().expect("name");
        let alive = Outcome::Alive(Duration::from_millis(1));
        // 10,000 entries that never answered, sorted before the live ones.
        let mut results: Vec<_> = (0..10_000)
            .map(|i| {
                (
                    n(format!("junk{i:05}@10.0.0.1")),
                    Outcome::Down(Reason::Refused),
                )
            })
            .collect();
        results.push((n("zz1@127.0.0.1".into()), alive.clone()));
        results.push((n("zz2@127.0.0.1".into()), alive));
        let line = status_line(&n("zz1@127.0.0.1".into()), &results);
        assert!(line.len() <= MAX_MESSAGE, "{}", line.len());
        let (list, note) = line.split_once("] (").expect("a note of what was left out");
        let shown = list.matches(": ").count();
        assert_eq!(
            note,
            format!(
                "+{} not shown: 0 true, {} false)",
                10_002 - shown,
                10_002 - shown
            )
        );
        assert!(
            list.contains("zz1@127.0.0.1\": true, \"zz2@127.0.0.1\": true"),
            "{list}"
        );
        // Whole entries only, still sorted by name.
        assert!(list.ends_with("\"zz2@127.0.0.1\": true"));
        assert!(list.starts_with("zz1@127.0.0.1[\"junk00000@10.0.0.1\": false, "));
        let logged = crate::logging::format_line(log::Level::Info, &line);
        assert!(logged.trim_end().ends_with("false)"), "the log line is cut");
    }

    #[test]
    fn the_reporters_records_carry_the_target_the_logger_sends_to_stdout() {
        // The log target is this module's path: moving the module must move
        // the logger's constant with it, or the status lines go to stderr.
        assert_eq!(
            module_path!().strip_suffix("::tests"),
            Some(crate::logging::REPORTER)
        );
    }
}
