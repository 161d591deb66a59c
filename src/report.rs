//! The status line, the membership events and the round's warnings,
//! written by one reporter thread so the round thread never logs: a round
//! hands over a [`Report`] without waiting, whatever the log is doing.

use std::cell::Cell;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{info, warn};

use crate::membership::{Event, Outcome};
use crate::name::NodeName;

/// What one round has to say.
pub struct Report {
    /// Changes since the last round.
    pub events: Vec<Event>,
    /// The status line; empty for events that cannot wait for the round.
    pub line: String,
    /// Problems of the round: skipped registry entries, a heartbeat that
    /// could not be written, an expired entry that could not be removed.
    pub warnings: Vec<String>,
}

/// The recipe's status line: our name, then each member and whether it
/// answered, sorted by name, written as Elixir inspects a keyword list:
/// `a1@127.0.0.1["a1@127.0.0.1": true, "a2@127.0.0.1": false]`.
pub fn status_line(me: &NodeName, results: &[(NodeName, Outcome)]) -> String {
    let mut sorted: Vec<_> = results.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<String> = sorted
        .iter()
        .map(|(name, outcome)| format!("{}: {}", keyword_key(name.as_str()), outcome.is_alive()))
        .collect();
    format!("{me}[{}]", entries.join(", "))
}

/// An atom as a keyword-list key in Elixir's `inspect`: bare when it is a
/// plain identifier, quoted otherwise (any name with a dot or a dash).
fn keyword_key(atom: &str) -> String {
    let mut chars = atom.chars();
    let plain = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@');
    if plain {
        atom.to_string()
    } else {
        format!("\"{atom}\"")
    }
}

/// The reporter thread's end of the channel, and its handle.
pub struct Reporter {
    tx: Sender<(Report, u64)>,
    handle: JoinHandle<()>,
}

impl Reporter {
    /// Starts the reporter thread; every event it logs also goes to
    /// `events` (without waiting: when nobody reads it and it is full, an
    /// event is dropped there, never in the log).
    pub fn start(events: Sender<Event>) -> std::io::Result<Reporter> {
        // A few rounds of slack; if the console is stuck longer than that,
        // reports are dropped rather than delay the rounds.
        let (tx, rx) = crossbeam_channel::bounded(16);
        let handle = thread::Builder::new()
            .name("pulse-report".into())
            .spawn(move || write_reports(rx, &events))?;
        Ok(Reporter { tx, handle })
    }

    /// A sender for the round thread.
    pub fn sender(&self) -> Outbox {
        Outbox {
            tx: self.tx.clone(),
            dropped: Cell::new(0),
        }
    }

    /// Writes what is queued, then stops.
    pub fn stop(self) {
        drop(self.tx);
        self.handle
            .join()
            .expect("the reporter thread never panics");
    }
}

/// The round thread's end: hands reports over without ever waiting, and
/// counts those it had to drop.
pub struct Outbox {
    /// Each report with the number dropped just before it.
    tx: Sender<(Report, u64)>,
    /// Reports dropped since the last one handed over.
    dropped: Cell<u64>,
}

/// Queues a report; drops it, and counts it for the next one, if the
/// reporter is far behind.
pub fn offer(outbox: &Outbox, report: Report) {
    let before = outbox.dropped.get();
    match outbox.tx.try_send((report, before)) {
        Ok(()) => outbox.dropped.set(0),
        Err(TrySendError::Full(_)) => outbox.dropped.set(before + 1),
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn write_reports(rx: Receiver<(Report, u64)>, events: &Sender<Event>) {
    // Ends when every sender is dropped; nothing queued is lost.
    for (report, dropped_before) in rx {
        if dropped_before > 0 {
            warn!("the log was not keeping up: {dropped_before} status reports were dropped");
        }
        for warning in &report.warnings {
            warn!("{warning}");
        }
        for event in &report.events {
            match event {
                Event::Down(..) | Event::Expired(..) | Event::Gone(..) => warn!("{event}"),
                _ => info!("{event}"),
            }
            let _ = events.try_send(event.clone());
        }
        if !report.line.is_empty() {
            info!("{}", report.line);
        }
        // A minute of rejected handshakes that ended quietly is summed up
        // here rather than at the next rejection, which may never come.
        crate::limiter::wrong_cookies().log_due();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Reason;
    use std::time::Duration;

    #[test]
    fn a_full_reporter_costs_the_round_nothing_and_the_drops_are_counted() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let outbox = Outbox {
            tx,
            dropped: Cell::new(0),
        };
        let report = || Report {
            events: Vec::new(),
            line: String::new(),
            warnings: Vec::new(),
        };
        for _ in 0..4 {
            offer(&outbox, report());
        }
        assert_eq!(rx.try_recv().map(|(_, n)| n).ok(), Some(0));
        offer(&outbox, report());
        assert_eq!(rx.try_recv().map(|(_, n)| n).ok(), Some(3));
        offer(&outbox, report());
        assert_eq!(rx.try_recv().map(|(_, n)| n).ok(), Some(0));
    }

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
}
